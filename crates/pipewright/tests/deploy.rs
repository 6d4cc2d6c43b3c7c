//! `pipewright deploy`, `rollback`, `releases` and `deploy-lock` against a real sshd and the
//! real test application (a Python HTTP server with SQLite migrations).

mod deploy_support;

use deploy_support::App;

#[test]
fn first_deploy_then_a_redeploy_sends_only_what_changed() {
    let app = App::new("");
    let v1 = app.artifact("1.0.0", |_| {});
    let d = app.deploy(&v1);
    d.code(0);
    assert!(d.stderr.contains("HEALTHCHECK ok"), "{}", d.stderr);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    assert_eq!(app.live_schema(), ["001_notes.sql"]);
    let first = app.current().unwrap();

    let v2 = app.artifact("1.1.0", |_| {});
    let d = app.deploy(&v2);
    d.code(0);
    // Only __init__.py differs: one file sent, the rest hard-linked from the live release.
    assert!(d.stderr.contains("sent 1 files"), "{}", d.stderr);
    assert_eq!(app.live_version().as_deref(), Some("1.1.0"));
    let second = app.current().unwrap();
    assert_ne!(first, second);
    let ino = |id: &str| {
        std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(app.path().join("releases").join(id).join("inner_architect/app.py"))
                .unwrap(),
        )
    };
    assert_eq!(ino(&first), ino(&second));

    let r = app.releases_json();
    let list = r[0]["releases"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["status"], "current");
    assert_eq!(list[0]["version"], "1.1.0");
    assert_eq!(list[0]["deployed_by"], "tester@ci");
    assert_eq!(list[1]["status"], "ok");
    let h = app.history();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1]["result"], "ok");
    assert!(h[1]["phases"].as_array().unwrap().iter().any(|p| p["phase"] == "SWITCH"));
}
