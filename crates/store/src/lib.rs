//! pipewright's persistent state: runs, their jobs (the unit runners take), log lines,
//! runners, secrets (sealed by the caller), webhook deliveries, artifact and cache manifests,
//! `concurrency` groups.
//!
//! Every state change goes through here, so a restarted server finds what the killed one
//! knew: nothing lives only in memory. Two backends behind the same API: SQLite (WAL mode, the
//! embedded default) and PostgreSQL (for a server with many runners, or several servers);
//! statements are written once for both (`db`).
//!
//! This crate knows nothing of HTTP, workflows or processes: it stores rows.

mod artifacts;
mod concurrency;
mod db;
mod stats;

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use db::{Backend, Db, Dialect, Param, Row, params};
use serde::Serialize;

pub use artifacts::{ArtifactInfo, CacheEntry, Expired, FileEntry};
pub use concurrency::{Claim, Claimant};

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
    /// `waiting` (held for approval), `queued`, `running` or `completed`.
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
    /// The run this one re-runs, if any.
    pub rerun_of: Option<i64>,
    /// A re-run of the failed jobs only: the jobs that succeeded in `rerun_of` are kept.
    pub rerun_failed: bool,
    /// The workflow file's text at `sha`, when the trigger kept it.
    #[serde(skip)]
    pub workflow_text: Option<String>,
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
    /// The workflow file's text at `sha`, kept so the run needs no second read of git.
    pub workflow_text: Option<String>,
    /// Recorded as completed and failed for this reason (an invalid workflow), not queued.
    pub failure: Option<String>,
    /// Held (`waiting`) until someone approves it (a fork's pull request, when the
    /// repository asks for approval), instead of queued.
    pub held: bool,
}

/// A webhook delivery accepted for the intake: its id (forge and delivery id, when the forge
/// sent one), repository and event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub key: Option<String>,
    pub repo: String,
    pub event_json: String,
}

/// A delivery accepted but not yet turned into runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub id: i64,
    pub repo: String,
    pub event_json: String,
    pub attempts: i64,
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
    /// The log is in compressed files (see the server's `logfiles`), no longer in rows.
    #[serde(skip)]
    pub log_archived: bool,
    /// The job whose log files hold this job's log: itself, or the job a re-run kept.
    #[serde(skip)]
    pub log_job: i64,
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
    /// The names of the run's artifacts when the job was leased.
    pub artifacts: Vec<String>,
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

/// Counts for `/metrics` (see `stats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub runs_by_conclusion: Vec<(String, i64)>,
    pub jobs_by_conclusion: Vec<(String, i64)>,
    /// Completed jobs by duration: (bucket's upper bound in seconds, `+Inf` last; jobs
    /// that took at most that long).
    pub duration_buckets: Vec<(String, i64)>,
    /// The completed jobs' durations, added up.
    pub duration_sum_ms: i64,
    pub runs_running: i64,
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
const RUN_COLUMNS: &[(&str, &str)] = &[
    ("rerun_of", "INTEGER"),
    ("rerun_failed", "INTEGER NOT NULL DEFAULT 0"),
    ("workflow_text", "TEXT"),
    ("orchestrator", "TEXT"),
    ("orchestrator_until", "INTEGER"),
];

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
    ("log_archived", "INTEGER NOT NULL DEFAULT 0"),
    // The server that took the job's report (none: ended by a server itself).
    ("reported_by", "TEXT"),
    ("log_job", "INTEGER"),
];

/// Cache entries made before caches had scopes are dropped (they are caches: the next runs
/// make them again, each in its own scope), so the table is made anew with its scope. In
/// PostgreSQL; SQLite's is in [`Store::open`].
const UNSCOPED_CACHES_PG: &str = "DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.tables WHERE table_name = 'caches')
     AND NOT EXISTS (SELECT 1 FROM information_schema.columns
                     WHERE table_name = 'caches' AND column_name = 'scope') THEN
    DROP TABLE IF EXISTS cache_files;
    DROP TABLE caches;
  END IF;
END $$;";

/// The PostgreSQL form of the schema: the same tables, its own types.
fn postgres_schema() -> String {
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
const INDEXES: &str = "DROP INDEX IF EXISTS jobs_queue;
DROP INDEX IF EXISTS jobs_runner;
DROP INDEX IF EXISTS jobs_finished;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_running ON jobs(runner_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs(finished_at) WHERE finished_at IS NOT NULL;";

/// The store: SQLite or PostgreSQL behind one API. Every method is blocking; async callers
/// use `spawn_blocking`.
pub struct Store {
    db: Backend,
    /// SQLite: dropping it stops the checkpointer thread.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

fn run_from_row(r: &Row) -> Result<Run> {
    Ok(Run {
        id: r.i64("id")?,
        repo: r.string("repo")?,
        workflow: r.string("workflow")?,
        event: r.string("event")?,
        git_ref: r.string("git_ref")?,
        sha: r.string("sha")?,
        status: r.string("status")?,
        conclusion: r.opt_string("conclusion")?,
        reason: r.opt_string("reason")?,
        attempt: r.i64("attempt")?,
        created_at: r.i64("created_at")?,
        started_at: r.opt_i64("started_at")?,
        finished_at: r.opt_i64("finished_at")?,
        event_json: r.string("event_json")?,
        cancel_requested: r.i64("cancel_requested")? != 0,
        rerun_of: r.opt_i64("rerun_of")?,
        rerun_failed: r.i64("rerun_failed")? != 0,
        workflow_text: r.opt_string("workflow_text")?,
    })
}

fn job_from_row(r: &Row) -> Result<Job> {
    Ok(Job {
        id: r.i64("id")?,
        run_id: r.i64("run_id")?,
        name: r.string("name")?,
        job_id: r.string("job_id")?,
        status: r.string("status")?,
        conclusion: r.opt_string("conclusion")?,
        started_at: r.opt_i64("started_at")?,
        finished_at: r.opt_i64("finished_at")?,
        labels: r.string("labels")?,
        runner_id: r.opt_i64("runner_id")?,
        attempt: r.i64("attempt")?,
        reason: r.opt_string("reason")?,
        report: r.opt_string("report")?,
        cancel_requested: r.i64("cancel_requested")? != 0,
        log_archived: r.i64("log_archived")? != 0,
        log_job: r.opt_i64("log_job")?.unwrap_or(r.i64("id")?),
    })
}

fn runner_from_row(r: &Row) -> Result<Runner> {
    Ok(Runner {
        id: r.i64("id")?,
        name: r.string("name")?,
        labels: serde_json::from_str(&r.string("labels")?).unwrap_or_default(),
        capacity: r.i64("capacity")?,
        created_at: r.i64("created_at")?,
        last_seen: r.i64("last_seen")?,
        embedded: r.i64("embedded")? != 0,
    })
}

fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// The columns of `jobs` without the payload and sealed secrets.
const JOB_FIELDS: &str = "id, run_id, name, job_id, status, conclusion, started_at, finished_at, labels, runner_id, attempt, reason, report, cancel_requested, log_archived, log_job";

/// A runner's report of a job, as server `server` received it: the conclusion, the report
/// (JSON) and the job's last log lines.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub conclusion: &'a str,
    pub report: &'a str,
    pub lines: &'a [(i64, String)],
    pub server: &'a str,
}

/// What a runner asks a lease for: a job its labels match, leased under `lease` (the
/// caller's random token) until `lease_ms` from now.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub labels: &'a [String],
    pub lease: &'a str,
    pub lease_ms: i64,
}

impl Want<'_> {
    /// A runner with the label `*` takes any job.
    fn any(&self) -> bool {
        self.labels.iter().any(|l| l == "*")
    }

    /// Whether a job with `runs-on` labels `wanted` (JSON) is the runner's: all of them are
    /// among its labels, compared without case.
    fn matches(&self, wanted: &str) -> bool {
        let wanted: Vec<String> = serde_json::from_str(wanted).unwrap_or_default();
        self.any()
            || wanted
                .iter()
                .all(|w| self.labels.iter().any(|l| l.eq_ignore_ascii_case(w)))
    }
}

/// A held job's report (parameters: job, runner, lease, conclusion, report, now, server).
const COMPLETE: &str = "UPDATE jobs SET status = 'completed', conclusion = ?4, report = ?5,
         finished_at = ?6, lease = NULL, lease_until = NULL, payload = NULL, sealed = NULL,
         reported_by = ?7
     WHERE id = ?1 AND runner_id = ?2 AND lease = ?3 AND status = 'running'";

