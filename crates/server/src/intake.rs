//! The webhook intake. A delivery is stored as soon as its signature is checked and answered
//! `202 Accepted` (the forge waits no longer than one small database write, shared with the
//! deliveries that arrived meanwhile); a task then reads the commit's workflows and turns it
//! into runs. Removing a delivery and creating its runs is one transaction, so every delivery
//! is queued exactly once, across restarts (pending deliveries are taken up again) and across
//! servers sharing a database.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::blocking::{Blocked, blocking};
use crate::config::Config;
use crate::trigger::{self, Event};

/// How many deliveries are stored in one transaction, and turned into runs in one.
const BATCH: usize = 512;
/// A delivery whose commit cannot be read is tried this many times (1 s, 2 s, 4 s, ... apart),
/// then dropped with an error in the log.
const MAX_ATTEMPTS: i64 = 6;

#[derive(Debug, thiserror::Error)]
pub(crate) enum IntakeError {
    #[error("storing the delivery: {0}")]
    Store(Arc<store::StoreError>),
    #[error("the server is stopping")]
    Stopped,
    #[error("the task storing deliveries failed")]
    Task,
}

struct Item {
    delivery: store::NewDelivery,
    reply: oneshot::Sender<Result<Option<i64>, IntakeError>>,
}

/// The handle the webhook routes give deliveries to.
pub(crate) struct Intake {
    tx: mpsc::Sender<Item>,
}

impl Intake {
    /// Starts the writer (stores deliveries in batches) and the processor (turns them into
    /// runs, waking `runs_queued`); both stop with `shutdown`.
    pub(crate) fn start(
        store: Arc<store::Store>,
        config: Arc<Config>,
        runs_queued: Arc<Notify>,
        poll_now: Arc<crate::poll::PollNow>,
        shutdown: CancellationToken,
    ) -> (Intake, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * BATCH);
        let pending = Arc::new(Notify::new());
        let writer = tokio::spawn(writer(store.clone(), rx, pending.clone()));
        let processor = tokio::spawn(processor(
            store,
            config,
            pending,
            runs_queued,
            poll_now,
            shutdown,
        ));
        let both = tokio::spawn(async move {
            let _ = processor.await;
            writer.abort();
        });
        (Intake { tx }, both)
    }

    /// Stores a delivery; its pending id, or `None` for a redelivery (its key was seen).
    pub(crate) async fn accept(
        &self,
        delivery: store::NewDelivery,
    ) -> Result<Option<i64>, IntakeError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Item { delivery, reply })
            .await
            .map_err(|_| IntakeError::Stopped)?;
        answer.await.map_err(|_| IntakeError::Stopped)?
    }
}

/// Stores deliveries as they come, all those waiting in one transaction.
async fn writer(store: Arc<store::Store>, mut rx: mpsc::Receiver<Item>, pending: Arc<Notify>) {
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < BATCH {
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let (deliveries, replies): (Vec<_>, Vec<_>) =
            items.into_iter().map(|i| (i.delivery, i.reply)).unzip();
        let store = store.clone();
        let stored = blocking(move || store.accept_deliveries(&deliveries)).await;
        match stored {
            Ok(ids) => {
                for (reply, id) in replies.into_iter().zip(ids) {
                    let _ = reply.send(Ok(id));
                }
                pending.notify_one();
            }
            Err(Blocked::Call(e)) => {
                tracing::error!("storing webhook deliveries: {e}");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(IntakeError::Store(e.clone())));
                }
            }
            // The store call panicked: nothing is known to be stored.
            Err(Blocked::Task(e)) => {
                tracing::error!("storing webhook deliveries: {e}");
                for reply in replies {
                    let _ = reply.send(Err(IntakeError::Task));
                }
            }
        }
    }
}

/// Turns pending deliveries into runs until shutdown: at once when deliveries are stored,
/// every second while some wait for a retry, and at start (a stopped server's leftovers).
async fn processor(
    store: Arc<store::Store>,
    config: Arc<Config>,
    pending: Arc<Notify>,
    runs_queued: Arc<Notify>,
    poll_now: Arc<crate::poll::PollNow>,
    shutdown: CancellationToken,
) {
    loop {
        let notified = pending.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (s, c, p) = (store.clone(), config.clone(), poll_now.clone());
        let outcome = blocking(move || process_batch(&s, &c, &p)).await;
        let mut waiting = false;
        match outcome {
            Ok(done) => {
                if done.runs > 0 {
                    runs_queued.notify_waiters();
                }
                if done.taken == BATCH {
                    continue; // more are waiting
                }
                waiting = done.left > 0;
            }
            Err(Blocked::Call(e)) => {
                tracing::error!("turning webhook deliveries into runs: {e}");
                waiting = true;
            }
            Err(Blocked::Task(e)) => tracing::error!("webhook intake task: {e}"),
        }
        let retry = if waiting {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(retry) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

struct Processed {
    /// Deliveries taken from the store.
    taken: usize,
    /// Runs created.
    runs: usize,
    /// Deliveries still pending (waiting for a retry).
    left: i64,
}

fn process_batch(
    store: &store::Store,
    config: &Config,
    poll_now: &crate::poll::PollNow,
) -> Result<Processed, store::StoreError> {
    let limit = i64::try_from(BATCH).unwrap_or(i64::MAX);
    let pending = store.pending_deliveries(limit)?;
    let mut resolved = Vec::with_capacity(pending.len());
    for d in &pending {
        let Some(repo) = config.repo(&d.repo) else {
            tracing::warn!(repo = %d.repo, "a delivery for a repository no longer configured: dropped");
            resolved.push((d.id, Vec::new()));
            continue;
        };
        let event: Event = match serde_json::from_str(&d.event_json) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(delivery = d.id, "a stored delivery cannot be read: {e}");
                resolved.push((d.id, Vec::new()));
                continue;
            }
        };
        // A polled repository's push is the poll's to queue: fetched now, queued once.
        if event.name == "push" && poll_now.poll(&repo.name) {
            resolved.push((d.id, Vec::new()));
            continue;
        }
        match trigger::plan(repo, &event) {
            Ok(runs) => resolved.push((d.id, runs)),
            Err(e) if d.attempts + 1 < MAX_ATTEMPTS => {
                tracing::warn!(repo = %d.repo, sha = %event.sha, attempt = d.attempts + 1,
                    "a delivery's commit cannot be read, trying again: {e}");
                store.retry_delivery(d.id, 1000 << d.attempts)?;
            }
            Err(e) => {
                tracing::error!(repo = %d.repo, sha = %event.sha,
                    "a delivery dropped after {MAX_ATTEMPTS} attempts: {e}");
                resolved.push((d.id, Vec::new()));
            }
        }
    }
    let runs = store.resolve_deliveries(&resolved)?.len();
    let left = if pending.len() > resolved.len() {
        store.pending_count()?
    } else {
        0
    };
    Ok(Processed {
        taken: pending.len(),
        runs,
        left,
    })
}
