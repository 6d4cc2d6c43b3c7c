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

mod accounts;
mod alerts;
mod artifacts;
mod concurrency;
mod db;
mod deployments;
mod ids;
mod intake;
mod jobs;
mod logs;
mod migrate;
mod monitors;
mod polled;
mod queue;
mod runners;
mod runs;
mod schedules;
mod secrets;
mod stats;
mod tokens;

use std::time::{SystemTime, UNIX_EPOCH};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use db::{Backend, Db, Row};

pub use accounts::User;
pub use alerts::{Alert, AlertCounts, NewAlert};
pub use artifacts::{ArtifactInfo, CacheEntry, Expired, FileEntry};
pub use concurrency::{Claim, Claimant};
pub use db::Held;
pub use deployments::{
    DEPLOYMENT_ENDS, Deployment, DeploymentEnd, EnvironmentMonitor, EnvironmentState,
    NewDeployment, WatchedUrl,
};
pub use ids::{Conclusion, JobId, JobStatus, RunId, RunStatus, RunnerId, TokenId};
pub use intake::{NewDelivery, PendingDelivery};
pub use jobs::{Job, NotRun};
pub use migrate::latest_version as schema_version;
pub use monitors::{Bucket, Change, Check, CheckRecord, Incident, MonitorState};
pub use queue::{Leased, Outcome, Released, Want};
pub use runners::Runner;
pub use runs::{NewRun, Run, RunFilter};
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
    /// A store call made inside another's on the same thread (a defect, reported, not a
    /// deadlock).
    #[error("a store call was made inside another one")]
    Reentered,
    #[error("run {0} does not exist")]
    NoRun(RunId),
    #[error("job {0} does not exist")]
    NoJob(JobId),
    #[error("deployment {0} does not exist")]
    NoDeployment(i64),
    /// A runner reported for a job it does not hold (lost its lease, or never had it).
    #[error("job {0} is not held by this runner")]
    NotHeld(JobId),
    /// A value the database holds that this release does not know (a status, a conclusion).
    #[error("the database holds an unknown {what} `{value}`")]
    Unknown { what: &'static str, value: String },
    /// The database was upgraded by a newer release: this one would misread it.
    #[error(
        "the database's schema is version {found}, newer than this pipewright knows (up to \
         {known}): it was upgraded by a newer release; run that release, or restore the \
         database's backup from before the upgrade"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// A schema migration failed; nothing of it was applied.
    #[error("schema migration {migration} failed (nothing of it was applied): {source}")]
    Migration {
        migration: String,
        #[source]
        source: Box<StoreError>,
    },
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

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, making or upgrading its
    /// schema.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = rusqlite::Connection::open(path)?;
        configure(&conn)?;
        crate::migrate::migrate(&mut conn)?;
        // Checkpoints (copying the WAL back into the database) run on a connection of their
        // own, so no commit waits for one while holding the store.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        conn.commit_hook(Some(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            false
        }));
        let checkpoints = rusqlite::Connection::open(path)?;
        checkpoints.busy_timeout(std::time::Duration::from_secs(5))?;
        checkpoints.pragma_update(None, "synchronous", "NORMAL")?;
        let main = Arc::new(db::SqliteConn::new(conn));
        let store = Arc::downgrade(&main);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(&checkpoints, &store, &commits, &stopped))
            .map_err(StoreError::Thread)?;
        Ok(Store {
            db: Backend::Sqlite(main),
            _checkpointer: Some(stop),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host:port/db`), making or upgrading
    /// the schema if needed.
    pub fn connect(url: &str) -> Result<Store> {
        let mut first = crate::db::PgConn::connect(url)?;
        // One server at a time makes or upgrades the schema.
        first.batch("SELECT pg_advisory_lock(7274617769)")?;
        let created = crate::migrate::migrate(&mut first);
        first.batch("SELECT pg_advisory_unlock(7274617769)")?;
        created?;
        Ok(Store {
            db: Backend::postgres(url, first),
            _checkpointer: None,
        })
    }

    /// Opens the database `url` names: `postgres://...`/`postgresql://...`, or
    /// `sqlite:PATH`; `default` (an SQLite file) when there is none.
    pub fn open_url(url: Option<&str>, default: &Path) -> Result<Store> {
        match url {
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Store::connect(u)
            }
            Some(u) => match u.strip_prefix("sqlite:") {
                Some(p) if !p.is_empty() => Store::open(Path::new(p)),
                _ => Store::open(default),
            },
            None => Store::open(default),
        }
    }

    /// The embedded database's one connection, held by this thread until the guard is
    /// dropped, if no other thread holds it: this thread's store calls meanwhile take it
    /// without waiting (and nothing else runs between them). `None` when another thread holds
    /// it, and always on PostgreSQL, whose every call waits on the network.
    pub fn hold_if_free(&self) -> Option<Held<'_>> {
        self.db.hold_if_free()
    }
}

