//! The trust boundary, attacked as an attacker would (issue 11): a fork's pull request
//! and job code trying to reach the server's secrets, state and credentials, other jobs and
//! other repositories' caches; unsigned, oversized and hostile requests; masking bypasses;
//! a server killed under a job. Each test performs the attack against the real binary and
//! shows it fails safely. The suite runs on SQLite and again on PostgreSQL (`scripts/test`).

mod common;
mod deploy_support;
mod serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::git;
use serde_json::Value;
use serve_support::{
    Runner, SECRET, Server, TOKEN, get, job_processes, job_user, post, registration_token,
};

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn github(event: &str, delivery: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        ("X-Hub-Signature-256", sign(body)),
        ("Content-Type", "application/json".to_owned()),
    ]
}

/// A server whose in-process runner runs jobs as the job user, for repository `acme/app`
/// (with `extra` after its `[[repos]]` entry), jobs may write `dir/marks`.
fn confined(extra: &str) -> Server {
    let user = job_user();
    let s = Server::start_repos(|d| {
        format!(
            "[[repos]]\nname = \"acme/app\"\npath = \"{d}/app.git\"\nwebhook_secret = \"{SECRET}\"\n{extra}\n[runner]\njob_user = \"{user}\"\nwritable_paths = [\"{d}/marks\"]\n",
            d = d.display()
        )
    });
    let marks = s.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // The job user writes there.
    let _ = Command::new("chown").arg(user).arg(&marks).status();
    s
}

/// Sets secret `name` (scope flags in `extra`).
fn set_secret(s: &Server, name: &str, value: &str, extra: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["secrets", "set", name])
        .args(extra)
        .env("PIPEWRIGHT_SERVER", &s.url)
        .env("PIPEWRIGHT_TOKEN", TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
}

/// A pull request webhook for the head commit of `work`, from a fork whose repository
/// GitHub reports as `head_repo` (`null` once the fork is deleted).
fn pull_request(s: &Server, work: &Path, number: u64, head_repo: Value) -> i64 {
    let before = s.runs().len();
    let sha = git(work, &["rev-parse", "HEAD"]);
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "opened",
        "number": number,
        "pull_request": {
            "head": {"sha": sha.trim(), "ref": "feature", "repo": head_repo},
            "base": {"ref": "main", "repo": {"full_name": "acme/app"}}
        },
        "repository": {"full_name": "acme/app", "name": "app"}
    }))
    .unwrap();
    let delivery = format!("pr-{number}-{}", sha.trim());
    let (status, resp) = post(
        &s.url,
        "/hooks/github",
        &github("pull_request", &delivery, &body),
        &body,
    );
    assert_eq!(status, 202, "{resp}");
    s.wait_intake();
    let runs = s.runs();
    assert_eq!(runs.len(), before + 1, "{runs:?}");
    runs[0]["id"].as_i64().unwrap()
}

