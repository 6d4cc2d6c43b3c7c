//! `concurrency` groups, with GitHub's rules: in a group at most one job (or workflow) runs
//! and at most one waits. A newcomer replaces the waiting one, which is cancelled; with
//! `cancel-in-progress` it also cancels the running one. Where the groups live is the
//! [`ConcurrencyGroups`] a run is given: [`Groups`], in this process's memory, by default
//! (`pipewright run`); a server keeps them in its store, so that they hold across all the
//! runs of a repository whichever server process orchestrates them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Holding a group: the group is let go when it is dropped.
pub type GroupGuard = Box<dyn Send>;

pub type GroupFuture<'a> = Pin<Box<dyn Future<Output = Option<GroupGuard>> + Send + 'a>>;

/// Where a run's `concurrency` groups live.
///
/// Contract: `acquire` waits until `holder` may run in `group` and returns a guard that holds
/// the group until it is dropped; on its first look it takes the place of the one waiting
/// (which then gets `None`) and, with `cancel_in_progress`, has the one running cancelled.
/// While the guard is held the implementation may cancel `token` (a newcomer with
/// `cancel-in-progress`). `None`: replaced while waiting, or `token` was cancelled; nothing is
/// held then. `holder` names the job instance (its display name, unique within the run) or
/// the workflow (`workflow:FILE`) within its run, the same each time the run is walked, so
/// that a run taken up again after a restart finds the groups it held. Safe to call from
/// concurrent jobs.
pub trait ConcurrencyGroups: Send + Sync {
    fn acquire<'a>(
        &'a self,
        group: &'a str,
        holder: &'a str,
        cancel_in_progress: bool,
        token: &'a CancellationToken,
    ) -> GroupFuture<'a>;
}

#[derive(Default)]
struct Group {
    running: Option<CancellationToken>,
    /// The waiting one: its ticket and its token.
    pending: Option<(u64, CancellationToken)>,
}

/// A set of concurrency groups. Cheap to clone; clones share the groups.
#[derive(Clone, Default)]
pub struct Groups {
    inner: Arc<Mutex<HashMap<String, Group>>>,
    changed: Arc<Notify>,
    tickets: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").finish_non_exhaustive()
    }
}

/// Holding a group; dropping it lets the waiting one in.
struct Held {
    groups: Groups,
    name: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self
            .groups
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(g) = map.get_mut(&self.name) {
            g.running = None;
        }
        drop(map);
        self.groups.changed.notify_waiters();
    }
}

impl Groups {
    /// Waits for `group`; `None` if `token` was cancelled first (replaced while waiting, or
    /// the run was cancelled).
    async fn wait_for(
        &self,
        group: &str,
        cancel_in_progress: bool,
        token: &CancellationToken,
    ) -> Option<Held> {
        let ticket = self
            .tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut first = true;
        loop {
            let notified = self.changed.notified();
            {
                let mut map = self
                    .inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let g = map.entry(group.to_owned()).or_default();
                let my_turn = g.pending.as_ref().is_none_or(|(t, _)| *t == ticket);
                if g.running.is_none() && my_turn {
                    g.running = Some(token.clone());
                    g.pending = None;
                    return Some(Held {
                        groups: self.clone(),
                        name: group.to_owned(),
                    });
                }
                if first {
                    first = false;
                    if cancel_in_progress && let Some(r) = &g.running {
                        r.cancel();
                    }
                    if let Some((_, older)) = g.pending.replace((ticket, token.clone())) {
                        older.cancel();
                    }
                }
            }
            tokio::select! {
                () = notified => {}
                () = token.cancelled() => {
                    let mut map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(g) = map.get_mut(group)
                        && g.pending.as_ref().is_some_and(|(t, _)| *t == ticket)
                    {
                        g.pending = None;
                    }
                    drop(map);
                    self.changed.notify_waiters();
                    return None;
                }
            }
        }
    }
}

impl ConcurrencyGroups for Groups {
    fn acquire<'a>(
        &'a self,
        group: &'a str,
        _holder: &'a str,
        cancel_in_progress: bool,
        token: &'a CancellationToken,
    ) -> GroupFuture<'a> {
        Box::pin(async move {
            let held = self.wait_for(group, cancel_in_progress, token).await?;
            Some(Box::new(held) as GroupGuard)
        })
    }
}
