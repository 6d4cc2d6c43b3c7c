//! The README's first command, `scripts/demo`, run on this build: the seed's whole story
//! (staging from `development`, a fork's pull request, production behind an approval, a
//! broken release rolled back by its health check with an alert email, a rollback through
//! the server and one on the host with its `deploy.sh`). The script checks each step itself
//! and exits non-zero at the first that fails; this test also reads its account of them.

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
