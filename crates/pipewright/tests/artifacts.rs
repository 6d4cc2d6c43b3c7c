//! Artifacts and caches end to end: a real `pipewright serve` keeping artifacts in its
//! content-addressed store (identical files once), serving them as tar archives, collecting
//! them after their retention, and `actions/cache` entries shared by remote
//! `pipewright runner` processes through the server.

mod common;
mod deploy_support;
mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use serve_support::{Runner, Server, TOKEN, post, registration_token};

/// A GET with the admin token; (status, body).
fn get(s: &Server, path: &str) -> (u16, Vec<u8>) {
    let auth = [("Authorization", format!("Bearer {TOKEN}"))];
    serve_support::request_bytes(&s.url, "GET", path, &auth, b"")
}

fn get_json(s: &Server, path: &str) -> Value {
    let (status, body) = get(s, path);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The blobs in the server's store (uploads in progress aside).
fn blobs(s: &Server) -> Vec<String> {
    let mut found = Vec::new();
    let root = s.dir.path().join("data/blobs");
    for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if dir.file_name() == "tmp" {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            found.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

/// The text without its ANSI colour sequences (the server's log is coloured).
fn without_colors(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Pushes `workflow` and waits for its run; the run's id, checked successful.
fn run(s: &Server, workflow: &str, runners: &[&Runner]) -> i64 {
    let work = s.commit("main", workflow);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    let runner_logs: Vec<String> = runners.iter().map(|r| r.log()).collect();
    assert_eq!(
        run["conclusion"],
        "success",
        "{run}\n{log}\n{}\n{runner_logs:?}",
        s.log()
    );
    id
}

fn logs(s: &Server, id: i64) -> String {
    let (code, log, err) = s.cli(&["logs", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    log
}

const BUILD: &str = r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p dist/bin
          printf 'identical in every run\n' > dist/same.txt
          echo "unique to ${{ github.sha }}" > dist/unique.txt
          printf '#!/bin/sh\necho hi\n' > dist/bin/run.sh
          chmod 755 dist/bin/run.sh
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: dist/
  use:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: dist
          path: got
      - run: |
          cat got/same.txt
          test -x got/bin/run.sh && echo "run.sh is executable"
"#;

fn untar(tar: &[u8], into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let file = into.join("artifact.tar");
    std::fs::write(&file, tar).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn identical_files_are_stored_once_downloaded_as_tar_and_collected_after_retention() {
    let s = Server::start();
    let first = run(&s, BUILD, &[]);
    let log = logs(&s, first);
    assert!(log.contains("[use] identical in every run"), "{log}");
    assert!(log.contains("[use] run.sh is executable"), "{log}");
    let cutoff = now_ms();
    std::thread::sleep(Duration::from_millis(20));
    let second = run(&s, BUILD, &[]);

    // same.txt and run.sh are the same in both runs: stored once; unique.txt twice. The
    // second upload sent only the file the server lacked.
    let stored = blobs(&s);
    assert_eq!(stored.len(), 4, "{stored:?}");
    let server_log = without_colors(&s.log());
    let uploads: Vec<&str> = server_log
        .lines()
        .filter(|l| l.contains("artifact uploaded"))
        .collect();
    assert_eq!(uploads.len(), 2, "{server_log}");
    assert!(uploads[0].contains("files=3 sent=3"), "{}", uploads[0]);
    assert!(uploads[1].contains("files=3 sent=1"), "{}", uploads[1]);

    let list = get_json(&s, &format!("/api/v1/runs/{second}/artifacts"));
    assert_eq!(list["artifacts"], serde_json::json!(["dist"]), "{list}");
    assert_eq!(list["details"][0]["files"], 3, "{list}");

    let (status, tar) = get(&s, &format!("/api/v1/runs/{second}/artifacts/dist"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    let out = s.dir.path().join("download");
    untar(&tar, &out);
    assert_eq!(
        std::fs::read_to_string(out.join("same.txt")).unwrap(),
        "identical in every run\n"
    );
    let sha = s.runs()[0]["sha"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(out.join("unique.txt")).unwrap(),
        format!("unique to {sha}\n")
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("bin/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    let (status, _) = get(&s, &format!("/api/v1/runs/{second}/artifacts/nope"));
    assert_eq!(status, 404);

    // A collection with the first run past its retention: its artifact goes, and the one
    // blob only it named; the second run keeps everything.
    let auth = [
        ("authorization", format!("Bearer {TOKEN}")),
        ("content-type", "application/json".to_owned()),
    ];
    let body = format!("{{\"before\": {cutoff}, \"grace_seconds\": 0}}");
    let (status, answer) = post(&s.url, "/api/v1/admin/gc", &auth, body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let collected: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(collected["artifacts"], 1, "{collected}");
    assert_eq!(collected["blobs"], 1, "{collected}");
    let after = blobs(&s);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.iter().all(|b| stored.contains(b)));
    let list = get_json(&s, &format!("/api/v1/runs/{first}/artifacts"));
    assert_eq!(list["artifacts"], serde_json::json!([]), "{list}");
    let (status, _) = get(&s, &format!("/api/v1/runs/{first}/artifacts/dist"));
    assert_eq!(status, 404);
    // The CLI downloads the same.
    let tar_file = s.dir.path().join("dist.tar");
    let (code, _, err) = s.cli(&[
        "artifacts",
        "download",
        &second.to_string(),
        "dist",
        "-o",
        tar_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let again = s.dir.path().join("download-again");
    untar(&std::fs::read(&tar_file).unwrap(), &again);
    let (code, out, err) = s.cli(&["artifacts", "list", &second.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("dist "), "{out}");
    assert_eq!(
        std::fs::read_to_string(again.join("same.txt")).unwrap(),
        "identical in every run\n"
    );

    // The retention itself (90 days) keeps everything recent; GC needs the admin token.
    let (code, out, err) = s.cli(&["artifacts", "gc"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "deleted 0 artifacts, 0 caches, 0 blobs (0 bytes)"
    );
    assert_eq!(blobs(&s).len(), 3);
    let (status, _) = post(
        &s.url,
        "/api/v1/admin/gc",
        &[("authorization", "Bearer wrong".to_owned())],
        b"",
    );
    assert_eq!(status, 401);
}

/// A registered `pipewright runner` labelled with its name.
fn start_runner(s: &Server, name: &str) -> Runner {
    let token = registration_token(s);
    let r = Runner::spawn(s, name, name, Some(&token));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !r.work_dir.join("runner.json").exists() {
        assert!(Instant::now() < deadline, "{name} did not register");
        std::thread::sleep(Duration::from_millis(25));
    }
    r
}

fn cache_job(runner: &str, steps: &str) -> String {
    format!("on: push\njobs:\n  deps:\n    runs-on: [self-hosted, {runner}]\n    steps:\n{steps}")
}

#[test]
fn a_cache_saved_on_one_runner_is_restored_on_another() {
    let s = Server::start_with("[runner]\nembedded_capacity = 0\n");
    let a = start_runner(&s, "a");
    let b = start_runner(&s, "b");

    // Runner a: a miss, then the post step saves `deps-1`.
    let first = run(
        &s,
        &cache_job(
            "a",
            r#"      - id: c
        uses: actions/cache@v4
        with:
          path: deps
          key: deps-1
      - run: |
          echo "hit=${{ steps.c.outputs.cache-hit }}"
          mkdir -p deps/sub && echo "one from $RUNNER_TAG" > deps/sub/data.txt
"#,
        ),
        &[&a, &b],
    );
    let log = logs(&s, first);
    assert!(
        log.contains("Cache not found for input keys: deps-1"),
        "{log}"
    );
    assert!(log.contains("Cache saved with key: deps-1"), "{log}");

    // Runner b: `deps-2` misses, the restore key finds `deps-1` (made on a); a second save
    // of `deps-1` leaves it as it was.
    let second = run(
        &s,
        &cache_job(
            "b",
            r#"      - id: c
        uses: actions/cache/restore@v4
        with:
          path: deps
          key: deps-2
          restore-keys: |
            deps-
      - run: |
          echo "hit=${{ steps.c.outputs.cache-hit }} matched=${{ steps.c.outputs.cache-matched-key }}"
          echo "restored: $(cat deps/sub/data.txt)"
          echo "two from $RUNNER_TAG" > deps/sub/data.txt
      - uses: actions/cache/save@v4
        with:
          path: deps
          key: deps-2
      - uses: actions/cache/save@v4
        with:
          path: deps
          key: deps-1
"#,
        ),
        &[&a, &b],
    );
    let log = logs(&s, second);
    assert!(log.contains("hit=false matched=deps-1"), "{log}");
    assert!(log.contains("restored: one from a"), "{log}");
    assert!(log.contains("Cache saved with key: deps-2"), "{log}");
    assert!(
        log.contains("Cache already exists for key: deps-1"),
        "{log}"
    );

    // Runner a again: the exact key wins; a prefix finds the newest entry.
    let third = run(
        &s,
        &cache_job(
            "a",
            r#"      - id: exact
        uses: actions/cache/restore@v4
        with:
          path: deps
          key: deps-1
      - run: echo "exact=${{ steps.exact.outputs.cache-hit }} $(cat deps/sub/data.txt)"
      - id: newest
        uses: actions/cache/restore@v4
        with:
          path: deps
          key: deps-9
          restore-keys: deps-
      - run: echo "newest=${{ steps.newest.outputs.cache-matched-key }} $(cat deps/sub/data.txt)"
"#,
        ),
        &[&a, &b],
    );
    let log = logs(&s, third);
    assert!(log.contains("exact=true one from a"), "{log}");
    assert!(log.contains("newest=deps-2 two from b"), "{log}");
    // The runners kept no entries of their own.
    for r in [&a, &b] {
        let local = r.work_dir.join("cache/acme_app/actions-cache");
        assert!(!local.exists(), "{}", local.display());
    }
}

#[test]
fn a_rerun_of_the_failed_jobs_has_the_artifacts_of_the_jobs_it_keeps() {
    let s = Server::start();
    let fixed = s.dir.path().join("fixed");
    let workflow = format!(
        r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: mkdir dist && echo "built once" > dist/app.txt
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: dist/
  deploy:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: dist
      - run: |
          echo "deploying $(cat app.txt)"
          test -f {}
"#,
        fixed.display()
    );
    let work = s.commit("main", &workflow);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(id)["conclusion"], "failure");
    std::fs::write(&fixed, "").unwrap();
    let (code, out, err) = s.cli(&["rerun", &id.to_string(), "--failed"]);
    assert_eq!(code, 0, "{err}");
    let again: i64 = out.trim().parse().unwrap();
    let run = s.wait_completed(again);
    let log = logs(&s, again);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("[deploy] deploying built once"), "{log}");
    // The kept job's artifact belongs to the re-run too; its blobs are shared, not copied.
    let list = get_json(&s, &format!("/api/v1/runs/{again}/artifacts"));
    assert_eq!(list["artifacts"], serde_json::json!(["dist"]), "{list}");
    assert_eq!(blobs(&s).len(), 1);
}
