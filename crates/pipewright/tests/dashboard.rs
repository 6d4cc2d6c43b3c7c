//! The dashboard over HTTP against the real binary: sign-in (argon2, lockout), sessions and
//! CSRF, roles, pages that show hostile names as text, and the forms' actions.

mod common;
mod deploy_support;
mod serve_support;
mod web_support;

use std::process::{Command, Stdio};

use serde_json::Value;
use serve_support::*;
use web_support::*;

#[test]
fn sign_in_roles_csrf_and_hostile_names_on_the_pages() {
    let s = Server::start();
    add_user(&s, "olga", "operator", "operator-password-1");
    add_user(&s, "vic", "viewer", "viewer-password-1");
    // Pages need a session.
    let a = http(&s.url, "GET", "/runs/1", "", &[]);
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/login?next=/runs/1"));
    // Wrong passwords are refused with one message for both mistakes; five lock the account
    // for a while, the right password too.
    let wrong = sign_in(&s, "vic", "nope").unwrap_err();
    assert!(
        wrong.contains("error=wrong%20name%20or%20password"),
        "{wrong}"
    );
    let unknown = sign_in(&s, "nobody", "nope").unwrap_err();
    assert!(
        unknown.contains("error=wrong%20name%20or%20password"),
        "{unknown}"
    );
    for _ in 0..4 {
        let _ = sign_in(&s, "vic", "nope");
    }
    let locked = sign_in(&s, "vic", "viewer-password-1").unwrap_err();
    assert!(locked.contains("locked"), "{locked}");
    let form = http(&s.url, "GET", &locked, "", &[]);
    assert!(
        form.body.contains("too many wrong passwords"),
        "{}",
        form.body
    );
    // A forged sign-in form (no CSRF cookie) does nothing.
    let a = http(
        &s.url,
        "POST",
        "/login",
        "",
        &[
            ("username", "olga"),
            ("password", "operator-password-1"),
            ("csrf", "x"),
        ],
    );
    assert!(a.cookie("pw_session").is_none());
    let operator = sign_in(&s, "olga", "operator-password-1").unwrap();
    // A run whose job name and log are hostile: shown as text.
    let work = s.commit(
        "main",
        "on: push
jobs:
  evil:
    name: '<img src=x onerror=alert(1)>'
    runs-on: x
    steps:
      - name: '<script>alert(2)</script>'
        run: echo '<b>bold</b>' && sleep 30
",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    s.wait_job_running(id);
    for page in ["/", "/runs", &format!("/runs/{id}")] {
        let a = http(&s.url, "GET", page, &operator, &[]);
        assert_eq!(a.status, 200, "{page}");
        assert!(!a.body.contains("<img src=x"), "{page}: {}", a.body);
    }
    let page = http(&s.url, "GET", &format!("/runs/{id}"), &operator, &[]).body;
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    let csrf = hidden(&page, "csrf");
    // The page's script reads the log through the API with the session, but the session
    // changes nothing through the API.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = http(
            &s.url,
            "GET",
            &format!("/api/v1/runs/{id}/logs"),
            &operator,
            &[],
        );
        assert_eq!(log.status, 200);
        if log.body.contains("<b>bold</b>") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", log.body);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let a = http(
        &s.url,
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        &operator,
        &[],
    );
    assert_eq!(a.status, 401);
    // A viewer may not cancel; an operator without the CSRF token may not either.
    let viewer = {
        let a = http(&s.url, "GET", "/login", "", &[]);
        assert_eq!(a.status, 200);
        // vic is locked: make another viewer.
        add_user(&s, "vera", "viewer", "viewer-password-2");
        sign_in(&s, "vera", "viewer-password-2").unwrap()
    };
    let vpage = http(&s.url, "GET", &format!("/runs/{id}"), &viewer, &[]).body;
    assert!(!vpage.contains(">Cancel<"), "a viewer sees no buttons");
    let vcsrf = hidden(&vpage, "csrf");
    let a = http(
        &s.url,
        "POST",
        &format!("/runs/{id}/cancel"),
        &viewer,
        &[("csrf", &vcsrf)],
    );
    assert_eq!(a.status, 403);
    assert!(
        a.body
            .contains("this needs the operator role; `vera` is viewer"),
        "{}",
        a.body
    );
    let a = http(
        &s.url,
        "POST",
        &format!("/runs/{id}/cancel"),
        &operator,
        &[("csrf", "forged")],
    );
    assert_eq!(a.status, 403);
    assert!(a.body.contains("CSRF"), "{}", a.body);
    let a = http(
        &s.url,
        "POST",
        &format!("/runs/{id}/cancel"),
        &operator,
        &[("csrf", &csrf)],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "cancelled", "{run}");
    // Signed out: the cookie is good for nothing more.
    let a = http(&s.url, "POST", "/logout", &operator, &[("csrf", &csrf)]);
    assert_eq!(a.status, 303);
    let a = http(&s.url, "GET", "/runs", &operator, &[]);
    assert_eq!(a.status, 303);
    // Accounts: the admin token lists them; roles are checked.
    let (status, body) = request_bytes(
        &s.url,
        "GET",
        "/api/v1/users",
        &[("Authorization", format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(status, 200);
    let users: Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "olga", "vera", "vic"]);
    assert!(!String::from_utf8_lossy(&body).contains("argon2"));
    let (code, _, err) = s.cli(&["users", "add", "x", "--role", "root"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`root` is not a role: admin, operator or viewer"),
        "{err}"
    );
}

/// The workflow of the run page's test: coverage `lh` of 8 lines, a hostile summary, an
/// artifact, a job that needs another.
fn reported(lh: u32) -> String {
    format!(
        "on: push
jobs:
  test:
    runs-on: x
    steps:
      - run: printf 'SF:a.py\\nLF:8\\nLH:{lh}\\nend_of_record\\n' > lcov.info
      - uses: codecov/codecov-action@v4
        with:
          files: lcov.info
      - run: |
          echo '## Results <script>alert(3)</script>' >> \"$GITHUB_STEP_SUMMARY\"
          echo '| suite | passed |' >> \"$GITHUB_STEP_SUMMARY\"
          echo '|---|---|' >> \"$GITHUB_STEP_SUMMARY\"
          echo '| unit | 42 |' >> \"$GITHUB_STEP_SUMMARY\"
          echo '[bad](javascript:alert(4)) [good](https://example.com/report)' >> \"$GITHUB_STEP_SUMMARY\"
          mkdir dist && echo hi > dist/a.txt
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: dist/
  deploy:
    needs: test
    runs-on: x
    steps:
      - run: 'true'
"
    )
}

#[test]
fn the_run_page_draws_the_graph_and_shows_summaries_artifacts_and_coverage() {
    let s = Server::start();
    add_user(&s, "vic", "viewer", "viewer-password-1");
    s.push(&s.commit("main", &reported(6)), "main");
    let first = s.runs()[0]["id"].as_i64().unwrap();
    assert_eq!(s.wait_completed(first)["conclusion"], "success");
    s.push(&s.commit("main", &reported(7)), "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    assert_ne!(id, first);
    assert_eq!(s.wait_completed(id)["conclusion"], "success");
    let viewer = sign_in(&s, "vic", "viewer-password-1").unwrap();
    let page = http(&s.url, "GET", &format!("/runs/{id}"), &viewer, &[]);
    assert_eq!(page.status, 200);
    let page = page.body;
    // The job graph: a box per job, linked to its row, an edge from test to deploy.
    assert!(page.contains("<svg class=\"graph\""), "{page}");
    assert!(
        page.contains("class=\"node success\" data-job=\"test\""),
        "{page}"
    );
    assert!(
        page.contains("class=\"node success\" data-job=\"deploy\""),
        "{page}"
    );
    assert_eq!(page.matches("<path class=\"edge\"").count(), 1, "{page}");
    // The summary: Markdown rendered, its HTML shown as text, its script link defused.
    assert!(
        page.contains("<h2>Results &lt;script&gt;alert(3)&lt;/script&gt;</h2>"),
        "{page}"
    );
    assert!(page.contains("<td>unit</td>"), "{page}");
    assert!(
        page.contains("href=\"https://example.com/report\""),
        "{page}"
    );
    assert!(!page.contains("javascript:"), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    // The artifact, downloadable with the session.
    let link = format!("/api/v1/runs/{id}/artifacts/dist");
    assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
    let tar = http(&s.url, "GET", &link, &viewer, &[]);
    assert_eq!(tar.status, 200);
    assert!(tar.body.contains("a.txt"), "{}", tar.body);
    // Coverage: this run's, and the change since the branch's run before.
    assert!(
        page.contains(&format!(
            "<strong>87.5%</strong> (+12.5 since run #{first})"
        )),
        "{page}"
    );
    assert!(page.contains(&format!("run #{first}: 75.0%")), "{page}");
    // A finished run's page reads the last lines of each job first.
    let tail = http(
        &s.url,
        "GET",
        &format!("/api/v1/runs/{id}/logs?tail=2"),
        &viewer,
        &[],
    );
    assert_eq!(tail.status, 200);
    let whole = http(
        &s.url,
        "GET",
        &format!("/api/v1/runs/{id}/logs"),
        &viewer,
        &[],
    );
    let lines = |b: &str, job: &str| {
        b.lines()
            .filter(|l| l.starts_with(&format!("[{job}] ")))
            .count()
    };
    assert_eq!(
        (lines(&tail.body, "test"), lines(&tail.body, "deploy")),
        (2, 2),
        "{}",
        tail.body
    );
    let skipped: usize = tail
        .header("pipewright-lines-skipped")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(skipped, whole.body.lines().count() - 4, "{}", whole.body);
    assert!(
        whole.body.ends_with(&tail.body[tail.body.len() - 40..]),
        "{}",
        tail.body
    );
    // The runners page lists the server's own runner.
    let runners = http(&s.url, "GET", "/runners", &viewer, &[]);
    assert_eq!(runners.status, 200);
    assert!(runners.body.contains("(in the server)"), "{}", runners.body);
}

#[test]
fn a_running_run_s_page_follows_its_log_from_the_last_lines() {
    let s = Server::start();
    add_user(&s, "vic", "viewer", "viewer-password-1");
    s.push(
        &s.commit(
            "main",
            "on: push\njobs:\n  long:\n    runs-on: x\n    steps:\n      - run: |\n          seq 1 3000\n          sleep 4\n          echo after-the-wait\n",
        ),
        "main",
    );
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let viewer = sign_in(&s, "vic", "viewer-password-1").unwrap();
    // Once the 3,000 lines are stored (the run still going), the page's stream starts with
    // how many lines it leaves out, then the last 100, then what comes, then `done`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let tail = http(
            &s.url,
            "GET",
            &format!("/api/v1/runs/{id}/logs?tail=1"),
            &viewer,
            &[],
        );
        if tail.body.contains("] 3000") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}\n{}",
            tail.body,
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let followed = http(
        &s.url,
        "GET",
        &format!("/api/v1/runs/{id}/logs?follow=true&tail=100"),
        &viewer,
        &[],
    );
    assert_eq!(followed.status, 200);
    let events: Vec<(&str, &str)> = followed
        .body
        .split("\n\n")
        .filter_map(|e| {
            let kind = e.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("");
            Some((kind, data))
        })
        .collect();
    let (first, data) = events[0];
    assert_eq!(first, "skipped", "{}", followed.body);
    let skipped: usize = data.parse().unwrap();
    let lines: Vec<&str> = events
        .iter()
        .filter(|(k, _)| *k == "line")
        .map(|(_, d)| *d)
        .collect();
    // The last 100 lines stored when the page asked: 2901 to 3000 (and anything printed
    // around them), never the first ones; then the rest of the run, live.
    let at = |text: &str| lines.iter().position(|l| l.ends_with(text));
    assert!(
        at("] 1").is_none() && at("] 2900").is_none(),
        "{}",
        followed.body
    );
    let (from, to) = (at("] 2901").unwrap(), at("] 3000").unwrap());
    assert_eq!(to - from, 99, "{}", followed.body);
    assert!(at("after-the-wait").unwrap() > to, "{}", followed.body);
    assert!(skipped >= 2900, "{skipped}");
    assert_eq!(events.last().unwrap().0, "done", "{}", followed.body);
    // Without `tail`, from the first line.
    let whole = http(
        &s.url,
        "GET",
        &format!("/api/v1/runs/{id}/logs?follow=true"),
        &viewer,
        &[],
    );
    assert!(whole.body.contains("] 1\n"), "{}", whole.body);
    assert!(!whole.body.contains("event: skipped"), "{}", whole.body);
}

/// The id in the first `/settings/tokens/{id}/revoke` form of a page.
fn token_id(page: &str) -> String {
    let at = page.find("/settings/tokens/").expect("a revoke form") + 17;
    page[at..].split('/').next().unwrap().to_owned()
}

#[test]
fn admins_keep_secrets_tokens_channels_and_accounts_on_the_settings_page() {
    let s = Server::start_with(
        "
[[notify]]
name = \"ops-chat\"
kind = \"slack\"
webhook_url = \"http://127.0.0.1:1/services/T000/B000/very-secret-path\"
events = [\"run_failed\"]
",
    );
    add_user(&s, "ada", "admin", "admin-password-1");
    add_user(&s, "olga", "operator", "operator-password-1");
    let operator = sign_in(&s, "olga", "operator-password-1").unwrap();
    let a = http(&s.url, "GET", "/settings", &operator, &[]);
    assert_eq!(a.status, 403);
    assert!(a.body.contains("The settings are for admins"), "{}", a.body);
    assert!(
        !a.body.contains("href=\"/settings\""),
        "no link for operators"
    );
    let ocsrf = hidden(&http(&s.url, "GET", "/runs", &operator, &[]).body, "csrf");
    let a = http(
        &s.url,
        "POST",
        "/settings/secrets",
        &operator,
        &[("csrf", &ocsrf), ("name", "X"), ("value", "y")],
    );
    assert_eq!(a.status, 403);
    assert!(a.body.contains("this needs the admin role"), "{}", a.body);
    let admin = sign_in(&s, "ada", "admin-password-1").unwrap();
    let page = http(&s.url, "GET", "/settings", &admin, &[]);
    assert_eq!(page.status, 200);
    // A channel shows where it sends, never a webhook's secret path.
    assert!(
        page.body
            .contains("slack-compatible webhook at 127.0.0.1:1"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("very-secret-path"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    // Secrets: a forged form sets nothing; the admin's sets one, whose value is never shown.
    let secret_form = |c: &'static str| {
        [
            ("csrf", c),
            ("name", "DEPLOY_KEY"),
            ("repo", ""),
            ("environment", "production"),
            ("value", "s3cret-value"),
        ]
    };
    let forged = secret_form("forged");
    assert_eq!(
        http(&s.url, "POST", "/settings/secrets", &admin, &forged).status,
        403
    );
    let secrets = || {
        let (status, body) = request_bytes(
            &s.url,
            "GET",
            "/api/v1/secrets",
            &[("Authorization", format!("Bearer {TOKEN}"))],
            b"",
        );
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body).into_owned()
    };
    assert!(!secrets().contains("DEPLOY_KEY"));
    let mut good = secret_form("");
    good[0].1 = &csrf;
    let a = http(&s.url, "POST", "/settings/secrets", &admin, &good);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Secret DEPLOY_KEY set."), "{}", a.body);
    assert!(!a.body.contains("s3cret-value"), "{}", a.body);
    assert!(
        secrets().contains("\"environment\":\"production\""),
        "{}",
        secrets()
    );
    let a = http(
        &s.url,
        "POST",
        "/settings/secrets",
        &admin,
        &[("csrf", &csrf), ("name", "1BAD"), ("value", "v")],
    );
    assert_eq!(a.status, 422);
    assert!(
        a.body.contains("`1BAD` is not a valid secret name"),
        "{}",
        a.body
    );
    let a = http(
        &s.url,
        "POST",
        "/settings/secrets/delete",
        &admin,
        &[
            ("csrf", &csrf),
            ("name", "DEPLOY_KEY"),
            ("repo", ""),
            ("environment", "production"),
        ],
    );
    assert!(a.body.contains("Secret DEPLOY_KEY deleted."), "{}", a.body);
    assert!(!secrets().contains("DEPLOY_KEY"));
    // A token: shown once, works, then revoked.
    let a = http(
        &s.url,
        "POST",
        "/settings/tokens",
        &admin,
        &[("csrf", &csrf), ("name", "ci")],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let at = a.body.find(">pw_").expect("the token shown once") + 1;
    let token = a.body[at..].split('<').next().unwrap().to_owned();
    let api = |t: &str| {
        request_bytes(
            &s.url,
            "GET",
            "/api/v1/runs",
            &[("Authorization", format!("Bearer {t}"))],
            b"",
        )
        .0
    };
    assert_eq!(api(&token), 200);
    let again = http(&s.url, "GET", "/settings", &admin, &[]).body;
    assert!(!again.contains(&token), "shown once only");
    let id = token_id(&again);
    let a = http(
        &s.url,
        "POST",
        &format!("/settings/tokens/{id}/revoke"),
        &admin,
        &[("csrf", &csrf)],
    );
    assert!(
        a.body.contains(&format!("Token #{id} revoked.")),
        "{}",
        a.body
    );
    assert_eq!(api(&token), 401);
    // A test message is queued and its delivery listed (failing: nothing listens there).
    let a = http(
        &s.url,
        "POST",
        "/settings/notify/ops-chat/test",
        &admin,
        &[("csrf", &csrf)],
    );
    assert!(
        a.body.contains("A test message to ops-chat is queued"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("pipewright: a test message to `ops-chat`"),
        "{}",
        a.body
    );
    // Accounts: one made with a password made for it, which signs in; its role changed;
    // the admin cannot demote itself.
    let a = http(
        &s.url,
        "POST",
        "/settings/users",
        &admin,
        &[
            ("csrf", &csrf),
            ("name", "nina"),
            ("role", "viewer"),
            ("password", ""),
        ],
    );
    assert!(a.body.contains("Account nina (viewer) made."), "{}", a.body);
    let pre = "<pre class=\"mono once\">";
    let at = a.body.find(pre).expect("the password") + pre.len();
    let password = a.body[at..].split('<').next().unwrap().to_owned();
    sign_in(&s, "nina", &password).unwrap();
    let a = http(
        &s.url,
        "POST",
        "/settings/users/nina",
        &admin,
        &[("csrf", &csrf), ("role", "operator")],
    );
    assert!(a.body.contains("nina is now operator."), "{}", a.body);
    let a = http(
        &s.url,
        "POST",
        "/settings/users/ada",
        &admin,
        &[("csrf", &csrf), ("role", "viewer")],
    );
    assert_eq!(a.status, 409);
    assert!(
        a.body
            .contains("you cannot take the admin role from your own account")
    );
}

#[test]
fn the_first_start_makes_an_admin_with_the_given_password() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("c.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}/data\"\n",
            d.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["serve", "-c"])
        .arg(d.path().join("c.toml"))
        .env("PIPEWRIGHT_ADMIN_PASSWORD", "first-admin-password")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url_file = d.path().join("data/listen-url");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !url_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = std::fs::read_to_string(&url_file).unwrap();
    let fake = Server {
        dir: tempfile::tempdir().unwrap(),
        child: None,
        url,
        pg: None,
        env: Vec::new(),
        program: std::path::PathBuf::new(),
    };
    let cookie = sign_in(&fake, "admin", "first-admin-password").unwrap();
    let a = http(&fake.url, "GET", "/", &cookie, &[]);
    assert_eq!(a.status, 200);
    assert!(a.body.contains("admin · admin"), "{}", a.body);
    let _ = child.kill();
    let _ = child.wait();
}