fn logs(s: &Server, id: i64) -> String {
    let (code, out, err) = s.cli(&["logs", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    out
}

/// Every kind of attempt a job makes at what is not its own prints `DENIED <what>` or
/// `GOT <what>`.
const PROBE: &str =
    r#"probe() { if "$@" >/dev/null 2>&1; then echo "GOT $*"; else echo "DENIED $*"; fi; }"#;

#[test]
fn a_fork_s_job_reads_no_server_file_no_runner_credential_and_no_other_job() {
    let s = confined("");
    set_secret(&s, "API_KEY", "api-key-value-123", &["--repo", "acme/app"]);
    let token = registration_token(&s);
    // A remote runner on this machine, confining its jobs too.
    let _r = Runner::spawn_with(&s, "r1", "gpu", Some(&token), &["--job-user", job_user()]);
    let d = s.dir.path().display().to_string();
    let workflow = format!(
        r#"on: pull_request
jobs:
  victim:
    runs-on: x
    steps:
      - run: echo private-of-the-victim > "$GITHUB_WORKSPACE/private.txt"; sleep 4
  thief:
    runs-on: x
    steps:
      - run: |
          {PROBE}
          sleep 1
          for f in {d}/data/secret.key {d}/data/pipewright.db {d}/data/admin-token {d}/data/hook-token {d}/config.toml {d}/runner-r1/runner.json {d}/data/work/slots/0/job/workspace/private.txt {d}/data/work/slots/1/job/workspace/private.txt {d}/app.git/config; do probe cat "$f"; done
          probe ls {d}/data {d}/data/work/slots {d}/data/blobs
          probe touch {d}/data/planted
          probe cat /proc/1/environ
          for p in $(pgrep -x pipewright); do probe cat /proc/$p/environ; probe head -c1 /proc/$p/mem; done
          echo "key=${{{{ secrets.API_KEY }}}}end"
          echo "uid=$(id -u)"
  remote:
    runs-on: gpu
    steps:
      - run: |
          {PROBE}
          for f in {d}/runner-r1/runner.json {d}/data/secret.key; do probe cat "$f"; done
          probe ls {d}/runner-r1
"#
    );
    let work = s.commit("feature", &workflow);
    s.push(&work, "feature");
    let id = pull_request(&s, &work, 1, Value::Null);
    let run = s.wait_completed(id);
    let log = logs(&s, id);
    assert_eq!(run["conclusion"], "success", "{log}\n{}", s.log());
    assert!(!log.contains("] GOT "), "{log}");
    assert!(log.matches("[thief] DENIED").count() >= 14, "{log}");
    assert!(log.matches("[remote] DENIED").count() >= 3, "{log}");
    assert!(
        log.contains("[thief] key=end"),
        "a fork's job got a secret:\n{log}"
    );
    assert!(
        log.contains("this job runs confined: as user pipewright-job, Landlock"),
        "{log}"
    );
    assert!(!log.contains("uid=0"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("[thief]") && l.contains("private-of-the-victim")),
        "{log}"
    );
    assert!(!s.dir.path().join("data/planted").exists());
}

/// The in-process runner runs a fork's job in containers: its `container` and a service
/// through its runner's Docker broker, and nothing of the machine reaches the job's
/// containers (no privileged container, no server file mounted, no engine socket); its
/// steps' files are its user's alone.
#[test]
fn a_fork_s_job_runs_in_containers_of_the_in_process_runner_without_reaching_the_host() {
    let image = common::busybox_image();
    let s = confined("");
    let d = s.dir.path().display().to_string();
    let workflow = format!(
        r#"on: pull_request
jobs:
  boxed:
    runs-on: x
    container: {image}
    services:
      web:
        image: {image}
    steps:
      - run: cat /marker && wget -q -O - http://web/ | head -1
      - run: test ! -e /var/run/docker.sock && echo no engine socket in the container
      - run: echo "step file mode $(stat -c %a "$0")"
  steps:
    runs-on: x
    steps:
      - run: |
          docker run --rm --privileged {image} true 2>&1 || echo privileged refused
          docker run --rm -v {d}/data:/data {image} ls /data 2>&1 || echo server files refused
          docker run --rm {image} cat /marker
"#
    );
    let work = s.commit("feature", &workflow);
    s.push(&work, "feature");
    let id = pull_request(&s, &work, 1, Value::Null);
    let run = s.wait_completed(id);
    let log = logs(&s, id);
    assert_eq!(run["conclusion"], "success", "{log}\n{}", s.log());
    for said in [
        "[boxed] inside the container",
        "[boxed] hello from the web service",
        "[boxed] no engine socket in the container",
        // The job's user's alone: root in the job's container still reads it.
        "[boxed] step file mode 600",
        "[steps] privileged refused",
        "[steps] server files refused",
        "[steps] inside the container",
        "this job runs confined: as user pipewright-job",
    ] {
        assert!(log.contains(said), "`{said}` not in:\n{log}");
    }
    assert!(!log.contains("secret.key"), "{log}");
}

#[test]
fn a_job_reaches_the_api_with_its_own_token_only_and_only_while_it_runs() {
    let s = confined("");
    let marks = s.dir.path().join("marks");
    let m = marks.display();
    // The job tries the API as anyone can, then with its own token: to register a runner
    // (with label `*`), make tokens, read secrets, dispatch, and read another job's things.
    let workflow = format!(
        r#"on: push
jobs:
  probe:
    runs-on: x
    steps:
      - uses: actions/upload-artifact@v4
        with:
          name: mine
          path: ${{{{ github.workspace }}}}
          if-no-files-found: ignore
      - run: |
          code() {{ curl -s -o /dev/null -w "%{{http_code}}" "$@"; }}
          T="${{{{ secrets.GITHUB_TOKEN }}}}"
          job=${{T#pwj_}}; job=${{job%%_*}}
          echo "$T" > {m}/token; echo "$job" > {m}/job
          echo "open runner token: $(code -X POST $GITHUB_API_URL/runners/tokens)"
          echo "open register: $(code -X POST -H 'Content-Type: application/json' -d '{{"version":5,"name":"evil","labels":["*"],"capacity":1}}' $GITHUB_API_URL/runners/register)"
          echo "token runner token: $(code -X POST -H "Authorization: Bearer $T" $GITHUB_API_URL/runners/tokens)"
          echo "token secrets: $(code -H "Authorization: Bearer $T" $GITHUB_API_URL/secrets)"
          echo "token runs: $(code -H "Authorization: Bearer $T" $GITHUB_API_URL/runs)"
          echo "token dispatch: $(code -X POST -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -d '{{"workflow":"ci.yml"}}' $GITHUB_API_URL/repos/acme%2Fapp/dispatch)"
          echo "token next job: $(code -X POST -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -d '{{"version":5,"wait_ms":0}}' $GITHUB_API_URL/runner/jobs/next)"
          echo "token finish: $(code -X POST -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -d '{{}}' $GITHUB_API_URL/runner/jobs/$job/finish)"
          echo "token other job: $(code -H "Authorization: Bearer $T" $GITHUB_API_URL/runner/jobs/$((job + 1))/artifacts)"
          echo "token own job: $(code -H "Authorization: Bearer $T" $GITHUB_API_URL/runner/jobs/$job/artifacts)"
"#
    );
    let work = s.commit("main", &workflow);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    let log = logs(&s, id);
    assert_eq!(run["conclusion"], "success", "{log}");
    for (what, code) in [
        ("open runner token", "401"),
        ("open register", "401"),
        ("token runner token", "401"),
        ("token secrets", "401"),
        ("token runs", "401"),
        ("token dispatch", "401"),
        ("token next job", "401"),
        ("token finish", "401"),
        ("token other job", "401"),
        ("token own job", "200"),
    ] {
        assert!(
            log.contains(&format!("[probe] {what}: {code}")),
            "{what} should get {code}:\n{log}"
        );
    }
    // The token is masked in the log, and dead once the job ended.
    let token = std::fs::read_to_string(marks.join("token")).unwrap();
    let token = token.trim();
    assert!(token.starts_with("pwj_"), "{token}");
    assert!(!log.contains(token), "{log}");
    let job = std::fs::read_to_string(marks.join("job")).unwrap();
    let (status, _) = serve_support::request_bytes(
        &s.url,
        "GET",
        &format!("/api/v1/runner/jobs/{}/artifacts", job.trim()),
        &[("Authorization", format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 401);
    // A runner may not claim `*` either, even with a registration token.
    let reg = registration_token(&s);
    let body = br#"{"version":5,"name":"evil","labels":["*"],"capacity":1}"#;
    let (status, resp) = post(
        &s.url,
        "/api/v1/runners/register",
        &[
            ("Authorization", format!("Bearer {reg}")),
            ("Content-Type", "application/json".into()),
        ],
        body,
    );
    assert_eq!(status, 422, "{resp}");
}

#[test]
fn a_fork_cannot_poison_the_cache_a_branch_restores() {
    let s = confined("");
    let workflow = r#"on: [push, pull_request]
jobs:
  deps:
    runs-on: x
    steps:
      - uses: actions/cache@v4
        with:
          path: dep
          key: deps-v1
      - run: |
          if [ -f dep/origin ]; then echo "restored $(cat dep/origin)"; else mkdir -p dep; echo "$ORIGIN" > dep/origin; echo "saved $ORIGIN"; fi
        env:
          ORIGIN: ${{ github.event_name }}-${{ github.ref }}
"#;
    let work = s.commit("feature", workflow);
    s.push(&work, "feature");
    // The push of `feature` saves in its own scope.
    let id = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(id)["conclusion"], "success");
    // A fork's pull request saves a poisoned entry in the pull request's scope.
    let pr = pull_request(&s, &work, 1, Value::Null);
    assert_eq!(s.wait_completed(pr)["conclusion"], "success");
    let log = logs(&s, pr);
    assert!(
        log.contains("saved pull_request-refs/pull/1/merge"),
        "{log}"
    );
    // A push to main does not restore it (nor feature's).
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let main = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(main)["conclusion"], "success");
    let log = logs(&s, main);
    assert!(log.contains("saved push-refs/heads/main"), "{log}");
    // The pull request's next run reads its own entry; another pull request reads main's.
    std::fs::write(work.join("more.txt"), "x").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "more"]);
    s.push(&work, "feature");
    let again = pull_request(&s, &work, 1, Value::Null);
    assert_eq!(s.wait_completed(again)["conclusion"], "success");
    assert!(
        logs(&s, again).contains("restored pull_request-refs/pull/1/merge"),
        "{}",
        logs(&s, again)
    );
    let other = pull_request(
        &s,
        &work,
        2,
        serde_json::json!({"full_name": "mallory/app"}),
    );
    assert_eq!(s.wait_completed(other)["conclusion"], "success");
    assert!(
        logs(&s, other).contains("restored push-refs/heads/main"),
        "{}",
        logs(&s, other)
    );
}

/// A runner's slots are kept from job to job, but what a job's steps ran (their scripts, with
/// the values of their expressions) and wrote to their file commands is not the next job's:
/// a fork's job in a slot after a trusted one finds them empty.
#[test]
fn a_fork_s_job_reads_nothing_an_earlier_job_left_in_its_slot() {
    let s = confined("");
    set_secret(&s, "API_KEY", "api-key-value-123", &["--repo", "acme/app"]);
    let trusted = r#"      - run: echo first; sleep 1
      - run: |
          echo "${{ secrets.API_KEY }}" > /dev/null
          echo "k=${{ secrets.API_KEY }}" >> "$GITHUB_OUTPUT"
          echo "K=${{ secrets.API_KEY }}" >> "$GITHUB_ENV"
      - run: echo "${{ secrets.API_KEY }}" >> "$GITHUB_STEP_SUMMARY"
"#;
    // Two jobs on push at once, so both of the in-process runner's slots held their files.
    let workflow = format!(
        r#"on: [push, pull_request]
jobs:
  a:
    if: github.event_name == 'push'
    runs-on: x
    steps:
{trusted}  b:
    if: github.event_name == 'push'
    runs-on: x
    steps:
{trusted}  thief:
    if: github.event_name == 'pull_request'
    runs-on: x
    steps:
      - run: |
          echo marker-of-the-thief > /dev/null
          ls -R "$RUNNER_TEMP"
          cat "$RUNNER_TEMP"/step-* "$RUNNER_TEMP"/_runner_file_commands/* | tr a-z A-Z
"#
    );
    let work = s.commit("main", &workflow);
    s.push(&work, "main");
    let push = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(
        s.wait_completed(push)["conclusion"],
        "success",
        "{}",
        logs(&s, push)
    );
    let pr = pull_request(&s, &work, 1, Value::Null);
    let run = s.wait_completed(pr);
    let log = logs(&s, pr);
    assert_eq!(run["conclusion"], "success", "{log}");
    // The job read files of its slot (its own script, upper-cased, is there), and none of
    // the scripts the trusted job before it ran there.
    assert!(log.contains("MARKER-OF-THE-THIEF"), "{log}");
    assert!(!log.contains("step-2"), "{log}");
    assert!(
        !log.contains("API-KEY-VALUE-123"),
        "a fork's job read a secret:\n{log}"
    );
}

/// The server's peak resident set (VmHWM), in KiB.
fn peak_kib(s: &Server) -> u64 {
    let pid = s.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn unsigned_webhooks_of_25_mib_are_refused_before_parsing_in_bounded_memory() {
    let s = Server::start();
    let before = peak_kib(&s);
    // Four at once, each the largest body allowed: JSON that would take gigabytes parsed.
    let body = {
        let mut b = b"{\"repository\":{\"full_name\":\"acme/app\"},\"x\":[".to_vec();
        while b.len() < 25 * 1024 * 1024 - 16 {
            b.extend_from_slice(b"[[[[{}]]]],");
        }
        b.extend_from_slice(b"0]}");
        b
    };
    let body = std::sync::Arc::new(body);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (url, body) = (s.url.clone(), body.clone());
            std::thread::spawn(move || {
                post(
                    &url,
                    "/hooks/github",
                    &[
                        ("X-GitHub-Event", "push".to_owned()),
                        ("X-GitHub-Delivery", format!("big-{i}")),
                        ("X-Hub-Signature-256", "sha256=00".to_owned()),
                    ],
                    &body,
                )
            })
        })
        .collect();
    for t in threads {
        let (status, resp) = t.join().unwrap();
        assert!(status == 401 || status == 503, "{status} {resp}");
        // Nothing tells an unsigned caller which repositories exist.
        assert!(!resp.contains("acme/app"), "{resp}");
    }
    let peak = peak_kib(&s);
    // Two bodies at most are held at once (the budget), never parsed: it was 1.8 GB.
    assert!(
        peak < before + 72 * 1024,
        "peak RSS {peak} KiB (before {before} KiB)"
    );
    eprintln!("peak RSS: {} MiB (idle {} MiB)", peak / 1024, before / 1024);
    assert!(s.runs().is_empty());
}

#[test]
fn a_before_that_is_an_option_reaches_no_git_command() {
    let s = Server::start();
    let work = s.commit(
        "main",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ran\n",
    );
    s.push(&work, "main");
    let first = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_completed(first);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let victim = s.dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let evil = format!("--output={}", victim.display());
    // The post-receive endpoint, with the hook token.
    let hook_token = std::fs::read_to_string(s.dir.path().join("data/hook-token")).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({
        "repo": "acme/app", "ref": "refs/heads/main", "before": evil, "after": sha.trim()
    }))
    .unwrap();
    let (status, resp) = post(
        &s.url,
        "/api/v1/internal/push",
        &[
            ("Authorization", format!("Bearer {}", hook_token.trim())),
            ("Content-Type", "application/json".into()),
        ],
        &body,
    );
    assert_eq!(status, 422, "{resp}");
    // A signed webhook saying the same.
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main", "before": evil, "after": sha.trim(),
        "repository": {"full_name": "acme/app"}
    }))
    .unwrap();
    let (status, resp) = post(
        &s.url,
        "/hooks/github",
        &github("push", "evil-1", &body),
        &body,
    );
    assert_eq!(status, 422, "{resp}");
    s.wait_intake();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(s.runs().len(), 1);
    // The hook token is the server's user's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir.path().join("data/hook-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn pull_requests_not_proven_to_come_from_the_repository_get_no_secrets_and_may_wait_for_approval() {
    let s = confined("fork_pull_requests = \"approve\"");
    set_secret(&s, "API_KEY", "api-key-value-123", &["--repo", "acme/app"]);
    let workflow = "on: pull_request
jobs:
  show:
    runs-on: x
    steps:
      - run: echo \"key=${{ secrets.API_KEY }}end\"
";
    let work = s.commit("feature", workflow);
    s.push(&work, "feature");
    // A head repository that is null (a deleted fork), missing, or another: a fork.
    let heads = [
        Value::Null,
        serde_json::json!({}),
        serde_json::json!({"full_name": "mallory/app"}),
    ];
    let mut waiting = Vec::new();
    for (n, head) in heads.into_iter().enumerate() {
        let id = pull_request(&s, &work, 10 + n as u64, head);
        let (_, out, _) = s.cli(&["runs", "show", "--json", &id.to_string()]);
        let run: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(run["status"], "waiting", "{run}");
        waiting.push(id);
    }
    std::thread::sleep(Duration::from_millis(500));
    for id in &waiting {
        let (_, out, _) = s.cli(&["runs", "show", "--json", &id.to_string()]);
        assert!(out.contains("\"status\": \"waiting\""), "{out}");
    }
    // Approved, they run, without the secret; rejected, it never runs.
    for id in &waiting[..2] {
        let (code, out, err) = s.cli(&["approve", &id.to_string()]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("queued"), "{out}");
        assert_eq!(s.wait_completed(*id)["conclusion"], "success");
        let log = logs(&s, *id);
        assert!(log.contains("[show] key=end"), "{log}");
    }
    let (code, _, err) = s.cli(&["reject", &waiting[2].to_string()]);
    assert_eq!(code, 0, "{err}");
    let run = s.wait_completed(waiting[2]);
    assert_eq!(run["conclusion"], "cancelled");
    assert!(run["jobs"].as_array().unwrap().is_empty(), "{run}");
    // The same pull request from the repository itself runs at once, with the secret.
    let same = pull_request(&s, &work, 20, serde_json::json!({"full_name": "acme/app"}));
    assert_eq!(s.wait_completed(same)["conclusion"], "success");
    assert!(logs(&s, same).contains("[show] key=***end"));
}

/// Registers a runner with `labels` through the API (as `pipewright runner` would);
/// its credential.
fn register(s: &Server, labels: &[&str]) -> String {
    let reg = registration_token(s);
    let body = serde_json::to_vec(&serde_json::json!({
        "version": 5, "name": "inspector", "labels": labels, "capacity": 1
    }))
    .unwrap();
    let (status, resp) = post(
        &s.url,
        "/api/v1/runners/register",
        &[
            ("Authorization", format!("Bearer {reg}")),
            ("Content-Type", "application/json".into()),
        ],
        &body,
    );
    assert_eq!(status, 201, "{resp}");
    let v: Value = serde_json::from_str(&resp).unwrap();
    v["credential"].as_str().unwrap().to_owned()
}

/// The next job for the runner with `credential`, as its lease (JSON text), waiting for it.
fn lease(s: &Server, credential: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, resp) = post(
            &s.url,
            "/api/v1/runner/jobs/next",
            &[
                ("Authorization", format!("Bearer {credential}")),
                ("Content-Type", "application/json".into()),
            ],
            br#"{"version":5,"wait_ms":2000}"#,
        );
        if status == 200 {
            return resp;
        }
        assert_eq!(status, 204, "{resp}");
        assert!(Instant::now() < deadline, "no job came");
    }
}

#[test]
fn a_lease_carries_the_secrets_of_its_own_environment_only() {
    let s = Server::start_with("[runner]\nembedded_capacity = 0\n");
    set_secret(&s, "REPO_KEY", "repo-key-value-1", &["--repo", "acme/app"]);
    for env in ["staging", "production"] {
        set_secret(
            &s,
            "SERVER_KEY",
            &format!("{env}-key-value-2"),
            &["--repo", "acme/app", "--environment", env],
        );
    }
    let credential = register(&s, &["inspect"]);
    let work = s.commit(
        "main",
        "on: push
jobs:
  deploy:
    runs-on: inspect
    environment: ${{ github.ref_name == 'main' && 'staging' || 'production' }}
    steps:
      - run: echo deploying
",
    );
    s.push(&work, "main");
    let text = lease(&s, &credential);
    let lease: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        lease["secrets"]["environment_secrets"],
        serde_json::json!({"staging": {"SERVER_KEY": "staging-key-value-2"}}),
        "{text}"
    );
    assert_eq!(lease["secrets"]["secrets"]["REPO_KEY"], "repo-key-value-1");
    assert!(!text.contains("production-key"), "{text}");
    assert_eq!(lease["spec"]["trusted"], true);
    assert!(
        lease["token"].as_str().unwrap().starts_with("pwj_"),
        "{text}"
    );
}

#[test]
fn a_server_killed_under_a_job_leaves_no_step_running_and_the_retry_runs_once() {
    let mut s = confined("");
    let marks = s.dir.path().join("marks");
    let m = marks.display();
    let work = s.commit(
        "main",
        &format!(
            "on: push
jobs:
  side:
    runs-on: x
    steps:
      - run: |
          echo started-$$-$(date +%s.%N) >> {m}/started
          setsid sh -c 'sleep 6; echo detached-$(date +%s.%N) >> {m}/detached' &
          sh -c 'sleep 1; echo child-$PPID-$(date +%s.%N) >> {m}/child' &
          sleep 2
          echo effect-$$-$(date +%s.%N) >> {m}/side
"
        ),
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marks.join("started").exists() {
        assert!(
            Instant::now() < deadline,
            "the job never started\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    s.kill9();
    s.spawn();
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{}", s.log());
    assert_eq!(run["jobs"][0]["attempt"], 2, "{run}");
    // Every process of the first attempt died with its server: the side effects happened
    // once, by the retry; the detached one never (it outlives no job).
    std::thread::sleep(Duration::from_secs(5));
    let lines = |f: &str| {
        std::fs::read_to_string(marks.join(f))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let marked: Vec<String> = ["started", "side", "child", "detached"]
        .iter()
        .map(|f| format!("{f}: {:?}", std::fs::read_to_string(marks.join(f))))
        .collect();
    assert_eq!(lines("started"), 2, "{marked:?}");
    assert_eq!(lines("side"), 1, "{marked:?}");
    assert_eq!(lines("child"), 1, "{marked:?}");
    assert_eq!(lines("detached"), 0, "{marked:?}");
}

#[test]
fn idle_connections_are_capped_and_closed_and_tokens_stay_random() {
    let s = Server::start_with("[http]\nmax_connections = 16\nidle_timeout = \"2s\"\n");
    let pid = s.child.as_ref().unwrap().id();
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    // The connections the server holds open on its port: its sockets whose local port is
    // the listening one (what /proc/net/tcp says of each of its socket descriptors).
    let accepted = || {
        let mut inodes = std::collections::HashSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                let local_port = f[1].rsplit(':').next().unwrap();
                if u16::from_str_radix(local_port, 16).unwrap() == port && f[3] == "01" {
                    inodes.insert(f[9].to_owned());
                }
            }
        }
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .filter(|l| {
                let l = l.to_string_lossy();
                l.strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .is_some_and(|i| inodes.contains(i))
            })
            .count()
    };
    // 64 connections that never send a byte.
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The server holds at most its limit of them.
    let held = accepted();
    assert!((14..=16).contains(&held), "{held} connections held");
    // Each is closed after the idle timeout; the server answers again.
    let started = Instant::now();
    let (status, body) = get(&s.url, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(started.elapsed() < Duration::from_secs(30));
    let mut closed = 0;
    for c in &mut idle {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        if matches!(c.read(&mut buf), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, idle.len());
    assert!(
        s.log().contains("the connection limit is reached"),
        "{}",
        s.log()
    );
    // A token made now is random (the operating system's random bytes need no file).
    let token = registration_token(&s);
    assert_eq!(token.len(), 48, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(token, "0".repeat(48));
    assert_ne!(token, registration_token(&s));
}

/// A step that tries every way around the masking and the log's lines: a secret in a
/// workflow command's properties, across the cut of a long line, two secrets overlapping, a
/// `%0A` in a property, escape sequences for the terminal.
const LEAKY: &str = r#"on: push
jobs:
  leak:
    runs-on: x
    steps:
      - run: |
          echo "::error file=${S},line=${S}::in ${S}"
          head -c 65530 /dev/zero | tr '\0' x; printf '%s' "$S"; echo yyy
          echo "overlap: ${A}${B#ef12}"
          echo "::warning file=a.py%0A##[step-end] fake: success,line=1::msg%0A##[step-end] fake2: success"
          printf 'osc: \033]0;title\007 clip: \033]52;c;aGk=\007 color: \033[31mred\033[0m bell\007\n'
        env:
          S: ${{ secrets.S }}
          A: ${{ secrets.A }}
          B: ${{ secrets.B }}
"#;

const S: &str = "s3cr3t-value-xyz";

/// What a log must show of [`LEAKY`]'s step, however it is read.
fn check_leaks(log: &str) {
    // The log with its long line cut, for the messages.
    let short: String = log
        .lines()
        .map(|l| {
            let cut: String = l.chars().take(200).collect();
            format!("{cut:?}\n")
        })
        .collect();
    assert!(!log.contains("s3cr3t"), "a secret shows:\n{short}");
    assert!(!log.contains("ghij") && !log.contains("abcd"), "{short}");
    assert!(log.contains("overlap: ***"), "{short}");
    assert!(log.contains("xxx***yyy"), "{short}");
    // Neither property nor message starts a line of its own.
    assert!(
        !log.lines().any(|l| l
            .trim_start_matches("[leak] ")
            .starts_with("##[step-end] fake")),
        "{short}"
    );
    assert!(log.contains("a.py^J##[step-end] fake: success"), "{short}");
    // The terminal is told nothing but colours.
    assert!(
        !log.contains("\u{1b}]") && !log.contains('\u{7}'),
        "{short}"
    );
    assert!(log.contains("^[]0;title^G"), "{short}");
    assert!(log.contains("^[]52;c;aGk=^G"), "{short}");
    assert!(log.contains("\u{1b}[31mred\u{1b}[0m"), "{short}");
}

#[test]
fn masking_has_no_holes_and_logs_command_no_terminal_locally() {
    let r = common::Repo::new();
    r.workflow("ci.yml", LEAKY);
    r.commit("leaky");
    let run = r.run(&[
        "--secret",
        &format!("S={S}"),
        "--secret",
        "A=abcdef12",
        "--secret",
        "B=ef12ghij",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    check_leaks(&run.all());
}

#[test]
fn masking_has_no_holes_and_stored_logs_command_no_terminal() {
    let s = confined("");
    set_secret(&s, "S", S, &["--repo", "acme/app"]);
    set_secret(&s, "A", "abcdef12", &["--repo", "acme/app"]);
    set_secret(&s, "B", "ef12ghij", &["--repo", "acme/app"]);
    let work = s.commit("main", LEAKY);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(
        s.wait_completed(id)["conclusion"],
        "success",
        "{}",
        logs(&s, id)
    );
    // The CLI, the API's text, and the live log.
    check_leaks(&logs(&s, id));
    let (status, raw) = serve_support::request_bytes(
        &s.url,
        "GET",
        &format!("/api/v1/runs/{id}/logs"),
        &[("Authorization", format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(status, 200);
    check_leaks(&String::from_utf8_lossy(&raw));
    let (code, followed, err) = s.cli(&["logs", "--follow", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    check_leaks(&followed);
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn without_an_admin_token_the_server_makes_one_and_keeps_its_files_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", "app.git"],
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"0.0.0.0:0\"\ndata_dir = \"{d}/data\"\n[[repos]]\nname = \"acme/app\"\npath = \"{d}/app.git\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["serve", "-c"])
        .arg(&config)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let data = dir.path().join("data");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("listen-url").exists() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = std::fs::read_to_string(data.join("listen-url")).unwrap();
    // The API is closed: nothing without the token the server made.
    let (status, _) = get(&url, "/api/v1/runs");
    assert_eq!(status, 401);
    let (status, _) = post(&url, "/api/v1/runners/tokens", &[], b"");
    assert_eq!(status, 401);
    let shown = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["token", "show", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(shown.status.success());
    let token = String::from_utf8_lossy(&shown.stdout).trim().to_owned();
    assert!(token.starts_with("pwa_") && token.len() > 40, "{token}");
    let listed = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["runs", "list"])
        .env("PIPEWRIGHT_SERVER", &url)
        .env("PIPEWRIGHT_TOKEN", &token)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    // Said once, in the server's log, with a warning about listening beyond the machine
    // without TLS.
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(said.matches(&token).count(), 1, "{said}");
    assert!(said.contains("without TLS"), "{said}");
    // Its files are its own.
    assert_eq!(
        mode(&data) & 0o077,
        0o011,
        "the data directory lists nothing"
    );
    for f in [
        "admin-token",
        "hook-token",
        "secret.key",
        "pipewright.db",
        "server-id",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    for d in ["blobs", "logs", "mirrors"] {
        assert_eq!(mode(&data.join(d)) & 0o077, 0, "{d}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn configurations_that_would_open_a_door_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[repos]]\nname = \"a\"\npath = \"/x\"\nwebhook_secret = \"\"\n",
            "repos.a.webhook_secret",
        ),
        ("[auth]\nadmin_token = \"short\"\n", "auth.admin_token"),
        (
            "[runner]\nisolation = \"none\"\njob_user = \"nobody\"\n",
            "runner.job_user",
        ),
    ];
    for (text, key) in cases {
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!("data_dir = \"{}/d\"\n{text}", dir.path().display()),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["serve", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn runners_and_tokens_expire_and_are_revoked() {
    let s = Server::start_with(
        "[runner]\nembedded_capacity = 0\nregistration_token_ttl = \"1s\"\nlease_seconds = 2\n",
    );
    // A registration token too old to use.
    let old = registration_token(&s);
    std::thread::sleep(Duration::from_millis(1500));
    let body = br#"{"version":5,"name":"late","labels":["x"],"capacity":1}"#;
    let (status, resp) = post(
        &s.url,
        "/api/v1/runners/register",
        &[
            ("Authorization", format!("Bearer {old}")),
            ("Content-Type", "application/json".into()),
        ],
        body,
    );
    assert_eq!(status, 401, "{resp}");
    assert!(resp.contains("expired"), "{resp}");
    // A runner whose token is in a file: it never shows in the process list.
    let token = registration_token(&s);
    let token_file = s.dir.path().join("runner-token");
    std::fs::write(&token_file, &token).unwrap();
    let runner = Runner::spawn_with(
        &s,
        "filed",
        "filed",
        None,
        &["--token-file", token_file.to_str().unwrap()],
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", runner.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&token));
    let work = s.commit(
        "main",
        "on: push\njobs:\n  long:\n    runs-on: filed\n    steps:\n      - run: sleep 30\n",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_job_running(id);
    // Removed, the runner's credential stops working and its job goes back to the queue.
    let (_, list, _) = s.cli(&["runners", "list", "--json"]);
    let runners: Value = serde_json::from_str(&list).unwrap();
    let rid = runners
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "filed")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (code, _, err) = s.cli(&["runners", "remove", &rid.to_string()]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = s.cli(&["runs", "show", "--json", &id.to_string()]);
    let run: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["jobs"][0]["status"], "queued", "{run}");
    let reg: Value = serde_json::from_str(
        &std::fs::read_to_string(runner.work_dir.join("runner.json")).unwrap(),
    )
    .unwrap();
    let (status, _) = post(
        &s.url,
        "/api/v1/runner/jobs/next",
        &[
            (
                "Authorization",
                format!("Bearer {}", reg["credential"].as_str().unwrap()),
            ),
            ("Content-Type", "application/json".into()),
        ],
        br#"{"version":5,"wait_ms":0}"#,
    );
    assert_eq!(status, 401);
    // API tokens: listed (never shown), revoked at once.
    let (code, made, err) = s.cli(&["tokens", "create", "ci-bot"]);
    assert_eq!(code, 0, "{err}");
    let api_token = made.trim();
    let (status, _) = serve_support::request_bytes(
        &s.url,
        "GET",
        "/api/v1/runs",
        &[("Authorization", format!("Bearer {api_token}"))],
        b"",
    );
    assert_eq!(status, 200);
    let (_, list, _) = s.cli(&["tokens", "list"]);
    assert!(
        list.contains("ci-bot") && !list.contains(api_token),
        "{list}"
    );
    let tid = list
        .lines()
        .find(|l| l.contains("ci-bot"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    let (code, _, err) = s.cli(&["tokens", "revoke", tid]);
    assert_eq!(code, 0, "{err}");
    let (status, _) = serve_support::request_bytes(
        &s.url,
        "GET",
        "/api/v1/runs",
        &[("Authorization", format!("Bearer {api_token}"))],
        b"",
    );
    assert_eq!(status, 401);
}

#[test]
fn artifact_names_paths_and_modes_from_a_runner_are_checked() {
    let s = Server::start_with("[runner]\nembedded_capacity = 0\n");
    let credential = register(&s, &["art"]);
    let work = s.commit(
        "main",
        "on: push\njobs:\n  up:\n    runs-on: art\n    steps:\n      - run: true\n",
    );
    s.push(&work, "main");
    let lease: Value = serde_json::from_str(&lease(&s, &credential)).unwrap();
    let job = lease["job"].as_i64().unwrap();
    let run = lease["spec"]["run_id"].as_i64().unwrap();
    let auth = vec![
        ("Authorization", format!("Bearer {credential}")),
        (
            "pipewright-lease",
            lease["lease"].as_str().unwrap().to_owned(),
        ),
        ("Content-Type", "application/json".to_owned()),
    ];
    let content = b"#!/bin/sh\necho tool\n";
    let hash = blake3::hash(content).to_hex().to_string();
    let (status, resp) = serve_support::request_bytes(
        &s.url,
        "PUT",
        &format!("/api/v1/runner/jobs/{job}/blobs/{hash}"),
        &auth,
        content,
    );
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));
    let manifest = |path: &str, mode: u32| {
        serde_json::to_vec(&serde_json::json!({"files": [
            {"path": path, "mode": mode, "size": content.len(), "hash": hash}
        ]}))
        .unwrap()
    };
    let put = |name: &str, body: &[u8]| {
        let (status, resp) = serve_support::request_bytes(
            &s.url,
            "PUT",
            &format!("/api/v1/runner/jobs/{job}/artifacts/{name}"),
            &auth,
            body,
        );
        (status, String::from_utf8_lossy(&resp).into_owned())
    };
    // Names that are paths, or hold what a terminal obeys.
    for name in ["..", ".", ".hidden", "a%00b", "a%0Ab", &"n".repeat(300)] {
        let (status, resp) = put(name, &manifest("f", 0o100_644));
        assert_eq!(status, 400, "`{name}`: {resp}");
    }
    // Paths with NUL, control characters, of 100,000 characters, escaping.
    for path in [
        "a\u{0}b",
        "a\nb",
        &"p".repeat(100_000),
        "../x",
        "/etc/passwd",
        "a//b",
    ] {
        let (status, resp) = put("dist", &manifest(path, 0o100_644));
        assert_eq!(status, 422, "{resp}");
    }
    // A set-user-ID file is stored with its permissions only.
    let (status, resp) = put("dist", &manifest("bin/tool", 0o104_755));
    assert_eq!(status, 204, "{resp}");
    let (status, tar) = serve_support::request_bytes(
        &s.url,
        "GET",
        &format!("/api/v1/runs/{run}/artifacts/dist"),
        &[("Authorization", format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(status, 200);
    // The first header: the name, then the mode in octal at offset 100.
    assert!(tar.starts_with(b"bin/tool"), "{:?}", &tar[..20]);
    let mode_field = String::from_utf8_lossy(&tar[100..107]).to_string();
    let mode = u32::from_str_radix(mode_field.trim_matches(['\0', ' ']), 8).unwrap();
    assert_eq!(mode & 0o7777, 0o755, "{mode_field}");
}

#[test]
fn a_local_artifact_named_dot_dot_deletes_nothing() {
    let r = common::Repo::new();
    r.workflow(
        "ci.yml",
        "on: push
jobs:
  up:
    runs-on: x
    steps:
      - run: echo x > f.txt
      - uses: actions/upload-artifact@v4
        with:
          name: ..
          path: f.txt
          overwrite: true
",
    );
    r.commit("dots");
    let work = r.path().join(".git/work");
    let run = r.run(&["--work-dir", work.to_str().unwrap(), "--keep"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.all().contains("artifact name `..` is not valid"),
        "{}",
        run.all()
    );
    assert!(work.exists() && std::fs::read_dir(&work).unwrap().count() > 0);
}

#[test]
fn metrics_may_need_a_token_and_are_read_from_counters() {
    let s = Server::start_repos(|d| {
        format!(
            "metrics_token = \"metrics-token-0123456789\"\n[[repos]]\nname = \"acme/app\"\npath = \"{d}/app.git\"\n",
            d = d.display()
        )
    });
    let (status, _) = get(&s.url, "/metrics");
    assert_eq!(status, 401);
    let scrape = |token: &str| {
        serve_support::request_bytes(
            &s.url,
            "GET",
            "/metrics",
            &[("Authorization", format!("Bearer {token}"))],
            b"",
        )
    };
    let work = s.commit(
        "main",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: true\n  b:\n    runs-on: x\n    steps:\n      - run: exit 1\n",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_completed(id);
    let (status, body) = scrape("metrics-token-0123456789");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("pipewright_runs_total{conclusion=\"failure\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pipewright_jobs_total{conclusion=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pipewright_jobs_total{conclusion=\"failure\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pipewright_job_duration_seconds_count 2"),
        "{text}"
    );
    assert!(
        text.contains("pipewright_job_duration_seconds_bucket{le=\"+Inf\"} 2"),
        "{text}"
    );
    let (status, _) = scrape(TOKEN);
    assert_eq!(status, 200, "the admin token reads the metrics too");
}

#[test]
fn sigterm_stops_a_server_with_a_backlog_of_logs_to_archive() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}/data\"\n[auth]\nadmin_token = \"{TOKEN}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let start = || {
        let _ = std::fs::remove_file(data.join("listen-url"));
        let child = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["serve", "-c"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !data.join("listen-url").exists() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let stop = |mut child: std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let t = Instant::now();
        let deadline = t + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                return t.elapsed();
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The database with its schema, then a backlog: 3,000 completed jobs whose logs (200
    // lines each) are still rows.
    stop(start());
    let db = data.join("pipewright.db");
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute(\"INSERT INTO runs (id, repo, workflow, event, git_ref, sha, status, conclusion, created_at, event_json) VALUES (1, 'a', 'w', 'push', 'refs/heads/main', 'x', 'completed', 'success', 1, '{}')\")
for j in range(1, 3001):
    c.execute(\"INSERT INTO jobs (id, run_id, name, job_id, status, conclusion) VALUES (?, 1, ?, 'j', 'completed', 'success')\", (j, 'j%d' % j))
    c.executemany('INSERT INTO log_lines (job, seq, text) VALUES (?, ?, ?)', [(j, s, 'line %d of a long log' % s) for s in range(1, 201)])
c.commit()",
        )
        .arg(&db)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let server = start();
    std::thread::sleep(Duration::from_millis(300));
    let took = stop(server);
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    // It stopped between two jobs, with work left: each job's log whole in rows or files.
    let left = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
left = c.execute('SELECT count(*) FROM jobs WHERE log_archived = 0').fetchone()[0]
half = c.execute('SELECT count(*) FROM jobs j WHERE log_archived = 0 AND (SELECT count(*) FROM log_lines l WHERE l.job = j.id) <> 200').fetchone()[0]
print(left, half)",
        )
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&left.stdout);
    let mut nums = text.split_whitespace().map(|n| n.parse::<i64>().unwrap());
    let (left, half) = (nums.next().unwrap(), nums.next().unwrap());
    assert!(
        left > 0,
        "the whole backlog was archived before the stop: no test"
    );
    assert_eq!(half, 0, "a job's log was left half in rows");
}

#[test]
fn error_answers_name_no_repository_and_no_server_path() {
    let s = Server::start();
    // A webhook for a repository that is not configured, and for one that is, unsigned.
    for name in ["secret-project/hidden", "acme/app"] {
        let body = serde_json::to_vec(&serde_json::json!({
            "ref": "refs/heads/main", "after": "1".repeat(40),
            "repository": {"full_name": name}
        }))
        .unwrap();
        let (status, resp) = post(
            &s.url,
            "/hooks/github",
            &[
                ("X-GitHub-Event", "push".to_owned()),
                ("X-Hub-Signature-256", "sha256=00".to_owned()),
            ],
            &body,
        );
        assert_eq!(status, 401, "{resp}");
        assert!(
            !resp.contains(name) && !resp.contains("configured"),
            "{resp}"
        );
    }
    // A dispatch of a ref that does not exist: the answer does not show where the
    // repository lives.
    let work = s.commit(
        "main",
        "on: workflow_dispatch\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: true\n",
    );
    s.push(&work, "main");
    let (code, _, err) = s.cli(&["dispatch", "acme/app", "ci.yml", "--ref", "no-such-branch"]);
    assert_ne!(code, 0);
    let dir = s.dir.path().display().to_string();
    assert!(!err.contains(&dir) && !err.contains("app.git"), "{err}");
}

#[test]
fn a_root_server_without_a_job_user_refuses_a_fork_s_job_and_says_how_to_fix_it() {
    let s = Server::start();
    let work = s.commit(
        "feature",
        "on: pull_request\njobs:\n  t:\n    runs-on: x\n    steps:\n      - run: echo ran\n",
    );
    s.push(&work, "feature");
    let id = pull_request(&s, &work, 3, Value::Null);
    let run = s.wait_completed(id);
    let log = logs(&s, id);
    assert_eq!(run["conclusion"], "failure", "{log}");
    assert!(!log.contains("[t] ran"), "{log}");
    assert!(
        log.contains("cannot confine it") && log.contains("job_user"),
        "{log}"
    );
    assert!(
        s.log()
            .contains("jobs of untrusted origin (pull requests from forks) are refused"),
        "{}",
        s.log()
    );
}

#[test]
fn a_step_that_kills_its_job_s_process_leaves_nothing_running() {
    let s = confined("");
    let marks = s.dir.path().join("marks");
    let m = marks.display();
    let work = s.commit(
        "main",
        &format!(
            "on: push
jobs:
  escape:
    runs-on: x
    steps:
      - run: |
          setsid sh -c 'sleep 3; echo escaped >> {m}/escaped' &
          sleep 0.2
          kill -9 $PPID
          sleep 3
          echo survived >> {m}/escaped
"
        ),
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "failure", "{}", logs(&s, id));
    assert!(
        logs(&s, id).contains("ended without a report"),
        "{}",
        logs(&s, id)
    );
    // The job's cgroup was emptied with it: nothing it started lives on.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!marks.join("escaped").exists());
}

#[test]
fn a_job_process_started_ahead_runs_the_slot_s_next_job_and_ends_with_the_server() {
    let mut s = confined("");
    let server = s.child.as_ref().unwrap().id();
    let workflow = "on: push
jobs:
  one:
    runs-on: x
    steps:
      - run: echo \"job process $PPID\"
";
    let work = s.commit("main", workflow);
    s.push(&work, "main");
    let first = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(first)["conclusion"], "success");
    // Each slot's next job process waits for its job (started with the runner, and as the
    // slot's last job ended).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let w = job_processes(server);
        if !w.is_empty() || std::time::Instant::now() > deadline {
            break w;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!waiting.is_empty(), "processes wait for jobs");
    // The slot the job ran in was readied for the next as the job ended: what the job's
    // step ran is gone, and the next job's first step finds its files made, empty, its
    // user's (allocated while the slot is idle).
    let uid: u32 = String::from_utf8(
        Command::new("id")
            .args(["-u", job_user()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let slots = s.dir.path().join("data/work/slots");
    let readied = |n: usize| {
        use std::os::unix::fs::MetadataExt;
        let temp = slots.join(format!("{n}/job/temp"));
        let made = [
            temp.join("step-1.sh"),
            temp.join("_runner_file_commands/set_env_1"),
            temp.join("_runner_file_commands/set_output_1"),
        ];
        made.iter().all(|f| {
            std::fs::symlink_metadata(f)
                .is_ok_and(|m| m.is_file() && m.len() == 0 && m.uid() == uid)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(readied(0) || readied(1)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(readied(0) || readied(1), "a slot readied for its next job");
    for n in 0..2 {
        let script = slots.join(format!("{n}/job/temp/step-1.sh"));
        let text = std::fs::read_to_string(&script).unwrap_or_default();
        assert!(
            !text.contains("job process"),
            "{}: {text}",
            script.display()
        );
    }
    // The next job runs in one of them (its step's parent is that process).
    std::fs::write(work.join("again"), "x").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "again"]);
    s.push(&work, "main");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let second = loop {
        let runs = s.runs();
        if runs.len() == 2 || std::time::Instant::now() > deadline {
            break runs[0]["id"].as_i64().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(second, first);
    assert_eq!(s.wait_completed(second)["conclusion"], "success");
    let log = logs(&s, second);
    assert!(
        waiting
            .iter()
            .any(|p| log.contains(&format!("job process {p}\n"))),
        "ran in one of {waiting:?}: {log}"
    );
    // Stopped, the server leaves no process waiting for a job.
    let next = job_processes(server);
    assert!(!next.is_empty(), "{next:?}");
    let _ = Command::new("kill")
        .args(["-TERM", &server.to_string()])
        .status();
    let _ = s.child.as_mut().unwrap().wait();
    // Gone, or a zombie nobody reaped yet (its parent, the server, is gone).
    let ended = || {
        next.iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ended() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ended(), "the waiting job process ended with the server");
}

/// A directory of git repositories served as `file://`: `acme/inner` (composite: says
/// hello) and `acme/greet` (composite: uses `acme/inner@v1`), each tagged `v1`.
fn action_hub() -> tempfile::TempDir {
    let hub = tempfile::tempdir().unwrap();
    for (name, step) in [
        (
            "inner",
            "    - shell: sh\n      run: echo hello from inner\n",
        ),
        ("greet", "    - uses: acme/inner@v1\n"),
    ] {
        common::hub_repo(
            hub.path(),
            &format!("acme/{name}"),
            &[(
                "action.yml",
                &format!("name: {name}\nruns:\n  using: composite\n  steps:\n{step}"),
            )],
            "v1",
        );
    }
    hub
}

#[test]
fn a_fork_s_job_runs_remote_actions_its_runner_fetched_and_cannot_write_their_cache() {
    let hub = action_hub();
    let url = format!("file://{}", hub.path().display());
    let user = job_user();
    let s = Server::start_repos_env(
        |d| {
            format!(
                "[[repos]]\nname = \"acme/app\"\npath = \"{d}/app.git\"\nwebhook_secret = \"{SECRET}\"\n[runner]\njob_user = \"{user}\"\n",
                d = d.display()
            )
        },
        &[("PIPEWRIGHT_ACTIONS_URL", &url)],
    );
    let cache = s.dir.path().join("data/work/actions-cache");
    let workflow = format!(
        "on: [push, pull_request]\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: acme/greet@v1\n      - run: |\n          {PROBE}\n          probe touch {c}/acme/greet/poison\n          probe sh -c 'echo x >> {c}/acme/inner/refs/v1'\n",
        c = cache.display()
    );
    let work = s.commit("feature", &workflow);
    s.push(&work, "feature");
    let push = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(
        s.wait_completed(push)["conclusion"],
        "success",
        "{}",
        logs(&s, push)
    );
    let pr = pull_request(&s, &work, 7, Value::Null);
    let run = s.wait_completed(pr);
    let log = logs(&s, pr);
    assert_eq!(run["conclusion"], "success", "{log}");
    assert!(log.contains("hello from inner"), "{log}");
    // The runner fetched both, the nested one too, before the job started.
    assert!(log.contains("acme/greet@v1: commit"), "{log}");
    assert!(log.contains("acme/inner@v1: commit"), "{log}");
    assert!(
        log.contains(&format!(
            "DENIED touch {}/acme/greet/poison",
            cache.display()
        )),
        "{log}"
    );
    assert!(log.contains("DENIED sh -c"), "{log}");
    assert!(!log.contains("] GOT "), "{log}");
}
