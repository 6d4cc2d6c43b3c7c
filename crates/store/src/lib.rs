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
    #[error("job {0} does not exist")]
    NoJob(i64),
    /// A runner reported for a job it does not hold (lost its lease, or never had it).
    #[error("job {0} is not held by this runner")]
    NotHeld(i64),
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
    /// `queued`, `running` (leased to a runner) or `completed`.
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The `runs-on` labels a runner must have, as a JSON array.
    #[serde(skip)]
    pub labels: String,
    /// The runner holding (or that last held) the job.
    pub runner_id: Option<i64>,
    pub attempt: i64,
    /// Why the job ended the way it did when its runner cannot say (runner lost).
    pub reason: Option<String>,
    /// The runner's report (JSON), once completed by a runner.
    #[serde(skip)]
    pub report: Option<String>,
    #[serde(skip)]
    pub cancel_requested: bool,
}

/// A job handed to a runner: the row, what to run, and the lease that proves it holds it.
#[derive(Debug, Clone)]
pub struct Leased {
    pub job: Job,
    pub payload: String,
    pub sealed: Vec<u8>,
    pub lease: String,
    /// The highest log sequence stored for the job (earlier attempts): the runner numbers
    /// its lines after it.
    pub log_seq: i64,
}

/// A registered runner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runner {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: i64,
    pub created_at: i64,
    pub last_seen: i64,
    pub embedded: bool,
}

/// What became of the jobs of a lost runner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Released {
    /// (job, run) queued again for another attempt.
    pub requeued: Vec<(i64, i64)>,
    /// (job, run) failed: no attempts left.
    pub failed: Vec<(i64, i64)>,
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
";

/// Columns added to `jobs` when jobs became units of scheduling; added to older databases.
const JOB_COLUMNS: &[(&str, &str)] = &[
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
];

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
        labels: r.get("labels")?,
        runner_id: r.get("runner_id")?,
        attempt: r.get("attempt")?,
        reason: r.get("reason")?,
        report: r.get("report")?,
        cancel_requested: r.get::<_, i64>("cancel_requested")? != 0,
    })
}

fn runner_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Runner> {
    let labels: String = r.get("labels")?;
    Ok(Runner {
        id: r.get("id")?,
        name: r.get("name")?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        capacity: r.get("capacity")?,
        created_at: r.get("created_at")?,
        last_seen: r.get("last_seen")?,
        embedded: r.get::<_, i64>("embedded")? != 0,
    })
}

