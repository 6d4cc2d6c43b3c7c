//! pipewright's persistent state: runs, their jobs and steps, log lines, webhook deliveries.
//!
//! Every state change of a run goes through here, so a restarted server finds what the killed
//! one knew: no run lives only in memory. The embedded backend is SQLite (WAL mode); the
//! PostgreSQL backend is to come behind the same API.
//!
//! This crate knows nothing of HTTP, workflows or processes: it stores rows.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("run {0} does not exist")]
    NoRun(i64),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A workflow run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: i64,
    pub repo: String,
    pub workflow: String,
    pub event: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    /// `queued`, `running` or `completed`.
    pub status: String,
    /// `success`, `failure`, `cancelled`, `skipped`, or null while not completed.
    pub conclusion: Option<String>,
    /// Why a run ended the way it did when no job says it (invalid workflow, server restart).
    pub reason: Option<String>,
    pub attempt: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The event's details as JSON (base ref, inputs, payload), for the runner.
    #[serde(skip)]
    pub event_json: String,
    #[serde(skip)]
    pub cancel_requested: bool,
}

/// What a trigger asks for.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub repo: String,
    pub workflow: String,
    pub event: String,
    pub git_ref: String,
    pub sha: String,
    pub event_json: String,
}

/// A job instance of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: i64,
    pub run_id: i64,
    /// The job's display name, unique within the run (`test (3.11)`).
    pub name: String,
    pub job_id: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A secret as stored: its scope (empty strings for the wider scopes) and sealed value.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    pub repo: String,
    pub environment: String,
    pub name: String,
    pub sealed: Vec<u8>,
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub runs_by_conclusion: Vec<(String, i64)>,
    pub jobs_by_conclusion: Vec<(String, i64)>,
    pub runs_by_status: Vec<(String, i64)>,
    pub job_durations_ms: Vec<i64>,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub job: i64,
    pub seq: i64,
    pub text: String,
}

const SCHEMA: &str = "
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
";

