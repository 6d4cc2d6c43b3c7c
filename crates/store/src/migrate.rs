//! The schema.

use crate::db::Backend;
use crate::db::Db;
use crate::{Result, Store, StoreError};
use crate::{concurrency, stats};
use std::path::Path;
use std::sync::Mutex;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    workflow TEXT NOT NULL,
    event TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT,
    reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    event_json TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, id);
CREATE INDEX IF NOT EXISTS runs_repo ON runs(repo, id);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    job_id TEXT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    UNIQUE(run_id, name)
);
CREATE TABLE IF NOT EXISTS log_lines (
    job INTEGER NOT NULL REFERENCES jobs(id),
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (job, seq)
);
CREATE TABLE IF NOT EXISTS secrets (
    repo TEXT NOT NULL,
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, environment, name)
);
CREATE TABLE IF NOT EXISTS schedule_fires (
    repo TEXT NOT NULL,
    workflow TEXT NOT NULL,
    cron TEXT NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (repo, workflow, cron, minute)
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS polled_refs (
    repo TEXT NOT NULL,
    url TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repo, git_ref)
);
CREATE TABLE IF NOT EXISTS pending_deliveries (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    event_json TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runners (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    embedded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runner_tokens (
    hash TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);
-- Artifacts and caches (artifacts.rs): manifests of files whose contents are blobs in the
-- data directory, named by their BLAKE3 hash.
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    job TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE(run_id, name)
);
CREATE TABLE IF NOT EXISTS artifact_files (
    artifact INTEGER NOT NULL REFERENCES artifacts(id),
    path TEXT NOT NULL,
    mode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (artifact, path)
);
CREATE INDEX IF NOT EXISTS artifact_files_hash ON artifact_files(hash);
-- A cache entry belongs to a scope: the ref of the run that saved it (GitHub's rule: a run
-- reads its own ref's entries, then its base branch's, then the default branch's).
CREATE TABLE IF NOT EXISTS caches (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    scope TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER NOT NULL,
    UNIQUE(repo, scope, cache_key)
);
CREATE TABLE IF NOT EXISTS cache_files (
    cache INTEGER NOT NULL REFERENCES caches(id),
    path TEXT NOT NULL,
    mode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (cache, path)
);
CREATE INDEX IF NOT EXISTS cache_files_hash ON cache_files(hash);
";

/// Columns added to `runs` for re-runs; added to older databases.
pub(crate) const RUN_COLUMNS: &[(&str, &str)] = &[
    ("rerun_of", "INTEGER"),
    ("rerun_failed", "INTEGER NOT NULL DEFAULT 0"),
    ("workflow_text", "TEXT"),
    ("orchestrator", "TEXT"),
    ("orchestrator_until", "INTEGER"),
];

/// Columns added to `jobs` when jobs became units of scheduling; added to older databases.
pub(crate) const JOB_COLUMNS: &[(&str, &str)] = &[
    ("labels", "TEXT NOT NULL DEFAULT '[]'"),
    ("payload", "TEXT"),
    ("sealed", "BLOB"),
    ("runner_id", "INTEGER"),
    ("lease", "TEXT"),
    ("lease_until", "INTEGER"),
    ("attempt", "INTEGER NOT NULL DEFAULT 1"),
    ("report", "TEXT"),
    ("reason", "TEXT"),
    ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"),
    ("queued_at", "INTEGER"),
    ("log_archived", "INTEGER NOT NULL DEFAULT 0"),
    // The server that took the job's report (none: ended by a server itself).
    ("reported_by", "TEXT"),
    ("log_job", "INTEGER"),
];

/// Cache entries made before caches had scopes are dropped (they are caches: the next runs
/// make them again, each in its own scope), so the table is made anew with its scope. In
/// PostgreSQL; SQLite's is in [`Store::open`].
pub(crate) const UNSCOPED_CACHES_PG: &str = "DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.tables WHERE table_name = 'caches')
     AND NOT EXISTS (SELECT 1 FROM information_schema.columns
                     WHERE table_name = 'caches' AND column_name = 'scope') THEN
    DROP TABLE IF EXISTS cache_files;
    DROP TABLE caches;
  END IF;
END $$;";

/// The PostgreSQL form of the schema: the same tables, its own types.
pub(crate) fn postgres_schema() -> String {
    let mut s = SCHEMA
        .replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace("BLOB", "BYTEA");
    for (table, columns) in [("runs", RUN_COLUMNS), ("jobs", JOB_COLUMNS)] {
        for (name, decl) in columns {
            let decl = decl.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA");
            s.push_str(&format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {decl};\n"
            ));
        }
    }
    s
}

/// The jobs' indexes hold only the rows they are for: a job moving from queued to running to
/// completed is entered in one of them at each step, not in all three (PostgreSQL adds an
/// entry to every index a row is in at each of its updates). The first three lines drop the
/// indexes of stores made before.
pub(crate) const INDEXES: &str = "DROP INDEX IF EXISTS jobs_queue;
DROP INDEX IF EXISTS jobs_runner;
DROP INDEX IF EXISTS jobs_finished;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_running ON jobs(runner_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs(finished_at) WHERE finished_at IS NOT NULL;";

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL with WAL loses at most the last transactions on power loss, never
        // consistency; a killed process loses nothing.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Room for every statement shape (log inserts come in 64 sizes).
        conn.set_prepared_statement_cache_capacity(256);
        let cache_columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('caches')")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !cache_columns.is_empty() && !cache_columns.iter().any(|c| c == "scope") {
            // Made before caches had scopes: see UNSCOPED_CACHES_PG.
            conn.execute_batch("DROP TABLE IF EXISTS cache_files; DROP TABLE caches;")?;
        }
        conn.execute_batch(SCHEMA)?;
        for (table, columns) in [("runs", RUN_COLUMNS), ("jobs", JOB_COLUMNS)] {
            let have: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for (name, decl) in columns {
                if !have.iter().any(|h| h == name) {
                    conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {decl}"))?;
                }
            }
        }
        conn.execute_batch(INDEXES)?;
        conn.execute_batch(concurrency::SCHEMA)?;
        conn.execute_batch(&stats::sqlite_schema())?;
        // Checkpoints (copying the WAL back into the database) run on a connection of their
        // own, so no commit waits for one while holding the store.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = rusqlite::Connection::open(path)?;
        checkpoints.busy_timeout(std::time::Duration::from_secs(5))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(std::time::Duration::from_millis(250))
                {
                    if let Err(e) =
                        checkpoints.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("SQLite checkpoint: {e}");
                    }
                }
                let _ = checkpoints.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(StoreError::Thread)?;
        Ok(Store {
            db: Backend::Sqlite(Mutex::new(conn)),
            _checkpointer: Some(stop),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host:port/db`), creating the
    /// schema if needed.
    pub fn connect(url: &str) -> Result<Store> {
        let mut first = crate::db::PgConn::connect(url)?;
        // One server at a time creates the schema.
        first.batch("SELECT pg_advisory_lock(7274617769)")?;
        let created = first
            .batch(UNSCOPED_CACHES_PG)
            .and_then(|()| first.batch(&postgres_schema()))
            .and_then(|()| first.batch(INDEXES))
            .and_then(|()| first.batch(concurrency::SCHEMA))
            .and_then(|()| first.batch(&stats::postgres_schema()));
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
}
