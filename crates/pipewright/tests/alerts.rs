//! Monitors and alerts against real parts: a real HTTP application the test starts and
//! stops, a real SMTP server (aiosmtpd, delivering to a Maildir), and a local HTTP server
//! recording what Slack-compatible, SendGrid and webhook channels receive.

mod common;
mod deploy_support;
mod job_deploy_support;
mod serve_support;
mod web_support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::free_port;
use hmac::{Hmac, Mac};
use serde_json::Value;
use serve_support::*;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn python(args: &[&str]) -> Proc {
    Proc(
        Command::new("python3")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    )
}

/// A real SMTP server on loopback delivering into the Maildir `dir`.
fn smtp_server(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let p = python(&[
        "-m",
        "aiosmtpd",
        "-n",
        "-l",
        &format!("127.0.0.1:{port}"),
        "-c",
        "aiosmtpd.handlers.Mailbox",
        dir.to_str().unwrap(),
    ]);
    wait_listening(port, "the SMTP server");
    (p, port)
}

/// The recording HTTP server (alerts_support/receiver.py) writing into `dir`.
fn receiver(dir: &Path) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alerts_support/receiver.py");
    let p = python(&[
        script.to_str().unwrap(),
        &port.to_string(),
        dir.to_str().unwrap(),
    ]);
    wait_listening(port, "the receiver");
    (p, port)
}

/// The application a monitor watches: a static HTTP server answering `/health`.
fn app(dir: &Path, port: u16) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("health"), "ok").unwrap();
    let p = python(&[
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        "--directory",
        dir.to_str().unwrap(),
        &port.to_string(),
    ]);
    wait_listening(port, "the application");
    p
}

