//! A real `pipewright serve` process for end-to-end tests: one bare repository `acme/app`,
//! an admin token, the CLI as the client. With `PIPEWRIGHT_TEST_BACKEND=postgres` each
//! server gets a real PostgreSQL server of its own instead of the embedded SQLite database
//! (`scripts/test` runs the server suites both ways).

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::git;
use crate::deploy_support::Postgres;

pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub url: String,
    /// The database server, when the suite runs on PostgreSQL (stopped after the server).
    pub pg: Option<Postgres>,
    /// Variables the server process gets besides the test's.
    pub env: Vec<(String, String)>,
    /// The pipewright binary the server runs.
    pub program: PathBuf,
}

/// Whether this run of the suite uses PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("PIPEWRIGHT_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

pub const SECRET: &str = "webhook-secret";
pub const TOKEN: &str = "admin-token-1234";

impl Server {
    /// A server for one bare repository `acme/app` (at `dir/app.git`).
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// `start`, with `extra` lines added to the repository's configuration.
    pub fn start_with(extra: &str) -> Server {
        Server::start_repos(|d| {
            format!(
                "[[repos]]\nname = \"acme/app\"\npath = \"{d}/app.git\"\nwebhook_secret = \"{SECRET}\"\n{extra}",
                d = d.display()
            )
        })
    }

    /// A server whose `[[repos]]` (and what follows them) `repos` writes, given the test's
    /// directory (which has an empty bare repository `app.git`).
    pub fn start_repos(repos: impl FnOnce(&Path) -> String) -> Server {
        Server::start_repos_env(repos, &[])
    }

    /// `start_repos`, the server process with the variables `env` too.
    pub fn start_repos_env(repos: impl FnOnce(&Path) -> String, env: &[(&str, &str)]) -> Server {
        Server::start_program(repos, env, |_| {
            PathBuf::from(env!("CARGO_BIN_EXE_pipewright"))
        })
    }