/// PostgreSQL's report of held job `job` in one statement, with its last `lines` (at most 64)
/// and, for `next` (runner, what it wants), a lease of the first page as [`pg_take_ctes`]
/// takes it: the completed job and the statement's row.
fn pg_complete(
    c: &mut dyn Db,
    job: i64,
    end: &[Param],
    lines: &[(i64, String)],
    next: Option<(i64, &Want<'_>)>,
) -> Result<(Job, Row)> {
    let mut values = end.to_vec();
    let mut ctes = format!("done AS ({COMPLETE} RETURNING {JOB_FIELDS})");
    if !lines.is_empty() {
        let rows = value_rows(&mut values, lines);
        let insert = insert_rows_sql(&rows, " AND EXISTS (SELECT 1 FROM done)");
        ctes.push_str(&format!(", lines AS ({insert})"));
    }
    let sql = match next {
        Some((runner, want)) => {
            let take = pg_take_ctes(
                &mut values,
                runner,
                want,
                " AND EXISTS (SELECT 1 FROM done)",
            );
            format!(
                "WITH {ctes}, {take}
                 SELECT done.*, taken.*, (SELECT count(*) FROM page) AS next_seen
                 FROM done LEFT JOIN taken ON true"
            )
        }
        None => format!("WITH {ctes} SELECT * FROM done"),
    };
    let row = c
        .query_opt(&sql, &values)?
        .ok_or(StoreError::NotHeld(job))?;
    Ok((job_from_row(&row)?, row))
}

/// The oldest queued jobs are looked at this many at a time.
const PAGE: i64 = 16;

/// The `SET` of a lease, its parameters (runner, lease, until when, now) appended to
/// `values` (numbered after those already there).
fn take_set(values: &mut Vec<Param>, runner: i64, want: &Want<'_>) -> String {
    let n = values.len();
    let now = now_ms();
    values.extend([
        Param::from(runner),
        Param::from(want.lease),
        Param::from(now + want.lease_ms),
        Param::from(now),
    ]);
    format!(
        "status = 'running', runner_id = ?{}, lease = ?{}, lease_until = ?{}, started_at = ?{}",
        n + 1,
        n + 2,
        n + 3,
        n + 4
    )
}

/// The `RETURNING` of a lease: what [`leased`] reads, each column's name prefixed `prefix`.
fn take_returning(prefix: &str) -> String {
    let mut cols: Vec<String> = JOB_FIELDS
        .split(", ")
        .chain(["payload", "sealed"])
        .map(|f| format!("{f} AS {prefix}{f}"))
        .collect();
    cols.push(format!(
        "(SELECT COALESCE(MAX(seq), 0) FROM log_lines WHERE job = jobs.id) AS {prefix}log_seq"
    ));
    cols.push(format!(
        "(SELECT count(*) FROM artifacts a WHERE a.run_id = jobs.run_id) AS {prefix}artifact_count"
    ));
    format!("RETURNING {}", cols.join(", "))
}

/// PostgreSQL's lease of the first page, as two `WITH` queries: `page`, the oldest queued
/// jobs, and `taken`, the oldest of them the runner matches that nobody else is taking right
/// now (runners asking at once skip each other's rows instead of queueing on one row's lock,
/// which took six attempts per lease with fifty runners), its columns prefixed `next_`.
/// `only_if` is a further condition of the lease. Labels are compared as [`Want::matches`]
/// does, folding ASCII letters only (`lower` under the "C" collation, whatever the
/// database's locale). Its limits are constants, so PostgreSQL
/// plans it once per connection, not at every lease (as it did with a `LIMIT` parameter).
fn pg_take_ctes(values: &mut Vec<Param>, runner: i64, want: &Want<'_>, only_if: &str) -> String {
    let n = values.len();
    values.push(Param::from(i64::from(want.any())));
    values.push(Param::from(
        serde_json::to_string(want.labels).unwrap_or_default(),
    ));
    let set = take_set(values, runner, want);
    let returning = take_returning("next_");
    format!(
        "page AS (SELECT id, labels FROM jobs WHERE status = 'queued' AND payload IS NOT NULL
             ORDER BY id LIMIT {PAGE}),
         taken AS (UPDATE jobs SET {set} WHERE id = (SELECT j.id FROM jobs j
             WHERE j.id IN (SELECT page.id FROM page
                 WHERE CAST(?{any} AS BIGINT) = 1 OR NOT EXISTS (
                     SELECT 1 FROM json_array_elements_text(page.labels::json) w(l)
                     WHERE lower(w.l COLLATE \"C\") NOT IN (SELECT lower(h.l COLLATE \"C\")
                         FROM json_array_elements_text(CAST(?{has} AS TEXT)::json) h(l))))
             AND j.status = 'queued'{only_if}
             ORDER BY j.id LIMIT 1 FOR UPDATE SKIP LOCKED)
         {returning})",
        any = n + 1,
        has = n + 2,
    )
}

/// The lease a row of [`pg_take_ctes`] (with `next_seen`, how many jobs its page held)
/// took; if it took none from a full page, the lease goes on on the next pages.
fn first_page_taken(
    c: &mut dyn Db,
    r: &Row,
    runner: i64,
    want: &Want<'_>,
) -> Result<Option<Leased>> {
    if r.opt_i64("next_id")?.is_some() {
        return leased(c, &r.sub("next_"), want.lease).map(Some);
    }
    if r.i64("next_seen")? < PAGE {
        return Ok(None);
    }
    take_from(c, PAGE, runner, want)
}

/// Leases the oldest matching job from the queued jobs after the first `offset`, a page at
/// a time (up to 256 jobs deep).
fn take_from(
    c: &mut dyn Db,
    mut offset: i64,
    runner: i64,
    want: &Want<'_>,
) -> Result<Option<Leased>> {
    let returning = take_returning("");
    while offset < 256 {
        let candidates = c.query(
            "SELECT id, labels FROM jobs WHERE status = 'queued' AND payload IS NOT NULL
             ORDER BY id LIMIT ?1 OFFSET ?2",
            params![PAGE, offset],
        )?;
        let last_page = i64::try_from(candidates.len()).unwrap_or(0) < PAGE;
        offset += PAGE;
        let mut matching = Vec::new();
        for row in &candidates {
            if want.matches(&row.string("labels")?) {
                matching.push(row.i64("id")?);
            }
        }
        let mut taken = None;
        if c.dialect() == Dialect::Postgres {
            // The oldest of them that nobody else is taking right now.
            if !matching.is_empty() {
                let ids = matching
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let mut values = vec![Param::from(ids)];
                let set = take_set(&mut values, runner, want);
                taken = c.query_opt(
                    &format!(
                        "UPDATE jobs SET {set} WHERE id = (SELECT id FROM jobs
                             WHERE id = ANY(string_to_array(?1, ',')::bigint[])
                             AND status = 'queued'
                             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                         {returning}"
                    ),
                    &values,
                )?;
            }
        } else {
            // One writer at a time: the oldest that is still queued.
            for id in matching {
                let mut values = vec![Param::from(id)];
                let set = take_set(&mut values, runner, want);
                taken = c.query_opt(
                    &format!(
                        "UPDATE jobs SET {set} WHERE id = ?1 AND status = 'queued' {returning}"
                    ),
                    &values,
                )?;
                if taken.is_some() {
                    break;
                }
            }
        }
        if let Some(r) = taken {
            return leased(c, &r, want.lease).map(Some);
        }
        if last_page {
            break;
        }
    }
    Ok(None)
}

