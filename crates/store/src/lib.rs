//! pipewright's persistent state: runs, their jobs (the unit runners take), log lines,
//! runners, secrets (sealed by the caller), webhook deliveries, artifact and cache manifests,
//! `concurrency` groups.
//!
//! Every state change goes through here, so a restarted server finds what the killed one
//! knew: nothing lives only in memory. Two backends behind the same API: SQLite (WAL mode, the
//! embedded default) and PostgreSQL (for a server with many runners, or several servers);
//! statements are written once for both (`db`), each backend's own in a module of its own.
//!
//! One module per aggregate, each with its own tests: `runs`, `jobs`, `queue` (leases,
//! heartbeats, reports), `logs`, `runners`, `tokens` (API tokens), `secrets`, `intake`
//! (webhook deliveries), `polled` (polled repositories), `schedules`, `artifacts` (and
//! caches), `concurrency` (groups), `stats` (`/metrics`). The schema is made and upgraded by
//! `migrate` from the numbered SQL files under `migrations/`.
//!
//! This crate knows nothing of HTTP, workflows or processes: it stores rows.

mod artifacts;
mod concurrency;
mod db;
mod intake;
mod jobs;
mod logs;
mod migrate;
mod polled;
mod queue;
mod runners;
mod runs;
mod schedules;
mod secrets;
mod stats;
mod tokens;

use std::time::{SystemTime, UNIX_EPOCH};

use db::{Backend, Row};

pub use artifacts::{ArtifactInfo, CacheEntry, Expired, FileEntry};
pub use concurrency::{Claim, Claimant};
pub use intake::{NewDelivery, PendingDelivery};
pub use jobs::Job;
pub use queue::{Leased, Outcome, Released, Want};
pub use runners::Runner;
pub use runs::{NewRun, Run};
pub use secrets::SealedSecret;
pub use stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The error and, when the server said why, its message.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("the database has no column `{0}` of the expected type")]
    Column(String),
    #[error("cannot start the SQLite checkpoint thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the statement returned no row")]
    NoRow,
    #[error("run {0} does not exist")]
    NoRun(i64),
    #[error("job {0} does not exist")]
    NoJob(i64),
    /// A runner reported for a job it does not hold (lost its lease, or never had it).
    #[error("job {0} is not held by this runner")]
    NotHeld(i64),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The store: SQLite or PostgreSQL behind one API. Every method is blocking; async callers
/// use `spawn_blocking`.
pub struct Store {
    db: Backend,
    /// SQLite: dropping it stops the checkpointer thread.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

pub(crate) fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::queue::{Outcome, Want};
    use crate::runs::NewRun;

    /// A push run of `ci.yml` in `repo`, for the crate's tests.
    pub(crate) fn new_run(repo: &str) -> NewRun {
        NewRun {
            repo: repo.into(),
            workflow: "ci.yml".into(),
            event: "push".into(),
            git_ref: "refs/heads/main".into(),
            sha: "abc".into(),
            event_json: "{}".into(),
            workflow_text: None,
            failure: None,
            held: false,
        }
    }

    pub(crate) fn outcome<'a>(conclusion: &'a str, lines: &'a [(i64, String)]) -> Outcome<'a> {
        Outcome {
            conclusion,
            report: "{}",
            lines,
            server: "me",
        }
    }

    pub(crate) fn want<'a>(labels: &'a [String], lease: &'a str, lease_ms: i64) -> Want<'a> {
        Want {
            labels,
            lease,
            lease_ms,
        }
    }
}
