//! The local side of every command: connect to each host, install the agent there once,
//! and drive it: for a deploy, send the manifest and the files the host does not have yet.

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

use crate::config::{Environment, Settings};
use crate::error::{Error, Result};
use crate::manifest::{Entry, Manifest};
use crate::protocol::{Control, Event, Holder, Outcome, Request, Upload, recv, send};
use crate::release::ReleaseInfo;
use crate::ssh::{Ssh, quote};

/// Where a command goes: an environment, its hosts and how to reach them.
pub struct Target<'a> {
    pub env: &'a Environment,
    /// The repository root: `ssh_config` is relative to it.
    pub root: &'a Path,
    /// Who runs the command, for the lock and the history.
    pub who: String,
    /// The `pipewright` binary to install on hosts as the agent.
    pub agent_binary: PathBuf,
    /// Extra variables (from `env_file`) already merged into the settings.
    pub settings: Settings,
    /// Variables for the local `ssh` (a workflow step's `SSH_AUTH_SOCK`, ...).
    pub ssh_env: Vec<(String, String)>,
}

/// What the deployer reports while it works: the host and what happened there.
pub type Report<'r> = &'r mut (dyn FnMut(&str, &Event) + Send);

#[derive(Debug, Clone)]
pub struct Summary {
    pub outcome: Outcome,
    pub message: String,
    pub files_sent: usize,
    pub files_linked: usize,
    pub bytes_sent: u64,
    /// Everything written to the hosts' agents: files, manifest and protocol.
    pub wire_bytes: u64,
    pub holder: Option<Holder>,
}

pub struct DeployOptions {
    pub version: String,
    pub lock_wait_ms: u64,
    /// Tests only: passed to the agent (`exit-after:PHASE`).
    pub fault: Option<String>,
}