/// A job just leased under `lease`, from the row its lease returned (with `payload`,
/// `sealed`, `log_seq` and `artifact_count`).
fn leased(c: &mut dyn Db, r: &Row, lease: &str) -> Result<Leased> {
    let job = job_from_row(r)?;
    let artifacts = if r.i64("artifact_count")? > 0 {
        c.query(
            "SELECT name FROM artifacts WHERE run_id = ?1 ORDER BY name",
            params![job.run_id],
        )?
        .iter()
        .map(|r| r.string("name"))
        .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    Ok(Leased {
        job,
        payload: r.opt_string("payload")?.unwrap_or_default(),
        sealed: r.bytes("sealed")?,
        lease: lease.to_owned(),
        log_seq: r.i64("log_seq")?,
        artifacts,
    })
}

/// Checks that `runner` holds `job` under `lease`; the job as it is.
/// [`Store::release`] within a transaction of the caller's.
fn release_in(
    c: &mut dyn Db,
    filter: &str,
    arg: i64,
    max_attempts: i64,
    reason: &str,
) -> Result<Released> {
    let lost = c.query(
        &format!("SELECT id, run_id, attempt FROM jobs WHERE status = 'running' AND {filter}"),
        params![arg],
    )?;
    let mut out = Released::default();
    let now = now_ms();
    for r in lost {
        let (job, run, attempt) = (r.i64("id")?, r.i64("run_id")?, r.i64("attempt")?);
        let next_seq = c
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM log_lines WHERE job = ?1",
                params![job],
            )?
            .i64("s")?;
        if attempt < max_attempts {
            c.execute(
                "UPDATE jobs SET status = 'queued', attempt = attempt + 1, runner_id = NULL,
                     lease = NULL, lease_until = NULL, started_at = NULL, reason = ?2
                 WHERE id = ?1",
                params![job, format!("retried: {reason}")],
            )?;
            let line = format!(
                "##[warning] {reason}: attempt {} of {max_attempts} follows",
                attempt + 1
            );
            insert_lines(c, job, &[(next_seq, line)], None)?;
            out.requeued.push((job, run));
        } else {
            c.execute(
                "UPDATE jobs SET status = 'completed', conclusion = 'failure', finished_at = ?2,
                     lease = NULL, lease_until = NULL, payload = NULL, sealed = NULL, reason = ?3
                 WHERE id = ?1",
                params![job, now, reason],
            )?;
            let line = format!("##[error] {reason} (attempt {attempt} of {max_attempts})");
            insert_lines(c, job, &[(next_seq, line)], None)?;
            out.failed.push((job, run));
        }
    }
    Ok(out)
}

