//! `pipewright serve` end to end: a real server process, real bare repositories pushed to
//! with git, signed webhooks over HTTP, the CLI as the client.

mod common;
mod deploy_support;
mod serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::git;
use serde_json::Value;
use serve_support::{SECRET, Server, TOKEN, post};

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

const WORKFLOW: &str = "on:
  push:
    branches: [main]
  workflow_dispatch:
    inputs:
      who:
        default: nobody
jobs:
  build:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - run: cat file.txt > /dev/null && echo \"built for ${{ inputs.who }} on ${{ github.ref_name }}\"
  test:
    needs: build
    runs-on: x
    steps:
      - run: echo tested
";

#[test]
fn push_to_a_bare_repository_runs_at_once_and_logs_stream() {
    let s = Server::start();
    let work = s.commit("main", WORKFLOW);
    s.push(&work, "main");
    let runs = s.runs();
    assert_eq!(
        runs.len(),
        1,
        "the post-receive hook queued one run\n{}",
        s.log()
    );
    let id = runs[0]["id"].as_i64().unwrap();
    // Follow the log live until the run ends.
    let (code, out, err) = s.cli(&["logs", &id.to_string(), "-f"]);
    assert_eq!(code, 0, "{out}\n{err}\n{}", s.log());
    // `inputs` is empty for a push (defaults apply to dispatches).
    assert!(out.contains("[build] built for  on main"), "{out}");
    assert!(out.contains("[test] tested"), "{out}");
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success");
    let jobs: Vec<&str> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["conclusion"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["success", "success"]);
    // A push to a branch the workflow does not build queues nothing.
    let work = s.commit("feature", WORKFLOW);
    s.push(&work, "feature");
    assert_eq!(s.runs().len(), 1);
    // Stored logs, one job.
    let (_, out, _) = s.cli(&["logs", &id.to_string(), "--job", "test"]);
    assert!(
        out.contains("[test] tested") && !out.contains("[build]"),
        "{out}"
    );
}

#[test]
fn signed_webhooks_queue_runs_once_and_bad_ones_nothing() {
    let s = Server::start();
    let work = s.commit("main", WORKFLOW);
    s.push(&work, "main");
    let first = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_completed(first);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": sha,
        "repository": {"full_name": "acme/app", "name": "app"}
    }))
    .unwrap();
    let hdr = |event: &str, delivery: &str, sig: String| {
        vec![
            ("X-GitHub-Event", event.to_owned()),
            ("X-GitHub-Delivery", delivery.to_owned()),
            ("X-Hub-Signature-256", sig),
            ("Content-Type", "application/json".to_owned()),
        ]
    };
    let (status, _) = post(
        &s.url,
        "/hooks/github",
        &hdr("push", "d-1", "sha256=00".into()),
        &body,
    );
    assert_eq!(status, 401);
    assert_eq!(s.runs().len(), 1);
    let (status, resp) = post(
        &s.url,
        "/hooks/github",
        &hdr("push", "d-2", sign(&body)),
        &body,
    );
    // Accepted at once, turned into runs by the intake.
    assert_eq!(status, 202, "{resp}");
    assert!(resp.contains("\"queued\":true"), "{resp}");
    let (status, resp) = post(
        &s.url,
        "/hooks/github",
        &hdr("push", "d-2", sign(&body)),
        &body,
    );
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("duplicate"));
    s.wait_intake();
    assert_eq!(s.runs().len(), 2);
    let ping = br#"{"zen": "hi", "repository": {"full_name": "acme/app"}}"#;
    let (status, _) = post(
        &s.url,
        "/hooks/github",
        &hdr("ping", "d-3", sign(ping)),
        ping,
    );
    assert_eq!(status, 200);
    let (status, _) = post(
        &s.url,
        "/hooks/github",
        &hdr("push", "d-4", sign(b"not json")),
        b"not json",
    );
    assert_eq!(status, 400);
    let big = vec![b' '; 26 * 1024 * 1024];
    let (status, _) = post(
        &s.url,
        "/hooks/github",
        &hdr("push", "d-5", sign(&big)),
        &big,
    );
    assert_eq!(status, 413);
    s.wait_intake();
    assert_eq!(s.runs().len(), 2);
    let id = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(id)["conclusion"], "success");
}

