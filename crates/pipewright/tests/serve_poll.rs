//! `pipewright serve` polling a `url` repository: a real server process fetching, every
//! second, from an upstream work tree that the test commits to with git.

mod common;
mod deploy_support;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Repo, git};
use serde_json::Value;

/// Fires on a push to any branch, so a baseline mistakenly taken for pushes would show.
const WORKFLOW: &str = "on: push
jobs:
  build:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - run: echo \"built $(cat version.txt) on ${{ github.ref_name }}\"
";

/// The shared server harness, for a polled repository.
struct Server(serve_support::Server);

impl std::ops::Deref for Server {
    type Target = serve_support::Server;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Server {
    /// A server polling `upstream` every second as `acme/app`, and `extra` TOML after that.
    fn start(upstream: &Path, extra: &str) -> Server {
        Server::start_every(upstream, "1s", extra)
    }

    /// [`Server::start`], polling every `interval`.
    fn start_every(upstream: &Path, interval: &str, extra: &str) -> Server {
        Server(serve_support::Server::start_repos(|_| {
            format!(
                "[[repos]]\nname = \"acme/app\"\nurl = \"{u}\"\npoll_interval = \"{interval}\"\n{extra}",
                u = upstream.display(),
            )
        }))
    }

    fn mirror(&self) -> PathBuf {
        self.dir.path().join("data/mirrors/acme%2Fapp.git")
    }

    /// Runs of `acme/app`, oldest first.
    fn runs(&self) -> Vec<Value> {
        let mut runs = self.0.runs();
        runs.reverse();
        runs
    }

    /// Waits until there are `n` runs; fails if there are more.
    fn wait_runs(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let runs = self.runs();
            assert!(
                runs.len() <= n,
                "more than {n} runs: {runs:#?}\n{}",
                self.log()
            );
            if runs.len() == n {
                return runs;
            }
            assert!(
                Instant::now() < deadline,
                "{} runs, not {n}\n{}",
                runs.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the server to have fetched `sha` into its mirror, then for three more
    /// poll intervals, in which nothing should be queued unless something was pushed.
    fn wait_fetched(&self, sha: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("git")
                .arg("--git-dir")
                .arg(self.mirror())
                .args(["for-each-ref", "--format=%(objectname)"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(sha) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{sha} never fetched\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn commit(upstream: &Repo, version: &str) -> String {
    upstream.workflow("ci.yml", WORKFLOW);
    upstream.file("version.txt", version);
    upstream.commit(version)
}

fn assert_push(run: &Value, git_ref: &str, sha: &str) {
    assert_eq!(run["event"], "push", "{run}");
    assert_eq!(run["ref"], git_ref, "{run}");
    assert_eq!(run["sha"], sha, "{run}");
}

#[test]
fn pushes_to_a_polled_repository_run_once_and_its_existing_branches_do_not() {
    // An upstream with history on two branches before the server first sees it.
    let upstream = Repo::new();
    commit(&upstream, "v0");
    git(upstream.path(), &["branch", "old-feature"]);
    let baseline = commit(&upstream, "v0.1");
    let mut s = Server::start(
        upstream.path(),
        // A repository that cannot be fetched: logged, tried again, nothing else stops.
        "[[repos]]\nname = \"acme/missing\"\nurl = \"/nonexistent/pipewright-poll-test\"\npoll_interval = \"1s\"\n",
    );
    s.wait_fetched(&baseline);
    assert!(s.runs().is_empty(), "the baseline queued runs\n{}", s.log());

    // A new commit on main: one run, which checks the mirrored commit out and succeeds.
    let first = commit(&upstream, "v1");
    let runs = s.wait_runs(1);
    assert_push(&runs[0], "refs/heads/main", &first);
    let id = runs[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{run}\n{}", s.log());
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("[build] built v1 on main"), "{log}");

    // A second commit: exactly one more run.
    let second = commit(&upstream, "v2");
    s.wait_fetched(&second);
    let runs = s.wait_runs(2);
    assert_push(&runs[1], "refs/heads/main", &second);
    let run = s.wait_completed(runs[1]["id"].as_i64().unwrap());
    assert_eq!(run["conclusion"], "success", "{run}\n{}", s.log());

    // A new branch is a push with all zeros before; deleting a branch queues nothing.
    git(upstream.path(), &["checkout", "-q", "-b", "topic"]);
    let topic = commit(&upstream, "v3");
    git(upstream.path(), &["checkout", "-q", "main"]);
    git(upstream.path(), &["branch", "-D", "old-feature"]);
    let runs = s.wait_runs(3);
    assert_push(&runs[2], "refs/heads/topic", &topic);
    let head = git(upstream.path(), &["rev-parse", "HEAD"]);
    s.wait_fetched(&head);
    assert_eq!(s.runs().len(), 3, "{}", s.log());

    // Pushed while the server is down: queued by its first poll after the restart, once.
    s.kill9();
    let offline = commit(&upstream, "v4");
    s.spawn();
    let runs = s.wait_runs(4);
    assert_push(&runs[3], "refs/heads/main", &offline);
    s.wait_fetched(&offline);
    assert_eq!(s.runs().len(), 4, "{}", s.log());
    let run = s.wait_completed(runs[3]["id"].as_i64().unwrap());
    assert_eq!(run["conclusion"], "success", "{run}\n{}", s.log());

    // The unreachable repository was tried at every interval and said why.
    let log = s.log();
    assert!(
        log.matches("polling failed").count() >= 3
            && log.contains("acme/missing")
            && log.contains("/nonexistent/pipewright-poll-test"),
        "{log}"
    );
}

#[test]
fn a_bad_poll_interval_is_a_configuration_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (repo, expected) in [
        (
            "url = \"/srv/app\"\npoll_interval = \"soon\"\n",
            "repos.acme/app.poll_interval: `soon` is not a duration",
        ),
        (
            "url = \"/srv/app\"\npoll_interval = \"0s\"\n",
            "repos.acme/app.poll_interval: `0s` is not a duration",
        ),
        (
            "url = \"/srv/app\"\npath = \"/srv/app.git\"\n",
            "repos.acme/app: has both `path` and `url`",
        ),
        ("webhook_secret = \"x\"\n", "repos.acme/app: needs `path`"),
    ] {
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}/data\"\n[[repos]]\nname = \"acme/app\"\n{repo}",
                dir.path().display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["serve", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{repo}: {stderr}");
        assert!(stderr.contains(expected), "{repo}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "a rejected configuration created the data directory"
        );
    }
}

#[test]
fn a_push_webhook_of_a_polled_repository_fetches_it_at_once_and_queues_the_push_once() {
    use hmac::{Hmac, Mac};
    let upstream = Repo::new();
    let baseline = commit(&upstream, "v0");
    // Polled hourly: only the webhook can make the server fetch within the test.
    let s = Server::start_every(upstream.path(), "1h", "webhook_secret = \"s3cret\"\n");
    s.wait_fetched(&baseline);
    let pushed = commit(&upstream, "v1");
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main", "before": baseline, "after": pushed,
        "repository": {"full_name": "acme/app"}
    }))
    .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    // Announced twice (two deliveries, as when a forge retries after a timeout).
    for delivery in ["d-1", "d-2"] {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args([
                "-H",
                "X-GitHub-Event: push",
                "-H",
                "Content-Type: application/json",
            ])
            .args(["-H", &format!("X-GitHub-Delivery: {delivery}")])
            .args(["-H", &format!("X-Hub-Signature-256: {signature}")])
            .args(["--data-binary", "@-", &format!("{}/hooks/github", s.url)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&body)?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
    }
    let runs = s.wait_runs(1);
    assert_push(&runs[0], "refs/heads/main", &pushed);
    s.wait_fetched(&pushed);
    let run = s.wait_completed(runs[0]["id"].as_i64().unwrap());
    assert_eq!(run["conclusion"], "success", "{run}\n{}", s.log());
    assert_eq!(s.runs().len(), 1, "{}", s.log());
}