fn held(c: &mut dyn Db, job: i64, runner: i64, lease: &str) -> Result<Job> {
    let row = c.query_opt(
        &format!(
            "SELECT {JOB_FIELDS} FROM jobs WHERE id = ?1 AND runner_id = ?2 AND lease = ?3
             AND status = 'running'"
        ),
        params![job, runner, lease],
    )?;
    row.as_ref()
        .map(job_from_row)
        .transpose()?
        .ok_or(StoreError::NotHeld(job))
}

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
        let mut first = db::PgConn::connect(url)?;
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

    pub fn create_run(&self, new: &NewRun) -> Result<i64> {
        self.db.with(|c| insert_run(c, new))
    }

    /// Records several runs at once (the runs one event fires): all or none.
    pub fn create_runs(&self, runs: &[NewRun]) -> Result<Vec<i64>> {
        self.db
            .tx(|c| runs.iter().map(|r| insert_run(c, r)).collect())
    }

    pub fn run(&self, id: i64) -> Result<Run> {
        self.db.with(|c| {
            c.query_opt("SELECT * FROM runs WHERE id = ?1", params![id])?
                .as_ref()
                .map(run_from_row)
                .transpose()?
                .ok_or(StoreError::NoRun(id))
        })
    }

    /// Runs newest first, of one repository or all.
    pub fn runs(&self, repo: Option<&str>, limit: i64) -> Result<Vec<Run>> {
        self.db.with(|c| {
            rows(
                c.query(
                    "SELECT * FROM runs WHERE (CAST(?1 AS TEXT) IS NULL OR repo = ?1) ORDER BY id DESC LIMIT ?2",
                    params![repo, limit],
                )?,
                run_from_row,
            )
        })
    }

    /// Takes the oldest queued run and marks it running, atomically.
    /// Takes the oldest queued run for orchestrator `me` (a server), which keeps it by
    /// renewing its lease ([`Store::renew_orchestration`]) every so often.
    pub fn take_queued(&self, me: &str, lease_ms: i64) -> Result<Option<Run>> {
        self.db.with(|c| {
            let lock = match c.dialect() {
                Dialect::Sqlite => "",
                Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            };
            let now = now_ms();
            c.query_opt(
                &format!(
                    "UPDATE runs SET status = 'running', started_at = ?1, orchestrator = ?2,
                         orchestrator_until = ?3
                     WHERE id = (SELECT id FROM runs WHERE status = 'queued' ORDER BY id LIMIT 1{lock})
                     RETURNING *"
                ),
                params![now, me, now + lease_ms],
            )?
            .as_ref()
            .map(run_from_row)
            .transpose()
        })
    }

    /// Keeps orchestrator `me`'s runs its own for another `lease_ms`.
    pub fn renew_orchestration(&self, me: &str, lease_ms: i64) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE runs SET orchestrator_until = ?2 WHERE orchestrator = ?1 AND status = 'running'",
                params![me, now_ms() + lease_ms],
            )
            .map(drop)
        })
    }

    /// Running runs that orchestrator `me` takes up: those whose orchestrator stopped renewing
    /// its lease (a stopped server) and, with `mine`, those `me` itself had before a restart.
    pub fn take_over_runs(&self, me: &str, lease_ms: i64, mine: bool) -> Result<Vec<Run>> {
        let now = now_ms();
        self.db
            .with(|c| {
                rows(
                    c.query(
                        "UPDATE runs SET orchestrator = ?1, orchestrator_until = ?2
                     WHERE status = 'running' AND (orchestrator IS NULL OR orchestrator_until < ?3
                         OR (?4 = 1 AND orchestrator = ?1))
                     RETURNING *",
                        params![me, now + lease_ms, now, i64::from(mine)],
                    )?,
                    run_from_row,
                )
            })
            .map(|mut runs| {
                runs.sort_by_key(|r| r.id);
                runs
            })
    }

    pub fn finish_run(&self, id: i64, conclusion: &str, reason: Option<&str>) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'completed', conclusion = ?2, reason = COALESCE(?3, reason), finished_at = ?4
                 WHERE id = ?1",
                params![id, conclusion, reason, now_ms()],
            )
            .map(drop)
        })
    }

    /// Asks a run to stop: a queued run is cancelled at once; a running one is flagged for
    /// its orchestrator and its runners. Returns the run as it is now.
    pub fn request_cancel(&self, id: i64) -> Result<Run> {
        self.db.with(|c| {
            let n = c.execute(
                "UPDATE runs SET status = 'completed', conclusion = 'cancelled', finished_at = ?2
                 WHERE id = ?1 AND status IN ('queued', 'waiting')",
                params![id, now_ms()],
            )?;
            if n == 0 {
                c.execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
                    params![id],
                )?;
            }
            Ok(())
        })?;
        self.run(id)
    }

    /// Lets a held (`waiting`) run go: it is queued. `Ok(None)` if it is not waiting.
    pub fn approve_run(&self, id: i64) -> Result<Option<Run>> {
        let n = self.db.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'queued' WHERE id = ?1 AND status = 'waiting'",
                params![id],
            )
        })?;
        if n == 0 {
            self.run(id)?;
            return Ok(None);
        }
        self.run(id).map(Some)
    }

    /// Ends a held run without running it (cancelled, with the reason). `Ok(None)` if it is
    /// not waiting.
    pub fn reject_run(&self, id: i64) -> Result<Option<Run>> {
        let n = self.db.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'completed', conclusion = 'cancelled', finished_at = ?2,
                 reason = 'rejected: not approved to run'
                 WHERE id = ?1 AND status = 'waiting'",
                params![id, now_ms()],
            )
        })?;
        if n == 0 {
            self.run(id)?;
            return Ok(None);
        }
        self.run(id).map(Some)
    }

    /// Runs that were being orchestrated when the server stopped: a restarted server takes
    /// them up again (their finished jobs are kept, their queued and leased jobs go on).
    /// Records the jobs that never ran (skipped, or cancelled before they started): (name,
    /// job id, conclusion) each; those already recorded are left as they are.
    pub fn jobs_not_run(&self, run_id: i64, jobs: &[(String, String, String)]) -> Result<()> {
        // One transaction: a run of thousands of jobs writes them in one commit.
        self.db.tx(|c| {
            for (name, job_id, conclusion) in jobs {
                c.execute(
                    "INSERT INTO jobs (run_id, name, job_id, status, conclusion) VALUES (?1, ?2, ?3, 'completed', ?4)
                     ON CONFLICT(run_id, name) DO NOTHING",
                    params![run_id, name, job_id, conclusion],
                )?;
            }
            Ok(())
        })
    }

    /// A message about a job that the server itself has to say (its `if` or `runs-on` could
    /// not be evaluated, so it failed before any runner saw it): the job's row, failed, with
    /// the line in its log. Returns (job row, seq).
    pub fn annotate_job(
        &self,
        run_id: i64,
        name: &str,
        job_id: &str,
        text: &str,
    ) -> Result<(i64, i64)> {
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO jobs (run_id, name, job_id, status, conclusion) VALUES (?1, ?2, ?3, 'completed', 'failure')
                 ON CONFLICT(run_id, name) DO NOTHING",
                params![run_id, name, job_id],
            )?;
            let job = c
                .query_one(
                    "SELECT id FROM jobs WHERE run_id = ?1 AND name = ?2",
                    params![run_id, name],
                )?
                .first_i64()?;
            let seq = c
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM log_lines WHERE job = ?1",
                    params![job],
                )?
                .i64("s")?;
            insert_lines(c, job, &[(seq, text.to_owned())], None)?;
            Ok((job, seq))
        })
    }

    /// Whether the job named `name` of run `run_id` is completed.
    pub fn job_completed(&self, run_id: i64, name: &str) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.query_opt(
                "SELECT 1 AS one FROM jobs WHERE run_id = ?1 AND name = ?2 AND status = 'completed'",
                params![run_id, name],
            )?
            .is_some())
        })
    }

    pub fn jobs(&self, run_id: i64) -> Result<Vec<Job>> {
        self.db.with(|c| {
            rows(
                c.query(
                    &format!("SELECT {JOB_FIELDS} FROM jobs WHERE run_id = ?1 ORDER BY id"),
                    params![run_id],
                )?,
                job_from_row,
            )
        })
    }

    /// Up to `limit` lines of `job` after sequence `after`, from the rows (a job whose log is
    /// archived has none).
    pub fn job_log_page(&self, job: i64, after: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        self.db.with(|c| {
            c.query(
                "SELECT seq, text FROM log_lines WHERE job = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                params![job, after, limit],
            )?
            .iter()
            .map(|r| Ok((r.i64("seq")?, r.string("text")?)))
            .collect()
        })
    }

    /// Jobs of completed runs whose logs are still rows: to be written to files.
    pub fn logs_to_archive(&self, limit: i64) -> Result<Vec<Job>> {
        self.db.with(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {JOB_FIELDS} FROM jobs WHERE log_archived = 0 AND run_id IN
                         (SELECT id FROM runs WHERE status = 'completed') ORDER BY id LIMIT ?1"
                    ),
                    params![limit],
                )?,
                job_from_row,
            )
        })
    }

    /// The job's log is now in its files (readers go there from now on): its rows go.
    pub fn log_archived(&self, job: i64) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE jobs SET log_archived = 1, log_job = COALESCE(log_job, id) WHERE id = ?1",
                params![job],
            )
            .map(drop)
        })?;
        self.purge_log_rows(job)
    }

    /// Deletes the rows of an archived job's log, some thousands per transaction: one delete
    /// of a million rows kept every page it touched in memory (SQLite) and the write lock
    /// for seconds.
    pub fn purge_log_rows(&self, job: i64) -> Result<()> {
        loop {
            let n = self.db.with(|c| {
                c.execute(
                    "DELETE FROM log_lines WHERE job = ?1 AND seq IN
                         (SELECT seq FROM log_lines WHERE job = ?1 ORDER BY seq LIMIT 10000)",
                    params![job],
                )
            })?;
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Archived jobs that still have log rows (a server stopped while deleting them).
    pub fn archived_with_rows(&self) -> Result<Vec<i64>> {
        self.db.with(|c| {
            c.query(
                "SELECT id FROM jobs j WHERE log_archived = 1
                     AND EXISTS (SELECT 1 FROM log_lines l WHERE l.job = j.id)",
                &[],
            )?
            .iter()
            .map(Row::first_i64)
            .collect()
        })
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
        self.db.with(|c| {
            c.execute(
                "INSERT INTO secrets (repo, environment, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(repo, environment, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![repo, environment, name, sealed, now_ms()],
            )
            .map(drop)
        })
    }

    pub fn delete_secret(&self, repo: &str, environment: &str, name: &str) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.execute(
                "DELETE FROM secrets WHERE repo = ?1 AND environment = ?2 AND name = ?3",
                params![repo, environment, name],
            )? == 1)
        })
    }

    /// Secrets that apply to `repo`: the global ones first, then its own.
    pub fn secrets_for(&self, repo: &str) -> Result<Vec<SealedSecret>> {
        self.db.with(|c| {
            c.query(
                "SELECT repo, environment, name, sealed FROM secrets WHERE repo = ?1 OR repo = '' ORDER BY repo, environment, name",
                params![repo],
            )?
            .iter()
            .map(|r| {
                Ok(SealedSecret {
                    repo: r.string("repo")?,
                    environment: r.string("environment")?,
                    name: r.string("name")?,
                    sealed: r.bytes("sealed")?,
                })
            })
            .collect()
        })
    }

    /// Names only: (repo, environment, name, updated_at).
    pub fn secret_names(&self) -> Result<Vec<(String, String, String, i64)>> {
        self.db.with(|c| {
            c.query(
                "SELECT repo, environment, name, updated_at FROM secrets ORDER BY repo, environment, name",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.string("repo")?,
                    r.string("environment")?,
                    r.string("name")?,
                    r.i64("updated_at")?,
                ))
            })
            .collect()
        })
    }

    /// A new queued run with the same repository, workflow, event and commit as `id`, as its
    /// next attempt. With `failed_only`, the jobs that succeeded in `id` are kept rather than
    /// run again (see [`Store::reuse_job`]).
    pub fn rerun(&self, id: i64, failed_only: bool) -> Result<i64> {
        let run = self.run(id)?;
        self.db.with(|c| {
            c.query_one(
                "INSERT INTO runs (repo, workflow, event, git_ref, sha, status, created_at, event_json,
                     attempt, rerun_of, rerun_failed, workflow_text)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
                params![
                    &run.repo,
                    &run.workflow,
                    &run.event,
                    &run.git_ref,
                    &run.sha,
                    now_ms(),
                    &run.event_json,
                    run.attempt + 1,
                    id,
                    i64::from(failed_only),
                    run.workflow_text.as_deref()
                ],
            )?
            .first_i64()
        })
    }

    /// For a re-run of failed jobs: the job `name` of `old_run`, if it succeeded, copied into
    /// `run` (its report and its log) instead of running again.
    pub fn reuse_job(&self, run: i64, old_run: i64, name: &str) -> Result<Option<Job>> {
        self.db.tx(|c| {
            let Some(old) = c.query_opt(
                "SELECT id FROM jobs WHERE run_id = ?1 AND name = ?2 AND status = 'completed'
                 AND conclusion = 'success' AND report IS NOT NULL",
                params![old_run, name],
            )?
            else {
                return Ok(None);
            };
            let old = old.first_i64()?;
            let n = c.execute(
                "INSERT INTO jobs (run_id, name, job_id, status, conclusion, started_at, finished_at,
                     labels, runner_id, attempt, report, reason, log_archived, log_job)
                 SELECT ?1, name, job_id, status, conclusion, started_at, finished_at, labels,
                     runner_id, attempt, report, 'kept from run ' || CAST(run_id AS TEXT),
                     log_archived, CASE WHEN log_archived = 1 THEN COALESCE(log_job, id) END
                 FROM jobs WHERE id = ?2
                 ON CONFLICT(run_id, name) DO NOTHING",
                params![run, old],
            )?;
            let new = c
                .query_one(
                    &format!("SELECT {JOB_FIELDS} FROM jobs WHERE run_id = ?1 AND name = ?2"),
                    params![run, name],
                )
                .and_then(|r| job_from_row(&r))?;
            if n == 1 {
                c.execute(
                    "INSERT INTO log_lines (job, seq, text) SELECT ?1, seq, text FROM log_lines WHERE job = ?2",
                    params![new.id, old],
                )?;
                artifacts::copy_job_artifacts(c, old_run, run, name)?;
            }
            Ok(Some(new))
        })
    }

    /// Figures for `/metrics`.
    /// Claims the firing of a cron entry for one minute (Unix minutes); false if it was
    /// already claimed, so a restarted server (or a second one) never fires it twice.
    pub fn claim_schedule(
        &self,
        repo: &str,
        workflow: &str,
        cron: &str,
        minute: i64,
    ) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.execute(
                "INSERT INTO schedule_fires (repo, workflow, cron, minute) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![repo, workflow, cron, minute],
            )? == 1)
        })
    }

    /// Stores an API token by its hash (the token itself is never stored).
    pub fn add_token(&self, name: &str, hash: &str) -> Result<i64> {
        self.db.with(|c| {
            c.query_one(
                "INSERT INTO api_tokens (name, hash, created_at) VALUES (?1, ?2, ?3) RETURNING id",
                params![name, hash, now_ms()],
            )?
            .first_i64()
        })
    }

    /// The API tokens: id, name, when made (never the token: only its hash is kept).
    pub fn tokens(&self) -> Result<Vec<(i64, String, i64)>> {
        self.db.with(|c| {
            c.query(
                "SELECT id, name, created_at FROM api_tokens ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.i64("id")?, r.string("name")?, r.i64("created_at")?)))
            .collect()
        })
    }

    /// Revokes API token `id`; false if there is none.
    pub fn revoke_token(&self, id: i64) -> Result<bool> {
        self.db
            .with(|c| Ok(c.execute("DELETE FROM api_tokens WHERE id = ?1", params![id])? > 0))
    }

    /// The name of the token with this hash, if any.
    pub fn token_name(&self, hash: &str) -> Result<Option<String>> {
        self.db.with(|c| {
            c.query_opt("SELECT name FROM api_tokens WHERE hash = ?1", params![hash])?
                .map(|r| r.string("name"))
                .transpose()
        })
    }

    /// One job.
    pub fn job(&self, id: i64) -> Result<Job> {
        self.db.with(|c| {
            c.query_opt(
                &format!("SELECT {JOB_FIELDS} FROM jobs WHERE id = ?1"),
                params![id],
            )?
            .as_ref()
            .map(job_from_row)
            .transpose()?
            .ok_or(StoreError::NoJob(id))
        })
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
        self.db.with(|c| {
            c.execute(
                "INSERT INTO jobs (run_id, name, job_id, status, labels, payload, sealed, queued_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7)
                 ON CONFLICT(run_id, name) DO NOTHING",
                params![run_id, name, job_id, labels, payload, sealed, now_ms()],
            )?;
            job_from_row(&c.query_one(
                &format!("SELECT {JOB_FIELDS} FROM jobs WHERE run_id = ?1 AND name = ?2"),
                params![run_id, name],
            )?)
        })
    }

    /// Leases the oldest queued job whose `runs-on` labels are all among `labels` (a runner
    /// with the label `*` takes any job) to the runner, until `lease_ms` from now. `lease` is
    /// the caller's random lease token.
    pub fn take_job(&self, runner: i64, want: &Want<'_>) -> Result<Option<Leased>> {
        self.db.with(|c| {
            if c.dialect() == Dialect::Postgres {
                let mut values = Vec::new();
                let ctes = pg_take_ctes(&mut values, runner, want, "");
                let r = c.query_one(
                    &format!(
                        "WITH {ctes} SELECT taken.*, (SELECT count(*) FROM page) AS next_seen
                         FROM (SELECT 1) AS one LEFT JOIN taken ON true"
                    ),
                    &values,
                )?;
                return first_page_taken(c, &r, runner, want);
            }
            take_from(c, 0, runner, want)
        })
    }

    /// The job, if `runner` holds it under `lease`.
    pub fn held_job(&self, job: i64, runner: i64, lease: &str) -> Result<Job> {
        self.db.with(|c| held(c, job, runner, lease))
    }

    /// A running job and its lease (the job's token is made from it): `None` once the job
    /// is not running any more, or its lease ran out.
    pub fn running_job(&self, job: i64) -> Result<Option<(Job, String)>> {
        self.db.with(|c| {
            let row = c.query_opt(
                &format!(
                    "SELECT {JOB_FIELDS}, lease FROM jobs WHERE id = ?1 AND status = 'running'
                     AND lease IS NOT NULL AND lease_until >= ?2"
                ),
                params![job, now_ms()],
            )?;
            row.as_ref()
                .map(|r| Ok((job_from_row(r)?, r.string("lease")?)))
                .transpose()
        })
    }

    /// Extends the lease of a held job; true if the job (or its run) is to be cancelled.
    pub fn heartbeat(&self, job: i64, runner: i64, lease: &str, lease_ms: i64) -> Result<bool> {
        self.db.with(|c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE jobs SET lease_until = ?4
                 WHERE id = ?1 AND runner_id = ?2 AND lease = ?3 AND status = 'running'",
                params![job, runner, lease, now + lease_ms],
            )?;
            if n == 0 {
                return Err(StoreError::NotHeld(job));
            }
            c.execute(
                "UPDATE runners SET last_seen = ?2 WHERE id = ?1",
                params![runner, now],
            )?;
            let r = c.query_one(
                "SELECT j.cancel_requested + r.cancel_requested AS c FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.id = ?1",
                params![job],
            )?;
            Ok(r.i64("c")? != 0)
        })
    }

    /// Appends a held job's log lines (a line already stored under its sequence is ignored,
    /// so a batch sent twice is stored once). Returns the job.
    pub fn append_job_logs(
        &self,
        job: i64,
        runner: i64,
        lease: &str,
        lines: &[(i64, String)],
    ) -> Result<Job> {
        // The insert checks the lease itself: no transaction needed.
        self.db.batch(|c| {
            let held = held(c, job, runner, lease)?;
            insert_lines(c, job, lines, Some((runner, lease)))?;
            Ok(held)
        })
    }

    /// A runner's result for a held job, with its last log lines (stored once, as
    /// [`Store::append_job_logs`] does): the completed job. With `next`, the runner's next
    /// job is leased as well, if there is one; on PostgreSQL in the same statement (one
    /// commit instead of two). The report is kept even when that lease fails: its error
    /// comes second.
    pub fn complete_job(
        &self,
        job: i64,
        runner: i64,
        lease: &str,
        outcome: &Outcome<'_>,
        next: Option<&Want<'_>>,
    ) -> Result<(Job, Result<Option<Leased>>)> {
        let Outcome {
            conclusion,
            report,
            lines,
            server,
        } = *outcome;
        let end = params![job, runner, lease, conclusion, report, now_ms(), server];
        // Statements each safe alone (no transaction needed): the lines go in only while the
        // lease holds, and are kept once; the report ends the lease; the next lease is taken
        // only with the report.
        self.db.batch(|c| {
            if c.dialect() == Dialect::Postgres {
                // One round trip: the last lines go in with the report (PostgreSQL's
                // statements may modify data in `WITH`), any before them ahead of it.
                let (head, last) = lines.split_at(lines.len().saturating_sub(64));
                insert_lines(c, job, head, Some((runner, lease)))?;
                let Some(want) = next else {
                    let (done, _) = pg_complete(c, job, end, last, None)?;
                    return Ok((done, Ok(None)));
                };
                return match pg_complete(c, job, end, last, Some((runner, want))) {
                    Ok((done, row)) => {
                        let next = first_page_taken(c, &row, runner, want);
                        Ok((done, next))
                    }
                    Err(StoreError::NotHeld(j)) => Err(StoreError::NotHeld(j)),
                    // The report alone, then.
                    Err(e) => Ok((pg_complete(c, job, end, last, None)?.0, Err(e))),
                };
            }
            insert_lines(c, job, lines, Some((runner, lease)))?;
            let done = c
                .query_opt(&format!("{COMPLETE} RETURNING {JOB_FIELDS}"), end)?
                .as_ref()
                .map(job_from_row)
                .transpose()?
                .ok_or(StoreError::NotHeld(job))?;
            let next = match next {
                Some(want) => take_from(c, 0, runner, want),
                None => Ok(None),
            };
            Ok((done, next))
        })
    }

    /// The jobs completed since `since` (ms) whose report did not reach server `server`:
    /// those its dispatchers are not told of otherwise.
    pub fn completed_elsewhere(&self, server: &str, since: i64) -> Result<Vec<i64>> {
        self.db.with(|c| {
            c.query(
                "SELECT id FROM jobs WHERE finished_at > ?1 AND status = 'completed'
                     AND (reported_by IS NULL OR reported_by <> ?2)",
                params![since, server],
            )?
            .iter()
            .map(Row::first_i64)
            .collect()
        })
    }

    /// Asks a job to stop: a queued one is cancelled at once, a leased one is flagged for its
    /// runner (it sees the flag in its next heartbeat).
    pub fn cancel_job(&self, job: i64) -> Result<()> {
        self.db.with(|c| {
            let n = c.execute(
                "UPDATE jobs SET status = 'completed', conclusion = 'cancelled', finished_at = ?2,
                     payload = NULL, sealed = NULL
                 WHERE id = ?1 AND status = 'queued'",
                params![job, now_ms()],
            )?;
            if n == 0 {
                c.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
                    params![job],
                )?;
            }
            Ok(())
        })
    }

    /// Releases leased jobs that `filter` (an SQL condition on `jobs` with `?1`) selects:
    /// each is queued again for another attempt, or failed with `reason` once it had
    /// `max_attempts`.
    fn release(&self, filter: &str, arg: i64, max_attempts: i64, reason: &str) -> Result<Released> {
        self.db
            .tx(|c| release_in(c, filter, arg, max_attempts, reason))
    }

    /// Jobs whose lease ran out (their runner stopped sending heartbeats): "runner lost".
    pub fn expire_leases(&self, max_attempts: i64) -> Result<Released> {
        self.release("lease_until < ?1", now_ms(), max_attempts, "runner lost")
    }

    /// The jobs a runner holds, given up (its process was restarted, or it hands them back).
    pub fn release_runner(&self, runner: i64, max_attempts: i64, reason: &str) -> Result<Released> {
        self.release("runner_id = ?1", runner, max_attempts, reason)
    }

    /// Stores a one-time registration token (its hash).
    pub fn add_runner_token(&self, hash: &str) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO runner_tokens (hash, created_at) VALUES (?1, ?2)",
                params![hash, now_ms()],
            )
            .map(drop)
        })
    }

    /// Registers a runner with a one-time token, which is used up; None if the token is
    /// unknown, was used before, or was made more than `ttl_ms` ago.
    pub fn register_runner(
        &self,
        token_hash: &str,
        name: &str,
        labels: &[String],
        capacity: i64,
        credential_hash: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>> {
        let labels = serde_json::to_string(labels).unwrap_or_default();
        self.db.tx(|c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE runner_tokens SET used_at = ?2
                 WHERE hash = ?1 AND used_at IS NULL AND created_at >= ?3",
                params![token_hash, now, now - ttl_ms],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let id = c
                .query_one(
                    "INSERT INTO runners (name, labels, capacity, credential_hash, created_at, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING id",
                    params![name, &labels, capacity, credential_hash, now],
                )?
                .first_i64()?;
            Ok(Some(id))
        })
    }

    /// Removes runner `id`: its credential stops working, its jobs are queued again (or
    /// failed when out of attempts). `None` if there is no such runner; the in-process
    /// runners are not removed (a server makes its own at each start).
    pub fn remove_runner(&self, id: i64, max_attempts: i64) -> Result<Option<Released>> {
        let embedded = self.db.with(|c| {
            c.query_opt("SELECT embedded FROM runners WHERE id = ?1", params![id])?
                .map(|r| r.i64("embedded"))
                .transpose()
        })?;
        match embedded {
            None | Some(1) => return Ok(None),
            Some(_) => {}
        }
        // One transaction: no lease is taken between the release and the removal.
        self.db
            .tx(|c| {
                let released = release_in(
                    c,
                    "runner_id = ?1",
                    id,
                    max_attempts,
                    "the runner was removed",
                )?;
                c.execute("DELETE FROM runners WHERE id = ?1", params![id])?;
                Ok(released)
            })
            .map(Some)
    }

    /// The in-process runner's row of server `server` (servers sharing the database have one
    /// each), with a new credential for this server process; made the first time.
    pub fn embedded_runner(
        &self,
        server: &str,
        labels: &[String],
        capacity: i64,
        credential_hash: &str,
    ) -> Result<i64> {
        let labels = serde_json::to_string(labels).unwrap_or_default();
        let name = format!("embedded ({server})");
        self.db.tx(|c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE runners SET labels = ?1, capacity = ?2, credential_hash = ?3, last_seen = ?4
                 WHERE embedded = 1 AND name = ?5",
                params![&labels, capacity, credential_hash, now, &name],
            )?;
            if n == 0 {
                c.execute(
                    "INSERT INTO runners (name, labels, capacity, credential_hash, created_at, last_seen, embedded)
                     VALUES (?5, ?1, ?2, ?3, ?4, ?4, 1)",
                    params![&labels, capacity, credential_hash, now, &name],
                )?;
            }
            c.query_one(
                "SELECT id FROM runners WHERE embedded = 1 AND name = ?1",
                params![&name],
            )?
            .first_i64()
        })
    }

    /// The runner with this credential (its hash), if any.
    pub fn runner_by_credential(&self, hash: &str) -> Result<Option<Runner>> {
        self.db.with(|c| {
            c.query_opt(
                "SELECT * FROM runners WHERE credential_hash = ?1",
                params![hash],
            )?
            .as_ref()
            .map(runner_from_row)
            .transpose()
        })
    }

    /// Notes that a runner asked for work now.
    pub fn touch_runner(&self, id: i64) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE runners SET last_seen = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )
            .map(drop)
        })
    }

    pub fn runners(&self) -> Result<Vec<Runner>> {
        self.db.with(|c| {
            rows(
                c.query("SELECT * FROM runners ORDER BY id", &[])?,
                runner_from_row,
            )
        })
    }

    /// Jobs waiting for a runner (for `/metrics`).
    pub fn queue_depth(&self) -> Result<i64> {
        self.db.with(|c| {
            c.query_one(
                "SELECT count(*) AS n FROM jobs WHERE status = 'queued'",
                &[],
            )?
            .i64("n")
        })
    }
}

