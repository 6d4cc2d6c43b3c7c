//! One multiplexed OpenSSH connection per host: the system `ssh` binary (so the user's ssh
//! configuration, agent and known hosts apply), a master we own as a child process, and
//! every command after it over the master's socket instead of a new handshake.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub struct Ssh {
    destination: String,
    config: Option<PathBuf>,
    socket: PathBuf,
    master: Child,
    /// Holds the socket's directory until the connection closes.
    _dir: tempfile::TempDir,
}

/// Quotes a word for the remote shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=+@,".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A directory for the master connection's socket. Unix socket paths are short (108
/// bytes): right under /tmp; where /tmp may not be written (a confined job may write only
/// its own directories), under the `TMPDIR` or `HOME` that `env` gives ssh, if the path
/// fits.
fn control_dir(env: &[(String, String)]) -> std::io::Result<tempfile::TempDir> {
    let make = |base: &Path| tempfile::Builder::new().prefix("pw-ssh-").tempdir_in(base);
    let first = match make(Path::new("/tmp")) {
        Ok(d) => return Ok(d),
        Err(e) => e,
    };
    for name in ["TMPDIR", "HOME"] {
        let Some((_, base)) = env.iter().find(|(k, _)| k == name) else {
            continue;
        };
        // `<base>/pw-ssh-XXXXXX/c`.
        if base.is_empty() || base.len() + 17 > 100 {
            continue;
        }
        if let Ok(d) = make(Path::new(base)) {
            return Ok(d);
        }
    }
    Err(first)
}

/// The host name `destination` reaches as OpenSSH resolves it (`ssh -G`: the user's
/// configuration, or `config`, applies; nothing is connected to), if ssh answers.
pub fn hostname(destination: &str, config: Option<&Path>) -> Option<String> {
    let mut cmd = Command::new("ssh");
    if let Some(c) = config {
        cmd.arg("-F").arg(c);
    }
    let out = cmd
        .arg("-G")
        .arg("--")
        .arg(destination)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("hostname "))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

impl Ssh {
    /// Opens the master connection and waits until its socket accepts clients.
    /// `env`: extra variables for the master `ssh` (for example `SSH_AUTH_SOCK` of an agent
    /// a workflow started); the multiplexed commands need none, they reuse its connection.
    pub fn connect(
        destination: &str,
        config: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Ssh> {
        let ssh_err = |message: String| Error::Ssh {
            destination: destination.to_owned(),
            message,
        };
        let dir = control_dir(env)
            .map_err(|e| ssh_err(format!("cannot create a control directory: {e}")))?;
        let socket = dir.path().join("c");
        let mut cmd = Command::new("ssh");
        if let Some(c) = config {
            cmd.arg("-F").arg(c);
        }
        let mut master = cmd
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["-M", "-N", "-o", "ControlPersist=no", "-o", "BatchMode=yes"])
            .args(["-o", "ServerAliveInterval=15"])
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()))
            // Whatever the destination says, it is not an option.
            .arg("--")
            .arg(destination)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ssh_err(format!("cannot run ssh: {e}")))?;
        let started = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = master.try_wait() {
                let mut text = String::new();
                if let Some(mut e) = master.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut text);
                }
                return Err(ssh_err(format!(
                    "cannot connect ({status}): {}",
                    text.trim()
                )));
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = master.kill();
                let _ = master.wait();
                return Err(ssh_err("timed out connecting".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Ssh {
            destination: destination.to_owned(),
            config: config.map(Path::to_owned),
            socket,
            master,
            _dir: dir,
        })
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The master's socket, for running other tools (rsync) over the same connection.
    pub fn control_path(&self) -> &Path {
        &self.socket
    }

    /// `ssh` over the master, running `remote` (a shell command line) on the host.
    pub fn command(&self, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(c) = &self.config {
            cmd.arg("-F").arg(c);
        }
        cmd.args(["-T", "-o", "ControlMaster=no", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.socket.display()))
            .arg("--")
            .arg(&self.destination)
            .arg(remote);
        cmd
    }

    /// Runs a command to completion, feeding it `input`.
    pub fn run(&self, remote: &str) -> Result<Output> {
        self.command(remote)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Ssh {
                destination: self.destination.clone(),
                message: format!("cannot run ssh: {e}"),
            })
    }

    /// Starts a command with piped stdin and stdout.
    pub fn spawn(&self, remote: &str) -> Result<Child> {
        self.command(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::Ssh {
                destination: self.destination.clone(),
                message: format!("cannot run ssh: {e}"),
            })
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}