impl Target<'_> {
    /// The settings with one host's own variables and path.
    fn settings_for(&self, host: &str) -> Settings {
        let mut s = self.settings.clone();
        if let Some(vars) = self.env.host_env.get(host) {
            s.env.extend(vars.clone());
        }
        if let Some(p) = self.env.host_path.get(host) {
            s.path.clone_from(p);
        }
        s
    }

    fn connect(&self, host: &str) -> Result<Ssh> {
        let config = self.env.ssh_config.as_ref().map(|c| self.root.join(c));
        Ssh::connect(host, config.as_deref(), &self.ssh_env)
    }

    /// Makes sure this binary is on the host as `PATH/.pipewright/bin/pipewright-KEY` and
    /// returns the remote command that starts the agent.
    fn install_agent(&self, ssh: &Ssh) -> Result<String> {
        let meta = fs::metadata(&self.agent_binary)
            .map_err(Error::io("cannot read", &self.agent_binary))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        // Size and modification time identify a build well enough, without hashing it.
        let name = format!("pipewright-{}-{mtime:x}", meta.len());
        let dir = format!(
            "{}/.pipewright/bin",
            self.settings_for(ssh.destination()).path
        );
        let bin = format!("{dir}/{name}");
        let check = ssh.run(&format!("test -x {}", quote(&bin)))?;
        if !check.status.success() {
            let script = format!(
                // A temporary name per process, so that two first deploys at once do not
                // write one file; other builds' agents are removed.
                "set -e; mkdir -p {d}; find {d} -name 'pipewright-*' ! -name {n} -type f -delete; cat > {b}.tmp.$$; chmod 755 {b}.tmp.$$; mv {b}.tmp.$$ {b}",
                d = quote(&dir),
                n = quote(&format!("{name}*")),
                b = quote(&bin)
            );
            let mut child = ssh
                .command(&script)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .map_err(Error::io("cannot run ssh for", &self.agent_binary))?;
            if let Some(mut stdin) = child.stdin.take() {
                let mut f = fs::File::open(&self.agent_binary)
                    .map_err(Error::io("cannot read", &self.agent_binary))?;
                let _ = std::io::copy(&mut f, &mut stdin);
            }
            let status = child
                .wait()
                .map_err(Error::io("cannot run ssh for", &self.agent_binary))?;
            if !status.success() {
                return Err(Error::Ssh {
                    destination: ssh.destination().to_owned(),
                    message: format!("cannot install the agent in {dir} ({status})"),
                });
            }
        }
        Ok(format!("exec {} deploy-agent", quote(&bin)))
    }

    fn start_agent(&self, ssh: &Ssh) -> Result<Agent> {
        let cmd = self.install_agent(ssh)?;
        let mut child = ssh.spawn(&cmd)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Protocol("no pipes to the agent".into()));
        };
        Ok(Agent {
            child,
            input: Some(BufWriter::with_capacity(
                1 << 17,
                Counting {
                    inner: stdin,
                    count: 0,
                },
            )),
            output: BufReader::with_capacity(1 << 16, stdout),
        })
    }

    /// One request and the events it produces until its result, on one host.
    fn simple(&self, host: &str, req: &Request, report: Report<'_>) -> Result<Vec<Event>> {
        let ssh = self.connect(host)?;
        let mut agent = self.start_agent(&ssh)?;
        agent.send(req)?;
        let mut events = Vec::new();
        while let Some(ev) = agent.next()? {
            report(host, &ev);
            events.push(ev);
        }
        agent.finish();
        Ok(events)
    }

    /// Deploys `artifact` (a directory) to every host of the environment. One host runs the
    /// whole deploy on its own; several are coordinated: upload and prepare everywhere at
    /// once (migrating on the first host only), switch in batches, and revert every switched
    /// host if any fails.
    pub fn deploy(
        &self,
        artifact: &Path,
        opts: &DeployOptions,
        report: Report<'_>,
    ) -> Result<Summary> {
        // A Compose release's images are built before any host is locked.
        let staged = match &self.settings.compose {
            Some(c) => crate::compose::stage(artifact, c, &mut |ev| report("local", ev))?,
            None => None,
        };
        let sources = Sources {
            artifact,
            staged: staged.as_ref().map(|s| s.root.path()),
        };
        let artifact = &sources;
        let report = Mutex::new(report);
        let hosts = &self.env.hosts;
        let coordinated = hosts.len() > 1;
        // Hash the artifact while the connections open and the agents take their locks.
        let (manifest, opened) = std::thread::scope(|sc| {
            let hashing = sc.spawn(|| sources.manifest());
            let handles: Vec<_> = hosts
                .iter()
                .enumerate()
                .map(|(i, host)| sc.spawn(move || self.open(host, opts, i == 0, coordinated)))
                .collect();
            let opened: Vec<Result<Session>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Protocol("a host's thread panicked".into())))
                })
                .collect();
            (hashing.join(), opened)
        });
        // On an error the sessions drop: each agent sees the connection close before the
        // upload and removes what it started.
        let manifest = match manifest {
            Ok(m) => m.map_err(Error::io("cannot read", sources.artifact))?,
            Err(_) => return Err(Error::Protocol("hashing the artifact panicked".into())),
        };
        let mut sessions = Vec::new();
        let mut failures = Vec::new();
        for (host, r) in hosts.iter().zip(opened) {
            match r {
                Ok(s) => sessions.push(s),
                Err(e) if !coordinated => return Err(e),
                Err(e) => failures.push(format!("{host}: {e}")),
            }
        }
        // Upload and prepare everywhere at once.
        each(&mut sessions, |s| s.pump(artifact, &manifest, &report));
        if !coordinated {
            return Ok(total(&mut sessions));
        }
        let all_prepared = failures.is_empty() && sessions.iter().all(|s| s.stop == Stop::Prepared);
        if !all_prepared {
            each(&mut sessions, |s| {
                if s.stop == Stop::Prepared {
                    s.control(Control::Abort, artifact, &manifest, &report);
                }
            });
            let mut t = total(&mut sessions);
            t.outcome = t.outcome.worst(Outcome::Failed);
            for f in failures {
                t.message.push_str(&format!("\n{f}"));
            }
            return Ok(t);
        }
        let batch = self.env.batch.max(1);
        let mut switched = 0;
        let mut ok = true;
        while ok && switched < sessions.len() {
            let end = (switched + batch).min(sessions.len());
            each(&mut sessions[switched..end], |s| {
                s.control(Control::Switch, artifact, &manifest, &report);
            });
            ok = sessions[switched..end]
                .iter()
                .all(|s| s.stop == Stop::Switched);
            switched = end;
        }
        let word = if ok {
            Control::Finalize
        } else {
            Control::Revert
        };
        each(&mut sessions, |s| match s.stop {
            Stop::Switched => s.control(word, artifact, &manifest, &report),
            Stop::Prepared => s.control(Control::Abort, artifact, &manifest, &report),
            Stop::Done => {}
        });
        let mut t = total(&mut sessions);
        if !ok && t.outcome == Outcome::Failed {
            // Hosts that never switched report "aborted"; the deploy as a whole rolled back.
            t.outcome = Outcome::RolledBack;
        }
        Ok(t)
    }

    /// Connects to a host, starts its agent and asks for a deploy.
    fn open(
        &self,
        host: &str,
        opts: &DeployOptions,
        migrate: bool,
        coordinated: bool,
    ) -> Result<Session> {
        let ssh = self.connect(host)?;
        let mut agent = self.start_agent(&ssh)?;
        agent.send(&Request::Deploy {
            settings: self.settings_for(host),
            version: opts.version.clone(),
            who: self.who.clone(),
            lock_wait_ms: opts.lock_wait_ms,
            migrate,
            fault: opts.fault.clone(),
            coordinated,
        })?;
        Ok(Session {
            host: host.to_owned(),
            _ssh: ssh,
            agent: Some(agent),
            stop: Stop::Done,
            uploaded: false,
            summary: Summary {
                outcome: Outcome::Failed,
                message: "the connection to the host was lost".into(),
                files_sent: 0,
                files_linked: 0,
                bytes_sent: 0,
                wire_bytes: 0,
                holder: None,
            },
        })
    }

    /// `pipewright rollback` on every host.
    pub fn rollback(
        &self,
        to: Option<&str>,
        with_db: bool,
        lock_wait_ms: u64,
        report: Report<'_>,
    ) -> Result<Summary> {
        let mut total = Summary {
            outcome: Outcome::Ok,
            message: String::new(),
            files_sent: 0,
            files_linked: 0,
            bytes_sent: 0,
            wire_bytes: 0,
            holder: None,
        };
        for host in &self.env.hosts {
            let req = Request::Rollback {
                settings: self.settings_for(host),
                who: self.who.clone(),
                to: to.map(str::to_owned),
                with_db,
                lock_wait_ms,
            };
            let mut outcome = Outcome::Failed;
            let mut message = "the connection to the host was lost".to_owned();
            for ev in self.simple(host, &req, report)? {
                match ev {
                    Event::Locked { holder } => {
                        outcome = Outcome::Locked;
                        message = format!("locked: {holder}");
                        total.holder = Some(holder);
                    }
                    Event::Result {
                        outcome: o,
                        message: m,
                        ..
                    } => {
                        outcome = o;
                        message = m;
                    }
                    _ => {}
                }
            }
            total.outcome = total.outcome.worst(outcome);
            if !total.message.is_empty() {
                total.message.push('\n');
            }
            total.message.push_str(&format!("{host}: {message}"));
        }
        Ok(total)
    }

    /// The releases on every host.
    pub fn releases(&self, report: Report<'_>) -> Result<Vec<(String, Vec<ReleaseInfo>)>> {
        let mut out = Vec::new();
        for host in &self.env.hosts {
            let req = Request::Releases {
                settings: self.settings_for(host),
            };
            for ev in self.simple(host, &req, report)? {
                if let Event::Releases { releases } = ev {
                    out.push((host.clone(), releases));
                }
            }
        }
        Ok(out)
    }

    /// The lock on every host: who holds it, if anyone; with `release`, frees it.
    pub fn lock(
        &self,
        release: bool,
        force: bool,
        report: Report<'_>,
    ) -> Result<Vec<(String, Option<Holder>, bool)>> {
        let mut out = Vec::new();
        for host in &self.env.hosts {
            let req = if release {
                Request::LockRelease {
                    settings: self.settings_for(host),
                    force,
                }
            } else {
                Request::LockStatus {
                    settings: self.settings_for(host),
                }
            };
            for ev in self.simple(host, &req, report)? {
                match ev {
                    Event::Lock { holder, released } => out.push((host.clone(), holder, released)),
                    Event::Locked { holder } => out.push((host.clone(), Some(holder), false)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

/// Where a host's deploy stands, as far as the deployer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Prepared,
    Switched,
    Done,
}

/// One host's deploy in progress.
struct Session {
    host: String,
    agent: Option<Agent>,
    stop: Stop,
    uploaded: bool,
    summary: Summary,
    /// Dropped last: the connection the agent runs over.
    _ssh: Ssh,
}

type Shared<'a, 'r> = &'a Mutex<Report<'r>>;

impl Session {
    /// Reads events (uploading when asked) until the agent waits for a word or ends.
    fn pump(&mut self, artifact: &Sources<'_>, manifest: &Manifest, report: Shared<'_, '_>) {
        let Some(agent) = self.agent.as_mut() else {
            self.stop = Stop::Done;
            return;
        };
        let stop = loop {
            let ev = match agent.next() {
                Ok(Some(ev)) => ev,
                Ok(None) => break Stop::Done,
                Err(e) => {
                    self.summary.message = e.to_string();
                    break Stop::Done;
                }
            };
            if let Ok(mut r) = report.lock() {
                (*r)(&self.host, &ev);
            }
            match ev {
                Event::Ready { .. } => {
                    // A write that fails means the agent stopped reading: its events say why.
                    let _ = agent.send(&Upload::Manifest {
                        manifest: manifest.clone(),
                    });
                }
                Event::Need { paths, linked } if !self.uploaded => {
                    self.uploaded = true;
                    self.summary.files_linked = linked;
                    if let Ok((files, bytes)) = agent.upload(artifact, manifest, &paths) {
                        self.summary.files_sent = files;
                        self.summary.bytes_sent = bytes;
                        let _ = agent.send(&Upload::Commit);
                    }
                }
                Event::Locked { holder } => {
                    self.summary.outcome = Outcome::Locked;
                    self.summary.message = format!("locked: {holder}");
                    self.summary.holder = Some(holder);
                }
                Event::Result {
                    outcome, message, ..
                } => {
                    self.summary.outcome = outcome;
                    self.summary.message = message;
                }
                Event::Prepared => break Stop::Prepared,
                Event::Switched => break Stop::Switched,
                _ => {}
            }
        };
        self.stop = stop;
        if stop == Stop::Done
            && let Some(a) = self.agent.take()
        {
            self.summary.wire_bytes = a.finish();
        }
    }

    fn control(
        &mut self,
        word: Control,
        artifact: &Sources<'_>,
        manifest: &Manifest,
        report: Shared<'_, '_>,
    ) {
        if let Some(a) = self.agent.as_mut() {
            let _ = a.send(&word);
        }
        self.pump(artifact, manifest, report);
    }
}

/// Runs `f` on every session at once.
fn each(sessions: &mut [Session], f: impl Fn(&mut Session) + Sync) {
    std::thread::scope(|sc| {
        for s in sessions {
            let f = &f;
            sc.spawn(move || f(s));
        }
    });
}

/// The sessions' summaries as one.
fn total(sessions: &mut [Session]) -> Summary {
    let mut t = Summary {
        outcome: Outcome::Ok,
        message: String::new(),
        files_sent: 0,
        files_linked: 0,
        bytes_sent: 0,
        wire_bytes: 0,
        holder: None,
    };
    for s in sessions.iter_mut() {
        if let Some(a) = s.agent.take() {
            s.summary.wire_bytes = a.finish();
        }
        let m = &s.summary;
        t.outcome = t.outcome.worst(m.outcome);
        t.files_sent += m.files_sent;
        t.files_linked += m.files_linked;
        t.bytes_sent += m.bytes_sent;
        t.wire_bytes += m.wire_bytes;
        if t.holder.is_none() {
            t.holder.clone_from(&m.holder);
        }
        if !t.message.is_empty() {
            t.message.push('\n');
        }
        t.message.push_str(&format!("{}: ", s.host));
        t.message.push_str(&m.message);
    }
    t
}

/// Where a release's files are read from: the artifact, and for a Compose release the
/// directory holding the images built for it (`.pipewright-compose/`).
struct Sources<'a> {
    artifact: &'a Path,
    staged: Option<&'a Path>,
}

impl Sources<'_> {
    /// The release's manifest: the artifact's, with the staged directory's entries in place
    /// of any the artifact has under the same name.
    fn manifest(&self) -> std::io::Result<Manifest> {
        let mut m = Manifest::build(self.artifact)?;
        if let Some(staged) = self.staged {
            let ours = |p: &str| {
                p == crate::compose::DIR || p.starts_with(&format!("{}/", crate::compose::DIR))
            };
            m.entries.retain(|e| !ours(e.path()));
            m.entries.extend(Manifest::build(staged)?.entries);
            m.entries.sort_by(|a, b| a.path().cmp(b.path()));
        }
        Ok(m)
    }

    fn file(&self, path: &str) -> PathBuf {
        match self.staged {
            Some(staged) if path.starts_with(&format!("{}/", crate::compose::DIR)) => {
                staged.join(path)
            }
            _ => self.artifact.join(path),
        }
    }
}

/// The agent's stdin, counting what goes through.
struct Counting {
    inner: std::process::ChildStdin,
    count: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Agent {
    child: Child,
    input: Option<BufWriter<Counting>>,
    output: BufReader<std::process::ChildStdout>,
}

impl Agent {
    fn send<T: serde::Serialize>(&mut self, msg: &T) -> Result<()> {
        let w = self.input.as_mut().ok_or(Error::Disconnected)?;
        send(w, msg).map_err(|_| Error::Disconnected)
    }

    fn next(&mut self) -> Result<Option<Event>> {
        match recv(&mut self.output) {
            Ok(ev) => Ok(ev),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(Error::Protocol(format!(
                "the agent said something unexpected: {e}"
            ))),
            Err(_) => Ok(None),
        }
    }

    /// Sends the files the host asked for; returns how many and their bytes.
    fn upload(
        &mut self,
        root: &Sources<'_>,
        manifest: &Manifest,
        paths: &[String],
    ) -> Result<(usize, u64)> {
        let wanted: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
        let w = self.input.as_mut().ok_or(Error::Disconnected)?;
        let mut bytes = 0;
        let mut files = 0;
        let delay = std::env::var("PIPEWRIGHT_TEST_UPLOAD_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        for e in &manifest.entries {
            let Entry::File { path, size, .. } = e else {
                continue;
            };
            if !wanted.contains(path.as_str()) {
                continue;
            }
            let full = root.file(path);
            let mut f = fs::File::open(&full).map_err(Error::io("cannot read", &full))?;
            send(
                w,
                &Upload::File {
                    path: path.clone(),
                    size: *size,
                },
            )
            .map_err(|_| Error::Disconnected)?;
            let n = std::io::copy(&mut std::io::Read::take(&mut f, *size), w)
                .map_err(|_| Error::Disconnected)?;
            if n != *size {
                return Err(Error::Refused(format!("{path} changed while it was sent")));
            }
            bytes += n;
            files += 1;
            if let Some(d) = delay {
                w.flush().map_err(|_| Error::Disconnected)?;
                std::thread::sleep(d);
            }
        }
        w.flush().map_err(|_| Error::Disconnected)?;
        Ok((files, bytes))
    }

    /// Closes stdin; returns how many bytes went through it.
    fn close_input(&mut self) -> u64 {
        match self.input.take() {
            Some(mut w) => {
                let _ = w.flush();
                w.get_ref().count
            }
            None => 0,
        }
    }

    /// Waits for the agent; returns how many bytes were sent to it.
    fn finish(mut self) -> u64 {
        let n = self.close_input();
        let _ = self.child.wait();
        n
    }
}

/// An artifact as a directory: a directory as it is, a tarball extracted (by `tar`) into a
/// temporary directory that lives as long as the returned guard.
pub fn artifact_dir(path: &Path) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let meta = fs::metadata(path).map_err(Error::io("cannot read the artifact", path))?;
    if meta.is_dir() {
        return Ok((path.to_owned(), None));
    }
    let dir =
        tempfile::tempdir().map_err(Error::io("cannot create a temporary directory for", path))?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(path)
        .arg("-C")
        .arg(dir.path())
        .output()
        .map_err(Error::io("cannot run tar for", path))?;
    if !out.status.success() {
        return Err(Error::Refused(format!(
            "{} is neither a directory nor a tarball: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((dir.path().to_owned(), Some(dir)))
}
