//! The harness for deploy tests: a real OpenSSH server on a loopback port with key
//! authentication for a test user, a deploy path it owns, an application repository whose
//! `.pipewright/deploy.yml` reaches the server through its own ssh_config, and the real
//! `pipewright` binary. Everything started is stopped by PID when the harness drops.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod compose;

pub const USER: &str = "pwdeploy";

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs")
}

fn must(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test user sshd lets in with a key (created once; `*` unlocks it for key logins).
fn ensure_user() {
    // Test processes start together: useradd may find /etc/passwd locked by another one
    // creating the same user, so try again until the user exists.
    // Ready means unlocked for key logins: a password field of `*`.
    let ready = || {
        let out = sh(&format!("getent shadow {USER}"));
        String::from_utf8_lossy(&out.stdout).split(':').nth(1) == Some("*")
    };
    for _ in 0..100 {
        if ready() {
            return;
        }
        let _ = sh(&format!(
            "id {USER} >/dev/null 2>&1 || useradd -m -s /bin/sh {USER}; usermod -p '*' {USER}"
        ));
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot create the test user {USER} (the deploy tests need root)");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Host {
    pub dir: tempfile::TempDir,
    pub port: u16,
    sshd: Child,
}

impl Host {
    /// Starts `sshd -D` on a free loopback port.
    pub fn start() -> Host {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "the deploy tests need openssh-server (scripts/test installs it)"
        );
        ensure_user();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        must(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {0}/host_key && ssh-keygen -q -t ed25519 -N '' -f {0}/id && cp {0}/id.pub {0}/authorized_keys && chmod 644 {0}/authorized_keys",
            d.display()
        ));
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
                 StrictModes no\nAllowUsers {USER}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n\
                 MaxSessions 100\nMaxStartups 100\n",
                d = d.display()
            ),
        )
        .unwrap();
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(d.join("sshd.log")).unwrap(),
            ))
            .spawn()
            .expect("sshd starts");
        wait_port(port);
        std::fs::create_dir_all(d.join("srv")).unwrap();
        must(&format!("chown {USER} {}/srv", d.display()));
        Host { dir, port, sshd }
    }

    /// The ssh_config that names this host `staging-1`.
    pub fn ssh_config(&self) -> String {
        format!(
            "Host staging-1\n  HostName 127.0.0.1\n  Port {}\n  User {USER}\n  IdentityFile {}/id\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            self.port,
            self.dir.path().display()
        )
    }

    /// The deploy path, owned by the test user.
    pub fn deploy_path(&self) -> PathBuf {
        self.dir.path().join("srv/app")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

pub fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` on the loopback port: (status, body), or None if nothing answers.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// An application repository deploying to one host, and artifacts made from the test app.
pub struct App {
    pub host: Host,
    pub repo: tempfile::TempDir,
    pub port: u16,
    pub artifacts: tempfile::TempDir,
}

/// The test app's hooks: SQLite migrations, the restart script, `shared/data` backed up.
pub const DEFAULT_SECTIONS: &str = "    hooks:\n      migrate: /usr/bin/python3 bin/migrate.py\n      restart: sh bin/restart.sh\n    backup:\n      paths: [data]\n";

pub const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/deploy/app");

impl App {
    /// A host and a repository whose `staging` environment has `extra` appended (YAML
    /// lines indented for the environment's mapping).
    pub fn new(extra: &str) -> App {
        App::with_sections(DEFAULT_SECTIONS, extra)
    }

    /// Like `new`, with `sections` instead of the default `hooks:` and `backup:`.
    pub fn with_sections(sections: &str, extra: &str) -> App {
        let host = Host::start();
        let repo = tempfile::tempdir().unwrap();
        let port = free_port();
        let r = repo.path();
        std::fs::create_dir_all(r.join(".pipewright")).unwrap();
        std::fs::create_dir_all(r.join("deploy")).unwrap();
        std::fs::write(r.join("deploy/ssh_config"), host.ssh_config()).unwrap();
        let yml = format!(
            "app: inner-architect\nenvironments:\n  staging:\n    hosts: [staging-1]\n    ssh_config: deploy/ssh_config\n    path: {}\n    keep_releases: 3\n    shared: [data]\n    env: {{PORT: \"{port}\"}}\n{sections}    health:\n      url: http://127.0.0.1:{port}/health\n      expect_status: 200\n      contains: '\"status\": \"ok\"'\n      interval: 100ms\n      timeout: 1s\n      deadline: 4s\n      successes: 2\n{extra}",
            host.deploy_path().display()
        );
        std::fs::write(r.join(".pipewright/deploy.yml"), yml).unwrap();
        App {
            host,
            repo,
            port,
            artifacts: tempfile::tempdir().unwrap(),
        }
    }

    /// A copy of the test app as version `version`, changed by `edit` (a closure on its dir).
    pub fn artifact(&self, version: &str, edit: impl FnOnce(&Path)) -> PathBuf {
        let dir = self.artifacts.path().join(version);
        must(&format!("cp -a {APP} {}", dir.display()));
        std::fs::write(
            dir.join("inner_architect/__init__.py"),
            format!("__version__ = \"{version}\"\n"),
        )
        .unwrap();
        edit(&dir);
        dir
    }

    pub fn pipewright(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"));
        c.current_dir(self.repo.path())
            .env("NO_COLOR", "1")
            .env("PIPEWRIGHT_DEPLOYER", "tester@ci");
        c
    }

    pub fn run(&self, args: &[&str]) -> Done {
        let out = self.pipewright().args(args).output().unwrap();
        Done {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn deploy(&self, artifact: &Path) -> Done {
        self.run(&[
            "deploy",
            "staging",
            "--artifact",
            artifact.to_str().unwrap(),
        ])
    }

    /// The version `/health` reports, if the app answers.
    pub fn live_version(&self) -> Option<String> {
        let (status, body) = get(self.port, "/health")?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(v["version"].as_str()?.to_owned())
    }

    pub fn live_schema(&self) -> Vec<String> {
        get(self.port, "/health")
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v["schema"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    pub fn path(&self) -> PathBuf {
        self.host.deploy_path()
    }

    pub fn current(&self) -> Option<String> {
        std::fs::read_link(self.path().join("current"))
            .ok()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
    }

    pub fn releases_json(&self) -> serde_json::Value {
        let d = self.run(&["releases", "staging", "--json"]);
        assert_eq!(d.code, 0, "{}", d.stderr);
        serde_json::from_str(&d.stdout).unwrap()
    }

    pub fn history(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join(".pipewright/history.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // The application the restart hook started, by its PID.
        if let Ok(pid) = std::fs::read_to_string(self.path().join("shared/app.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[derive(Debug)]
pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Done {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A PostgreSQL server of its own (initdb into a temporary directory, run as the test user
/// because postgres refuses root), on a free loopback port; stopped by PID on drop.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_user(cmd: &str) -> Output {
    Command::new("runuser")
        .args(["-u", USER, "--", "sh", "-c", cmd])
        .output()
        .expect("runuser runs")
}

impl Postgres {
    pub fn start() -> Postgres {
        ensure_user();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        must(&format!("chown {USER} {}", dir.path().display()));
        let port = free_port();
        let d = dir.path().display();
        let out = as_user(&format!(
            "{PG_BIN}/initdb -A trust -U {USER} -D {d}/data >/dev/null && \
             {PG_BIN}/pg_ctl -D {d}/data -l {d}/log -w -o '-c listen_addresses=127.0.0.1 -p {port} -k {d}' start >/dev/null && \
             {PG_BIN}/createdb -h 127.0.0.1 -p {port} app"
        ));
        let pg = Postgres { dir, port };
        assert!(
            out.status.success(),
            "postgres: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    pub fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/app", self.port)
    }

    /// Runs SQL, returning the unaligned tuples.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new(format!("{PG_BIN}/psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(),
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pidfile = self.dir.path().join("data/postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
        {
            // SIGINT: PostgreSQL's fast shutdown.
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let start = Instant::now();
            while pidfile.exists() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
