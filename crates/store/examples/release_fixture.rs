//! Fills a database with a bit of everything the store keeps (runs in each state, jobs,
//! log lines, secrets, runners, tokens, deliveries, schedules, polled refs, artifacts,
//! caches, concurrency groups), for the upgrade test: run with a release's code, then dumped
//! into `fixtures/` (`sqlite3 DB .dump`; `pg_dump --inserts --no-owner --no-privileges`).
//!
//! `cargo run -p store --example release_fixture -- sqlite:/tmp/db.sqlite` (or a
//! `postgresql://` URL).

use store::*;
fn main() {
    let url = std::env::args().nth(1).expect("a database URL");
    let s = Store::open_url(Some(&url), std::path::Path::new("x")).unwrap();
    let new = |repo: &str, r: &str| {
        NewRun {
        repo: repo.into(), workflow: "ci.yml".into(), event: "push".into(),
        git_ref: r.into(), sha: "3f786850e387550fdab836ed7e6dc881de23001b".into(),
        event_json: r#"{"before":"0000000000000000000000000000000000000000"}"#.into(),
        workflow_text: Some("on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n".into()),
        failure: None, held: false,
    }
    };
    let done = s.create_run(&new("acme/app", "refs/heads/main")).unwrap();
    let running = s
        .create_run(&new("acme/app", "refs/heads/development"))
        .unwrap();
    let mut h = new("acme/app", "refs/pull/7/merge");
    h.held = true;
    h.event = "pull_request".into();
    let _waiting = s.create_run(&h).unwrap();
    let _queued = s.create_run(&new("acme/other", "refs/heads/main")).unwrap();
    s.take_queued("server-a", 60_000).unwrap();
    s.take_queued("server-a", 60_000).unwrap();
    s.add_runner_token("tokhash").unwrap();
    let r = s
        .register_runner(
            "tokhash",
            "builder",
            &["linux".into()],
            2,
            "credhash",
            3_600_000,
        )
        .unwrap()
        .unwrap();
    s.embedded_runner("server-a", &["*".into()], 4, "embhash")
        .unwrap();
    let j1 = s
        .enqueue_job(done, "test", "test", r#"["linux"]"#, "{}", b"sealed")
        .unwrap();
    let want = Want {
        labels: &["linux".to_owned()],
        lease: "L",
        lease_ms: 60_000,
    };
    s.take_job(r, &want).unwrap().unwrap();
    s.append_job_logs(
        j1.id,
        r,
        "L",
        &[(1, "hello".into()), (2, "\u{1b}[31mred\u{1b}[0m".into())],
    )
    .unwrap();
    let _ = s
        .complete_job(
            j1.id,
            r,
            "L",
            &Outcome {
                conclusion: Conclusion::Success,
                report: "{\"steps\":[]}",
                lines: &[(3, "bye".into())],
                server: "server-a",
            },
            None,
        )
        .unwrap();
    s.finish_run(done, Conclusion::Success, None).unwrap();
    s.enqueue_job(running, "build", "build", r#"["linux"]"#, "{}", b"sealed")
        .unwrap();
    s.put_secret("acme/app", "", "API_KEY", b"sealed-1")
        .unwrap();
    s.put_secret("acme/app", "production", "SSH_PRIVATE_KEY", b"sealed-2")
        .unwrap();
    s.add_token("ci", "apihash").unwrap();
    s.accept_deliveries(&[NewDelivery {
        key: Some("github:1".into()),
        repo: "acme/app".into(),
        event_json: "{}".into(),
    }])
    .unwrap();
    s.claim_schedule("acme/app", "nightly.yml", "0 3 * * *", 29_000_000)
        .unwrap();
    s.set_polled_baseline(
        "acme/mirror",
        "https://example.com/m.git",
        &[(
            "refs/heads/main".to_owned(),
            "3f786850e387550fdab836ed7e6dc881de23001b".to_owned(),
        )]
        .into_iter()
        .collect(),
    )
    .unwrap();
    let f = FileEntry {
        path: "dist/app.whl".into(),
        mode: 0o644,
        size: 10,
        hash: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".into(),
    };
    s.put_artifact(done, "test", "dist", std::slice::from_ref(&f))
        .unwrap();
    s.put_cache("acme/app", "refs/heads/main", "pip-abc", &[f])
        .unwrap();
    let who = Claimant {
        run: running,
        key: "deploy".into(),
        server: "server-a".into(),
    };
    s.claim_group("acme/app", "deploy-production", &who, false, true)
        .unwrap();
}