/// The columns of `jobs` without the payload and sealed secrets.
const JOB_FIELDS: &str = "id, run_id, name, job_id, status, conclusion, started_at, finished_at, labels, runner_id, attempt, reason, report, cancel_requested";

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
        let have: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('jobs')")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for (name, decl) in JOB_COLUMNS {
            if !have.iter().any(|h| h == name) {
                conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {name} {decl}"))?;
            }
        }
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, id);
             CREATE INDEX IF NOT EXISTS jobs_runner ON jobs(runner_id, status);",
        )?;
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

    /// Runs that were being orchestrated when the server stopped: a restarted server takes
    /// them up again (their finished jobs are kept, their queued and leased jobs go on).
    pub fn running_runs(&self) -> Result<Vec<Run>> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT * FROM runs WHERE status = 'running' ORDER BY id")?;
        let rows = stmt.query_map([], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        let mut stmt = c.prepare(&format!(
            "SELECT {JOB_FIELDS} FROM jobs WHERE run_id = ?1 ORDER BY id"
        ))?;
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

    /// One job.
    pub fn job(&self, id: i64) -> Result<Job> {
        self.conn()
            .query_row(
                &format!("SELECT {JOB_FIELDS} FROM jobs WHERE id = ?1"),
                [id],
                job_from_row,
            )
            .optional()?
            .ok_or(StoreError::NoJob(id))
    }

    /// Queues a job instance for the runners, or returns the row that exists already under
    /// the same name (a restarted server replaying a run finds its jobs where they are).
    pub fn enqueue_job(
        &self,
        run_id: i64,
        name: &str,
        job_id: &str,
        labels: &str,
        payload: &str,
        sealed: &[u8],
    ) -> Result<Job> {
        let c = self.conn();
        c.execute(
            "INSERT INTO jobs (run_id, name, job_id, status, labels, payload, sealed, queued_at)
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7)
             ON CONFLICT(run_id, name) DO NOTHING",
            params![run_id, name, job_id, labels, payload, sealed, now_ms()],
        )?;
        Ok(c.query_row(
            &format!("SELECT {JOB_FIELDS} FROM jobs WHERE run_id = ?1 AND name = ?2"),
            params![run_id, name],
            job_from_row,
        )?)
    }

    /// Leases the oldest queued job whose `runs-on` labels are all among `labels` (a runner
    /// with the label `*` takes any job) to the runner, until `lease_ms` from now. `lease` is
    /// the caller's random lease token.
    pub fn take_job(
        &self,
        runner: i64,
        labels: &[String],
        lease: &str,
        lease_ms: i64,
    ) -> Result<Option<Leased>> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let candidate = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, labels FROM jobs WHERE status = 'queued' AND payload IS NOT NULL ORDER BY id LIMIT 256",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            let any = labels.iter().any(|l| l == "*");
            let mut found = None;
            for row in rows {
                let (id, wanted) = row?;
                let wanted: Vec<String> = serde_json::from_str(&wanted).unwrap_or_default();
                if any
                    || wanted
                        .iter()
                        .all(|w| labels.iter().any(|l| l.eq_ignore_ascii_case(w)))
                {
                    found = Some(id);
                    break;
                }
            }
            found
        };
        let Some(id) = candidate else {
            return Ok(None);
        };
        let now = now_ms();
        tx.execute(
            "UPDATE jobs SET status = 'running', runner_id = ?2, lease = ?3, lease_until = ?4,
                 started_at = ?5
             WHERE id = ?1 AND status = 'queued'",
            params![id, runner, lease, now + lease_ms, now],
        )?;
        let leased = tx.query_row(
            &format!(
                "SELECT {JOB_FIELDS}, payload, sealed,
                    (SELECT COALESCE(MAX(seq), 0) FROM log_lines WHERE job = jobs.id) AS log_seq
                 FROM jobs WHERE id = ?1"
            ),
            [id],
            |r| {
                Ok(Leased {
                    job: job_from_row(r)?,
                    payload: r.get("payload")?,
                    sealed: r.get("sealed")?,
                    lease: lease.to_owned(),
                    log_seq: r.get("log_seq")?,
                })
            },
        )?;
        tx.execute(
            "UPDATE runners SET last_seen = ?2 WHERE id = ?1",
            params![runner, now],
        )?;
        tx.commit()?;
        Ok(Some(leased))
    }

    /// Checks that `runner` holds `job` under `lease`; the job as it is.
    fn held(c: &Connection, job: i64, runner: i64, lease: &str) -> Result<Job> {
        let j = c
            .query_row(
                &format!(
                    "SELECT {JOB_FIELDS} FROM jobs WHERE id = ?1 AND runner_id = ?2 AND lease = ?3
                     AND status = 'running'"
                ),
                params![job, runner, lease],
                job_from_row,
            )
            .optional()?;
        j.ok_or(StoreError::NotHeld(job))
    }

    /// The job, if `runner` holds it under `lease`.
    pub fn held_job(&self, job: i64, runner: i64, lease: &str) -> Result<Job> {
        Self::held(&self.conn(), job, runner, lease)
    }

    /// Extends the lease of a held job; true if the job (or its run) is to be cancelled.
    pub fn heartbeat(&self, job: i64, runner: i64, lease: &str, lease_ms: i64) -> Result<bool> {
        let c = self.conn();
        let j = Self::held(&c, job, runner, lease)?;
        let now = now_ms();
        c.execute(
            "UPDATE jobs SET lease_until = ?2 WHERE id = ?1",
            params![job, now + lease_ms],
        )?;
        c.execute(
            "UPDATE runners SET last_seen = ?2 WHERE id = ?1",
            params![runner, now],
        )?;
        let run_cancel: i64 = c.query_row(
            "SELECT cancel_requested FROM runs WHERE id = ?1",
            [j.run_id],
            |r| r.get(0),
        )?;
        Ok(j.cancel_requested || run_cancel != 0)
    }

    /// Appends a held job's log lines (a line already stored under its sequence is ignored,
    /// so a batch sent twice is stored once). Returns the run of the job.
    pub fn append_job_logs(
        &self,
        job: i64,
        runner: i64,
        lease: &str,
        lines: &[(i64, String)],
    ) -> Result<i64> {
        let mut c = self.conn();
        let run = Self::held(&c, job, runner, lease)?.run_id;
        let tx = c.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO log_lines (job, seq, text) VALUES (?1, ?2, ?3)",
            )?;
            for (seq, text) in lines {
                stmt.execute(params![job, seq, text])?;
            }
        }
        tx.commit()?;
        Ok(run)
    }

    /// A runner's result for a held job.
    pub fn complete_job(
        &self,
        job: i64,
        runner: i64,
        lease: &str,
        conclusion: &str,
        report: &str,
    ) -> Result<Job> {
        let c = self.conn();
        Self::held(&c, job, runner, lease)?;
        c.execute(
            "UPDATE jobs SET status = 'completed', conclusion = ?2, report = ?3, finished_at = ?4,
                 lease = NULL, lease_until = NULL, payload = NULL, sealed = NULL
             WHERE id = ?1",
            params![job, conclusion, report, now_ms()],
        )?;
        drop(c);
        self.job(job)
    }

    /// Asks a job to stop: a queued one is cancelled at once, a leased one is flagged for its
    /// runner (it sees the flag in its next heartbeat).
    pub fn cancel_job(&self, job: i64) -> Result<()> {
        let c = self.conn();
        let n = c.execute(
            "UPDATE jobs SET status = 'completed', conclusion = 'cancelled', finished_at = ?2,
                 payload = NULL, sealed = NULL
             WHERE id = ?1 AND status = 'queued'",
            params![job, now_ms()],
        )?;
        if n == 0 {
            c.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
                [job],
            )?;
        }
        Ok(())
    }

    /// Releases leased jobs that match `filter` (an SQL condition on `jobs`): each is queued
    /// again for another attempt, or failed with `reason` once it had `max_attempts`.
    fn release(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
        max_attempts: i64,
        reason: &str,
    ) -> Result<Released> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let lost: Vec<(i64, i64, i64)> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT id, run_id, attempt FROM jobs WHERE status = 'running' AND {filter}"
            ))?;
            let rows = stmt.query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Released::default();
        let now = now_ms();
        for (job, run, attempt) in lost {
            let next_seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM log_lines WHERE job = ?1",
                [job],
                |r| r.get(0),
            )?;
            if attempt < max_attempts {
                tx.execute(
                    "UPDATE jobs SET status = 'queued', attempt = attempt + 1, runner_id = NULL,
                         lease = NULL, lease_until = NULL, started_at = NULL, reason = ?2
                     WHERE id = ?1",
                    params![job, format!("retried: {reason}")],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO log_lines (job, seq, text) VALUES (?1, ?2, ?3)",
                    params![
                        job,
                        next_seq,
                        format!(
                            "##[warning] {reason}: attempt {} of {max_attempts} follows",
                            attempt + 1
                        )
                    ],
                )?;
                out.requeued.push((job, run));
            } else {
                tx.execute(
                    "UPDATE jobs SET status = 'completed', conclusion = 'failure', finished_at = ?2,
                         lease = NULL, lease_until = NULL, payload = NULL, sealed = NULL, reason = ?3
                     WHERE id = ?1",
                    params![job, now, reason],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO log_lines (job, seq, text) VALUES (?1, ?2, ?3)",
                    params![
                        job,
                        next_seq,
                        format!("##[error] {reason} (attempt {attempt} of {max_attempts})")
                    ],
                )?;
                out.failed.push((job, run));
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Jobs whose lease ran out (their runner stopped sending heartbeats): "runner lost".
    pub fn expire_leases(&self, max_attempts: i64) -> Result<Released> {
        self.release(
            "lease_until < ?1",
            &[&now_ms()],
            max_attempts,
            "runner lost",
        )
    }

    /// The jobs a runner holds, given up (its process was restarted, or it hands them back).
    pub fn release_runner(&self, runner: i64, max_attempts: i64, reason: &str) -> Result<Released> {
        self.release("runner_id = ?1", &[&runner], max_attempts, reason)
    }

    /// Stores a one-time registration token (its hash).
    pub fn add_runner_token(&self, hash: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO runner_tokens (hash, created_at) VALUES (?1, ?2)",
            params![hash, now_ms()],
        )?;
        Ok(())
    }

    /// Registers a runner with a one-time token, which is used up; None if the token is
    /// unknown or was used before.
    pub fn register_runner(
        &self,
        token_hash: &str,
        name: &str,
        labels: &[String],
        capacity: i64,
        credential_hash: &str,
    ) -> Result<Option<i64>> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let now = now_ms();
        let n = tx.execute(
            "UPDATE runner_tokens SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL",
            params![token_hash, now],
        )?;
        if n == 0 {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO runners (name, labels, capacity, credential_hash, created_at, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![
                name,
                serde_json::to_string(labels).unwrap_or_default(),
                capacity,
                credential_hash,
                now
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(id))
    }

    /// The in-process runner's row, with a new credential for this server process; made the
    /// first time.
    pub fn embedded_runner(
        &self,
        labels: &[String],
        capacity: i64,
        credential_hash: &str,
    ) -> Result<i64> {
        let c = self.conn();
        let labels = serde_json::to_string(labels).unwrap_or_default();
        let now = now_ms();
        let n = c.execute(
            "UPDATE runners SET labels = ?1, capacity = ?2, credential_hash = ?3, last_seen = ?4
             WHERE embedded = 1",
            params![labels, capacity, credential_hash, now],
        )?;
        if n == 0 {
            c.execute(
                "INSERT INTO runners (name, labels, capacity, credential_hash, created_at, last_seen, embedded)
                 VALUES ('embedded', ?1, ?2, ?3, ?4, ?4, 1)",
                params![labels, capacity, credential_hash, now],
            )?;
        }
        Ok(
            c.query_row("SELECT id FROM runners WHERE embedded = 1", [], |r| {
                r.get(0)
            })?,
        )
    }

    /// The runner with this credential (its hash), if any.
    pub fn runner_by_credential(&self, hash: &str) -> Result<Option<Runner>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM runners WHERE credential_hash = ?1",
                [hash],
                runner_from_row,
            )
            .optional()?)
    }

    /// Notes that a runner asked for work now.
    pub fn touch_runner(&self, id: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE runners SET last_seen = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    pub fn runners(&self) -> Result<Vec<Runner>> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT * FROM runners ORDER BY id")?;
        let rows = stmt.query_map([], runner_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Jobs waiting for a runner (for `/metrics`).
    pub fn queue_depth(&self) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM jobs WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?)
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
        // A restarted server finds the run it was orchestrating.
        drop(s);
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        assert_eq!(
            s.running_runs()
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            [a]
        );
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

    #[test]
    fn jobs_are_leased_by_labels_and_released_when_their_runner_is_lost() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        let run = s.create_run(&new_run("r")).unwrap();
        let gpu = s
            .enqueue_job(run, "train", "train", r#"["gpu"]"#, "{}", b"")
            .unwrap();
        let any = s.enqueue_job(run, "lint", "lint", "[]", "{}", b"").unwrap();
        // The same name again is the same row (a replayed run).
        assert_eq!(
            s.enqueue_job(run, "lint", "lint", "[]", "{}", b"")
                .unwrap()
                .id,
            any.id
        );
        assert!(s.add_runner_token("t1").is_ok());
        let cpu = s
            .register_runner("t1", "cpu", &["linux".into()], 1, "c1")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.register_runner("t1", "again", &[], 1, "c2").unwrap(),
            None,
            "a registration token works once"
        );
        let leased = s
            .take_job(cpu, &["linux".into()], "L1", 60_000)
            .unwrap()
            .unwrap();
        assert_eq!(leased.job.id, any.id, "the gpu job is not for this runner");
        assert!(
            s.take_job(cpu, &["linux".into()], "L2", 60_000)
                .unwrap()
                .is_none()
        );
        assert!(!s.heartbeat(any.id, cpu, "L1", 60_000).unwrap());
        assert!(matches!(
            s.heartbeat(any.id, cpu, "wrong", 60_000),
            Err(StoreError::NotHeld(_))
        ));
        assert!(matches!(
            s.append_job_logs(gpu.id, cpu, "L1", &[(1, "x".into())]),
            Err(StoreError::NotHeld(_))
        ));
        s.append_job_logs(any.id, cpu, "L1", &[(1, "a".into()), (2, "b".into())])
            .unwrap();
        s.append_job_logs(any.id, cpu, "L1", &[(2, "b".into())])
            .unwrap();
        assert_eq!(s.logs(run, Some(any.id), &[]).unwrap().len(), 2);
        // The runner vanishes: attempt 2 is queued, then the job fails as "runner lost".
        let released = s.release_runner(cpu, 2, "runner lost").unwrap();
        assert_eq!(released.requeued, [(any.id, run)]);
        let again = s
            .take_job(cpu, &["linux".into()], "L3", -1)
            .unwrap()
            .unwrap();
        assert_eq!((again.job.attempt, again.log_seq), (2, 3));
        let released = s.expire_leases(2).unwrap();
        assert_eq!(released.failed, [(any.id, run)]);
        let j = s.job(any.id).unwrap();
        assert_eq!(j.conclusion.as_deref(), Some("failure"));
        assert_eq!(j.reason.as_deref(), Some("runner lost"));
        s.cancel_job(gpu.id).unwrap();
        assert_eq!(
            s.job(gpu.id).unwrap().conclusion.as_deref(),
            Some("cancelled")
        );
    }
}
