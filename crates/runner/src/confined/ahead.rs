//! Work done ahead for a slot's next job (its process started, its directory readied) and
//! beside a running one (the record of its process), at the lowest CPU priority Linux has
//! (`SCHED_IDLE`) until a job waits for it.
//!
//! On a machine with few CPUs this work would otherwise take a CPU from what a job waits on:
//! the job that runs, the server recording its end, the next job's dispatch. It is worth it
//! where the work is dear: on an ext4 without a journal, readying a slot costs milliseconds of
//! system CPU (docs/performance.md, 2026-12-07, evening); on tmpfs it made no difference. A thread or
//! process of `SCHED_IDLE` runs only on a CPU nothing else wants, and gives it up at once
//! when something wakes there. Once a job waits for the work (its slot's readying, its
//! process), it is raised to the normal policy, so a job never waits behind other jobs'
//! steps for its own preparation; a job's process is raised before it is handed its job, so
//! nothing of a job (its steps) ever runs at the lower priority.
//!
//! Raising a thread back from `SCHED_IDLE` takes `CAP_SYS_NICE` (a root runner has it, unless
//! its container drops it) or an `RLIMIT_NICE` of 20; without either, nothing is lowered
//! ([`available`]).
//!
//! Not nice 19: tried first (docs/performance.md, 2026-12-06), it made no difference. A woken
//! task competes with a nice-19 one by their virtual times; it takes the CPU from a
//! `SCHED_IDLE` one at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};

use super::Ended;

/// Work done ahead for slots on the runtime's blocking pool, by slot: what a slot's next
/// job takes, waiting for it if it is not done yet (raising it then).
pub(super) struct Ahead<T>(Arc<Mutex<HashMap<usize, Started<T>>>>);

/// A piece of work started ahead: its task, and its lowering.
type Started<T> = (tokio::task::JoinHandle<T>, Arc<Lowering>);

impl<T> Default for Ahead<T> {
    fn default() -> Self {
        Ahead(Arc::default())
    }
}

impl<T> Clone for Ahead<T> {
    fn clone(&self) -> Self {
        Ahead(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Ahead<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Ahead({n} slots)")
    }
}

impl<T: Send + Default + 'static> Ahead<T> {
    /// Does `work` for slot `slot` on the blocking pool, lowered, once `after` is over, in
    /// place of what was there.
    pub(super) fn start(
        &self,
        slot: usize,
        after: Ended,
        work: impl FnOnce() -> T + Send + 'static,
    ) {
        let (lowered, lowering) = lowered(work);
        let handle = if after.0.is_cancelled() {
            tokio::task::spawn_blocking(lowered)
        } else {
            tokio::spawn(async move {
                after.0.cancelled().await;
                tokio::task::spawn_blocking(lowered)
                    .await
                    .unwrap_or_default()
            })
        };
        if let Ok(mut m) = self.0.lock() {
            m.insert(slot, (handle, lowering));
        }
    }

    /// What was done for slot `slot`, once done (raised meanwhile); `None` if nothing was
    /// started.
    pub(super) async fn take(&self, slot: usize) -> Option<T> {
        let (handle, lowering) = self.0.lock().ok()?.remove(&slot)?;
        lowering.raise();
        handle.await.ok()
    }
}

/// `work`, made to run lowered on the thread that runs it, and its [`Lowering`] (to raise it).
pub(super) fn lowered<T>(
    work: impl FnOnce() -> T + Send + 'static,
) -> (impl FnOnce() -> T + Send + 'static, Arc<Lowering>) {
    let lowering = Arc::new(Lowering::default());
    let on_its_thread = lowering.clone();
    let run = move || {
        let _lowered = on_its_thread.lower();
        work()
    };
    (run, lowering)
}

/// A piece of work that runs lowered ([`Lowering::lower`] on its thread) until someone
/// waits for it ([`Lowering::raise`], from any thread).
#[derive(Debug, Default)]
pub(super) struct Lowering {
    /// The thread doing the work while it is lowered (0: none).
    thread: AtomicI32,
    /// Someone waits for the work: it is not (or no longer) lowered.
    wanted: AtomicBool,
}

