//! What the local deployer and the host-side agent say to each other over the ssh channel:
//! JSON lines, and after a `File` line exactly `size` raw bytes of the file.
//!
//! The agent reads one [`Request`]; for a deploy it then reads [`Upload`]s until `Commit`.
//! From `Commit` on the agent no longer needs the connection: it finishes the deploy (or
//! rolls it back) even if the connection drops, and only reports [`Event`]s while it can.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::manifest::Manifest;
use crate::release::ReleaseInfo;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Deploy {
        settings: Settings,
        version: String,
        who: String,
        lock_wait_ms: u64,
        /// Run the `migrate` hook (and the database backup) here: only on the first host.
        migrate: bool,
        /// Tests only: `exit-after:PHASE` makes the agent die right after that step.
        #[serde(default)]
        fault: Option<String>,
        /// Several hosts: wait for [`Control::Switch`] after MIGRATE and for
        /// [`Control::Finalize`] after HEALTHCHECK, so that the deployer can switch hosts in
        /// batches and revert them all if one fails. A connection that drops while the agent
        /// waits means abort (before the switch) or revert (after it): versions never mix.
        #[serde(default)]
        coordinated: bool,
    },
    Rollback {
        settings: Settings,
        who: String,
        to: Option<String>,
        with_db: bool,
        lock_wait_ms: u64,
    },
    Releases {
        settings: Settings,
    },
    LockStatus {
        settings: Settings,
    },
    LockRelease {
        settings: Settings,
        force: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Upload {
    Manifest { manifest: Manifest },
    File { path: String, size: u64 },
    Commit,
}

/// The deployer's word at a coordinated deploy's waiting points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    Switch,
    Abort,
    Finalize,
    Revert,
}

/// How a command ended on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Deployed (or rolled back on request) and healthy.
    Ok,
    /// Failed before anything live changed.
    Failed,
    /// Failed and rolled back: the previous release serves and is healthy.
    RolledBack,
    /// Failed and the rollback failed too; the lock is kept with the reason.
    RollbackFailed,
    /// Another deploy holds the lock.
    Locked,
}

impl Outcome {
    /// The documented exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Failed => 1,
            Outcome::RolledBack => 3,
            Outcome::RollbackFailed => 4,
            Outcome::Locked => 5,
        }
    }

    /// The worse of two outcomes (for several hosts).
    pub fn worst(self, other: Outcome) -> Outcome {
        if other.exit_code() > self.exit_code() {
            other
        } else {
            self
        }
    }
}

/// Who holds (or kept) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub who: String,
    pub pid: u32,
    pub since: String,
    pub operation: String,
    /// Set when a failed rollback kept the lock: why.
    pub kept_reason: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} by {} since {} (pid {})",
            self.operation, self.who, self.since, self.pid
        )?;
        if let Some(r) = &self.kept_reason {
            write!(f, ", kept after a failed rollback: {r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Locked {
        holder: Holder,
    },
    Ready {
        release: String,
        previous: Option<String>,
    },
    Need {
        paths: Vec<String>,
        linked: usize,
    },
    Phase {
        phase: String,
        status: String,
        ms: u64,
        message: Option<String>,
    },
    Output {
        line: String,
    },
    /// Coordinated deploys: uploaded and prepared (and migrated), waiting for `Switch`.
    Prepared,
    /// Coordinated deploys: switched, restarted and healthy, waiting for `Finalize`.
    Switched,
    Message {
        text: String,
    },
    Result {
        outcome: Outcome,
        message: String,
        release: Option<String>,
    },
    Releases {
        releases: Vec<ReleaseInfo>,
    },
    Lock {
        holder: Option<Holder>,
        released: bool,
    },
}

/// Writes one JSON line and flushes.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Reads one JSON line; `Ok(None)` at the end of the stream.
pub fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A progress event as one line for people (`pipewright deploy`'s stderr, the workflow
/// action's log); `None` for events that are not progress.
pub fn describe(host: &str, ev: &Event) -> Option<String> {
    Some(match ev {
        Event::Phase {
            phase,
            status,
            ms,
            message,
        } => match (status.as_str(), message) {
            ("start", _) => return None,
            ("ok", _) => format!("{host}: {phase:<11} ok ({:.2}s)", *ms as f64 / 1e3),
            (_, m) => format!(
                "{host}: {phase:<11} FAILED ({:.2}s): {}",
                *ms as f64 / 1e3,
                m.as_deref().unwrap_or("")
            ),
        },
        Event::Ready { release, previous } => format!(
            "{host}: LOCK        ok: release {release}, current {}",
            previous.as_deref().unwrap_or("none")
        ),
        Event::Need { paths, linked } => format!(
            "{host}: {} files to send, {linked} unchanged (hard-linked)",
            paths.len()
        ),
        Event::Output { line } => format!("{host}:   {line}"),
        Event::Message { text } => format!("{host}: {text}"),
        Event::Locked { holder } => format!("{host}: locked: {holder}"),
        Event::Prepared => format!("{host}: prepared, waiting for the other hosts"),
        Event::Switched => format!("{host}: switched and healthy, waiting for the other hosts"),
        Event::Result { .. } | Event::Releases { .. } | Event::Lock { .. } => return None,
    })
}
