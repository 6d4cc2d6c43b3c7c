//! The harness for end-to-end tests: a throw-away git repository with workflow files, and the
//! real `pipewright` binary run in it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub struct Repo {
    pub dir: tempfile::TempDir,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository `<hub>/<name>` (as an actions host serves them: `file://<hub>`) holding
/// `files`, committed and tagged `tag`; its commit.
pub fn hub_repo(hub: &Path, name: &str, files: &[(&str, &str)], tag: &str) -> String {
    let dir = hub.join(name);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", name]);
    git(&dir, &["tag", tag]);
    git(&dir, &["rev-parse", "HEAD"])
}

/// The reusable workflow `acme/shared/.github/workflows/greet.yml@v1` in a hub: it greets
/// `inputs.who` and outputs `said: yes`.
pub fn reusable_greet(hub: &Path) {
    hub_repo(
        hub,
        "acme/shared",
        &[(
            ".github/workflows/greet.yml",
            "on:\n  workflow_call:\n    inputs:\n      who:\n        type: string\n        required: true\n    outputs:\n      said:\n        value: ${{ jobs.hello.outputs.said }}\njobs:\n  hello:\n    runs-on: x\n    outputs:\n      said: ${{ steps.s.outputs.said }}\n    steps:\n      - id: s\n        run: |\n          echo \"shared says hello to ${{ inputs.who }}\"\n          echo said=yes >> $GITHUB_OUTPUT\n",
        )],
        "v1",
    );
}

impl Repo {
    /// An empty repository on branch `main`.
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        Repo { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, content: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn workflow(&self, name: &str, content: &str) -> &Self {
        self.file(&format!(".github/workflows/{name}"), content)
    }

    pub fn commit(&self, msg: &str) -> String {
        git(self.path(), &["add", "-A"]);
        git(self.path(), &["commit", "-q", "--allow-empty", "-m", msg]);
        git(self.path(), &["rev-parse", "HEAD"])
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"));
        c.current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("XDG_CACHE_HOME", self.path().join(".git/cache-home"));
        c
    }

    /// `pipewright run ARGS --report FILE`.
    pub fn run(&self, args: &[&str]) -> Run {
        let report = self.path().join(".git").join("report.json");
        let _ = std::fs::remove_file(&report);
        let out = self
            .command()
            .arg("run")
            .args(args)
            .arg("--report")
            .arg(&report)
            .output()
            .expect("pipewright runs");
        Run::new(out, &report)
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Value,
}

impl Run {
    pub fn new(out: Output, report: &PathBuf) -> Run {
        let report = std::fs::read_to_string(report)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report,
        }
    }

    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// Every job entry (of every workflow) whose id is `id`.
    pub fn jobs(&self, id: &str) -> Vec<&Value> {
        self.report["workflows"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|w| w["jobs"].as_array().into_iter().flatten())
            .filter(|j| j["id"] == id)
            .collect()
    }

    pub fn job(&self, id: &str) -> &Value {
        let jobs = self.jobs(id);
        assert_eq!(
            jobs.len(),
            1,
            "one job `{id}` expected in the report:\n{}",
            self.all()
        );
        jobs[0]
    }

    pub fn conclusion(&self, id: &str) -> String {
        self.job(id)["conclusion"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// (outcome, conclusion) of each step of job `id`.
    pub fn steps(&self, id: &str) -> Vec<(String, String)> {
        self.job(id)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["outcome"].as_str().unwrap().to_owned(),
                    s["conclusion"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn output(&self, id: &str, name: &str) -> String {
        self.job(id)["outputs"][name]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Lines printed by job `display` (without the prefix).
    pub fn lines_of(&self, display: &str) -> Vec<String> {
        let prefix = format!("[{display}] ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n{}", self.all());
        self
    }
}

/// Runs the docker client: whether it succeeded, and what it printed.
pub fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker client runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The test image, built once per test process: a root filesystem of busybox-static,
/// imported (nothing is pulled), with a web page at /www and `/marker`; its default command
/// serves the page on port 80.
pub fn busybox_image() -> &'static str {
    const IMAGE: &str = "pipewright-test/busybox:1";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if docker(&["image", "inspect", IMAGE]).0 {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["bin", "tmp", "www", "etc", "root"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", r.join("bin/busybox")).expect("busybox-static is installed");
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).unwrap();
            }
        }
        std::fs::write(r.join("www/index.html"), "hello from the web service\n").unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(r.join("marker"), "inside the container\n").unwrap();
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(r)
            .args(["-cf", "-", "."])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let tar_out = tar.stdout.take().unwrap();
        let out = Command::new("docker")
            .args([
                "import",
                "--change",
                "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                "--change",
                r#"CMD ["sh", "-c", "echo web service starting; exec httpd -f -v -p 80 -h /www"]"#,
                "-",
                IMAGE,
            ])
            .stdin(tar_out)
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar failed");
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    IMAGE
}

/// A registry on this machine serving one image to pull (`tests/data/registry.py`, made
/// from [`busybox_image`] with a label of its own), under a host name, as a registry on the
/// network would be: `pipewright-registry.test` is 127.0.0.1 in `/etc/hosts` (added if
/// missing). Docker speaks plain HTTP to it (registries on 127.0.0.0/8 are insecure by
/// default). Its `/mark/NAME` and `/wait/NAME` let two jobs wait for each other.
pub struct Registry {
    child: std::process::Child,
    pub port: u16,
    /// `HOST:PORT/NAME:TAG`, what a job pulls.
    pub image: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Serves the image as `name:tag`, to those who give `credentials` (`USER:PASSWORD`)
    /// when there are.
    pub fn start(name: &str, tag: &str, credentials: Option<&str>) -> Registry {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !hosts.lines().any(|l| {
            l.split_whitespace()
                .skip(1)
                .any(|h| h == "pipewright-registry.test")
        }) {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open("/etc/hosts")
                .expect("/etc/hosts is writable (tests run as root)");
            f.write_all(b"\n127.0.0.1 pipewright-registry.test\n")
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("saved.tar");
        let (ok, out) = docker(&["save", "-o", saved.to_str().unwrap(), busybox_image()]);
        assert!(ok, "docker save: {out}");
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/registry.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(&saved)
            .args([name, tag])
            .arg(&port_file)
            .args(credentials)
            .spawn()
            .expect("python3 runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse::<u16>().expect("the registry's port");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the registry never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Registry {
            child,
            port,
            image: format!("pipewright-registry.test:{port}/{name}:{tag}"),
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
