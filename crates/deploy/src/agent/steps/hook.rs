//! The configured commands (`install`, `migrate`, `restart`, the backup's database
//! commands, ...): `sh -c` in a release's directory, in a process group of its own, stopped
//! with all it started when it outlives `hooks.timeout`.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::Steps;
use crate::error::{Error, Result};
use crate::protocol::Event;

impl<R: BufRead, W: Write> Steps<'_, R, W> {
    /// Runs a hook with `sh -c` in a release's directory; its output goes to the release's
    /// log (not a pipe, so a server it starts in the background cannot hold the step open)
    /// and is then forwarded to the deployer.
    pub(super) fn hook(
        &mut self,
        name: &str,
        cmd: &str,
        release: &str,
        backup: Option<&str>,
    ) -> Result<()> {
        let dir = self.layout.release(release);
        let log_path = self.layout.log(release);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(Error::io("cannot open the log", &log_path))?;
        let start = log.metadata().map_or(0, |m| m.len());
        let err = log
            .try_clone()
            .map_err(Error::io("cannot open the log", &log_path))?;
        let previous = self
            .layout
            .read_journal()
            .and_then(|j| j.previous)
            .filter(|p| p != release)
            .map(|p| self.layout.release(&p));
        let compose = self.compose_env(release)?;
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .envs(&self.s.env)
            .envs(compose)
            .env("PIPEWRIGHT_ENVIRONMENT", &self.s.environment)
            .env("PIPEWRIGHT_RELEASE", release)
            .env("PIPEWRIGHT_RELEASE_DIR", &dir)
            .env("PIPEWRIGHT_DEPLOY_PATH", &self.layout.root)
            .env("PIPEWRIGHT_SHARED_DIR", self.layout.shared())
            .env(
                "PIPEWRIGHT_PREVIOUS_RELEASE_DIR",
                previous.unwrap_or_default(),
            )
            .env(
                "PIPEWRIGHT_BACKUP_DIR",
                backup.map(|b| self.layout.backup(b)).unwrap_or_default(),
            );
        let status = run_with_timeout(&mut c, self.s.hooks.timeout())
            .map_err(Error::io("cannot run the hook in", &dir))?;
        if let Ok(mut f) = fs::File::open(&log_path) {
            let mut text = String::new();
            let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start));
            let _ = f.read_to_string(&mut text);
            for line in text.lines() {
                self.ch.emit(&Event::Output {
                    line: format!("[{name}] {line}"),
                });
            }
        }
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(Error::Hook {
                hook: name.to_owned(),
                status: status.to_string(),
            }),
            None => Err(Error::HookTimedOut {
                hook: name.to_owned(),
                after: workflow::duration::format_duration(self.s.hooks.timeout()),
            }),
        }
    }
}

/// Runs `c` in a process group of its own; if it has not exited after `timeout`, the whole
/// group (what the command started too) is sent SIGTERM, then SIGKILL if any of it is still
/// there 5 s later, and the answer is `None`.
fn run_with_timeout(
    c: &mut Command,
    timeout: std::time::Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc::RecvTimeoutError;
    let mut child = c.process_group(0).spawn()?;
    let group = rustix::process::Pid::from_raw(child.id().cast_signed());
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("hook-wait".into())
        .spawn(move || {
            let _ = tx.send(child.wait());
        });
    if let Err(e) = waiter {
        // No thread for the waiter: the child was moved into the closure that failed to
        // start, and is dropped (not killed) with it. Its group is stopped here.
        if let Some(g) = group {
            let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
        }
        return Err(e);
    }
    match rx.recv_timeout(timeout) {
        Ok(status) => return status.map(Some),
        Err(RecvTimeoutError::Disconnected) => {
            return Err(std::io::Error::other("the hook's waiter went away"));
        }
        Err(RecvTimeoutError::Timeout) => {}
    }
    let Some(group) = group else {
        return Ok(None);
    };
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    // The shell usually ends at once; what it started may take its time, or ignore SIGTERM.
    let grace = Instant::now() + std::time::Duration::from_secs(5);
    while rustix::process::test_kill_process_group(group).is_ok() && Instant::now() < grace {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if rustix::process::test_kill_process_group(group).is_ok() {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = rx.recv();
    Ok(None)
}