#[test]
fn dispatch_waits_and_api_needs_the_token() {
    let s = Server::start();
    let work = s.commit("main", WORKFLOW);
    s.push(&work, "main");
    let (code, out, err) = s.cli(&[
        "dispatch", "acme/app", "ci.yml", "--input", "who=ops", "--wait",
    ]);
    assert_eq!(code, 0, "{out}{err}\n{}", s.log());
    assert!(out.trim().ends_with("success"), "{out}");
    let id: i64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("built for ops on main"), "{log}");
    // Without the token: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["runs", "list", "--server", &s.url])
        .env_remove("PIPEWRIGHT_TOKEN")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // A token made with `tokens create` works; it is not the admin token, so it cannot make more.
    let (code, token, err) = s.cli(&["tokens", "create", "ci-bot"]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("pw_"));
    let with = |t: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(args)
            .env("PIPEWRIGHT_SERVER", &s.url)
            .env("PIPEWRIGHT_TOKEN", t)
            .output()
            .unwrap()
    };
    assert_eq!(with(&token, &["runs", "list"]).status.code(), Some(0));
    assert_ne!(
        with(&token, &["tokens", "create", "x"]).status.code(),
        Some(0)
    );
    assert_ne!(with("pw_wrong", &["runs", "list"]).status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&s.database_bytes()).contains(&token));
    // Defaults apply to a dispatch; a bad input is refused.
    let (code, out, _) = s.cli(&["dispatch", "acme/app", "ci.yml", "--wait"]);
    assert_eq!(code, 0);
    let id: i64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("built for nobody on main"), "{log}");
    let (code, _, err) = s.cli(&["dispatch", "acme/app", "ci.yml", "--input", "nope=1"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no input `nope`"), "{err}");
    // A workflow that does not exist.
    let (code, _, err) = s.cli(&["dispatch", "acme/app", "nope.yml"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
}

/// A server whose binary is replaced while it runs (an upgrade, a rebuild) starts its jobs'
/// processes from the program it runs, which speaks its protocol, until it is restarted:
/// the file put at its path is not run.
#[test]
fn jobs_run_from_the_server_s_own_program_after_its_file_is_replaced() {
    let s = Server::start_program(
        |d| {
            format!(
                "[[repos]]\nname = \"acme/app\"\npath = \"{}/app.git\"\n",
                d.display()
            )
        },
        &[],
        |d| {
            let copy = d.join("bin/pipewright");
            std::fs::create_dir_all(d.join("bin")).unwrap();
            std::fs::copy(env!("CARGO_BIN_EXE_pipewright"), &copy).unwrap();
            copy
        },
    );
    let work = s.commit(
        "main",
        "on: workflow_dispatch\njobs:\n  t:\n    runs-on: x\n    steps:\n      - run: echo $((6 * 7))\n",
    );
    s.push(&work, "main");
    let (code, out, err) = s.cli(&["dispatch", "acme/app", "ci.yml", "--wait"]);
    assert_eq!(code, 0, "{out}{err}\n{}", s.log());
    // Replaced as package managers and `cargo build` do: a new file renamed over the old.
    let new = s.program.with_file_name("pipewright.new");
    std::fs::write(&new, "#!/bin/sh\necho 'the new file ran' >&2\nexit 97\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, &s.program).unwrap();
    // The first job's process was started before the file was replaced, the others after.
    for _ in 0..3 {
        let (code, out, err) = s.cli(&["dispatch", "acme/app", "ci.yml", "--wait"]);
        assert_eq!(code, 0, "{out}{err}\n{}", s.log());
        let id = out.split_whitespace().next().unwrap();
        let (_, log, _) = s.cli(&["logs", id]);
        assert!(log.contains("42"), "{log}");
    }
    assert!(!s.log().contains("the new file ran"), "{}", s.log());
}

/// `GET /api/v1/runs/{id}/wait`, what `dispatch --wait` follows: a run's end and nothing of
/// its log, when the run ends or at once if it has; for a token's holder only. Through a
/// server that does not orchestrate the run, the wait and a followed log end with the run.
#[test]
fn waiting_for_a_run_gives_its_end_and_none_of_its_log() {
    let mut s = Server::start();
    let work = s.commit(
        "main",
        "on: workflow_dispatch
jobs:
  slow:
    runs-on: x
    steps:
      - run: echo \"a line of the log\" && sleep 2 && exit 3
",
    );
    s.push(&work, "main");
    let (code, out, err) = s.cli(&["dispatch", "acme/app", "ci.yml", "--wait"]);
    assert_eq!(code, 1, "{out}{err}\n{}", s.log());
    assert!(out.trim().ends_with(" failure"), "{out}");
    assert!(!out.contains("a line of the log"), "{out}");
    let auth = [("Authorization", format!("Bearer {TOKEN}"))];
    let wait = |url: &str, id: i64| {
        let (status, body) = serve_support::request_bytes(
            url,
            "GET",
            &format!("/api/v1/runs/{id}/wait"),
            &auth,
            b"",
        );
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "{body}");
        body
    };
    let a_url = s.url.clone();
    let id = dispatch_through(&mut s, &a_url);
    s.wait_job_running(id);
    let body = wait(&a_url, id);
    // Answered as the run ended, not before.
    assert_eq!(s.api(&format!("/api/v1/runs/{id}"))["status"], "completed");
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event:"))
        .map(str::trim)
        .collect();
    assert_eq!(events, ["done"], "{body}");
    assert!(body.contains("data: failure"), "{body}");
    assert!(!body.contains("a line of the log"), "{body}");
    // A finished run: at once.
    let body = wait(&a_url, id);
    assert!(body.contains("event: done\ndata: failure"), "{body}");
    // Through another server sharing the database, which does not orchestrate the run: it
    // finds the run's end in the store.
    let (peer, peer_url) = s.spawn_peer("b");
    let other = dispatch_through(&mut s, &a_url);
    let body = wait(&peer_url, other);
    assert!(body.contains("event: done\ndata: failure"), "{body}");
    assert!(
        s.log().contains(&format!("orchestrating run {other} (")),
        "{}",
        s.log()
    );
    // Its log followed through that server too: its lines and its end, found in the store.
    let third = dispatch_through(&mut s, &a_url);
    let (tx, rx) = std::sync::mpsc::channel();
    let (url, headers) = (peer_url.clone(), auth.clone());
    std::thread::spawn(move || {
        let path = format!("/api/v1/runs/{third}/logs?follow=true");
        let _ = tx.send(serve_support::request_bytes(
            &url, "GET", &path, &headers, b"",
        ));
    });
    let (status, body) = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("a log followed through another server ends with its run");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("a line of the log"), "{body}");
    assert!(body.contains("event: done\ndata: failure"), "{body}");
    drop(peer);
    // No such run; no token.
    let (status, _) =
        serve_support::request_bytes(&s.url, "GET", "/api/v1/runs/999999/wait", &auth, b"");
    assert_eq!(status, 404);
    let (status, _) = serve_support::get(&s.url, &format!("/api/v1/runs/{id}/wait"));
    assert_eq!(status, 401);
}

/// A dispatched run is its server's as the dispatch answers: taken for the server's
/// orchestration in the transaction that made it, not left queued for the server to find.
#[test]
fn a_dispatched_run_is_running_as_the_dispatch_answers() {
    let s = Server::start();
    let work = s.commit("main", WORKFLOW);
    s.push(&work, "main");
    let headers = [
        ("Authorization", format!("Bearer {TOKEN}")),
        ("Content-Type", "application/json".to_owned()),
    ];
    let mut ids = Vec::new();
    for _ in 0..10 {
        let (status, body) = post(
            &s.url,
            "/api/v1/repos/acme%2Fapp/dispatch",
            &headers,
            br#"{"workflow": "ci.yml"}"#,
        );
        assert_eq!(status, 201, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["runs"][0]
            .as_i64()
            .unwrap();
        let run = s.api(&format!("/api/v1/runs/{id}"));
        assert_ne!(run["status"], "queued", "{run}\n{}", s.log());
        ids.push(id);
    }
    for id in ids {
        assert_eq!(s.wait_completed(id)["conclusion"], "success", "{}", s.log());
    }
}

#[test]
fn an_invalid_workflow_is_a_failed_run_with_its_diagnostics() {
    let s = Server::start();
    let work = s.commit(
        "main",
        "on: push\njobs:\n  a:\n    runs-on: x\n    needs: nope\n    steps:\n      - run: true\n",
    );
    s.push(&work, "main");
    let runs = s.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["conclusion"], "failure");
    assert!(
        runs[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ci.yml:5:12: job `a` needs `nope`"),
        "{}",
        runs[0]
    );
}

#[test]
fn cancel_stops_a_running_run() {
    let s = Server::start();
    let work = s.commit("main", "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: sleep 60\n      - if: always()\n        run: echo cleaned up\n");
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.runs()[0]["status"] != "running" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, err) = s.cli(&["cancel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "cancelled");
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("cleaned up"), "{log}");
}

#[test]
fn a_server_killed_mid_run_retries_its_job_after_restart() {
    let mut s = Server::start();
    let work = s.commit(
        "main",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: sleep 2; echo step done\n",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    // Killed once the job is on the in-process runner (not merely the run started).
    s.wait_job_running(id);
    s.kill9();
    s.spawn();
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{run}\n{}", s.log());
    // The in-process runner died with the server: its job ran again, as attempt 2.
    assert_eq!(run["jobs"][0]["attempt"], 2, "{run}");
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(
        log.contains("the server stopped while the job ran: attempt 2 of 2 follows"),
        "{log}"
    );
    assert!(log.contains("step done"), "{log}");
}

#[test]
fn secrets_are_sealed_scoped_to_environments_and_masked() {
    let s = Server::start();
    let set = |name: &str, value: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"));
        c.args(["secrets", "set", name])
            .args(extra)
            .env("PIPEWRIGHT_SERVER", &s.url)
            .env("PIPEWRIGHT_TOKEN", TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    set("API_KEY", "api-key-value-123\n", &["--repo", "acme/app"]);
    set(
        "SSH_KEY",
        "ssh-key-value-456",
        &["--repo", "acme/app", "--environment", "production"],
    );
    let work = s.commit(
        "main",
        "on: push
jobs:
  plain:
    runs-on: x
    steps:
      - run: |
          echo \"api ${{ secrets.API_KEY }} len ${#API}\"
          test -z \"${{ secrets.SSH_KEY }}\" && echo no ssh key here
        env:
          API: ${{ secrets.API_KEY }}
  prod:
    runs-on: x
    environment: production
    steps:
      # (The workflow text is stored with the run: it must not spell the value out.)
      - run: test \"${K#ssh-key-val}\" = ue-456 && echo \"ssh key $K\"
        env:
          K: ${{ secrets.SSH_KEY }}
",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(id)["conclusion"], "success", "{}", s.log());
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("[plain] api *** len 17"), "{log}");
    assert!(log.contains("[plain] no ssh key here"), "{log}");
    assert!(log.contains("[prod] ssh key ***"), "{log}");
    assert!(
        !log.contains("value-123") && !log.contains("value-456"),
        "{log}"
    );
    // Listing shows names, never values; the database holds no plaintext.
    let (_, list, _) = s.cli(&["secrets", "list"]);
    assert!(
        list.contains("API_KEY") && list.contains("production") && !list.contains("value"),
        "{list}"
    );
    assert!(
        !String::from_utf8_lossy(&s.database_bytes()).contains("key-value-"),
        "plaintext secret in the database"
    );
}

#[test]
fn gitea_and_gitlab_webhooks() {
    let s = Server::start();
    let work = s.commit("main", WORKFLOW);
    s.push(&work, "main");
    s.wait_completed(s.runs()[0]["id"].as_i64().unwrap());
    let sha = git(&work, &["rev-parse", "HEAD"]);
    // Gitea (and Forgejo): the hex HMAC-SHA256 of the body, without a prefix.
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": sha,
        "repository": {"full_name": "acme/app"}
    }))
    .unwrap();
    let sig = sign(&body).trim_start_matches("sha256=").to_owned();
    let gitea = |delivery: &str, sig: String| {
        vec![
            ("X-Gitea-Event", "push".to_owned()),
            ("X-Gitea-Delivery", delivery.to_owned()),
            ("X-Gitea-Signature", sig),
        ]
    };
    assert_eq!(
        post(&s.url, "/hooks/gitea", &gitea("g1", "00".into()), &body).0,
        401
    );
    assert_eq!(
        post(&s.url, "/hooks/gitea", &gitea("g1", sig.clone()), &body).0,
        202
    );
    assert_eq!(
        post(&s.url, "/hooks/gitea", &gitea("g1", sig), &body).0,
        200
    );
    s.wait_intake();
    assert_eq!(s.runs().len(), 2);
    // GitLab: the secret as a token; merge requests are pull_request events on the target.
    let mr = serde_json::to_vec(&serde_json::json!({
        "object_kind": "merge_request",
        "project": {"path_with_namespace": "acme/app"},
        "object_attributes": {"action": "open", "iid": 7, "source_branch": "feature", "target_branch": "main",
            "last_commit": {"id": sha}, "source_project_id": 1, "target_project_id": 1}
    }))
    .unwrap();
    let gitlab = |token: &str| {
        vec![
            ("X-Gitlab-Event", "Merge Request Hook".to_owned()),
            ("X-Gitlab-Event-UUID", "l1".to_owned()),
            ("X-Gitlab-Token", token.to_owned()),
        ]
    };
    assert_eq!(post(&s.url, "/hooks/gitlab", &gitlab("wrong"), &mr).0, 401);
    let (status, resp) = post(&s.url, "/hooks/gitlab", &gitlab(SECRET), &mr);
    // WORKFLOW fires on push only: the merge request is accepted and queues nothing.
    assert_eq!(status, 202, "{resp}");
    s.wait_intake();
    assert_eq!(s.runs().len(), 2);
}

#[test]
fn rerun_failed_keeps_the_jobs_that_succeeded() {
    // The jobs leave marks outside their directories: there they may.
    let s = Server::start_repos(|d| {
        format!(
            "[[repos]]\nname = \"acme/app\"\npath = \"{d}/app.git\"\n[runner]\nwritable_paths = [\"{d}/marks\"]\n",
            d = d.display()
        )
    });
    let marks = s.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let m = marks.display();
    let work = s.commit(
        "main",
        &format!(
            "on: push
jobs:
  build:
    runs-on: x
    outputs:
      v: ${{{{ steps.v.outputs.v }}}}
    steps:
      - id: v
        run: echo built >> {m}/build; echo v=7 >> \"$GITHUB_OUTPUT\"; echo build ran
  test:
    needs: build
    runs-on: x
    steps:
      - run: echo test >> {m}/test; echo got ${{{{ needs.build.outputs.v }}}}; test -f {m}/fixed
"
        ),
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(id)["conclusion"], "failure");
    std::fs::write(marks.join("fixed"), "").unwrap();
    let (code, out, err) = s.cli(&["rerun", &id.to_string(), "--failed"]);
    assert_eq!(code, 0, "{err}");
    let again: i64 = out.trim().parse().unwrap();
    let run = s.wait_completed(again);
    let (_, log, _) = s.cli(&["logs", &again.to_string()]);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert_eq!(run["attempt"], 2, "{run}");
    // `build` was kept (its log and outputs too), not run again; `test` ran again.
    assert_eq!(
        std::fs::read_to_string(marks.join("build"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_to_string(marks.join("test"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert!(log.contains("[build] build ran"), "{log}");
    assert!(log.contains("[test] got 7"), "{log}");
}

#[test]
fn rerun_and_metrics() {
    let s = Server::start();
    let work = s.commit("main", WORKFLOW);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_completed(id);
    let (code, out, err) = s.cli(&["rerun", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    let again: i64 = out.trim().parse().unwrap();
    assert_ne!(again, id);
    let run = s.wait_completed(again);
    assert_eq!(run["conclusion"], "success");
    assert_eq!(run["sha"], s.runs().last().unwrap()["sha"]);
    let addr = s.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).unwrap();
    assert!(
        resp.contains("pipewright_runs_total{conclusion=\"success\"} 2"),
        "{resp}"
    );
    assert!(
        resp.contains("pipewright_jobs_total{conclusion=\"success\"} 4"),
        "{resp}"
    );
    assert!(resp.contains("pipewright_queue_depth 0"), "{resp}");
    assert!(
        resp.contains("pipewright_job_duration_seconds_count 4"),
        "{resp}"
    );
}

#[test]
fn cron_entries_fire_once_per_minute_even_across_a_restart() {
    let mut s = Server::start();
    let work = s.commit(
        "main",
        "on:\n  schedule:\n    - cron: '* * * * *'\njobs:\n  nightly:\n    runs-on: x\n    steps:\n      - run: echo \"scheduled by ${{ github.event.schedule }}\"\n",
    );
    s.push(&work, "main");
    // The next minute boundary fires it (at most about a minute away).
    let deadline = Instant::now() + Duration::from_secs(75);
    while s.runs().is_empty() {
        assert!(Instant::now() < deadline, "no scheduled run\n{}", s.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = s.runs()[0].clone();
    assert_eq!(run["event"], "schedule");
    let id = run["id"].as_i64().unwrap();
    s.wait_completed(id);
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("scheduled by * * * * *"), "{log}");
    // A restart within the same minute does not fire that minute again.
    s.kill9();
    s.spawn();
    std::thread::sleep(Duration::from_millis(500));
    let same_minute = s
        .runs()
        .iter()
        .filter(|r| {
            r["created_at"].as_i64().unwrap() / 60_000
                == run["created_at"].as_i64().unwrap() / 60_000
        })
        .count();
    assert_eq!(same_minute, 1);
}

#[test]
fn commit_statuses_are_posted_to_the_forge() {
    // A forge that records what it is sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forge = format!("http://{}", listener.local_addr().unwrap());
    let recorder = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream);
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            reader
                .into_inner()
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            seen.push((head, String::from_utf8(body).unwrap()));
        }
        seen
    });
    let s = Server::start_with(&format!(
        "forge = \"gitea\"\nforge_url = \"{forge}/api/v1\"\nforge_token = \"forge-token\"\n"
    ));
    let work = s.commit("main", WORKFLOW);
    s.push(&work, "main");
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let seen = recorder.join().unwrap();
    let (head, body) = &seen[0];
    assert!(
        head.starts_with(&format!("POST /api/v1/repos/acme/app/statuses/{sha} ")),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer forge-token"),
        "{head}"
    );
    let first: Value = serde_json::from_str(body).unwrap();
    assert_eq!(first["state"], "pending");
    assert_eq!(first["context"], "pipewright/ci.yml");
    let last: Value = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!(last["state"], "success");
}

#[test]
fn concurrency_groups_hold_across_runs() {
    let s = Server::start();
    // A workflow-level group: one run at a time; a newcomer replaces the one waiting, which
    // is cancelled.
    let wf = "on: push\nconcurrency: deploy-${{ github.ref }}\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: sleep 2; echo deployed\n";
    for _ in 0..3 {
        let work = s.commit("main", wf);
        s.push(&work, "main");
    }
    let ids: Vec<i64> = s
        .runs()
        .iter()
        .rev()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let runs: Vec<Value> = ids.iter().map(|id| s.wait_completed(*id)).collect();
    let conclusions: Vec<&str> = runs
        .iter()
        .map(|r| r["conclusion"].as_str().unwrap())
        .collect();
    assert_eq!(
        conclusions,
        ["success", "cancelled", "success"],
        "{}",
        s.log()
    );
    // The third ran after the first, not beside it.
    let first_end = runs[0]["jobs"][0]["finished_at"].as_i64().unwrap();
    let third_start = runs[2]["jobs"][0]["started_at"].as_i64().unwrap();
    assert!(third_start >= first_end, "{first_end} > {third_start}");
    // A job-level group with cancel-in-progress: the newer run's job cancels the running one.
    let wf = "on: push\njobs:\n  d:\n    runs-on: x\n    concurrency:\n      group: production\n      cancel-in-progress: true\n    steps:\n      - run: sleep 8; echo deployed\n";
    let work = s.commit("main", wf);
    s.push(&work, "main");
    let older = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_job_running(older);
    let work = s.commit("main", wf);
    s.push(&work, "main");
    let newer = s.runs()[0]["id"].as_i64().unwrap();
    let older = s.wait_completed(older);
    assert_eq!(older["jobs"][0]["conclusion"], "cancelled", "{older}");
    assert_eq!(older["conclusion"], "cancelled", "{older}");
    assert_eq!(s.wait_completed(newer)["conclusion"], "success");
    // Stopped in its step, not waited for.
    let (_, log, _) = s.cli(&["logs", &older["id"].to_string()]);
    assert!(!log.contains("[d] deployed"), "{log}");
    let (_, log, _) = s.cli(&["logs", &newer.to_string()]);
    assert!(log.contains("[d] deployed"), "{log}");
}

/// Dispatches `ci.yml` through the server at `url`, which then orchestrates the run (it is
/// woken at once; another server would only look at its next lease renewal); the run's id.
fn dispatch_through(s: &mut Server, url: &str) -> i64 {
    let own = std::mem::replace(&mut s.url, url.to_owned());
    let (code, out, err) = s.cli(&["dispatch", "acme/app", "ci.yml"]);
    s.url = own;
    assert_eq!(code, 0, "{out}{err}");
    out.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn concurrency_groups_hold_across_servers_sharing_the_database() {
    // Short leases: the peer takes over the in-process runner's identity (one per database),
    // so a job the first server's runner had taken is queued again after a lease.
    let mut s = Server::start_with("[runner]\nlease_seconds = 5\n");
    let (peer, peer_url) = s.spawn_peer("b");
    let peer_log =
        |s: &Server| std::fs::read_to_string(s.dir.path().join("serve-b.log")).unwrap_or_default();
    let (a_url, b_url) = (s.url.clone(), peer_url);
    // A workflow-level group: one run at a time whichever server orchestrates it; the one
    // waiting on server b is replaced by a newcomer on server a.
    let work = s.commit(
        "main",
        "on: workflow_dispatch\nconcurrency: deploy\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: sleep 3; echo deployed\n",
    );
    s.push(&work, "main");
    let first = dispatch_through(&mut s, &a_url);
    s.wait_job_running(first);
    let replaced = dispatch_through(&mut s, &b_url);
    // Waiting (in the store) before the newcomer arrives.
    std::thread::sleep(Duration::from_millis(500));
    let third = dispatch_through(&mut s, &a_url);
    let runs: Vec<Value> = [first, replaced, third]
        .iter()
        .map(|id| s.wait_completed(*id))
        .collect();
    let conclusions: Vec<&str> = runs
        .iter()
        .map(|r| r["conclusion"].as_str().unwrap())
        .collect();
    assert_eq!(
        conclusions,
        ["success", "cancelled", "success"],
        "{runs:?}\n{}\nserver b: {}",
        s.log(),
        peer_log(&s)
    );
    let first_end = runs[0]["jobs"][0]["finished_at"].as_i64().unwrap();
    let third_start = runs[2]["jobs"][0]["started_at"].as_i64().unwrap();
    assert!(third_start >= first_end, "{first_end} > {third_start}");
    // A job-level group with cancel-in-progress: the newer run on server b cancels the job
    // running under server a.
    let work = s.commit(
        "main",
        "on: workflow_dispatch\njobs:\n  d:\n    runs-on: x\n    concurrency:\n      group: production\n      cancel-in-progress: true\n    steps:\n      - run: sleep 8; echo deployed\n",
    );
    s.push(&work, "main");
    let older = dispatch_through(&mut s, &a_url);
    s.wait_job_running(older);
    let newer = dispatch_through(&mut s, &b_url);
    let older = s.wait_completed(older);
    assert_eq!(older["jobs"][0]["conclusion"], "cancelled", "{older}");
    assert_eq!(older["conclusion"], "cancelled", "{older}");
    assert_eq!(s.wait_completed(newer)["conclusion"], "success");
    let (_, log, _) = s.cli(&["logs", &older["id"].to_string()]);
    assert!(!log.contains("[d] deployed"), "{log}");
    let (_, log, _) = s.cli(&["logs", &newer.to_string()]);
    assert!(log.contains("[d] deployed"), "{log}");
    // Each run was orchestrated where it was dispatched.
    let older = older["id"].as_i64().unwrap();
    let (a_log, b_log) = (s.log(), peer_log(&s));
    for (id, log, other) in [
        (first, &a_log, &b_log),
        (replaced, &b_log, &a_log),
        (third, &a_log, &b_log),
        (older, &a_log, &b_log),
        (newer, &b_log, &a_log),
    ] {
        let line = format!("orchestrating run {id} (");
        assert!(
            log.contains(&line) && !other.contains(&line),
            "run {id}\nserver a: {a_log}\nserver b: {b_log}"
        );
    }
    drop(peer);
}

#[test]
fn a_group_held_by_a_run_whose_server_died_stays_held_by_the_server_taking_it_up() {
    let mut s = Server::start_with("[runner]\nlease_seconds = 2\n");
    let (peer, peer_url) = s.spawn_peer("b");
    let work = s.commit(
        "main",
        "on: workflow_dispatch\njobs:\n  d:\n    runs-on: x\n    concurrency: production\n    steps:\n      - run: sleep 4; echo deployed\n",
    );
    s.push(&work, "main");
    let a_url = s.url.clone();
    let held = dispatch_through(&mut s, &a_url);
    s.wait_job_running(held);
    s.kill9();
    // The group is still the dead server's run's: a newcomer waits for it, and the server
    // taking that run up finds the group its own instead of waiting behind the newcomer.
    s.url = peer_url;
    let url = s.url.clone();
    let waiting = dispatch_through(&mut s, &url);
    let peer_log = || std::fs::read_to_string(s.dir.path().join("serve-b.log")).unwrap_or_default();
    let held = s.wait_completed(held);
    let waiting = s.wait_completed(waiting);
    assert_eq!(held["conclusion"], "success", "{held}\n{}", peer_log());
    assert_eq!(
        waiting["conclusion"],
        "success",
        "{waiting}\n{}",
        peer_log()
    );
    let held_end = held["jobs"][0]["finished_at"].as_i64().unwrap();
    let waiting_start = waiting["jobs"][0]["started_at"].as_i64().unwrap();
    assert!(waiting_start >= held_end, "{held}\n{waiting}");
    assert!(peer_log().contains("taking up a run whose server stopped"));
    drop(peer);
}

#[test]
fn a_server_sharing_the_database_takes_up_the_runs_of_one_that_died() {
    let mut s = Server::start_with("[runner]\nlease_seconds = 2\n");
    let (peer, peer_url) = s.spawn_peer("b");
    let work = s.commit(
        "main",
        "on: workflow_dispatch\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: sleep 2; echo step done\n  b:\n    needs: a\n    runs-on: x\n    steps:\n      - run: echo after\n",
    );
    s.push(&work, "main");
    // Dispatched through the first server: it orchestrates the run.
    let (code, out, err) = s.cli(&["dispatch", "acme/app", "ci.yml"]);
    assert_eq!(code, 0, "{out}{err}");
    let id: i64 = out.split_whitespace().next().unwrap().parse().unwrap();
    s.wait_job_running(id);
    s.kill9();
    // The other server takes the run up once the dead one's lease lapses, and finishes it.
    s.url = peer_url;
    let run = s.wait_completed(id);
    let peer_log = std::fs::read_to_string(s.dir.path().join("serve-b.log")).unwrap_or_default();
    assert_eq!(run["conclusion"], "success", "{run}\n{peer_log}");
    assert!(
        peer_log.contains("taking up a run whose server stopped"),
        "peer log: {peer_log}\nfirst log: {}",
        s.log()
    );
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    drop(peer);
    assert!(log.contains("[b] after"), "{log}");
}

#[test]
fn sigterm_lets_the_running_job_finish_and_the_restarted_server_goes_on() {
    let mut s = Server::start();
    let work = s.commit(
        "main",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: sleep 2; echo a done\n  b:\n    needs: a\n    runs-on: x\n    steps:\n      - run: echo b done\n",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_job_running(id);
    let mut child = s.child.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The server stops once its runner's job has finished and reported, not before.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}\n{}", s.log());
    s.spawn();
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{run}\n{}", s.log());
    // The job that was running finished once, in its first attempt; the next ran after.
    assert_eq!(run["jobs"][0]["attempt"], 1, "{run}");
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert_eq!(log.matches("[a] a done").count(), 1, "{log}");
    assert!(log.contains("[b] b done"), "{log}");
}

/// The seed's test job's database, in a server's confined job: a `postgres` service runs
/// from the local binaries inside the job's own directory, as the job's user.
#[test]
fn a_confined_job_gets_its_postgres_service_without_docker() {
    let s = Server::start();
    let work = s.commit(
        "main",
        "on: push
jobs:
  test:
    runs-on: x
    services:
      postgres:
        image: postgres:15
        env:
          POSTGRES_PASSWORD: postgres
          POSTGRES_DB: test_db
        ports: [5432]
        options: --health-cmd pg_isready --health-interval 1s --health-retries 30
    steps:
      - env:
          DATABASE_URL: postgresql://postgres:postgres@127.0.0.1:${{ job.services.postgres.ports['5432'] }}/test_db
        run: psql \"$DATABASE_URL\" -tAc 'select current_database()'
",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert_eq!(run["conclusion"], "success", "{log}\n{}", s.log());
    assert!(log.contains("] test_db"), "{log}");
    assert!(
        log.contains("Service `postgres`: PostgreSQL 15 from"),
        "{log}"
    );
    // What the database printed is kept in the job's log.
    assert!(
        log.contains("##[group]Service `postgres`: its log"),
        "{log}"
    );
    assert!(
        log.contains("database system is ready to accept connections"),
        "{log}"
    );
}

/// A push through the server's git hook gets the payload fields GitHub's webhooks have:
/// the repository's owner and default branch, the sender, the head commit.
#[test]
fn a_pushed_run_sees_the_payload_fields_github_s_webhooks_have() {
    let s = Server::start();
    let work = s.commit(
        "feature",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: |\n          echo \"default ${{ github.event.repository.default_branch }}\"\n          echo \"owner ${{ github.event.repository.owner.login }}\"\n          echo \"name ${{ github.event.repository.name }}\"\n          echo \"head ${{ github.event.head_commit.message }} by ${{ github.event.head_commit.author.email }}\"\n          echo \"ref ${{ github.event.ref }} after ${{ github.event.after }}\"\n          echo \"sender ${{ github.event.sender.login }}\"\n",
    );
    s.push(&work, "feature");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert_eq!(run["conclusion"], "success", "{log}");
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let email = git(&work, &["log", "-1", "--format=%ae"]);
    for want in [
        "[a] default main".to_owned(),
        "[a] owner acme".to_owned(),
        "[a] name app".to_owned(),
        format!("[a] head change by {}", email.trim()),
        format!("[a] ref refs/heads/feature after {}", sha.trim()),
        "[a] sender pipewright".to_owned(),
    ] {
        assert!(log.contains(&want), "{want}\n{log}");
    }
}

#[test]
fn the_server_runs_with_its_allocator_s_tunables_and_its_jobs_without_them() {
    let s = Server::start();
    let pid = s.child.as_ref().unwrap().id();
    // The server started itself again with glibc's tunables (the environment it was
    // started with last), under the same pid.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0"),
        "{}",
        String::from_utf8_lossy(&environ)
    );
    // Nothing it starts inherits them: a job's steps see the server's environment without.
    let work = s.commit(
        "main",
        "on: push\njobs:\n  env:\n    runs-on: x\n    steps:\n      - run: echo \"tunables=${GLIBC_TUNABLES:-none}\"\n",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let (code, out, err) = s.cli(&["logs", &id.to_string(), "-f"]);
    assert_eq!(code, 0, "{out}\n{err}\n{}", s.log());
    assert!(out.contains("[env] tunables=none"), "{out}\n{}", s.log());
}