pub(crate) fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// The store's settings of its SQLite connection.
/// How often the checkpointer looks at the store's commits.
const CHECKPOINT_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Commits after which the WAL is checkpointed even while commits go on (some thousand
/// pages: a few MiB of WAL at most).
const CHECKPOINT_COMMITS: u64 = 256;

/// Ticks after which commits are checkpointed even while they go on: with `synchronous =
/// NORMAL` the WAL reaches the disk when it is checkpointed, so this bounds what a power
/// loss can take (about a second of commits, as the earlier checkpoint every tick did
/// within a quarter of one).
const CHECKPOINT_TICKS: u32 = 4;

/// The SQLite checkpointer, on a thread and a connection of its own until `stopped`: it
/// copies the WAL back into the database once commits pause for a tick (or after
/// [`CHECKPOINT_COMMITS`] of them, or [`CHECKPOINT_TICKS`] ticks), and then begins the WAL
/// anew itself.
///
/// The first commit after a complete checkpoint starts the WAL from its beginning, which
/// writes and syncs its header even with `synchronous = NORMAL` (1.3 ms on this machine's
/// disk). Made by a store call, that sync was on a job's path: the first dispatch after a
/// pause paid it. The checkpointer makes that commit itself, on the store's connection
/// (between its calls), writing the database header's `user_version` as it is, so the
/// store's next commit appends to a WAL already begun. Made on the checkpointer's own
/// connection, that write cost the store's connection its page cache (SQLite drops a
/// connection's cache when another one has written), which it then read again.
/// An idle store is left alone: no commit since the last checkpoint, no checkpoint.
fn checkpointer(
    conn: &rusqlite::Connection,
    store: &std::sync::Weak<db::SqliteConn>,
    commits: &AtomicU64,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let (mut checkpointed, mut last_tick, mut ticks) = (0, 0, 0);
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stopped.recv_timeout(CHECKPOINT_TICK)
    {
        let now = commits.load(Ordering::Relaxed);
        let paused = now == last_tick;
        last_tick = now;
        if now == checkpointed {
            continue;
        }
        ticks += 1;
        let due = paused || now - checkpointed >= CHECKPOINT_COMMITS || ticks >= CHECKPOINT_TICKS;
        if !due {
            continue;
        }
        (checkpointed, ticks) = (now, 0);
        // (busy, frames in the WAL, frames copied back)
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match done {
            Ok((0, frames, copied)) if frames > 0 && frames == copied => {
                let Some(store) = store.upgrade() else {
                    continue;
                };
                let restart = store.with(|c| {
                    // A commit made since began the WAL itself.
                    if commits.load(Ordering::Relaxed) != now {
                        return Ok(None);
                    }
                    let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
                    c.pragma_update(None, "user_version", v)?;
                    // Counted by the hook: no other commit could come in between.
                    Ok(Some(commits.load(Ordering::Relaxed)))
                });
                match restart {
                    Ok(Some(counted)) => checkpointed = counted,
                    Ok(None) => {}
                    Err(e) => tracing::warn!("SQLite: beginning the WAL anew: {e}"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("SQLite checkpoint: {e}"),
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn configure(conn: &rusqlite::Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL with WAL loses at most the last transactions on power loss, never
    // consistency; a killed process loses nothing.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Pages kept by SQLite itself: 1 MiB (its default is 2 MiB, which the soak's database
    // filled within a thousand jobs and kept for good). Pages beyond it are read again from
    // the kernel's page cache, a copy of a few microseconds; the hot ones (the queue's
    // indexes, the tables' roots) stay.
    conn.pragma_update(None, "cache_size", -1024)?;
    // Room for every statement shape (log inserts come in 64 sizes).
    conn.set_prepared_statement_cache_capacity(256);
    // Plans that do not depend on the values bound: SQLite otherwise plans a `LIMIT ?n`
    // for the value bound, and marks the statement expired whenever that parameter is bound
    // (or the cache clears it), so each use of a cached statement was compiled again. With
    // it, a bound value never picks a plan: a partial index (`jobs_queued`, `WHERE status =
    // 'queued'`) serves a query that names its condition as a literal, never as `?n`.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::Store;
    use crate::queue::{Outcome, Want};
    use crate::runs::NewRun;

    /// How many times SQLite compiled a cached `LIMIT ?` query again over three uses.
    fn recompiled(conn: &rusqlite::Connection) -> i32 {
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
        let sql = "SELECT id FROM t WHERE id > ?1 ORDER BY id LIMIT ?2";
        for _ in 0..3 {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let ids: Vec<i64> = stmt
                .query_map((0, 2), |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(ids, [1, 2]);
        }
        let stmt = conn.prepare_cached(sql).unwrap();
        stmt.get_status(rusqlite::StatementStatus::RePrepare)
    }

    #[test]
    fn a_cached_statement_is_compiled_once() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        super::configure(&conn).unwrap();
        assert_eq!(recompiled(&conn), 0);
        // Without the setting, SQLite compiles it again at each use (the test's control).
        let plain = rusqlite::Connection::open_in_memory().unwrap();
        assert!(recompiled(&plain) >= 2);
    }

    #[test]
    fn a_thread_holding_the_embedded_connection_makes_its_calls_and_no_other_thread_gets_in() {
        for s in stores() {
            let backend = s.backend();
            let Some(held) = s.hold_if_free() else {
                // PostgreSQL's calls wait on the network: never made in place.
                assert_eq!(backend, "PostgreSQL");
                continue;
            };
            assert_eq!(backend, "SQLite");
            // Calls under the hold take the connection again at once, writes among them.
            let id = s.create_run(&new_run("acme/app")).unwrap();
            assert_eq!(s.run(id).unwrap().repo, "acme/app");
            std::thread::scope(|scope| {
                let (started, waiting) = std::sync::mpsc::channel();
                let store = &s;
                let other = scope.spawn(move || {
                    assert!(store.hold_if_free().is_none(), "held by the test's thread");
                    started.send(()).unwrap();
                    // A call from another thread waits for the hold to end.
                    store.create_run(&new_run("acme/other")).unwrap()
                });
                waiting.recv().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
                assert_eq!(s.runs(None, 10).unwrap().len(), 1);
                drop(held);
                let second = other.join().unwrap();
                assert_eq!(s.run(second).unwrap().repo, "acme/other");
            });
            // A call made inside another's closure is an error, not a deadlock, held or not.
            let held = s.hold_if_free().expect("free again");
            let inner = s.db.with(|_| Ok(s.run(id)));
            assert!(
                matches!(inner, Ok(Err(crate::StoreError::Reentered))),
                "{inner:?}"
            );
            // One hold a thread: not a second one inside the first.
            assert!(s.hold_if_free().is_none());
            drop(held);
            let inner = s.db.with(|_| Ok(s.run(id)));
            assert!(
                matches!(inner, Ok(Err(crate::StoreError::Reentered))),
                "{inner:?}"
            );
            // After which the store works as before, from any thread.
            assert_eq!(s.run(id).unwrap().repo, "acme/app");
            std::thread::scope(|scope| {
                let store = &s;
                scope.spawn(move || assert_eq!(store.run(id).unwrap().repo, "acme/app"));
            });
            // A thread holding one store's connection uses another store as usual.
            let other = stores().remove(0);
            let held = s.hold_if_free().unwrap();
            let elsewhere = other.create_run(&new_run("acme/else")).unwrap();
            assert_eq!(other.run(elsewhere).unwrap().repo, "acme/else");
            assert_eq!(s.run(id).unwrap().repo, "acme/app");
            drop(held);
        }
    }

    /// The WAL's checkpoint sequence number (its header's fourth big-endian word): one more
    /// each time the WAL is begun anew.
    fn wal_restarts(db: &std::path::Path) -> u32 {
        let wal = std::fs::read(db.with_extension("db-wal")).expect("the WAL");
        u32::from_be_bytes(wal[12..16].try_into().expect("a WAL header"))
    }

    #[test]
    fn the_checkpointer_begins_the_wal_anew_so_no_store_call_waits_for_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pipewright.db");
        let s = Store::open(&db).unwrap();
        let first = s.create_run(&new_run("acme/app")).unwrap();
        // Commits pause: the checkpointer copies them back and begins the WAL anew.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let before = wal_restarts(&db);
        while wal_restarts(&db) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not begun anew"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let begun = wal_restarts(&db);
        // The store's next commits append to it: none of them restarts it.
        let second = s.create_run(&new_run("acme/other")).unwrap();
        assert_eq!(wal_restarts(&db), begun);
        assert_eq!(s.run(first).unwrap().repo, "acme/app");
        assert_eq!(s.run(second).unwrap().repo, "acme/other");
        // What was checkpointed is in the database file itself: a copy of it alone has it.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&db, &copy).unwrap();
        let repo: String = rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT repo FROM runs WHERE id = ?1", [first.get()], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(repo, "acme/app");
        // An idle store is left alone: no checkpoint, no new beginning, no write.
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let idle = wal_restarts(&db);
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(wal_restarts(&db), idle);
        // Commits that never pause are checkpointed all the same, within about a second (a
        // power loss takes no more), long before 256 of them.
        let mut made = 0;
        while wal_restarts(&db) == idle {
            assert!(made < 100, "no checkpoint after {made} commits in 10 s");
            s.create_run(&new_run("acme/busy")).unwrap();
            made += 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The environment variable naming a PostgreSQL server (a URL whose user may create
    /// databases) on which every store test runs as well as on SQLite; `scripts/test` starts
    /// one and sets it.
    pub(crate) const POSTGRES_ENV: &str = "PIPEWRIGHT_TEST_POSTGRES";

    /// Where a test's store lives, so that it can be opened again.
    pub(crate) enum Place {
        Sqlite(tempfile::TempDir),
        /// The server's URL and the test's own database on it.
        Postgres {
            server: String,
            db: String,
        },
    }

    /// A test's store: an SQLite file in a directory of its own, or a database of its own on
    /// the PostgreSQL server of [`POSTGRES_ENV`] (dropped with it).
    pub(crate) struct TestStore {
        store: Option<Store>,
        pub(crate) place: Place,
    }

    impl std::ops::Deref for TestStore {
        type Target = Store;
        fn deref(&self) -> &Store {
            self.store.as_ref().expect("the store is open")
        }
    }

    impl TestStore {
        fn path(dir: &tempfile::TempDir) -> PathBuf {
            dir.path().join("db.sqlite")
        }

        /// The backend's name, for assertion messages.
        pub(crate) fn backend(&self) -> &'static str {
            match self.place {
                Place::Sqlite(_) => "SQLite",
                Place::Postgres { .. } => "PostgreSQL",
            }
        }

        fn url(server: &str, db: &str) -> String {
            let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
            format!("{base}/{db}")
        }

        /// Closes the store and opens it again (a restarted server).
        pub(crate) fn reopen(&mut self) {
            self.store = None;
            self.store = Some(self.open());
        }

        /// Closes the store, runs `sql` on the database with a connection of its own, and
        /// opens it again: a database changed behind the store's back (an older release's).
        pub(crate) fn alter(&mut self, sql: &str) {
            self.store = None;
            match &self.place {
                Place::Sqlite(d) => rusqlite::Connection::open(Self::path(d))
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap(),
                Place::Postgres { server, db } => {
                    postgres::Client::connect(&Self::url(server, db), postgres::NoTls)
                        .unwrap()
                        .batch_execute(sql)
                        .unwrap()
                }
            }
        }

        /// Opens the store (after [`TestStore::alter`]): the error, if it fails.
        pub(crate) fn try_open(&mut self) -> crate::Result<()> {
            let s = match &self.place {
                Place::Sqlite(d) => Store::open(&Self::path(d))?,
                Place::Postgres { server, db } => Store::connect(&Self::url(server, db))?,
            };
            self.store = Some(s);
            Ok(())
        }

        fn open(&mut self) -> Store {
            self.try_open().unwrap();
            self.store.take().unwrap()
        }
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            self.store = None;
            if let Place::Postgres { server, db } = &self.place
                && let Ok(mut c) = postgres::Client::connect(server, postgres::NoTls)
            {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            }
        }
    }

    /// An empty database of each backend (PostgreSQL when [`POSTGRES_ENV`] is set), made but
    /// not opened as a store.
    pub(crate) fn places() -> Vec<Place> {
        static N: AtomicU32 = AtomicU32::new(0);
        let mut out = vec![Place::Sqlite(tempfile::tempdir().unwrap())];
        if let Ok(server) = std::env::var(POSTGRES_ENV) {
            let db = format!(
                "store_test_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let mut c = postgres::Client::connect(&server, postgres::NoTls)
                .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={server}: {e}"));
            c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
            out.push(Place::Postgres { server, db });
        }
        out
    }

    /// A new store of each backend.
    pub(crate) fn stores() -> Vec<TestStore> {
        places()
            .into_iter()
            .map(|place| {
                let mut s = TestStore { store: None, place };
                s.reopen();
                s
            })
            .collect()
    }

    /// A database of each backend, to be filled by `sql` (an older release's) before the
    /// store opens it.
    pub(crate) fn unopened() -> Vec<TestStore> {
        places()
            .into_iter()
            .map(|place| TestStore { store: None, place })
            .collect()
    }

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

    pub(crate) fn outcome<'a>(
        conclusion: crate::Conclusion,
        lines: &'a [(i64, String)],
    ) -> Outcome<'a> {
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
