//! Deploys made by a server's jobs, as the seed's pipeline makes them: the deploy key is the
//! `staging` environment's secret, loaded into an agent by `webfactory/ssh-agent`, and
//! `pipewright/deploy@v1` deploys the commit's `dist` to the test app's host.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deploy_support::{App, USER};
use crate::serve_support::{Server, TOKEN};

pub struct JobDeploys<'a> {
    s: &'a Server,
    app: &'a App,
    ssh_config: String,
    /// `staging` is protected (`require_approval`): each run's deploy is approved.
    approve: bool,
}

/// The workflow of a push that deploys `version` to `staging`.
pub fn workflow(version: &str) -> String {
    format!(
        "on: push
jobs:
  deploy:
    runs-on: x
    environment: staging
    steps:
      - uses: actions/checkout@v4
      - uses: webfactory/ssh-agent@v0.9.0
        with:
          ssh-private-key: ${{{{ secrets.SSH_PRIVATE_KEY }}}}
      - uses: pipewright/deploy@v1
        with:
          environment: staging
          artifact: dist
          version: {version}
"
    )
}

fn copy(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

impl<'a> JobDeploys<'a> {
    /// Stores the app host's key as `staging`'s secret `SSH_PRIVATE_KEY` of `acme/app`.
    pub fn new(s: &'a Server, app: &'a App) -> JobDeploys<'a> {
        let key = std::fs::read_to_string(app.host.dir.path().join("id")).unwrap();
        let mut set = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["secrets", "set", "SSH_PRIVATE_KEY", "--repo", "acme/app"])
            .args(["--environment", "staging"])
            .env("PIPEWRIGHT_SERVER", &s.url)
            .env("PIPEWRIGHT_TOKEN", TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut set.stdin.take().unwrap(), key.as_bytes()).unwrap();
        assert!(set.wait().unwrap().success());
        // The ssh configuration names no key file: the agent's key is the one used.
        let ssh_config = format!(
            "Host staging-1\n  HostName 127.0.0.1\n  Port {}\n  User {USER}\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            app.host.port,
        );
        JobDeploys {
            s,
            app,
            ssh_config,
            approve: false,
        }
    }

    /// For a protected `staging`: each push's deploy job waits; it is approved by the CLI.
    pub fn approving(mut self) -> JobDeploys<'a> {
        self.approve = true;
        self
    }

    /// Commits `artifact` as `dist` with the workflow deploying `version`, pushes it to
    /// `main`, and waits for its run: the run and its log.
    pub fn push(&self, version: &str, artifact: &Path) -> (Value, String) {
        let s = self.s;
        let work = s.commit("main", &workflow(version));
        for sub in [".pipewright", "deploy"] {
            let _ = std::fs::remove_dir_all(work.join(sub));
            copy(&self.app.repo.path().join(sub), &work.join(sub));
        }
        std::fs::write(work.join("deploy/ssh_config"), &self.ssh_config).unwrap();
        let _ = std::fs::remove_dir_all(work.join("dist"));
        copy(artifact, &work.join("dist"));
        crate::common::git(&work, &["add", "-A"]);
        crate::common::git(
            &work,
            &["commit", "-q", "-m", &format!("release {version}")],
        );
        let newest = || s.runs().iter().filter_map(|r| r["id"].as_i64()).max();
        let before = newest();
        s.push(&work, "main");
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = loop {
            if let Some(id) = newest().filter(|id| Some(*id) > before) {
                break id;
            }
            assert!(Instant::now() < deadline, "no run\n{}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        };
        if self.approve {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (_, out, _) = s.cli(&["runs", "show", "--json", &id.to_string()]);
                let run: Value = serde_json::from_str(&out).unwrap_or_default();
                let waits = run["jobs"]
                    .as_array()
                    .is_some_and(|j| j.iter().any(|j| j["status"] == "waiting"));
                if waits {
                    break;
                }
                assert!(Instant::now() < deadline, "the deploy never waited: {run}");
                std::thread::sleep(Duration::from_millis(50));
            }
            let (code, out, err) = s.cli(&["approve", &id.to_string()]);
            assert_eq!(code, 0, "{out}\n{err}");
        }
        let run = s.wait_completed(id);
        let (_, log, _) = s.cli(&["logs", &id.to_string()]);
        (run, log)
    }
}