/// The SQLite store. One connection behind a mutex: SQLite serialises writers anyway, and
/// the statements are short.
pub struct Store {
    conn: Mutex<Connection>,
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get("id")?,
        repo: r.get("repo")?,
        workflow: r.get("workflow")?,
        event: r.get("event")?,
        git_ref: r.get("git_ref")?,
        sha: r.get("sha")?,
        status: r.get("status")?,
        conclusion: r.get("conclusion")?,
        reason: r.get("reason")?,
        attempt: r.get("attempt")?,
        created_at: r.get("created_at")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
        event_json: r.get("event_json")?,
        cancel_requested: r.get::<_, i64>("cancel_requested")? != 0,
    })
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get("id")?,
        run_id: r.get("run_id")?,
        name: r.get("name")?,
        job_id: r.get("job_id")?,
        status: r.get("status")?,
        conclusion: r.get("conclusion")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
    })
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL with WAL loses at most the last transactions on power loss, never
        // consistency; a killed process loses nothing.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn create_run(&self, new: &NewRun) -> Result<i64> {
        let c = self.conn();
        c.execute(
            "INSERT INTO runs (repo, workflow, event, git_ref, sha, status, created_at, event_json)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)",
            params![
                new.repo,
                new.workflow,
                new.event,
                new.git_ref,
                new.sha,
                now_ms(),
                new.event_json
            ],
        )?;
        Ok(c.last_insert_rowid())
    }

    /// Records a run that could not start (an invalid workflow): completed, failed, with why.
    pub fn create_failed_run(&self, new: &NewRun, reason: &str) -> Result<i64> {
        let id = self.create_run(new)?;
        self.finish_run(id, "failure", Some(reason))?;
        Ok(id)
    }

    pub fn run(&self, id: i64) -> Result<Run> {
        self.conn()
            .query_row("SELECT * FROM runs WHERE id = ?1", [id], run_from_row)
            .optional()?
            .ok_or(StoreError::NoRun(id))
    }

    /// Runs newest first, of one repository or all.
    pub fn runs(&self, repo: Option<&str>, limit: i64) -> Result<Vec<Run>> {
        let c = self.conn();
        let mut stmt = c.prepare(
            "SELECT * FROM runs WHERE (?1 IS NULL OR repo = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![repo, limit], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Takes the oldest queued run and marks it running, atomically.
    pub fn take_queued(&self) -> Result<Option<Run>> {
        let c = self.conn();
        Ok(c.query_row(
            "UPDATE runs SET status = 'running', started_at = ?1
             WHERE id = (SELECT id FROM runs WHERE status = 'queued' ORDER BY id LIMIT 1)
             RETURNING *",
            [now_ms()],
            run_from_row,
        )
        .optional()?)
    }

    pub fn finish_run(&self, id: i64, conclusion: &str, reason: Option<&str>) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET status = 'completed', conclusion = ?2, reason = COALESCE(?3, reason), finished_at = ?4
             WHERE id = ?1",
            params![id, conclusion, reason, now_ms()],
        )?;
        Ok(())
    }

    /// Asks a run to stop: a queued run is cancelled at once; a running one is flagged for
    /// its executor. Returns the run as it is now.
    pub fn request_cancel(&self, id: i64) -> Result<Run> {
        {
            let c = self.conn();
            let n = c.execute(
                "UPDATE runs SET status = 'completed', conclusion = 'cancelled', finished_at = ?2
                 WHERE id = ?1 AND status = 'queued'",
                params![id, now_ms()],
            )?;
            if n == 0 {
                c.execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
                    [id],
                )?;
            }
        }
        self.run(id)
    }

    /// After a restart: runs that were running in this process are queued again once, or
    /// failed with the reason if they already had a second attempt. Returns (requeued, failed).
    pub fn recover(&self, max_attempts: i64) -> Result<(usize, usize)> {
        let c = self.conn();
        let failed = c.execute(
            "UPDATE runs SET status = 'completed', conclusion = 'failure', finished_at = ?2,
                 reason = 'the server stopped while the run was running (attempt ' || attempt || ' of ' || ?1 || ')'
             WHERE status = 'running' AND attempt >= ?1",
            params![max_attempts, now_ms()],
        )?;
        let requeued = c.execute(
            "UPDATE runs SET status = 'queued', attempt = attempt + 1, started_at = NULL,
                 reason = 'retried: the server stopped while the run was running'
             WHERE status = 'running'",
            [],
        )?;
        // The jobs of retried runs start over.
        c.execute(
            "DELETE FROM log_lines WHERE job IN (SELECT j.id FROM jobs j JOIN runs r ON r.id = j.run_id WHERE r.status = 'queued')",
            [],
        )?;
        c.execute(
            "DELETE FROM jobs WHERE run_id IN (SELECT id FROM runs WHERE status = 'queued')",
            [],
        )?;
        Ok((requeued, failed))
    }

    /// The job row of `name` in `run_id`, created if new.
    pub fn job_started(&self, run_id: i64, name: &str, job_id: &str) -> Result<i64> {
        let c = self.conn();
        c.execute(
            "INSERT INTO jobs (run_id, name, job_id, status, started_at) VALUES (?1, ?2, ?3, 'running', ?4)
             ON CONFLICT(run_id, name) DO UPDATE SET status = 'running', started_at = excluded.started_at",
            params![run_id, name, job_id, now_ms()],
        )?;
        Ok(c.query_row(
            "SELECT id FROM jobs WHERE run_id = ?1 AND name = ?2",
            params![run_id, name],
            |r| r.get(0),
        )?)
    }

    pub fn job_finished(&self, job: i64, conclusion: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET status = 'completed', conclusion = ?2, finished_at = ?3 WHERE id = ?1",
            params![job, conclusion, now_ms()],
        )?;
        Ok(())
    }

    /// Records a job that never ran (skipped, or cancelled before it started).
    pub fn job_not_run(
        &self,
        run_id: i64,
        name: &str,
        job_id: &str,
        conclusion: &str,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO jobs (run_id, name, job_id, status, conclusion) VALUES (?1, ?2, ?3, 'completed', ?4)
             ON CONFLICT(run_id, name) DO NOTHING",
            params![run_id, name, job_id, conclusion],
        )?;
        Ok(())
    }

    pub fn jobs(&self, run_id: i64) -> Result<Vec<Job>> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT * FROM jobs WHERE run_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([run_id], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Appends log lines; a line whose (job, seq) is already stored is ignored, so a batch
    /// sent twice is stored once.
    pub fn append_logs(&self, lines: &[LogLine]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO log_lines (job, seq, text) VALUES (?1, ?2, ?3)",
            )?;
            for l in lines {
                stmt.execute(params![l.job, l.seq, l.text])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Log lines of a run (or of one of its jobs) after `after` (a per-job sequence).
    pub fn logs(
        &self,
        run_id: i64,
        job: Option<i64>,
        after: &[(i64, i64)],
    ) -> Result<Vec<LogLine>> {
        let c = self.conn();
        let mut stmt = c.prepare(
            "SELECT l.job, l.seq, l.text FROM log_lines l JOIN jobs j ON j.id = l.job
             WHERE j.run_id = ?1 AND (?2 IS NULL OR l.job = ?2) ORDER BY l.job, l.seq",
        )?;
        let rows = stmt.query_map(params![run_id, job], |r| {
            Ok(LogLine {
                job: r.get(0)?,
                seq: r.get(1)?,
                text: r.get(2)?,
            })
        })?;
        let mut out: Vec<LogLine> = rows.collect::<rusqlite::Result<_>>()?;
        out.retain(|l| !after.iter().any(|(j, s)| *j == l.job && l.seq <= *s));
        Ok(out)
    }

    /// Stores a secret, sealed by the caller (this crate never sees plaintext). `repo` and
    /// `environment` are empty for the wider scopes.
    pub fn put_secret(
        &self,
        repo: &str,
        environment: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO secrets (repo, environment, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(repo, environment, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            params![repo, environment, name, sealed, now_ms()],
        )?;
        Ok(())
    }

    pub fn delete_secret(&self, repo: &str, environment: &str, name: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM secrets WHERE repo = ?1 AND environment = ?2 AND name = ?3",
            params![repo, environment, name],
        )?;
        Ok(n == 1)
    }

    /// Secrets that apply to `repo`: the global ones first, then its own.
    pub fn secrets_for(&self, repo: &str) -> Result<Vec<SealedSecret>> {
        let c = self.conn();
        let mut stmt = c.prepare(
            "SELECT repo, environment, name, sealed FROM secrets WHERE repo = ?1 OR repo = '' ORDER BY repo, environment, name",
        )?;
        let rows = stmt.query_map([repo], |r| {
            Ok(SealedSecret {
                repo: r.get(0)?,
                environment: r.get(1)?,
                name: r.get(2)?,
                sealed: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Names only: (repo, environment, name, updated_at).
    pub fn secret_names(&self) -> Result<Vec<(String, String, String, i64)>> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT repo, environment, name, updated_at FROM secrets ORDER BY repo, environment, name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A new queued run with the same repository, workflow, event and commit as `id`.
    pub fn rerun(&self, id: i64) -> Result<i64> {
        let run = self.run(id)?;
        self.create_run(&NewRun {
            repo: run.repo,
            workflow: run.workflow,
            event: run.event,
            git_ref: run.git_ref,
            sha: run.sha,
            event_json: run.event_json,
        })
    }

    /// Figures for `/metrics`.
    pub fn stats(&self) -> Result<Stats> {
        let c = self.conn();
        let count_by = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
            let mut stmt = c.prepare(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get(1)?,
                ))
            })?;
            rows.collect()
        };
        let runs_by_conclusion = count_by(
            "SELECT conclusion, count(*) FROM runs WHERE status = 'completed' GROUP BY conclusion ORDER BY 1",
        )?;
        let jobs_by_conclusion = count_by(
            "SELECT conclusion, count(*) FROM jobs WHERE status = 'completed' GROUP BY conclusion ORDER BY 1",
        )?;
        let runs_by_status =
            count_by("SELECT status, count(*) FROM runs GROUP BY status ORDER BY 1")?;
        let mut stmt = c.prepare(
            "SELECT finished_at - started_at FROM jobs WHERE status = 'completed' AND started_at IS NOT NULL AND finished_at IS NOT NULL",
        )?;
        let durations_ms = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Stats {
            runs_by_conclusion,
            jobs_by_conclusion,
            runs_by_status,
            job_durations_ms: durations_ms,
        })
    }

    /// Claims the firing of a cron entry for one minute (Unix minutes); false if it was
    /// already claimed, so a restarted server (or a second one) never fires it twice.
    pub fn claim_schedule(
        &self,
        repo: &str,
        workflow: &str,
        cron: &str,
        minute: i64,
    ) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO schedule_fires (repo, workflow, cron, minute) VALUES (?1, ?2, ?3, ?4)",
            params![repo, workflow, cron, minute],
        )?;
        Ok(n == 1)
    }

    /// Stores an API token by its hash (the token itself is never stored).
    pub fn add_token(&self, name: &str, hash: &str) -> Result<i64> {
        let c = self.conn();
        c.execute(
            "INSERT INTO api_tokens (name, hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, hash, now_ms()],
        )?;
        Ok(c.last_insert_rowid())
    }

    /// The name of the token with this hash, if any.
    pub fn token_name(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT name FROM api_tokens WHERE hash = ?1", [hash], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Records a webhook delivery id; false if it was seen before.
    pub fn record_delivery(&self, id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO deliveries (id, received_at) VALUES (?1, ?2)",
            params![id, now_ms()],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_run(repo: &str) -> NewRun {
        NewRun {
            repo: repo.into(),
            workflow: "ci.yml".into(),
            event: "push".into(),
            git_ref: "refs/heads/main".into(),
            sha: "abc".into(),
            event_json: "{}".into(),
        }
    }

    #[test]
    fn queue_take_finish_and_recover() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        let a = s.create_run(&new_run("r")).unwrap();
        let b = s.create_run(&new_run("r")).unwrap();
        assert_eq!(s.take_queued().unwrap().unwrap().id, a);
        assert_eq!(
            s.runs(Some("r"), 10)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            [b, a]
        );
        let job = s.job_started(a, "test", "test").unwrap();
        s.append_logs(&[
            LogLine {
                job,
                seq: 1,
                text: "x".into(),
            },
            LogLine {
                job,
                seq: 1,
                text: "dup".into(),
            },
        ])
        .unwrap();
        assert_eq!(s.logs(a, None, &[]).unwrap().len(), 1);
        // A restart: the running run is queued again (attempt 2), then failed after that.
        drop(s);
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        assert_eq!(s.recover(2).unwrap(), (1, 0));
        let r = s.run(a).unwrap();
        assert_eq!((r.status.as_str(), r.attempt), ("queued", 2));
        assert!(s.jobs(a).unwrap().is_empty());
        assert_eq!(s.take_queued().unwrap().unwrap().id, a);
        assert_eq!(s.recover(2).unwrap(), (0, 1));
        let r = s.run(a).unwrap();
        assert_eq!(r.conclusion.as_deref(), Some("failure"));
        assert!(r.reason.unwrap().contains("server stopped"));
        assert!(s.claim_schedule("r", "ci.yml", "* * * * *", 100).unwrap());
        assert!(!s.claim_schedule("r", "ci.yml", "* * * * *", 100).unwrap());
        assert!(s.claim_schedule("r", "ci.yml", "* * * * *", 101).unwrap());
        assert!(s.record_delivery("d1").unwrap());
        assert!(!s.record_delivery("d1").unwrap());
        assert_eq!(
            s.request_cancel(b).unwrap().conclusion.as_deref(),
            Some("cancelled")
        );
    }
}
