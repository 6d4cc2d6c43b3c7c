//! The deploy lock: an `flock` on `.pipewright/lock` held by the agent process, so it dies
//! with the process and is never stale. `lock.json` says who holds it; it outlives the
//! process only as a *kept* lock, after a rollback failed, until `deploy-lock release`.

use std::fs::{self, File};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, Result};
use crate::protocol::Holder;
use crate::release::{Layout, now_rfc3339, write_atomic};

pub(crate) struct Lock {
    /// Held open for the flock's lifetime.
    _file: File,
    layout: Layout,
}

fn info_path(layout: &Layout) -> std::path::PathBuf {
    layout.meta().join("lock.json")
}

pub(crate) fn read_holder(layout: &Layout) -> Option<Holder> {
    let b = fs::read(info_path(layout)).ok()?;
    serde_json::from_slice(&b).ok()
}

fn try_flock(layout: &Layout) -> Result<Option<File>> {
    let p = layout.meta().join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(Error::io("cannot open the lock", &p))?;
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(Error::Io {
            what: "cannot lock",
            path: p,
            source: e.into(),
        }),
    }
}

/// Takes the lock, waiting up to `wait`; `Err(holder)` if another process holds it or a
/// failed rollback kept it.
pub(crate) fn acquire(
    layout: &Layout,
    who: &str,
    operation: &str,
    wait: Duration,
) -> Result<std::result::Result<Lock, Holder>> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(file) = try_flock(layout)? {
            if let Some(h) = read_holder(layout)
                && h.kept_reason.is_some()
            {
                return Ok(Err(h));
            }
            let holder = Holder {
                who: who.to_owned(),
                pid: std::process::id(),
                since: now_rfc3339(),
                operation: operation.to_owned(),
                kept_reason: None,
            };
            write_atomic(
                &info_path(layout),
                &serde_json::to_vec(&holder).unwrap_or_default(),
            )?;
            return Ok(Ok(Lock {
                _file: file,
                layout: layout.clone(),
            }));
        }
        if Instant::now() >= deadline {
            let holder = read_holder(layout).unwrap_or(Holder {
                who: "unknown".into(),
                pid: 0,
                since: String::new(),
                operation: "unknown".into(),
                kept_reason: None,
            });
            return Ok(Err(holder));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Who holds the lock now, if anyone (a live process, or a kept lock).
pub(crate) fn status(layout: &Layout) -> Result<Option<Holder>> {
    match try_flock(layout)? {
        None => Ok(read_holder(layout)),
        Some(_free) => Ok(read_holder(layout).filter(|h| h.kept_reason.is_some())),
    }
}

/// Clears a kept lock; with `force`, also stops a live holder (SIGTERM to its pid).
pub(crate) fn release(layout: &Layout, force: bool) -> Result<std::result::Result<(), Holder>> {
    if try_flock(layout)?.is_none() {
        let Some(h) = read_holder(layout) else {
            return Ok(Ok(()));
        };
        if !force {
            return Ok(Err(h));
        }
        if let Some(pid) = rustix::process::Pid::from_raw(h.pid.cast_signed()) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    let _ = fs::remove_file(info_path(layout));
    Ok(Ok(()))
}

impl Lock {
    /// Keeps the lock after this process ends, with the reason.
    pub(crate) fn keep(self, reason: &str) {
        if let Some(mut h) = read_holder(&self.layout) {
            h.kept_reason = Some(reason.to_owned());
            let _ = write_atomic(
                &info_path(&self.layout),
                &serde_json::to_vec(&h).unwrap_or_default(),
            );
        }
        std::mem::forget(self);
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(info_path(&self.layout));
    }
}