/// The webhook intake: deliveries are stored as they arrive (answered at once), then turned
/// into runs by a task; a delivery and the runs it fired are one transaction, so each is
/// queued exactly once, across restarts and servers.
impl Store {
    /// Stores a batch of deliveries in one transaction; for each, its pending id, or `None`
    /// when its key was seen before (a redelivery).
    pub fn accept_deliveries(&self, batch: &[NewDelivery]) -> Result<Vec<Option<i64>>> {
        let now = now_ms();
        self.db.tx(|c| {
            batch
                .iter()
                .map(|d| {
                    if let Some(key) = &d.key
                        && c.execute(
                            "INSERT INTO deliveries (id, received_at) VALUES (?1, ?2)
                             ON CONFLICT DO NOTHING",
                            params![key, now],
                        )? == 0
                    {
                        return Ok(None);
                    }
                    c.query_one(
                        "INSERT INTO pending_deliveries (repo, event_json, received_at)
                         VALUES (?1, ?2, ?3) RETURNING id",
                        params![&d.repo, &d.event_json, now],
                    )?
                    .first_i64()
                    .map(Some)
                })
                .collect()
        })
    }

    /// Up to `limit` deliveries waiting to be turned into runs, oldest first (those waiting
    /// for a retry after `now` excepted).
    pub fn pending_deliveries(&self, limit: i64) -> Result<Vec<PendingDelivery>> {
        self.db.with(|c| {
            c.query(
                "SELECT id, repo, event_json, attempts FROM pending_deliveries
                 WHERE not_before <= ?1 ORDER BY id LIMIT ?2",
                params![now_ms(), limit],
            )?
            .iter()
            .map(|r| {
                Ok(PendingDelivery {
                    id: r.i64("id")?,
                    repo: r.string("repo")?,
                    event_json: r.string("event_json")?,
                    attempts: r.i64("attempts")?,
                })
            })
            .collect()
        })
    }

