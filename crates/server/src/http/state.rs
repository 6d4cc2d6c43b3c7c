//! What every handler shares ([`AppState`]), the runners' credential cache it holds, and
//! the limits on request bodies.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::config::Config;
use crate::lock;
use crate::logs::Live;

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) store: Arc<store::Store>,
    pub(crate) config: Arc<Config>,
    pub(crate) wake: Arc<Notify>,
    /// Runs this server made and took as it made them, for its executor to orchestrate.
    pub(crate) handed: tokio::sync::mpsc::UnboundedSender<store::Run>,
    pub(crate) live: broadcast::Sender<Live>,
    /// The token the repositories' post-receive hooks present.
    pub(crate) hook_token: String,
    /// Where webhook deliveries go (stored, then turned into runs).
    pub(crate) intake: crate::intake::Intake,
    pub(crate) sealer: Arc<crate::secrets::Sealer>,
    /// Signalled when jobs are queued (long-polling runners look).
    pub(crate) queued: Arc<Notify>,
    /// Signalled when jobs complete (their runs' dispatchers look).
    pub(crate) done: Arc<crate::dispatch::Waiters>,
    /// The server is stopping: long polls end, no job is handed out.
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// Runners known by credential (a cache of the store's rows).
    pub(crate) runners: Runners,
    /// This server's id among those sharing the database.
    pub(crate) me: String,
    /// What webhook bodies being read may hold ([`WEBHOOK_BUDGET`] KiB).
    pub(crate) webhook_budget: Arc<tokio::sync::Semaphore>,
    /// The admin token: configured, or made on first start (the API is never open).
    pub(crate) admin_token: String,
    /// Told when an alert was queued (the sender sends it at once).
    pub(crate) alerts: std::sync::Arc<tokio::sync::Notify>,
}

pub(crate) type AppStateRef = Arc<AppState>;

/// Webhook bodies above this are refused (GitHub's own limit is 25 MiB).
pub(super) const MAX_BODY: usize = 25 * 1024 * 1024;

/// The memory all webhook bodies being read may hold at once, in KiB: two bodies of the
/// largest size; more wait (then get 503), so unsigned bodies cannot fill the memory.
pub(crate) const WEBHOOK_BUDGET: usize = 2 * MAX_BODY / 1024 + 2;

/// Runners by credential hash, as read from the store, and when each was last noted as
/// seen. A cache: a runner's row never changes after registration (registering again makes
/// another runner), but it may be removed: an entry is believed for [`CREDENTIAL_TTL`] only
/// (a runner removed through another server stops within that time; through this one, at
/// once). The store remains the truth.
#[derive(Default)]
pub(crate) struct Runners {
    by_hash: std::sync::Mutex<
        std::collections::HashMap<String, (Arc<store::Runner>, tokio::time::Instant)>,
    >,
    seen: std::sync::Mutex<std::collections::HashMap<store::RunnerId, tokio::time::Instant>>,
}

/// How long a runner credential found in the store is believed without asking again.
const CREDENTIAL_TTL: Duration = Duration::from_secs(10);

/// A runner's `last_seen` is written at most this often.
const SEEN_EVERY: Duration = Duration::from_secs(5);

impl Runners {
    pub(super) fn get(&self, hash: &str) -> Option<Arc<store::Runner>> {
        let now = tokio::time::Instant::now();
        lock(&self.by_hash)
            .get(hash)
            .filter(|(_, at)| now.duration_since(*at) < CREDENTIAL_TTL)
            .map(|(r, _)| r.clone())
    }

    pub(super) fn put(&self, hash: String, runner: Arc<store::Runner>) {
        let mut map = lock(&self.by_hash);
        // Bounded: the runners of a server are few, a flood of made-up ones is not kept.
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(hash, (runner, tokio::time::Instant::now()));
    }

    /// Forgets runner `id` at once (it was removed).
    pub(super) fn forget(&self, id: store::RunnerId) {
        lock(&self.by_hash).retain(|_, (r, _)| r.id != id);
    }

    /// Whether `runner`'s `last_seen` is due to be written (and notes that it will be).
    pub(super) fn seen_due(&self, runner: store::RunnerId) -> bool {
        let now = tokio::time::Instant::now();
        let mut map = lock(&self.seen);
        match map.get(&runner) {
            Some(t) if now.duration_since(*t) < SEEN_EVERY => false,
            _ => {
                if map.len() >= 4096 {
                    map.clear();
                }
                map.insert(runner, now);
                true
            }
        }
    }
}
