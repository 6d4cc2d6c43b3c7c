//! `concurrency` groups in the store ([`store::Store::claim_group`]): a run's jobs wait for,
//! hold and cancel each other's groups through rows, so the groups hold across every server
//! process on the database and across a restart or a take-over, not only within this
//! process.
//!
//! The store is polled, not notified: a waiter looks every [`WAIT_POLL`], a holder looks for
//! a cancellation asked of it every [`HOLDER_POLL`]. Groups are rare and these are single-row
//! statements.

use std::sync::Arc;
use std::time::Duration;

use crate::blocking::{Blocked, blocking};
use engine::{ConcurrencyGroups, GroupFuture, GroupGuard};
use store::{Claim, Claimant, Store};
use tokio_util::sync::CancellationToken;

/// How often a waiter looks whether it may take its group (or was replaced).
const WAIT_POLL: Duration = Duration::from_millis(150);
/// How often a holder looks whether a newcomer with `cancel-in-progress` asked it to stop.
const HOLDER_POLL: Duration = Duration::from_millis(200);

/// The groups of one run: its repository's, claimed as the run's jobs.
pub(crate) struct StoreGroups {
    pub(crate) store: Arc<Store>,
    /// The repository: groups of different repositories never meet.
    pub(crate) scope: String,
    pub(crate) run: store::RunId,
    /// This server's id, recorded with the claims.
    pub(crate) server: String,
    /// The server's shutdown: a group held when it comes is kept (see [`Held`]).
    pub(crate) shutdown: CancellationToken,
}

impl ConcurrencyGroups for StoreGroups {
    fn acquire<'a>(
        &'a self,
        group: &'a str,
        holder: &'a str,
        cancel_in_progress: bool,
        token: &'a CancellationToken,
    ) -> GroupFuture<'a> {
        Box::pin(async move {
            // A job that completed before its run was taken up again is not run again (its
            // report is kept): it neither waits for its group nor cancels the one holding it
            // now.
            let (store, run, name) = (self.store.clone(), self.run, holder.to_owned());
            if let Ok(true) = blocking(move || store.job_completed(run, &name)).await {
                return Some(Box::new(()) as GroupGuard);
            }
            let who = Claimant {
                run: self.run,
                key: holder.to_owned(),
                server: self.server.clone(),
            };
            let mut first = true;
            loop {
                let (store, scope, name, w) = (
                    self.store.clone(),
                    self.scope.clone(),
                    group.to_owned(),
                    who.clone(),
                );
                match blocking(move || {
                    store.claim_group(&scope, &name, &w, cancel_in_progress, first)
                })
                .await
                {
                    Ok(Claim::Held) => {
                        return Some(Box::new(self.held(group, who, token.clone())) as GroupGuard);
                    }
                    Ok(Claim::Replaced) => return None,
                    Ok(Claim::Waiting) => first = false,
                    // Tried again: a failed claim changed nothing.
                    Err(Blocked::Call(e)) => {
                        tracing::warn!(
                            run = self.run.get(),
                            group,
                            "claiming a concurrency group: {e}"
                        );
                    }
                    Err(Blocked::Task(_)) => tracing::warn!(
                        run = self.run.get(),
                        group,
                        "claiming a concurrency group: the task failed"
                    ),
                }
                tokio::select! {
                    () = tokio::time::sleep(WAIT_POLL) => {}
                    () = token.cancelled() => {
                        let (store, scope, name) = (self.store.clone(), self.scope.clone(), group.to_owned());
                        if let Err(Blocked::Call(e)) = blocking(move || store.withdraw_group(&scope, &name, &who)).await {
                            tracing::warn!(run = self.run.get(), group, "leaving a concurrency group's queue: {e}");
                        }
                        return None;
                    }
                }
            }
        })
    }
}

impl StoreGroups {
    /// The guard of a group just taken, watching for a cancellation asked of its holder.
    fn held(&self, group: &str, who: Claimant, token: CancellationToken) -> Held {
        let watcher = {
            let (store, scope, name, who) = (
                self.store.clone(),
                self.scope.clone(),
                group.to_owned(),
                who.clone(),
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HOLDER_POLL).await;
                    let (store, scope, name, who) =
                        (store.clone(), scope.clone(), name.clone(), who.clone());
                    if let Ok(true) =
                        blocking(move || store.group_cancel_requested(&scope, &name, &who)).await
                    {
                        token.cancel();
                        return;
                    }
                }
            })
        };
        Held {
            store: self.store.clone(),
            scope: self.scope.clone(),
            name: group.to_owned(),
            who,
            shutdown: self.shutdown.clone(),
            watcher,
        }
    }
}

/// Holding a group. Dropped when the job (or workflow) is done: the group is let go, on a
/// blocking thread. Dropped because the server is stopping (the orchestration is simply
/// abandoned, its state stored): the group is kept, for the server that takes the run up.
struct Held {
    store: Arc<Store>,
    scope: String,
    name: String,
    who: Claimant,
    shutdown: CancellationToken,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.watcher.abort();
        if self.shutdown.is_cancelled() {
            return;
        }
        let (store, scope, name, who) = (
            self.store.clone(),
            std::mem::take(&mut self.scope),
            std::mem::take(&mut self.name),
            self.who.clone(),
        );
        let release = move || {
            if let Err(e) = store.release_group(&scope, &name, &who) {
                // The slot stays held until the run completes (a completed run's slot is
                // free).
                tracing::warn!(run = who.run.get(), group = %name, "letting a concurrency group go: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}