impl Lowering {
    /// Lowers this thread until the guard is dropped, unless the work is already wanted.
    pub(super) fn lower(&self) -> Lowered<'_> {
        if self.wanted.load(SeqCst) || !available() {
            return Lowered(None);
        }
        self.thread.store(nix::unistd::gettid().as_raw(), SeqCst);
        let _ = set_idle(0, true);
        // Wanted meanwhile: whoever wants it may have looked for the thread too early.
        if self.wanted.load(SeqCst) {
            let _ = set_idle(0, false);
        }
        Lowered(Some(self))
    }

    /// Raises the work's thread if it is lowered; the work is never lowered from now on.
    pub(super) fn raise(&self) {
        self.wanted.store(true, SeqCst);
        let thread = self.thread.load(SeqCst);
        if thread > 0 {
            let _ = set_idle(thread, false);
        }
    }
}

/// A thread lowered for a piece of work: back to the normal policy when dropped.
pub(super) struct Lowered<'a>(Option<&'a Lowering>);

impl Drop for Lowered<'_> {
    fn drop(&mut self) {
        if let Some(lowering) = self.0 {
            lowering.thread.store(0, SeqCst);
            let _ = set_idle(0, false);
        }
    }
}

/// Raises process `pid` (a job's process started by a lowered thread, which it took its
/// policy from) to the normal policy, before it is handed its job.
pub(super) fn raise_process(pid: i32) {
    if available()
        && let Err(e) = set_idle(pid, false)
    {
        tracing::warn!(pid, "a job's process keeps the lowest CPU priority: {e}");
    }
}

/// Whether this process may lower its threads and raise them again: tried once, on a
/// thread of its own, which ends lowered if it could not be raised. Only from the normal
/// policy: a runner its admin started with another (`chrt`) is left as it is, its jobs too.
fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::thread::spawn(|| {
            normal_policy() && set_idle(0, true).is_ok() && set_idle(0, false).is_ok()
        })
        .join()
        .unwrap_or(false)
    })
}

/// Sets thread (or single-threaded process) `tid` (0: the calling thread) to `SCHED_IDLE`,
/// or back to the normal policy (`SCHED_OTHER`, its nice value kept).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_idle(tid: i32, idle: bool) -> std::io::Result<()> {
    let policy = if idle {
        nix::libc::SCHED_IDLE
    } else {
        nix::libc::SCHED_OTHER
    };
    let param = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the one `sched_param` it is given by reference, which
    // outlives the call, and changes nothing but the scheduling of thread `tid`.
    let done = unsafe { nix::libc::sched_setscheduler(tid, policy, &param) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the calling thread is scheduled with the normal policy (`SCHED_OTHER`).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn normal_policy() -> bool {
    // SAFETY: sched_getscheduler takes a thread id and returns an integer (-1 on error).
    unsafe { nix::libc::sched_getscheduler(0) == nix::libc::SCHED_OTHER }
}

#[cfg(not(target_os = "linux"))]
fn set_idle(_tid: i32, _idle: bool) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(not(target_os = "linux"))]
fn normal_policy() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of thread `tid` of this process (`/proc/.../stat`, field 41):
    /// 0 is `SCHED_OTHER`, 5 `SCHED_IDLE`.
    fn policy(tid: i32) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // Field 41 counted from 1, the first two (pid, comm) before the split.
        fields[41 - 3].parse().unwrap()
    }

    fn me() -> i32 {
        nix::unistd::gettid().as_raw()
    }

    #[test]
    fn lowered_work_runs_idle_until_wanted_and_its_thread_is_normal_after() {
        if !available() {
            eprintln!("skipped: this process may not raise a thread it lowered (no CAP_SYS_NICE)");
            return;
        }
        let lowering = Arc::new(Lowering::default());
        let (told, waits) = std::sync::mpsc::channel::<()>();
        let (said, hears) = std::sync::mpsc::channel::<u32>();
        let worker = std::thread::spawn({
            let lowering = lowering.clone();
            move || {
                let lowered = lowering.lower();
                said.send(policy(me())).unwrap();
                waits.recv().unwrap();
                said.send(policy(me())).unwrap();
                drop(lowered);
                policy(me())
            }
        });
        assert_eq!(hears.recv().unwrap(), 5, "lowered while nobody waits");
        lowering.raise();
        told.send(()).unwrap();
        assert_eq!(hears.recv().unwrap(), 0, "raised once wanted");
        assert_eq!(worker.join().unwrap(), 0, "normal again after the work");
    }

    #[test]
    fn work_wanted_before_it_starts_is_never_lowered() {
        let lowering = Lowering::default();
        lowering.raise();
        let lowered = lowering.lower();
        assert_eq!(policy(me()), 0);
        drop(lowered);
        assert_eq!(policy(me()), 0);
    }
}
