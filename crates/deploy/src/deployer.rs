//! The local side of every command: connect to each host, install the agent there once,
//! and drive it: for a deploy, send the manifest and the files the host does not have yet.

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::config::{Environment, Settings};
use crate::error::{Error, Result};
use crate::manifest::{Entry, Manifest};
use crate::protocol::{Event, Holder, Outcome, Request, Upload, recv, send};
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
}

/// What the deployer reports while it works: the host and what happened there.
pub type Report<'r> = &'r mut dyn FnMut(&str, &Event);

#[derive(Debug, Clone)]
pub struct Summary {
    pub outcome: Outcome,
    pub message: String,
    pub files_sent: usize,
    pub files_linked: usize,
    pub bytes_sent: u64,
    pub holder: Option<Holder>,
}

pub struct DeployOptions {
    pub version: String,
    pub lock_wait_ms: u64,
    /// Tests only: passed to the agent (`exit-after:PHASE`).
    pub fault: Option<String>,
}

impl Target<'_> {
    fn connect(&self, host: &str) -> Result<Ssh> {
        let config = self.env.ssh_config.as_ref().map(|c| self.root.join(c));
        Ssh::connect(host, config.as_deref())
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
        let dir = format!("{}/.pipewright/bin", self.settings.path);
        let bin = format!("{dir}/{name}");
        let check = ssh.run(&format!("test -x {}", quote(&bin)))?;
        if !check.status.success() {
            let script = format!(
                "set -e; mkdir -p {d}; find {d} -name 'pipewright-*' -type f -delete; cat > {b}.tmp; chmod 755 {b}.tmp; mv {b}.tmp {b}",
                d = quote(&dir),
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
            input: Some(BufWriter::with_capacity(1 << 17, stdin)),
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

    /// Deploys `artifact` (a directory) to every host of the environment, one after another;
    /// the database is migrated on the first host only.
    pub fn deploy(
        &self,
        artifact: &Path,
        opts: &DeployOptions,
        report: Report<'_>,
    ) -> Result<Summary> {
        let manifest = Manifest::build(artifact).map_err(Error::io("cannot read", artifact))?;
        let mut total = Summary {
            outcome: Outcome::Ok,
            message: String::new(),
            files_sent: 0,
            files_linked: 0,
            bytes_sent: 0,
            holder: None,
        };
        for (i, host) in self.env.hosts.iter().enumerate() {
            let s = self.deploy_host(host, artifact, &manifest, opts, i == 0, report)?;
            total.outcome = total.outcome.worst(s.outcome);
            total.files_sent += s.files_sent;
            total.files_linked += s.files_linked;
            total.bytes_sent += s.bytes_sent;
            total.holder = total.holder.or(s.holder);
            if !total.message.is_empty() {
                total.message.push('\n');
            }
            total.message.push_str(&format!("{host}: {}", s.message));
            if s.outcome != Outcome::Ok {
                break;
            }
        }
        Ok(total)
    }

    fn deploy_host(
        &self,
        host: &str,
        artifact: &Path,
        manifest: &Manifest,
        opts: &DeployOptions,
        migrate: bool,
        report: Report<'_>,
    ) -> Result<Summary> {
        let ssh = self.connect(host)?;
        let mut agent = self.start_agent(&ssh)?;
        let mut summary = Summary {
            outcome: Outcome::Failed,
            message: "the connection to the host was lost".into(),
            files_sent: 0,
            files_linked: 0,
            bytes_sent: 0,
            holder: None,
        };
        agent.send(&Request::Deploy {
            settings: self.settings.clone(),
            version: opts.version.clone(),
            who: self.who.clone(),
            lock_wait_ms: opts.lock_wait_ms,
            migrate,
            fault: opts.fault.clone(),
        })?;
        let mut uploaded = false;
        while let Some(ev) = agent.next()? {
            report(host, &ev);
            match &ev {
                Event::Ready { .. } => {
                    // A write that fails means the agent stopped reading: its events say why.
                    let _ = agent.send(&Upload::Manifest {
                        manifest: manifest.clone(),
                    });
                }
                Event::Need { paths, linked } if !uploaded => {
                    uploaded = true;
                    summary.files_linked = *linked;
                    if let Ok((files, bytes)) = agent.upload(artifact, manifest, paths) {
                        summary.files_sent = files;
                        summary.bytes_sent = bytes;
                        let _ = agent.send(&Upload::Commit);
                    }
                    agent.close_input();
                }
                Event::Locked { holder } => {
                    summary.outcome = Outcome::Locked;
                    summary.message = format!("locked: {holder}");
                    summary.holder = Some(holder.clone());
                }
                Event::Result {
                    outcome, message, ..
                } => {
                    summary.outcome = *outcome;
                    summary.message.clone_from(message);
                }
                _ => {}
            }
        }
        agent.finish();
        Ok(summary)
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
            holder: None,
        };
        for host in &self.env.hosts {
            let req = Request::Rollback {
                settings: self.settings.clone(),
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
                settings: self.settings.clone(),
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
                    settings: self.settings.clone(),
                    force,
                }
            } else {
                Request::LockStatus {
                    settings: self.settings.clone(),
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

struct Agent {
    child: Child,
    input: Option<BufWriter<std::process::ChildStdin>>,
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
        root: &Path,
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
            let full = root.join(path);
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

    fn close_input(&mut self) {
        if let Some(mut w) = self.input.take() {
            let _ = w.flush();
        }
    }

    fn finish(mut self) {
        self.close_input();
        let _ = self.child.wait();
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