    /// Deliveries not yet turned into runs.
    pub fn pending_count(&self) -> Result<i64> {
        self.db.with(|c| {
            c.query_one("SELECT count(*) AS n FROM pending_deliveries", &[])?
                .i64("n")
        })
    }

    /// Turns deliveries into their runs in one transaction: each delivery is removed and its
    /// runs created together. A delivery another server resolved first creates nothing.
    /// Returns the runs created.
    pub fn resolve_deliveries(&self, resolved: &[(i64, Vec<NewRun>)]) -> Result<Vec<i64>> {
        self.db.tx(|c| {
            let mut ids = Vec::new();
            for (delivery, runs) in resolved {
                if c.execute(
                    "DELETE FROM pending_deliveries WHERE id = ?1",
                    params![*delivery],
                )? == 0
                {
                    continue;
                }
                for run in runs {
                    ids.push(insert_run(c, run)?);
                }
            }
            Ok(ids)
        })
    }

    /// A delivery that could not be read now (git failed): tried again after `delay_ms`.
    pub fn retry_delivery(&self, id: i64, delay_ms: i64) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE pending_deliveries SET attempts = attempts + 1, not_before = ?2 WHERE id = ?1",
                params![id, now_ms() + delay_ms],
            )?;
            Ok(())
        })
    }
}

