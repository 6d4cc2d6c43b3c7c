//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! the `fantoccini` crate) against the real binary. Signing in, watching a running job's
//! log lines arrive live, approving a production deploy, a viewer without the buttons,
//! rolling an environment back from its page.
//! Screenshots of every page go to `target/screenshots/` (the ones in docs/ come from
//! there).

mod common;
mod deploy_support;
mod job_deploy_support;
mod serve_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serve_support::*;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port (Debian's `chromium-driver`; scripts/test installs it).
fn chromedriver() -> (Driver, u16) {
    let port = deploy_support::free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (apt-get install chromium chromium-driver)");
    deploy_support::wait_port(port);
    (Driver(child), port)
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

fn shots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(c: &Client, url: &str, name: &str, password: &str) {
    c.goto(&format!("{url}/login")).await.unwrap();
    c.find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    submit(c, "form.login").await;
}

/// Clicks the button of the form `css` and waits for the page it leads to.
async fn submit(c: &Client, css: &str) {
    let form = c.find(Locator::Css(css)).await.unwrap();
    form.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The click does not wait for the answer: the form goes stale once the next page is in.
    let deadline = Instant::now() + Duration::from_secs(20);
    while form.tag_name().await.is_ok() {
        assert!(Instant::now() < deadline, "the form {css} stayed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the page's `#log` holds `text`.
async fn log_shows(c: &Client, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = c
            .find(Locator::Id("log"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default();
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the log never showed {text:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_watch_a_live_log_approve_a_deploy_and_a_viewer_cannot() {
    let (_driver, port) = chromedriver();
    let s = Server::start_with(
        "
[[environments]]
name = \"production\"
require_approval = true

[[monitors]]
name = \"api\"
url = \"http://127.0.0.1:1/health\"
interval = \"1s\"
timeout = \"1s\"
",
    );
    add_user(&s, "olga", "operator", "operator-password-1");
    add_user(&s, "vera", "viewer", "viewer-password-2");
    add_user(&s, "ada", "admin", "admin-password-3");
    let work = s.commit(
        "main",
        "on: push
jobs:
  test:
    runs-on: x
    steps:
      - name: Tests
        run: |
          printf '\\033[31mred text\\033[0m plain\\n'
          echo '::group::Details'
          echo 'inside the group'
          echo '::endgroup::'
          echo '::error file=app.py,line=3::it broke'
          for i in $(seq 1 40); do echo \"line-$i <b>not bold</b>\"; sleep 0.2; done
  deploy:
    needs: test
    runs-on: x
    environment: production
    steps:
      - run: echo deployed to production
",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let c = browser(port).await;
    sign_in(&c, &s.url, "olga", "wrong-password").await;
    let error = c
        .find(Locator::Css("p.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(error, "wrong name or password");
    screenshot(&c, "login").await;
    sign_in(&c, &s.url, "olga", "operator-password-1").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    // The run's page while its job runs: lines arrive without a reload, as text.
    c.goto(&format!("{}/runs/{id}", s.url)).await.unwrap();
    let first = log_shows(&c, "line-3 ").await;
    assert!(!first.contains("line-35 "), "{first}");
    let later = log_shows(&c, "line-12 ").await;
    assert!(later.contains("line-12 <b>not bold</b>"), "{later}");
    let bold = c.find_all(Locator::Css("#log b")).await.unwrap();
    assert!(bold.is_empty(), "log text became markup");
    // Colours become classes; a group is folded until opened; the annotation is listed.
    let red = c.find(Locator::Css("#log span.f1")).await.unwrap();
    assert_eq!(red.text().await.unwrap(), "red text");
    assert!(!first.contains("inside the group"), "{first}");
    c.find(Locator::Css("#log details.group > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    log_shows(&c, "inside the group").await;
    let note = c
        .find(Locator::Css("#annotations li.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        note.contains("app.py:3") && note.contains("it broke"),
        "{note}"
    );
    // The job graph: a box per job.
    let boxes = c.find_all(Locator::Css("svg.graph g.node")).await.unwrap();
    assert_eq!(boxes.len(), 2);
    screenshot(&c, "run-live").await;
    // The deploy waits for approval: the operator approves it (with confirmation).
    let deadline = Instant::now() + Duration::from_secs(60);
    let approve = loop {
        if let Ok(b) = c
            .find(Locator::XPath(
                "//form[contains(@action,'/approve')]/button",
            ))
            .await
        {
            break b;
        }
        assert!(Instant::now() < deadline, "no Approve button\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.refresh().await.unwrap();
    };
    screenshot(&c, "run-waiting").await;
    // A viewer sees the same page without the buttons.
    let v = browser(port).await;
    sign_in(&v, &s.url, "vera", "viewer-password-2").await;
    v.goto(&format!("{}/runs/{id}", s.url)).await.unwrap();
    assert!(
        v.find(Locator::Css("form[action$='/approve']"))
            .await
            .is_err()
    );
    assert!(v.find(Locator::Css("table.jobs")).await.is_ok());
    v.close().await.unwrap();
    approve.click().await.unwrap();
    c.accept_alert().await.unwrap();
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{run}");
    c.goto(&format!("{}/runs/{id}", s.url)).await.unwrap();
    log_shows(&c, "deployed to production").await;
    screenshot(&c, "run").await;
    for (page, name) in [
        ("/", "overview"),
        ("/runs", "runs"),
        ("/monitors", "monitors"),
        ("/runners", "runners"),
    ] {
        c.goto(&format!("{}{page}", s.url)).await.unwrap();
        let h1 = c
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!h1.is_empty(), "{page}");
        screenshot(&c, name).await;
    }
    // The settings are an admin's: the operator has no link to them.
    assert!(
        c.find(Locator::Css("nav a[href='/settings']"))
            .await
            .is_err()
    );
    let a = browser(port).await;
    sign_in(&a, &s.url, "ada", "admin-password-3").await;
    a.goto(&format!("{}/settings", s.url)).await.unwrap();
    a.find(Locator::Css("section#secrets form.stack"))
        .await
        .unwrap();
    screenshot(&a, "settings").await;
    a.close().await.unwrap();
    // Signing out ends the session: the pages ask for a sign-in again.
    submit(&c, "form.who").await;
    c.goto(&format!("{}/runs", s.url)).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_rolls_an_environment_back_from_its_page() {
    let (_driver, port) = chromedriver();
    let app = deploy_support::App::new("");
    let s = Server::start();
    add_user(&s, "olga", "operator", "operator-password-1");
    let deploys = job_deploy_support::JobDeploys::new(&s, &app);
    // Two releases deployed by jobs (blocking work, off the browser's runtime).
    let (v1, v2) = tokio::task::block_in_place(|| {
        let v1 = deploys.push("v1", &app.artifact("1.0.0", |_| {}));
        let v2 = deploys.push("v2", &app.artifact("2.0.0", |_| {}));
        (v1, v2)
    });
    assert_eq!(v1.0["conclusion"], "success", "{}", v1.1);
    assert_eq!(v2.0["conclusion"], "success", "{}", v2.1);
    assert_eq!(app.live_version().as_deref(), Some("2.0.0"));
    let c = browser(port).await;
    sign_in(&c, &s.url, "olga", "operator-password-1").await;
    c.goto(&format!(
        "{}/environments?repo=acme%2Fapp&name=staging",
        s.url
    ))
    .await
    .unwrap();
    screenshot(&c, "environments").await;
    // v1's row has the button (v2 serves); pressing it asks first, then runs the rollback.
    c.find(Locator::XPath(
        "//form[contains(@action,'/environments/rollback')]/button",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let question = c.get_alert_text().await.unwrap();
    assert!(
        question.starts_with("Roll staging back to v1"),
        "{question}"
    );
    c.accept_alert().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let run: i64 = loop {
        let url = c.current_url().await.unwrap();
        if let Some(id) = url.path().strip_prefix("/runs/") {
            break id.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "still at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    log_shows(&c, "rolling staging back to release").await;
    let done = tokio::task::block_in_place(|| s.wait_completed(run));
    assert_eq!(done["conclusion"], "success", "{done}");
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    // The page shows v1 serving again, rolled back by olga.
    c.goto(&format!(
        "{}/environments?repo=acme%2Fapp&name=staging",
        s.url
    ))
    .await
    .unwrap();
    let serving = c
        .find(Locator::Css("table.envs tbody tr"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        serving.contains("v1") && serving.contains("by olga"),
        "{serving}"
    );
    screenshot(&c, "environments-rolled-back").await;
    c.close().await.unwrap();
}
