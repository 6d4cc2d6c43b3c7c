//! The README's first command, `scripts/demo`, run on this build: the seed's whole story
//! (staging from `development`, a fork's pull request, production behind an approval, a
//! broken release rolled back by its health check with an alert email, a rollback through
//! the server and one on the host with its `deploy.sh`). The script checks each step itself
//! and exits non-zero at the first that fails; this test also reads its account of them.
//! And `scripts/job-path`, which times the stages of a dispatched job's path from the
//! events the server, its runner and the job's process log at debug level.

use std::process::Command;

#[test]
fn the_demo_runs_the_seed_s_pipeline_from_push_to_production_and_back() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/demo");
    let out = Command::new("bash")
        .arg(script)
        .env("PIPEWRIGHT_BIN", env!("CARGO_BIN_EXE_pipewright"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "staging serves: 1.0.0 ANTHROPIC_API_KEY,STRIPE_SECRET_KEY,STRIPE_PUBLISHABLE_KEY,SENDGRID_API_KEY",
        "the fork sees SSH_PRIVATE_KEY=[]",
        "deploy-production waits for approval",
        "production serves: 1.1.0",
        "rolled back (to ops@inner-architect.test)",
        "production serves: 1.0.0",
        "done: every step above checked",
    ] {
        assert!(stdout.contains(line), "no `{line}` in\n{stdout}");
    }
    // Nothing is left behind: the apps and the hosts' trees are gone.
    assert!(!std::path::Path::new("/var/www/innerarchitect/production").exists());
}

#[test]
fn job_path_times_every_stage_of_a_dispatched_job_from_the_server_s_debug_log() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/job-path");
    let out = Command::new("bash")
        .args([script, "3"])
        .env("PW", env!("CARGO_BIN_EXE_pipewright"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("3 jobs,"), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .collect();
    // Every stage, each found in the log after the one before it, and the whole path.
    for event in [
        "dispatch stored",
        "orchestrating run",
        "job leased",
        "handing to its process",
        "confined",
        "ran",
        "job's end stored",
        "run's end stored",
        "waiter told",
    ] {
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("(`{event}`)")))
            .unwrap_or_else(|| panic!("no stage ending with `{event}` in\n{stdout}"));
        let cells: Vec<&str> = row.trim_matches('|').split('|').skip(1).collect();
        assert_eq!(cells.len(), 4, "{row}");
        for cell in cells {
            let us: f64 = cell.trim().parse().unwrap_or_else(|_| panic!("{row}"));
            assert!(us >= 0.0, "a stage ended before the one before it: {row}");
        }
    }
    assert!(
        rows.last()
            .is_some_and(|r| r.starts_with("| from the dispatch's arrival to the waiter told |")),
        "{stdout}"
    );
}
