//! `pipewright validate` diagnostics, verbatim: each file under tests/data/validate/ has its
//! output snapshot beside the test (tests/snapshots/).

use std::process::Command;

fn validate(path: &std::path::Path) -> (i32, String) {
    let dir = path.parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .arg("validate")
        .arg(path.file_name().unwrap())
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn diagnostics_verbatim() {
    insta::glob!("data/validate/*.yml", |path| {
        let (code, text) = validate(path);
        // Valid files (warnings at most) exit 0.
        let clean = path
            .file_name()
            .is_some_and(|n| n == "clean.yml" || n == "github_today.yml");
        assert_eq!(code, if clean { 0 } else { 1 }, "{text}");
        assert!(!text.contains("panicked"));
        insta::assert_snapshot!(text);
    });
}

#[test]
fn missing_file_is_an_invocation_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["validate", "/nonexistent/ci.yml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/ci.yml"));
}

#[test]
fn a_reader_that_went_away_ends_the_listing_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // Standard output is a pipe whose reader is gone before the process starts.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["validate", "clean.yml"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/validate"))
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}