/// The mails delivered to the Maildir `dir`, oldest first.
fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("new"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// What the receiver recorded, in order.
fn received(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

fn wait_for<T>(what: &str, s: &Server, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn monitors(s: &Server) -> Vec<Value> {
    let (code, out, err) = s.cli(&["monitors", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A mail's `Subject:` header.
fn subject(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_monitor_going_down_and_up_alerts_exactly_once_each_by_mail_and_signed_webhook() {
    let d = tempfile::tempdir().unwrap();
    let maildir = d.path().join("mail");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let (_recv, recv_port) = receiver(&d.path().join("received"));
    let app_port = free_port();
    let mut application = Some(app(&d.path().join("app"), app_port));
    let s = Server::start_with(&format!(
        r#"
[[monitors]]
name = "web"
url = "http://127.0.0.1:{app_port}/health"
interval = "1s"
timeout = "1s"
environment = "production"
failures_before_alert = 2

[[notify]]
name = "mail"
kind = "smtp"
url = "smtp://127.0.0.1:{smtp_port}"
from = "pipewright@example.com"
to = ["ops@example.com", "oncall@example.com"]
events = ["monitor_down", "monitor_up"]

[[notify]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{recv_port}/hook"
secret = "hook-secret-1"
events = ["monitor_down", "monitor_up"]
"#
    ));
    wait_for("the monitor never saw the application up", &s, || {
        (monitors(&s)[0]["up"] == true).then_some(())
    });
    // Down: the application stops; after two failed checks, one incident, one alert each.
    drop(application.take());
    let down = wait_for("no mail said the monitor is down", &s, || {
        mails(&maildir).first().cloned()
    });
    assert_eq!(subject(&down), "web is down: cannot connect", "{down}");
    assert!(
        down.contains("To: ops@example.com, oncall@example.com"),
        "{down}"
    );
    assert!(down.contains("URL: http://127.0.0.1:"), "{down}");
    assert!(down.contains("Environment: production"), "{down}");
    let m = &monitors(&s)[0];
    assert_eq!(m["up"], false, "{m}");
    assert!(m["failures"].as_i64().unwrap() >= 2, "{m}");
    // Still down for a few more checks: nothing more is sent.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails(&maildir).len(), 1);
    // Up again: one alert each.
    application = Some(app(&d.path().join("app"), app_port));
    wait_for("no mail said the monitor is up", &s, || {
        (mails(&maildir).len() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let all = mails(&maildir);
    let subjects: Vec<String> = all.iter().map(|m| subject(m)).collect();
    assert_eq!(subjects, ["web is down: cannot connect", "web is up again"]);
    assert!(all[1].contains("Down for: "), "{}", all[1]);
    let hooks = wait_for("the webhook got fewer than two calls", &s, || {
        let r = received(&d.path().join("received"));
        (r.len() >= 2).then_some(r)
    });
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    for (hook, event) in hooks.iter().zip(["monitor_down", "monitor_up"]) {
        let body = hook["body"].as_str().unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret-1").unwrap();
        mac.update(body.as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            hook["headers"]["x-pipewright-signature-256"],
            expected.as_str()
        );
        assert_eq!(hook["headers"]["x-pipewright-event"], event);
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], event);
        assert_eq!(v["facts"]["Monitor"], "web");
    }
    let m = &monitors(&s)[0];
    assert_eq!(m["up"], true, "{m}");
    let incidents = m["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{m}");
    assert!(incidents[0]["closed_at"].is_i64(), "{m}");
    let uptime = m["uptime_24h_percent"].as_f64().unwrap();
    assert!(uptime > 0.0 && uptime < 100.0, "{m}");
    let (_, metrics) = get(&s.url, "/metrics");
    assert!(
        metrics.contains("\npipewright_monitor_up{monitor=\"web\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npipewright_alerts{state=\"sent\"} 4\n"),
        "{metrics}"
    );
    drop(application);
}

#[test]
fn a_failing_branch_alerts_its_channels_once_and_its_fix_once() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("received");
    let (_recv, port) = receiver(&rec);
    let s = Server::start_with(&format!(
        r#"
[[notify]]
name = "chat"
kind = "slack"
webhook_url = "http://127.0.0.1:{port}/slack"

[[notify]]
name = "mailer"
kind = "sendgrid"
api_key = "SG.key-1"
api_url = "http://127.0.0.1:{port}/sendgrid"
from = "ci@example.com"
to = ["dev@example.com"]
events = ["run_failed"]

[[notify]]
name = "broken"
kind = "webhook"
url = "http://127.0.0.1:{port}/fail"
events = ["run_failed"]
"#
    ));
    let failing = "on: push
jobs:
  test:
    runs-on: x
    steps:
      - name: Lint
        run: echo linted
      - name: Unit tests <script>
        run: |
          for i in $(seq 1 30); do echo \"test line $i\"; done
          echo '<!channel> 3 tests failed'
          exit 3
";
    let passing = "on: push
jobs:
  test:
    runs-on: x
    steps:
      - run: echo fine
";
    let run = |workflow: &str, branch: &str| {
        let last = |s: &Server| s.runs().iter().filter_map(|r| r["id"].as_i64()).max();
        let before = last(&s).unwrap_or(0);
        let work = s.commit(branch, workflow);
        s.push(&work, branch);
        let id = wait_for("no run", &s, || last(&s).filter(|id| *id > before));
        s.wait_completed(id);
    };
    run(failing, "main");
    let by_path = |path: &str| -> Vec<Value> {
        received(&rec)
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    };
    let slack = wait_for("Slack got nothing", &s, || by_path("/slack").pop());
    let text: String =
        serde_json::from_str::<Value>(slack["body"].as_str().unwrap()).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned();
    for want in [
        "*acme/app failed on main: .github/workflows/ci.yml (test / Unit tests &lt;script&gt;)*",
        "Repository: acme/app",
        "Branch: main",
        "Author: t &lt;t@example.invalid&gt;",
        "Failed job: test",
        "Failed step: Unit tests &lt;script&gt;",
        "test line 30",
        "&lt;!channel&gt; 3 tests failed",
        "/api/v1/runs/",
    ] {
        assert!(text.contains(want), "{want:?} is not in\n{text}");
    }
    assert!(
        !text.contains("test line 5\n"),
        "only the last lines:\n{text}"
    );
    assert!(!text.contains("<!channel>"), "{text}");
    let mail = wait_for("SendGrid got nothing", &s, || {
        by_path("/sendgrid/v3/mail/send").pop()
    });
    assert_eq!(mail["headers"]["authorization"], "Bearer SG.key-1");
    let body: Value = serde_json::from_str(mail["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["personalizations"][0]["to"][0]["email"],
        "dev@example.com"
    );
    assert_eq!(body["from"]["email"], "ci@example.com");
    assert!(
        body["content"][0]["value"]
            .as_str()
            .unwrap()
            .contains("Failed step: Unit tests <script>"),
        "{body}"
    );
    // The failing channel is retried, and its failure recorded; the others went.
    let (code, out, err) = s.cli(&["notify", "test", "chat"]);
    assert_eq!(
        (code, out.trim()),
        (0, "sent a test message to `chat`"),
        "{err}"
    );
    let (code, _, err) = s.cli(&["notify", "test", "broken"]);
    assert_eq!(code, 1);
    assert!(err.contains("answered 500"), "{err}");
    let (code, _, err) = s.cli(&["notify", "test", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("there is no channel `nope` (the configured ones: chat, mailer, broken)"),
        "{err}"
    );
    // Failing again: told again. A failure on another branch: not told (the default
    // branches are the repository's default one and `development`).
    run(failing, "main");
    run(failing, "feature");
    wait_for("the second failure was not told", &s, || {
        (by_path("/slack").len() == 3).then_some(())
    });
    // Fixed: told once; passing again: nothing.
    run(passing, "main");
    let fixed = wait_for("the fix was not told", &s, || {
        by_path("/slack").get(3).cloned()
    });
    assert!(
        fixed["body"]
            .as_str()
            .unwrap()
            .contains("acme/app is fixed on main: .github/workflows/ci.yml succeeded"),
        "{fixed}"
    );
    run(passing, "main");
    std::thread::sleep(Duration::from_secs(2));
    let slack: Vec<String> = by_path("/slack")
        .iter()
        .map(|r| r["body"].as_str().unwrap().chars().take(60).collect())
        .collect();
    assert_eq!(slack.len(), 4, "{slack:#?}");
    assert_eq!(by_path("/sendgrid/v3/mail/send").len(), 2);
    let alerts = s.api("/api/v1/alerts");
    let broken: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["channel"] == "broken" && a["event"] == "run_failed")
        .collect();
    assert_eq!(broken.len(), 2, "{alerts}");
    assert!(
        broken
            .iter()
            .all(|a| a["last_error"].as_str().unwrap().contains("answered 500")),
        "{alerts}"
    );
}

#[test]
fn bad_channels_and_monitors_are_configuration_errors_naming_the_key() {
    for (extra, want) in [
        (
            "[[notify]]\nname = \"x\"\nkind = \"pigeon\"\n",
            "notify.x.kind: `pigeon`: expected smtp, sendgrid, slack or webhook",
        ),
        (
            "[[notify]]\nname = \"x\"\nkind = \"smtp\"\nurl = \"smtp://h:25\"\nfrom = \"a@b\"\n",
            "notify.x.to: a `smtp` channel needs `to`",
        ),
        (
            "[[notify]]\nname = \"x\"\nkind = \"slack\"\nwebhook_url = \"h\"\nevents = [\"run_faild\"]\n",
            "notify.x.webhook_url: `h` is not an http:// or https:// URL",
        ),
        (
            "[[notify]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"http://h\"\nevents = [\"run_faild\"]\n",
            "notify.x.events: `run_faild`: expected any of run_failed, run_fixed, deploy_failed, rolled_back, approval_waiting, monitor_down, monitor_up",
        ),
        (
            "[[monitors]]\nname = \"m\"\nurl = \"http://h\"\ninterval = \"5s\"\ntimeout = \"10s\"\n",
            "monitors.m.timeout: is longer than the interval",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let config = d.path().join("config.toml");
        std::fs::write(
            &config,
            format!("data_dir = \"{}/data\"\n{extra}", d.path().display()),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["serve", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{want:?} is not in {err}");
    }
}

/// Copies `from` (a directory) to `to` with `cp -a`.
#[test]
fn a_deploy_to_a_protected_environment_is_recorded_rolls_back_and_alerts_by_mail_and_chat() {
    // Watched every second once deployed (by default: every minute).
    let app = deploy_support::App::new("      monitor: {interval: 1s}\n");
    let d = tempfile::tempdir().unwrap();
    let maildir = d.path().join("mail");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let rec = d.path().join("received");
    let (_recv, recv_port) = receiver(&rec);
    // `staging` is protected: only `main` deploys to it, each deploy approved.
    let s = Server::start_with(&format!(
        r#"
[[environments]]
name = "staging"
require_approval = true
branches = ["main"]

[[notify]]
name = "mail"
kind = "smtp"
url = "smtp://127.0.0.1:{smtp_port}"
from = "pipewright@example.com"
to = ["ops@example.com"]
events = ["deploy_failed", "rolled_back"]

[[notify]]
name = "chat"
kind = "slack"
webhook_url = "http://127.0.0.1:{recv_port}/slack"
events = ["rolled_back"]
"#
    ));
    let deploys = job_deploy_support::JobDeploys::new(&s, &app).approving();
    let push = |version: &str, artifact: &Path| deploys.push(version, artifact);
    let (run, log) = push("v1", &app.artifact("1.0.0", |_| {}));
    assert_eq!(run["conclusion"], "success", "{run}\n{log}\n{}", s.log());
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    let envs = environments(&s);
    assert_eq!(envs.len(), 1, "{envs:?}");
    let e = &envs[0];
    assert_eq!(
        (&e["repo"], &e["environment"]),
        (&"acme/app".into(), &"staging".into())
    );
    assert_eq!(e["last"]["status"], "deployed", "{e}");
    assert_eq!(e["current"]["version"], "v1", "{e}");
    assert_eq!(e["last"]["hosts"], serde_json::json!(["staging-1"]), "{e}");
    assert_eq!(e["last"]["run_id"], run["id"], "{e}");
    assert!(e["last"]["release"].is_string(), "{e}");
    let phases: Vec<&str> = e["last"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["phase"].as_str())
        .collect();
    assert_eq!(
        phases,
        [
            "UPLOAD",
            "PREPARE",
            "BACKUP",
            "MIGRATE",
            "SWITCH",
            "RESTART",
            "HEALTHCHECK",
            "FINALIZE"
        ]
    );
    // Deployed, the environment is watched from the server at its health URL, the host's
    // name resolved by ssh (`staging-1` is an alias of 127.0.0.1 in the repository's ssh
    // configuration), and its health is shown beside it.
    let m = wait_for("the deployed environment is not watched", &s, || {
        monitors(&s)
            .into_iter()
            .find(|m| m["name"] == "acme/app/staging" && m["up"] == true)
    });
    assert_eq!(
        m["url"],
        format!("http://127.0.0.1:{}/health", app.port).as_str(),
        "{m}"
    );
    assert_eq!(
        (&m["repo"], &m["environment"]),
        (&"acme/app".into(), &"staging".into()),
        "{m}"
    );
    assert_eq!(m["interval_seconds"], 1, "{m}");
    add_user(&s, "wes", "viewer", "viewer-password-3");
    let viewer = web_support::sign_in(&s, "wes", "viewer-password-3").unwrap();
    let page = web_support::http(&s.url, "GET", "/environments", &viewer, &[]).body;
    assert!(
        page.contains("<span class=\"health\"") && page.contains("acme/app/staging"),
        "{page}"
    );
    // A release that cannot start: the health check fails, the deploy rolls back, the run
    // fails; the server records it and tells both channels.
    let (run, log) = push(
        "v2",
        &app.artifact("2.0.0", |dir| {
            std::fs::write(
                dir.join("inner_architect/__main__.py"),
                "raise SystemExit('this release cannot start')\n",
            )
            .unwrap();
        }),
    );
    assert_eq!(run["conclusion"], "failure", "{run}\n{log}");
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    let e = &environments(&s)[0];
    assert_eq!(e["last"]["status"], "rolled_back", "{e}");
    assert_eq!(e["last"]["version"], "v2", "{e}");
    assert_eq!(e["current"]["version"], "v1", "{e}");
    // And on the environments page: v2 rolled back, with why; v1 serving.
    let page = web_support::http(
        &s.url,
        "GET",
        "/environments?repo=acme%2Fapp&name=staging",
        &viewer,
        &[],
    )
    .body;
    let v2_row = page
        .split("<tr")
        .find(|r| r.contains("<td>v2 "))
        .unwrap_or_else(|| panic!("no row of v2:\n{page}"));
    assert!(
        v2_row.contains("<span class=\"badge rolled_back\">rolled_back</span>"),
        "{v2_row}"
    );
    assert!(v2_row.contains("HEALTHCHECK"), "{v2_row}");
    let mail = wait_for("no mail of the rollback", &s, || {
        mails(&maildir).first().cloned()
    });
    assert_eq!(
        subject(&mail),
        "acme/app: the deploy of v2 to staging failed and was rolled back",
        "{mail}"
    );
    assert!(mail.contains("Hosts: staging-1"), "{mail}");
    assert!(mail.contains("staging-1: HEALTHCHECK failed ("), "{mail}");
    let chat = wait_for("chat heard nothing", &s, || received(&rec).first().cloned());
    assert!(
        chat["body"]
            .as_str()
            .unwrap()
            .contains("the deploy of v2 to staging failed and was rolled back"),
        "{chat}"
    );
    let (status, body) = request_bytes(
        &s.url,
        "GET",
        "/api/v1/environments/acme%2Fapp/staging/deployments",
        &[("Authorization", format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&body).unwrap();
    let statuses: Vec<&str> = list["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["status"].as_str())
        .collect();
    assert_eq!(statuses, ["rolled_back", "deployed"]);
    assert_eq!(mails(&maildir).len(), 1);
    // The metrics count the deploys by result, and the rollback.
    let (_, metrics) = get(&s.url, "/metrics");
    for line in [
        "pipewright_deployments_total{repo=\"acme/app\",environment=\"staging\",result=\"deployed\"} 1",
        "pipewright_deployments_total{repo=\"acme/app\",environment=\"staging\",result=\"rolled_back\"} 1",
        "pipewright_rollbacks_total{repo=\"acme/app\",environment=\"staging\",result=\"ok\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    // v3 deploys; then an operator rolls back to v1's release from the dashboard: the job
    // that deployed v3 runs again, on a runner, with the environment's key, rolling back.
    let (run, log) = push("v3", &app.artifact("3.0.0", |_| {}));
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert_eq!(app.live_version().as_deref(), Some("3.0.0"));
    let v3_run = run["id"].as_i64().unwrap();
    let history = |s: &Server| -> Vec<Value> {
        let (_, body) = request_bytes(
            &s.url,
            "GET",
            "/api/v1/environments/acme%2Fapp/staging/deployments",
            &[("Authorization", format!("Bearer {TOKEN}"))],
            b"",
        );
        serde_json::from_slice::<Value>(&body).unwrap()["deployments"]
            .as_array()
            .unwrap()
            .clone()
    };
    let v1 = history(&s)
        .into_iter()
        .find(|d| d["version"] == "v1")
        .unwrap();
    let v1_release = v1["release"].as_str().unwrap().to_owned();
    add_user(&s, "olga", "operator", "operator-password-1");
    add_user(&s, "vera", "viewer", "viewer-password-2");
    let page_of = |cookie: &str| {
        web_support::http(
            &s.url,
            "GET",
            "/environments?repo=acme%2Fapp&name=staging",
            cookie,
            &[],
        )
        .body
    };
    let form = |csrf: &str| {
        [
            ("csrf", csrf.to_owned()),
            ("repo", "acme/app".to_owned()),
            ("name", "staging".to_owned()),
            ("to", v1_release.clone()),
        ]
    };
    let post = |cookie: &str, f: &[(&str, String)]| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        web_support::http(&s.url, "POST", "/environments/rollback", cookie, &f)
    };
    // A viewer sees no button, and its post is refused.
    let viewer = web_support::sign_in(&s, "vera", "viewer-password-2").unwrap();
    let page = page_of(&viewer);
    assert!(!page.contains("Roll back to this"), "{page}");
    let refused = post(&viewer, &form(&web_support::hidden(&page, "csrf")));
    assert_eq!(refused.status, 403, "{}", refused.body);
    let operator = web_support::sign_in(&s, "olga", "operator-password-1").unwrap();
    let page = page_of(&operator);
    assert!(page.contains("Roll back to this"), "{page}");
    assert!(page.contains(&format!("value=\"{v1_release}\"")), "{page}");
    let a = post(&operator, &form(&web_support::hidden(&page, "csrf")));
    assert_eq!(a.status, 303, "{}", a.body);
    let rollback_run: i64 = a
        .header("location")
        .and_then(|l| l.strip_prefix("/runs/"))
        .and_then(|id| id.parse().ok())
        .unwrap();
    let run = s.wait_completed(rollback_run);
    let (_, log, _) = s.cli(&["logs", &rollback_run.to_string()]);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}\n{}", s.log());
    assert_eq!(run["rerun_of"], v3_run, "{run}");
    assert!(
        log.contains(&format!(
            "rolling staging back to release {v1_release} (v1), as olga asked"
        )),
        "{log}"
    );
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    let e = &environments(&s)[0];
    assert_eq!(e["current"]["version"], "v1", "{e}");
    assert_eq!(e["current"]["release"], v1_release.as_str(), "{e}");
    assert_eq!(e["current"]["who"], "olga", "{e}");
    assert_eq!(e["current"]["run_id"], rollback_run, "{e}");
    assert!(
        e["current"]["message"]
            .as_str()
            .unwrap()
            .starts_with("rolled back by hand"),
        "{e}"
    );
    // Then from the command line, through the server, to the release before: v3 again.
    let (code, out, err) = s.cli(&["rollback", "staging", "--server", &s.url]);
    assert_eq!(code, 0, "{out}\n{err}\n{}", s.log());
    assert!(
        err.contains("rolling staging of acme/app back to release"),
        "{err}"
    );
    assert!(out.contains(": success"), "{out}");
    assert_eq!(app.live_version().as_deref(), Some("3.0.0"));
    assert_eq!(environments(&s)[0]["current"]["version"], "v3");
    // What cannot be rolled back says why.
    let (code, _, err) = s.cli(&[
        "rollback",
        "staging",
        "--server",
        &s.url,
        "--to",
        "no-such-release",
    ]);
    // Refused before anything changed: a bad argument (as the deploy commands' code 2).
    assert_eq!(code, 2);
    assert!(
        err.contains("no deployment of release `no-such-release` to `staging` is known"),
        "{err}"
    );
}

#[test]
fn a_job_records_deployments_of_its_own_environment_only_and_only_while_it_runs() {
    let s = Server::start();
    let work = s.commit(
        "main",
        r#"on: push
jobs:
  deploy:
    runs-on: x
    environment: staging
    steps:
      - run: |
          post() {
            curl -s -o /dev/null -w "$1 %{http_code}\n" -X POST -H "Authorization: Bearer $2" \
              -H 'content-type: application/json' -d "$3" "$GITHUB_API_URL/job/deployments"
          }
          post other-environment "$GITHUB_TOKEN" '{"environment":"production","version":"1"}'
          post no-token "" '{"environment":"staging","version":"1"}'
          post file-monitor "$GITHUB_TOKEN" '{"environment":"staging","version":"1","monitors":[{"url":"file:///etc/passwd"}]}'
          post secret-monitor "$GITHUB_TOKEN" '{"environment":"staging","version":"1","monitors":[{"url":"http://u:p@h/"}]}'
          post busy-monitor "$GITHUB_TOKEN" '{"environment":"staging","version":"1","monitors":[{"url":"http://h/","interval_seconds":0}]}'
          post own "$GITHUB_TOKEN" '{"environment":"staging","version":"1","hosts":["web-1"]}'
          echo "$GITHUB_TOKEN" > "$RUNNER_TEMP/../token-copy"
        env:
          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}
"#,
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{run}");
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    // Monitors only of http(s) URLs without credentials, not more often than each second.
    for want in [
        "other-environment 403",
        "no-token 401",
        "file-monitor 422",
        "secret-monitor 422",
        "busy-monitor 422",
        "own 201",
    ] {
        assert!(log.contains(want), "{want}:\n{log}");
    }
    // The deploy the job began and never ended, ended with its run.
    let envs = environments(&s);
    let v = Value::from(envs.clone());
    assert_eq!(envs.len(), 1, "{v}");
    assert_eq!(envs[0]["environment"], "staging");
    assert_eq!(envs[0]["last"]["status"], "failed", "{v}");
    assert_eq!(envs[0]["last"]["who"], "t <t@example.invalid>", "{v}");
    // The job's token is good for nothing once the job ended.
    let (status, _) = post(
        &s.url,
        "/api/v1/job/deployments",
        &[
            ("Authorization", format!("Bearer {}", token_of_job(&s))),
            ("content-type", "application/json".into()),
        ],
        br#"{"environment":"staging","version":"2"}"#,
    );
    assert_eq!(status, 401);
}

/// The token the job of the first run left in its slot (written there by the test's step).
fn token_of_job(s: &Server) -> String {
    let work = s.dir.path().join("data/work");
    let mut found = None;
    for e in walk(&work) {
        if e.file_name().is_some_and(|n| n == "token-copy") {
            found = std::fs::read_to_string(&e).ok();
        }
    }
    found
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| "pwj_missing".into())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_protected_environment_holds_its_job_for_approval_and_takes_its_branches_only() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("received");
    let (_recv, port) = receiver(&rec);
    let s = Server::start_with(&format!(
        r#"
[[environments]]
name = "production"
require_approval = true
branches = ["main"]

[[notify]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
events = ["approval_waiting"]
"#
    ));
    let workflow = "on: push
jobs:
  build:
    runs-on: x
    steps:
      - run: echo built
  deploy:
    needs: build
    runs-on: x
    environment: production
    steps:
      - run: echo deploying to production
";
    let push = |branch: &str| -> i64 {
        let before = s.runs().iter().filter_map(|r| r["id"].as_i64()).max();
        let work = s.commit(branch, workflow);
        s.push(&work, branch);
        wait_for("no run", &s, || {
            s.runs()
                .iter()
                .filter_map(|r| r["id"].as_i64())
                .max()
                .filter(|id| Some(*id) > before)
        })
    };
    let show = |id: i64| -> Value {
        let (_, out, _) = s.cli(&["runs", "show", "--json", &id.to_string()]);
        serde_json::from_str(&out).unwrap_or_default()
    };
    let job = |run: &Value, name: &str| -> Value {
        run["jobs"]
            .as_array()
            .and_then(|j| j.iter().find(|j| j["name"] == name).cloned())
            .unwrap_or_default()
    };
    let waiting = |id: i64| {
        wait_for("the deploy job never waited", &s, || {
            let run = show(id);
            (job(&run, "deploy")["status"] == "waiting").then_some(run)
        })
    };
    // Approved: it runs.
    let id = push("main");
    let run = waiting(id);
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(job(&run, "build")["conclusion"], "success", "{run}");
    let hook = wait_for("no approval_waiting alert", &s, || received(&rec).pop());
    let body: Value = serde_json::from_str(hook["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["event"], "approval_waiting");
    assert_eq!(
        body["title"],
        "acme/app: `deploy` waits for approval to deploy to production"
    );
    assert_eq!(
        body["facts"]["Approve"],
        format!("pipewright approve {id} --job 'deploy'")
    );
    let (code, _, err) = s.cli(&["approve", &id.to_string(), "--job", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("run {id} has no job `nope` waiting for approval")),
        "{err}"
    );
    let (code, out, err) = s.cli(&["approve", &id.to_string(), "--job", "deploy"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("run {id}, job deploy: approved").as_str()),
        "{err}"
    );
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{run}");
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("deploying to production"), "{log}");
    assert!(
        log.contains("this job waits for approval to use environment `production`"),
        "{log}"
    );
    let (code, _, err) = s.cli(&["approve", &id.to_string()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is not waiting for approval, nor any of its jobs"),
        "{err}"
    );
    // Rejected: it fails without running.
    let id = push("main");
    waiting(id);
    let (code, out, err) = s.cli(&["reject", &id.to_string()]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("run {id}, job deploy: rejected").as_str()),
        "{err}"
    );
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "failure", "{run}");
    let deploy = job(&run, "deploy");
    assert_eq!(deploy["conclusion"], "failure", "{run}");
    assert!(
        deploy["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rejected"),
        "{run}"
    );
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(!log.contains("deploying to production"), "{log}");
    // Another branch: refused at once, nothing waits.
    let id = push("feature");
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "failure", "{run}");
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(
        log.contains(
            "environment `production` takes deploys from the branches `main` only, not from `refs/heads/feature`"
        ),
        "{log}"
    );
    assert_eq!(received(&rec).len(), 2, "one alert per job that waited");
}

#[test]
fn a_deploy_from_the_command_line_is_recorded_on_the_server() {
    let app = deploy_support::App::new("");
    // The deploying checkout is a git repository: its commit is recorded.
    common::git(app.repo.path(), &["init", "-q"]);
    common::git(app.repo.path(), &["add", "-A"]);
    common::git(app.repo.path(), &["commit", "-q", "-m", "deploy config"]);
    let head = common::git(app.repo.path(), &["rev-parse", "HEAD"]);
    let s = Server::start();
    let deploy = |version: &str, extra: &[&str]| {
        let artifact = app.artifact(version, |_| {});
        let out = app
            .pipewright()
            .args([
                "deploy",
                "staging",
                "--artifact",
                artifact.to_str().unwrap(),
            ])
            .args(["--version", version])
            .args(extra)
            .env("PIPEWRIGHT_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = deploy("v1", &["--server", &s.url, "--repo", "acme/app"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("recorded on"), "{err}");
    let envs = environments(&s);
    let e = &envs[0];
    assert_eq!(e["current"]["version"], "v1", "{e}");
    assert_eq!(e["current"]["who"], "tester@ci", "{e}");
    assert_eq!(e["current"]["run_id"], Value::Null, "{e}");
    assert_eq!(
        e["current"]["hosts"],
        serde_json::json!(["staging-1"]),
        "{e}"
    );
    assert!(e["current"]["release"].is_string(), "{e}");
    assert_eq!(e["current"]["sha"].as_str(), Some(head.trim()), "{e}");
    let phases = e["current"]["phases"].as_array().unwrap();
    assert!(phases.iter().any(|p| p["phase"] == "HEALTHCHECK"), "{e}");
    // Without a repository it deploys, unrecorded, and says so; a wrong token neither stops it.
    let (code, err) = deploy("v2", &["--server", &s.url]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not recorded on"), "{err}");
    let (code, err) = deploy(
        "v3",
        &["--server", &s.url, "--repo", "acme/app", "--token", "wrong"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("did not record this deploy (the server answered 401"),
        "{err}"
    );
    assert_eq!(app.live_version().as_deref(), Some("v3"));
    // No job made it: the server cannot roll it back, and says where one can.
    let (code, _, err) = s.cli(&["rollback", "staging", "--server", &s.url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("was not made by a job"), "{err}");
}

#[test]
fn a_deploy_that_outlasts_the_server_s_idle_timeout_is_recorded_to_its_end() {
    // The restart takes longer than the server keeps an idle connection open: the end of
    // the deploy is reported on a new connection, not on the one the server closed.
    let sections = deploy_support::DEFAULT_SECTIONS.replace(
        "restart: sh bin/restart.sh",
        "restart: sleep 2.5 && sh bin/restart.sh",
    );
    let app = deploy_support::App::with_sections(&sections, "");
    let s = Server::start_repos(|d| {
        format!(
            "[[repos]]\nname = \"acme/app\"\npath = \"{}/app.git\"\n[http]\nidle_timeout = \"1s\"\n",
            d.display()
        )
    });
    let artifact = app.artifact("v1", |_| {});
    let out = app
        .pipewright()
        .args([
            "deploy",
            "staging",
            "--artifact",
            artifact.to_str().unwrap(),
        ])
        .args(["--version", "v1", "--server", &s.url, "--repo", "acme/app"])
        .env("PIPEWRIGHT_TOKEN", TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("recorded on"), "{err}");
    let envs = environments(&s);
    assert_eq!(envs[0]["current"]["version"], "v1", "{envs:?}");
}

/// `GET /api/v1/environments`: what the server records of each environment.
fn environments(s: &Server) -> Vec<Value> {
    s.api("/api/v1/environments")["environments"]
        .as_array()
        .unwrap()
        .clone()
}