/// Polled repositories: which commit of each ref has been turned into pushes. A ref's new
/// commit and the runs its push fires are stored in one transaction, so a push is queued
/// exactly once, whenever the server stops.
impl Store {
    /// The refs of `repo` seen when fetched from `url`; `None` when nothing was (a new
    /// mirror, or one fetched from another URL before).
    pub fn polled_refs(
        &self,
        repo: &str,
        url: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        self.db.with(|c| {
            let rows = c.query(
                "SELECT url, git_ref, sha FROM polled_refs WHERE repo = ?1",
                params![repo],
            )?;
            if rows.is_empty()
                || rows
                    .iter()
                    .any(|r| r.string("url").ok().as_deref() != Some(url))
            {
                return Ok(None);
            }
            rows.iter()
                .filter(|r| r.string("git_ref").is_ok_and(|g| !g.is_empty()))
                .map(|r| Ok((r.string("git_ref")?, r.string("sha")?)))
                .collect::<Result<_>>()
                .map(Some)
        })
    }

    /// Makes `refs` the baseline of `repo` as fetched from `url` (an empty ref name marks a
    /// baseline with no refs).
    pub fn set_polled_baseline(
        &self,
        repo: &str,
        url: &str,
        refs: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        self.db.tx(|c| {
            c.execute("DELETE FROM polled_refs WHERE repo = ?1", params![repo])?;
            c.execute(
                "INSERT INTO polled_refs (repo, url, git_ref, sha) VALUES (?1, ?2, '', '')",
                params![repo, url],
            )?;
            for (git_ref, sha) in refs {
                c.execute(
                    "INSERT INTO polled_refs (repo, url, git_ref, sha) VALUES (?1, ?2, ?3, ?4)",
                    params![repo, url, git_ref, sha],
                )?;
            }
            Ok(())
        })
    }

    /// Records `git_ref` of `repo` at `sha` and creates the runs its push fires, together.
    pub fn queue_polled_push(
        &self,
        repo: &str,
        url: &str,
        git_ref: &str,
        sha: &str,
        runs: &[NewRun],
    ) -> Result<Vec<i64>> {
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO polled_refs (repo, url, git_ref, sha) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo, git_ref) DO UPDATE SET sha = excluded.sha, url = excluded.url",
                params![repo, url, git_ref, sha],
            )?;
            runs.iter().map(|r| insert_run(c, r)).collect()
        })
    }

    /// Forgets refs of `repo` that no longer exist.
    pub fn forget_polled_ref(&self, repo: &str, git_ref: &str) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "DELETE FROM polled_refs WHERE repo = ?1 AND git_ref = ?2",
                params![repo, git_ref],
            )
            .map(drop)
        })
    }
}

/// Inserts a run: queued, or completed and failed when it has a `failure`.
fn insert_run(c: &mut dyn Db, new: &NewRun) -> Result<i64> {
    let now = now_ms();
    let (status, conclusion, finished) = match new.failure {
        Some(_) => ("completed", Some("failure"), Some(now)),
        None if new.held => ("waiting", None, None),
        None => ("queued", None, None),
    };
    c.query_one(
        "INSERT INTO runs (repo, workflow, event, git_ref, sha, status, created_at, event_json,
             workflow_text, conclusion, reason, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
        params![
            &new.repo,
            &new.workflow,
            &new.event,
            &new.git_ref,
            &new.sha,
            status,
            now,
            &new.event_json,
            new.workflow_text.as_deref(),
            conclusion,
            new.failure.as_deref(),
            finished
        ],
    )?
    .first_i64()
}

/// Inserts log lines; a line whose (job, seq) is stored already is left as it is.
/// The insert of `rows` (from [`value_rows`]) as lines of job `?1`, each `seq` once, where
/// `condition` (`" AND ..."`, or empty) holds.
fn insert_rows_sql(rows: &str, condition: &str) -> String {
    // `WHERE` before `ON CONFLICT` also keeps SQLite's parser from reading the upsert as a
    // join.
    format!(
        "INSERT INTO log_lines (job, seq, text)
         SELECT CAST(?1 AS BIGINT), v.column1, v.column2 FROM (VALUES {rows}) AS v
         WHERE 1 = 1{condition}
         ON CONFLICT DO NOTHING"
    )
}

/// `(seq, text)` rows of a `VALUES` list for `lines`, their parameters appended to `values`
/// (numbered after those already there).
fn value_rows(values: &mut Vec<Param>, lines: &[(i64, String)]) -> String {
    let first = values.len() + 1;
    let mut rows = String::new();
    for (i, (seq, text)) in lines.iter().enumerate() {
        if i > 0 {
            rows.push_str(", ");
        }
        let p = first + 2 * i;
        rows.push_str(&format!("(CAST(?{p} AS BIGINT), ?{})", p + 1));
        values.push(Param::from(*seq));
        values.push(Param::from(text));
    }
    rows
}

