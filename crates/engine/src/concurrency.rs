//! `concurrency` groups, with GitHub's rules: in a group at most one job (or workflow) runs
//! and at most one waits. A newcomer replaces the waiting one, which is cancelled; with
//! `cancel-in-progress` it also cancels the running one. A run has groups of its own unless
//! it is given shared ones (a server shares one set between all the runs of a repository:
//! [`Groups::scoped`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    /// Prefixed to every group name: groups of different scopes never meet.
    scope: Arc<str>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Holding a group; dropping it lets the waiting one in.
pub(crate) struct Held {
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
    /// The same set, its group names in `scope` (a repository): `scoped("a")` and
    /// `scoped("b")` share nothing, two `scoped("a")` share everything.
    pub fn scoped(&self, scope: &str) -> Groups {
        Groups {
            scope: scope.into(),
            ..self.clone()
        }
    }

    /// Waits for `group`; `None` if `token` was cancelled first (replaced while waiting, or
    /// the run was cancelled).
    pub(crate) async fn acquire(
        &self,
        group: &str,
        cancel_in_progress: bool,
        token: &CancellationToken,
    ) -> Option<Held> {
        let scoped = format!("{}\0{group}", self.scope);
        let group = scoped.as_str();
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