    /// `start_repos_env`, the server started from the binary `program` gives, given the
    /// test's directory.
    pub fn start_program(
        repos: impl FnOnce(&Path) -> String,
        env: &[(&str, &str)],
        program: impl FnOnce(&Path) -> PathBuf,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        // A job user passes through the test's directory to its slot (it lists nothing).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "app.git"],
        );
        let pg = on_postgres().then(Postgres::start);
        let database = pg
            .as_ref()
            .map(|p| format!("database_url = \"{}\"\n", p.url()))
            .unwrap_or_default();
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{d}/data\"\n{database}[auth]\nadmin_token = \"{TOKEN}\"\n{repos}",
            d = dir.path().display(),
            repos = repos(dir.path()),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let program = program(dir.path());
        let mut s = Server {
            program,
            dir,
            child: None,
            url: String::new(),
            pg,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let url_file = self.dir.path().join("data/listen-url");
        let _ = std::fs::remove_file(&url_file);
        let mut cmd = Command::new(&self.program);
        // A restarted server listens where the first one did: runners know that address.
        if let Some(addr) = self.url.strip_prefix("http://") {
            cmd.env("PIPEWRIGHT_LISTEN", addr);
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["serve", "-c"])
            .arg(self.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Appended to: a restarted server's log follows the killed one's.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("serve.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !url_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.url = std::fs::read_to_string(&url_file)
            .unwrap_or_else(|e| panic!("the server did not start ({e}):\n{}", self.log()));
    }

    /// Another server process on the same configuration, database and data directory, as
    /// `PIPEWRIGHT_SERVER_ID=id` (its log in `serve-ID.log`); its URL. Killed when dropped.
    pub fn spawn_peer(&self, id: &str) -> (Peer, String) {
        let url_file = self.dir.path().join("data/listen-url");
        let _ = std::fs::remove_file(&url_file);
        let child = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["serve", "-c"])
            .arg(self.dir.path().join("config.toml"))
            .env("PIPEWRIGHT_SERVER_ID", id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(format!("serve-{id}.log"))).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !url_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = std::fs::read_to_string(&url_file).expect("the peer server did not start");
        (Peer(child), url)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything the database holds on disk, to look for what must not be there.
    pub fn database_bytes(&self) -> Vec<u8> {
        match &self.pg {
            Some(pg) => {
                let out = Command::new(format!("{}/pg_dump", crate::deploy_support::PG_BIN))
                    .args(["-d", &pg.url()])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
            None => {
                let mut db = std::fs::read(self.dir.path().join("data/pipewright.db")).unwrap();
                db.extend(
                    std::fs::read(self.dir.path().join("data/pipewright.db-wal"))
                        .unwrap_or_default(),
                );
                db
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(args)
            .env("PIPEWRIGHT_SERVER", &self.url)
            .env("PIPEWRIGHT_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn runs(&self) -> Vec<Value> {
        let (code, out, err) = self.cli(&["runs", "list", "--json", "--repo", "acme/app"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// `GET path` of the API with the admin token: its JSON (the answer must be 200).
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = request_bytes(
            &self.url,
            "GET",
            path,
            &[("Authorization", format!("Bearer {TOKEN}"))],
            b"",
        );
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    pub fn wait_completed(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, out, _) = self.cli(&["runs", "show", "--json", &id.to_string()]);
            if let Ok(v) = serde_json::from_str::<Value>(&out)
                && v["status"] == "completed"
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} did not complete\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the first job of run `id` is on a runner.
    pub fn wait_job_running(&self, id: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, out, _) = self.cli(&["runs", "show", "--json", &id.to_string()]);
            let v: Value = serde_json::from_str(&out).unwrap_or_default();
            if v["jobs"][0]["status"] == "running" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the job never started\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every accepted webhook delivery has been turned into runs.
    pub fn wait_intake(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, metrics) = get(&self.url, "/metrics");
            if status == 200 && metrics.contains("\npipewright_webhook_deliveries_pending 0\n") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries still pending\n{metrics}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A work tree of the bare repository with `workflow` committed on `branch`.
    pub fn commit(&self, branch: &str, workflow: &str) -> PathBuf {
        let work = self.dir.path().join(format!("work-{branch}"));
        if !work.exists() {
            git(
                self.dir.path(),
                &[
                    "clone",
                    "-q",
                    "app.git",
                    work.file_name().unwrap().to_str().unwrap(),
                ],
            );
            git(&work, &["checkout", "-q", "-B", branch]);
        }
        std::fs::create_dir_all(work.join(".github/workflows")).unwrap();
        std::fs::write(work.join(".github/workflows/ci.yml"), workflow).unwrap();
        std::fs::write(work.join("file.txt"), format!("{:?}", Instant::now())).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "change"]);
        work
    }

    pub fn push(&self, work: &Path, branch: &str) {
        git(
            work,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
        );
    }
}

/// A `pipewright runner` process of a test server; killed when dropped.
pub struct Runner {
    pub child: Child,
    pub work_dir: PathBuf,
    pub log: PathBuf,
}

impl Runner {
    /// Starts a runner named `name` (its jobs see `RUNNER_TAG=name`) with extra `labels`,
    /// registered with `token` (without one it must already be registered in its work dir).
    pub fn spawn(s: &Server, name: &str, labels: &str, token: Option<&str>) -> Runner {
        Runner::spawn_with(s, name, labels, token, &[])
    }

    /// `spawn`, with `extra` arguments for `pipewright runner`.
    pub fn spawn_with(
        s: &Server,
        name: &str,
        labels: &str,
        token: Option<&str>,
        extra: &[&str],
    ) -> Runner {
        let work_dir = s.dir.path().join(format!("runner-{name}"));
        let log = s.dir.path().join(format!("runner-{name}.log"));
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"));
        c.args(["runner", "--server", &s.url, "--name", name, "--work-dir"])
            .arg(&work_dir)
            .args(extra)
            .env("RUNNER_TAG", name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if !labels.is_empty() {
            c.args(["--labels", labels]);
        }
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        Runner {
            child: c.spawn().unwrap(),
            work_dir,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The unprivileged user confined jobs run as in the tests (`scripts/test` makes it; made
/// here if missing, as root).
pub const JOB_USER: &str = "pipewright-job";

/// Makes sure [`JOB_USER`] exists. Tests run as separate processes at once: a `useradd`
/// that loses the race to another finds the user there on its next look.
pub fn job_user() -> &'static str {
    for _ in 0..50 {
        let known = Command::new("id")
            .args(["-u", JOB_USER])
            .output()
            .is_ok_and(|o| o.status.success());
        if known {
            return JOB_USER;
        }
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                JOB_USER,
            ])
            .output();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot make the user {JOB_USER} (the confined tests need root)");
}

/// A one-time runner registration token of `s`.
pub fn registration_token(s: &Server) -> String {
    let (code, out, err) = s.cli(&["runners", "token"]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

/// A peer server process ([`Server::spawn_peer`]); killed when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.1 GET; returns (status, body).
pub fn get(url: &str, path: &str) -> (u16, String) {
    request(url, "GET", path, &[], b"")
}

/// A minimal HTTP/1.1 POST; returns (status, body).
pub fn post(url: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    request(url, "POST", path, headers, body)
}

fn request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let (status, body) = request_bytes(url, method, path, headers, body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A minimal HTTP request; returns (status, body). HTTP/1.0, so the body ends with the
/// connection whatever its length (no chunked encoding).
pub fn request_bytes(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let status = String::from_utf8_lossy(&resp[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp[split + 4..].to_vec())
}

/// Makes dashboard account `name` with `role` and `password` through the CLI.
pub fn add_user(s: &Server, name: &str, role: &str, password: &str) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["users", "add", name, "--role", role, "--password-stdin"])
        .env("PIPEWRIGHT_SERVER", &s.url)
        .env("PIPEWRIGHT_TOKEN", TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fields of `/proc/PID/stat` after the process's name (the first is its state, field 3
/// of proc(5)); `None` once the process is gone.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The `job-exec` processes whose parent is `pid`.
pub fn job_processes(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let ppid = stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if ppid == Some(pid) && cmdline.split(|b| *b == 0).any(|a| a == b"job-exec") {
            out.push(p);
        }
    }
    out
}
