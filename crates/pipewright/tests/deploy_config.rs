//! `.pipewright/deploy.yml` diagnostics, verbatim: each file under tests/data/deploy/config/
//! is checked by `pipewright deploy staging --dry-run`; its output is snapshotted.

use std::process::Command;

fn dry_run(path: &std::path::Path) -> (i32, String) {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join(".pipewright")).unwrap();
    std::fs::copy(path, repo.path().join(".pipewright/deploy.yml")).unwrap();
    let artifact = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/deploy/app");
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args([
            "deploy",
            "staging",
            "--dry-run",
            "--version",
            "1.0.0",
            "--artifact",
            artifact,
        ])
        .current_dir(repo.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(artifact, "ARTIFACT");
    let stdout = regex_free_bytes(&stdout);
    let text = format!(
        "exit: {}\n--- stdout\n{stdout}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The artifact's byte count changes whenever the test app does; the snapshot should not.
fn regex_free_bytes(s: &str) -> String {
    match (s.find(" files, "), s.find(" bytes)")) {
        (Some(a), Some(b)) if a < b => format!("{} files, N bytes){}", &s[..a], &s[b + 7..]),
        _ => s.to_owned(),
    }
}

#[test]
fn deploy_yml_diagnostics_verbatim() {
    insta::glob!("data/deploy/config/*.yml", |path| {
        let (code, text) = dry_run(path);
        let ok = path.file_name().is_some_and(|n| n == "ok.yml");
        assert_eq!(code, if ok { 0 } else { 2 }, "{text}");
        assert!(!text.contains("panicked"));
        insta::assert_snapshot!(text);
    });
}

#[test]
fn an_unknown_environment_is_an_invocation_error() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join(".pipewright")).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/deploy/config/ok.yml"
        ),
        repo.path().join(".pipewright/deploy.yml"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["releases", "production"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no environment `production`"), "{err}");
    assert!(err.contains("it has: staging"), "{err}");
}

#[test]
fn the_agent_refuses_garbage_without_panicking() {
    use std::io::Write;
    for input in [
        "",
        "not json\n",
        "{\"op\": \"deploy\"}\n",
        "{\"op\": \"nope\"}\n",
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .arg("deploy-agent")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{input:?}: {stderr}");
        assert_ne!(out.status.code(), Some(0), "{input:?}");
        if !input.is_empty() {
            let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(line["event"], "result", "{input:?}");
            assert_eq!(line["outcome"], "failed", "{input:?}");
        }
    }
}
