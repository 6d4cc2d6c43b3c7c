//! The host side: one process per command (`pipewright deploy-agent`, started over ssh),
//! reading a [`Request`] on stdin and reporting [`Event`]s on stdout. It holds the lock,
//! keeps the journal and runs the steps; once an upload is committed it finishes on its own,
//! so a dropped connection never leaves a deploy half done.

pub mod entry;
mod lock;
mod steps;

use std::io::{BufRead, Write};
use std::time::Duration;

use crate::error::Result;
use crate::protocol::{Event, Outcome, Request, recv, send};
use crate::release::Layout;

/// The agent's end of the channel: events go out while the connection lasts.
pub(crate) struct Channel<R, W> {
    pub(crate) input: R,
    out: Option<W>,
}

impl<R: BufRead, W: Write> Channel<R, W> {
    pub(crate) fn emit(&mut self, ev: &Event) {
        if let Some(w) = &mut self.out
            && send(w, ev).is_err()
        {
            // The deployer is gone; carry on without it.
            self.out = None;
        }
    }

    pub(crate) fn message(&mut self, text: impl Into<String>) {
        self.emit(&Event::Message { text: text.into() });
    }
}

/// Serves one request. Returns the exit code of the agent process (the outcome's).
pub fn serve(input: impl BufRead, output: impl Write) -> u8 {
    let mut ch = Channel {
        input,
        out: Some(output),
    };
    let req: Request = match recv(&mut ch.input) {
        Ok(Some(r)) => r,
        Ok(None) => return 1,
        Err(e) => {
            ch.emit(&Event::Result {
                outcome: Outcome::Failed,
                message: format!("bad request: {e}"),
                release: None,
            });
            return 2;
        }
    };
    let outcome = match handle(&mut ch, req) {
        Ok(o) => o,
        Err(e) => {
            ch.emit(&Event::Result {
                outcome: Outcome::Failed,
                message: e.to_string(),
                release: None,
            });
            Outcome::Failed
        }
    };
    outcome.exit_code()
}

/// Takes the deploy path's lock for `operation`, waiting up to `wait_ms`; when another
/// process holds it, tells the deployer who and returns `None`.
fn take_lock<R: BufRead, W: Write>(
    ch: &mut Channel<R, W>,
    path: &str,
    who: &str,
    operation: &str,
    wait_ms: u64,
) -> Result<Option<lock::Lock>> {
    let layout = Layout::new(path);
    layout.create_dirs()?;
    match lock::acquire(&layout, who, operation, Duration::from_millis(wait_ms))? {
        Ok(l) => Ok(Some(l)),
        Err(holder) => {
            ch.emit(&Event::Locked { holder });
            Ok(None)
        }
    }
}

fn handle<R: BufRead, W: Write>(ch: &mut Channel<R, W>, req: Request) -> Result<Outcome> {
    match req {
        Request::Deploy {
            settings,
            version,
            who,
            lock_wait_ms,
            migrate,
            fault,
            coordinated,
        } => {
            let Some(lock) = take_lock(ch, &settings.path, &who, "deploy", lock_wait_ms)? else {
                return Ok(Outcome::Locked);
            };
            let mut s = steps::Steps::new(ch, &settings, &who, fault);
            s.repair()?;
            let outcome = s.deploy(&version, migrate, coordinated);
            s.finish(lock, outcome)
        }
        Request::Rollback {
            settings,
            who,
            to,
            with_db,
            lock_wait_ms,
        } => {
            let Some(lock) = take_lock(ch, &settings.path, &who, "rollback", lock_wait_ms)? else {
                return Ok(Outcome::Locked);
            };
            let mut s = steps::Steps::new(ch, &settings, &who, None);
            let repaired = s.repair()?;
            // A repair that rolled back is the rollback the user asked for.
            let outcome = if repaired && to.is_none() {
                s.result_from_repair()
            } else {
                s.rollback(to.as_deref(), with_db)
            };
            s.finish(lock, outcome)
        }
        Request::Releases { settings } => {
            let layout = Layout::new(&settings.path);
            if layout.meta().is_dir() && layout.read_journal().is_some() {
                // An interrupted deploy: repair it first, under the lock, if it is free.
                if let Ok(lock) =
                    lock::acquire(&layout, "pipewright releases", "repair", Duration::ZERO)?
                {
                    let mut s = steps::Steps::new(ch, &settings, "pipewright releases", None);
                    s.repair()?;
                    drop(lock);
                }
            }
            ch.emit(&Event::Releases {
                releases: layout.list(),
            });
            Ok(Outcome::Ok)
        }
        Request::LockStatus { settings } => {
            let layout = Layout::new(&settings.path);
            let holder = if layout.meta().is_dir() {
                lock::status(&layout)?
            } else {
                None
            };
            ch.emit(&Event::Lock {
                holder,
                released: false,
            });
            Ok(Outcome::Ok)
        }
        Request::LockRelease { settings, force } => {
            let layout = Layout::new(&settings.path);
            if !layout.meta().is_dir() {
                ch.emit(&Event::Lock {
                    holder: None,
                    released: true,
                });
                return Ok(Outcome::Ok);
            }
            match lock::release(&layout, force)? {
                Ok(()) => {
                    ch.emit(&Event::Lock {
                        holder: None,
                        released: true,
                    });
                    Ok(Outcome::Ok)
                }
                Err(holder) => {
                    ch.emit(&Event::Locked { holder });
                    Ok(Outcome::Locked)
                }
            }
        }
    }
}