/// Stores a job's log lines, each sequence number once; with `held` (runner, lease), only
/// while that runner holds the job under that lease.
fn insert_lines(
    c: &mut dyn Db,
    job: i64,
    lines: &[(i64, String)],
    held: Option<(i64, &str)>,
) -> Result<()> {
    // Up to 64 rows per statement (one round trip each on PostgreSQL; at most 64 shapes of
    // statement to prepare).
    let mut rest = lines;
    while !rest.is_empty() {
        let n = rest.len().min(64);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut values = Vec::with_capacity(3 + 2 * n);
        values.push(Param::from(job));
        let guard = match held {
            Some((runner, lease)) => {
                values.push(Param::from(runner));
                values.push(Param::from(lease));
                " AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND runner_id = ?2 AND lease = ?3
                     AND status = 'running')"
            }
            None => "",
        };
        let rows = value_rows(&mut values, chunk);
        c.execute(&insert_rows_sql(&rows, guard), &values)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn deliveries_become_runs_exactly_once() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        let delivery = |key: Option<&str>| NewDelivery {
            key: key.map(str::to_owned),
            repo: "r".into(),
            event_json: "{}".into(),
        };
        let ids = s
            .accept_deliveries(&[delivery(Some("a")), delivery(Some("a")), delivery(None)])
            .unwrap();
        assert!(ids[0].is_some() && ids[1].is_none() && ids[2].is_some());
        assert_eq!(s.accept_deliveries(&[delivery(Some("a"))]).unwrap(), [None]);
        let pending = s.pending_deliveries(10).unwrap();
        assert_eq!(pending.len(), 2);
        // One delivery waits for a retry: not handed out before its time.
        s.retry_delivery(pending[1].id, 60_000).unwrap();
        assert_eq!(s.pending_deliveries(10).unwrap().len(), 1);
        let resolved = [(pending[0].id, vec![new_run("r"), new_run("r")])];
        assert_eq!(s.resolve_deliveries(&resolved).unwrap().len(), 2);
        // Resolved again (another server, a retried batch): nothing more.
        assert!(s.resolve_deliveries(&resolved).unwrap().is_empty());
        assert_eq!(s.runs(Some("r"), 10).unwrap().len(), 2);
        assert_eq!(s.pending_count().unwrap(), 1);
        // A failed run is recorded completed, with its reason.
        let mut bad = new_run("r");
        bad.failure = Some("invalid workflow".into());
        let id = s.create_run(&bad).unwrap();
        let run = s.run(id).unwrap();
        assert_eq!(
            (
                run.status.as_str(),
                run.conclusion.as_deref(),
                run.reason.as_deref()
            ),
            ("completed", Some("failure"), Some("invalid workflow"))
        );
    }

    #[test]
    fn queue_take_finish_and_recover() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        let a = s.create_run(&new_run("r")).unwrap();
        let b = s.create_run(&new_run("r")).unwrap();
        assert_eq!(s.take_queued("me", 60_000).unwrap().unwrap().id, a);
        assert_eq!(
            s.runs(Some("r"), 10)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            [b, a]
        );
        let (job, seq) = s.annotate_job(a, "test", "test", "x").unwrap();
        assert_eq!(seq, 1);
        assert_eq!(s.annotate_job(a, "test", "test", "y").unwrap(), (job, 2));
        assert_eq!(s.job_log_page(job, 0, 100).unwrap().len(), 2);
        assert_eq!(s.job_log_page(job, 1, 100).unwrap()[0].1, "y");
        // A restarted server finds the run it was orchestrating; another server leaves it
        // alone while its orchestrator's lease holds, and takes it once it lapsed.
        drop(s);
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        let ids = |runs: Vec<Run>| runs.iter().map(|r| r.id).collect::<Vec<_>>();
        assert!(s.take_over_runs("other", 60_000, true).unwrap().is_empty());
        assert_eq!(ids(s.take_over_runs("me", 60_000, true).unwrap()), [a]);
        assert!(s.take_over_runs("me", 60_000, false).unwrap().is_empty());
        s.renew_orchestration("me", -1).unwrap();
        assert_eq!(ids(s.take_over_runs("other", 60_000, false).unwrap()), [a]);
        assert!(s.take_over_runs("me", 60_000, false).unwrap().is_empty());
        assert!(s.claim_schedule("r", "ci.yml", "* * * * *", 100).unwrap());
        assert!(!s.claim_schedule("r", "ci.yml", "* * * * *", 100).unwrap());
        assert!(s.claim_schedule("r", "ci.yml", "* * * * *", 101).unwrap());
        assert_eq!(
            s.request_cancel(b).unwrap().conclusion.as_deref(),
            Some("cancelled")
        );
    }

    #[test]
    fn a_report_brings_its_last_lines_once_and_only_under_its_lease() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        let run = s.create_run(&new_run("r")).unwrap();
        let job = s.enqueue_job(run, "j", "j", "[]", "{}", b"").unwrap();
        s.add_runner_token("t").unwrap();
        let r = s
            .register_runner("t", "r", &[], 1, "c", 3_600_000)
            .unwrap()
            .unwrap();
        s.take_job(r, &want(&[], "L", 60_000)).unwrap().unwrap();
        // More lines than one statement takes, some of them sent before.
        let lines: Vec<(i64, String)> = (1..=150).map(|i| (i, format!("line {i}"))).collect();
        s.append_job_logs(job.id, r, "L", &lines[..70]).unwrap();
        assert!(matches!(
            s.complete_job(job.id, r, "wrong", &outcome("success", &lines[70..]), None),
            Err(StoreError::NotHeld(_))
        ));
        assert_eq!(s.job_log_page(job.id, 0, 1000).unwrap().len(), 70);
        let done = s
            .complete_job(job.id, r, "L", &outcome("success", &lines[60..]), None)
            .unwrap()
            .0;
        assert_eq!(done.status, "completed");
        let page = s.job_log_page(job.id, 0, 1000).unwrap();
        assert_eq!(page, lines);
        // Sent again (the answer was lost): refused, nothing changes.
        assert!(matches!(
            s.complete_job(
                job.id,
                r,
                "L",
                &outcome("failure", &[(151, "x".into())]),
                None
            ),
            Err(StoreError::NotHeld(_))
        ));
        assert_eq!(s.job_log_page(job.id, 0, 1000).unwrap().len(), 150);
        assert_eq!(s.completed_elsewhere("me", 0).unwrap(), Vec::<i64>::new());
        assert_eq!(s.completed_elsewhere("other", 0).unwrap(), [job.id]);
        // Archived: the rows go; rows left behind by a stop are found and purged.
        s.log_archived(job.id).unwrap();
        assert!(s.job_log_page(job.id, 0, 10).unwrap().is_empty());
        s.db.with(|c| insert_lines(c, job.id, &lines[..3], None))
            .unwrap();
        assert_eq!(s.archived_with_rows().unwrap(), [job.id]);
        s.purge_log_rows(job.id).unwrap();
        assert!(s.archived_with_rows().unwrap().is_empty());
    }

    fn outcome<'a>(conclusion: &'a str, lines: &'a [(i64, String)]) -> Outcome<'a> {
        Outcome {
            conclusion,
            report: "{}",
            lines,
            server: "me",
        }
    }

    fn want<'a>(labels: &'a [String], lease: &'a str, lease_ms: i64) -> Want<'a> {
        Want {
            labels,
            lease,
            lease_ms,
        }
    }

    #[test]
    fn a_report_takes_the_runner_s_next_job_only_when_it_is_accepted() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db.sqlite")).unwrap();
        let run = s.create_run(&new_run("r")).unwrap();
        let first = s.enqueue_job(run, "a", "a", "[]", "{}", b"").unwrap();
        s.enqueue_job(run, "b", "b", r#"["gpu"]"#, "{}", b"")
            .unwrap();
        let third = s
            .enqueue_job(run, "c", "c", r#"["Linux"]"#, "{}", b"")
            .unwrap();
        s.add_runner_token("t").unwrap();
        let linux = vec!["linux".to_owned()];
        let r = s
            .register_runner("t", "r", &linux, 1, "c", 3_600_000)
            .unwrap()
            .unwrap();
        let leased = s.take_job(r, &want(&linux, "L1", 60_000)).unwrap().unwrap();
        assert_eq!(leased.job.id, first.id);
        // A report under the wrong lease takes nothing.
        assert!(matches!(
            s.complete_job(
                first.id,
                r,
                "wrong",
                &outcome("success", &[]),
                Some(&want(&linux, "L2", 60_000))
            ),
            Err(StoreError::NotHeld(_))
        ));
        assert_eq!(s.job(third.id).unwrap().status, "queued");
        let (done, next) = s
            .complete_job(
                first.id,
                r,
                "L1",
                &outcome("success", &[(1, "x".into())]),
                Some(&want(&linux, "L2", 60_000)),
            )
            .unwrap();
        assert_eq!(done.status, "completed");
        let next = next.unwrap().unwrap();
        assert_eq!(
            (next.job.id, next.lease.as_str()),
            (third.id, "L2"),
            "b wants gpu"
        );
        assert_eq!(s.held_job(third.id, r, "L2").unwrap().status, "running");
        let (_, next) = s
            .complete_job(
                third.id,
                r,
                "L2",
                &outcome("success", &[]),
                Some(&want(&linux, "L3", 60_000)),
            )
            .unwrap();
        assert!(next.unwrap().is_none());
    }

    #[test]
    fn jobs_are_leased_by_labels_and_released_when_their_runner_is_lost() {
        let linux = vec!["linux".to_owned()];
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
            .register_runner("t1", "cpu", &["linux".into()], 1, "c1", 3_600_000)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.register_runner("t1", "again", &[], 1, "c2", 3_600_000)
                .unwrap(),
            None,
            "a registration token works once"
        );
        s.add_runner_token("t2").unwrap();
        assert_eq!(
            s.register_runner("t2", "late", &[], 1, "c3", -1).unwrap(),
            None,
            "an expired registration token works no more"
        );
        let leased = s
            .take_job(cpu, &want(&linux, "L1", 60_000))
            .unwrap()
            .unwrap();
        assert_eq!(leased.job.id, any.id, "the gpu job is not for this runner");
        assert!(
            s.take_job(cpu, &want(&linux, "L2", 60_000))
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
        assert_eq!(s.job_log_page(any.id, 0, 100).unwrap().len(), 2);
        // The runner vanishes: attempt 2 is queued, then the job fails as "runner lost".
        let released = s.release_runner(cpu, 2, "runner lost").unwrap();
        assert_eq!(released.requeued, [(any.id, run)]);
        let again = s.take_job(cpu, &want(&linux, "L3", -1)).unwrap().unwrap();
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
