//! Jobs: a run's job instances, as rows (the queue and leases are in `queue`).

use crate::db::{Db, Row, params};
use crate::logs::insert_lines;
use crate::{
    Conclusion, JobId, JobStatus, Result, RunId, RunnerId, Store, StoreError, now_ms, rows,
};
use serde::Serialize;

/// A job instance of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub run_id: RunId,
    /// The job's display name, unique within the run (`test (3.11)`).
    pub name: String,
    pub job_id: String,
    /// `queued`, `running` (leased to a runner) or `completed`.
    pub status: JobStatus,
    /// `success`, `failure`, `cancelled`, `skipped`, or null while not completed.
    pub conclusion: Option<Conclusion>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The `runs-on` labels a runner must have, as a JSON array.
    #[serde(skip)]
    pub labels: String,
    /// The runner holding (or that last held) the job.
    pub runner_id: Option<RunnerId>,
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
    pub log_job: JobId,
}

/// The columns of `jobs` without the payload and sealed secrets.
pub(crate) const JOB_FIELDS: &str = "id, run_id, name, job_id, status, conclusion, started_at, finished_at, labels, runner_id, attempt, reason, report, cancel_requested, log_archived, log_job";

pub(crate) fn job_from_row(r: &Row) -> Result<Job> {
    Ok(Job {
        id: JobId::from(r.i64("id")?),
        run_id: RunId::from(r.i64("run_id")?),
        name: r.string("name")?,
        job_id: r.string("job_id")?,
        status: r.value("status")?,
        conclusion: r.opt_value("conclusion")?,
        started_at: r.opt_i64("started_at")?,
        finished_at: r.opt_i64("finished_at")?,
        labels: r.string("labels")?,
        runner_id: r.opt_i64("runner_id")?.map(RunnerId::from),
        attempt: r.i64("attempt")?,
        reason: r.opt_string("reason")?,
        report: r.opt_string("report")?,
        cancel_requested: r.i64("cancel_requested")? != 0,
        log_archived: r.i64("log_archived")? != 0,
        log_job: JobId::from(r.opt_i64("log_job")?.unwrap_or(r.i64("id")?)),
    })
}

/// A job of a run as the run ended: its name, its id in the workflow, its conclusion.
pub type NotRun = (String, String, Conclusion);

/// Rows for the jobs of run `run_id` that have none (they never ran), in the caller's
/// transaction.
pub(crate) fn insert_not_run(c: &mut dyn Db, run_id: RunId, jobs: &[NotRun]) -> Result<()> {
    for (name, job_id, conclusion) in jobs {
        c.execute(
            "INSERT INTO jobs (run_id, name, job_id, status, conclusion) VALUES (?1, ?2, ?3, 'completed', ?4)
             ON CONFLICT(run_id, name) DO NOTHING",
            params![run_id, name, job_id, *conclusion],
        )?;
    }
    Ok(())
}

impl Store {
    /// A message about a job that the server itself has to say (its `if` or `runs-on` could
    /// not be evaluated, so it failed before any runner saw it): the job's row, failed, with
    /// the line in its log. Returns (job row, seq).
    pub fn annotate_job(
        &self,
        run_id: RunId,
        name: &str,
        job_id: &str,
        text: &str,
    ) -> Result<(JobId, i64)> {
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
                .first_i64()
                .map(JobId::from)?;
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
    pub fn job_completed(&self, run_id: RunId, name: &str) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.query_opt(
                "SELECT 1 AS one FROM jobs WHERE run_id = ?1 AND name = ?2 AND status = 'completed'",
                params![run_id, name],
            )?
            .is_some())
        })
    }

    pub fn jobs(&self, run_id: RunId) -> Result<Vec<Job>> {
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

    /// One job.
    pub fn job(&self, id: JobId) -> Result<Job> {
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
        run_id: RunId,
        name: &str,
        job_id: &str,
        labels: &str,
        payload: &str,
        sealed: &[u8],
    ) -> Result<Job> {
        self.enqueue_job_held(run_id, name, job_id, labels, payload, sealed, None)
    }

    /// [`Store::enqueue_job`], held (`waiting`, not leased) until approved when `held` is
    /// given: the alerts it holds, telling that the job waits, are queued with it (once: a
    /// job queued before is found, not queued again, and tells nothing).
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_job_held(
        &self,
        run_id: RunId,
        name: &str,
        job_id: &str,
        labels: &str,
        payload: &str,
        sealed: &[u8],
        held: Option<&[crate::NewAlert]>,
    ) -> Result<Job> {
        let now = now_ms();
        self.db.tx(|c| {
            let status = if held.is_some() {
                JobStatus::Waiting
            } else {
                JobStatus::Queued
            };
            let inserted = c.execute(
                "INSERT INTO jobs (run_id, name, job_id, status, labels, payload, sealed, queued_at)
                 VALUES (?1, ?2, ?3, ?8, ?4, ?5, ?6, ?7)
                 ON CONFLICT(run_id, name) DO NOTHING",
                params![run_id, name, job_id, labels, payload, sealed, now, status],
            )?;
            if let (1, Some(alerts)) = (inserted, held) {
                crate::alerts::insert_alerts(c, alerts, now)?;
            }
            job_from_row(&c.query_one(
                &format!("SELECT {JOB_FIELDS} FROM jobs WHERE run_id = ?1 AND name = ?2"),
                params![run_id, name],
            )?)
        })
    }

    /// The jobs completed since `since` (ms) whose report did not reach server `server`:
    /// those its dispatchers are not told of otherwise.
    pub fn completed_elsewhere(&self, server: &str, since: i64) -> Result<Vec<JobId>> {
        self.db.with(|c| {
            c.query(
                "SELECT id FROM jobs WHERE finished_at > ?1 AND status = 'completed'
                     AND (reported_by IS NULL OR reported_by <> ?2)",
                params![since, server],
            )?
            .iter()
            .map(|r| r.first_i64().map(JobId::from))
            .collect()
        })
    }

    /// Asks a job to stop: a queued one is cancelled at once, a leased one is flagged for its
    /// runner (it sees the flag in its next heartbeat).
    /// Lets run `run`'s jobs that wait for approval (all, or the one named `name`) go:
    /// queued. The jobs let go.
    pub fn approve_jobs(&self, run: RunId, name: Option<&str>) -> Result<Vec<Job>> {
        self.db.with(|c| {
            rows(
                c.query(
                    &format!(
                        "UPDATE jobs SET status = 'queued', queued_at = ?3
                         WHERE run_id = ?1 AND status = 'waiting'
                           AND (CAST(?2 AS TEXT) IS NULL OR name = ?2)
                         RETURNING {JOB_FIELDS}"
                    ),
                    params![run, name, now_ms()],
                )?,
                job_from_row,
            )
        })
    }

    /// Ends run `run`'s jobs that wait for approval (all, or the one named `name`) without
    /// running them: failed, with `reason`. The jobs ended.
    pub fn reject_jobs(&self, run: RunId, name: Option<&str>, reason: &str) -> Result<Vec<Job>> {
        self.db.with(|c| {
            rows(
                c.query(
                    &format!(
                        "UPDATE jobs SET status = 'completed', conclusion = 'failure',
                             finished_at = ?3, reason = ?4, payload = NULL, sealed = NULL
                         WHERE run_id = ?1 AND status = 'waiting'
                           AND (CAST(?2 AS TEXT) IS NULL OR name = ?2)
                         RETURNING {JOB_FIELDS}"
                    ),
                    params![run, name, now_ms(), reason],
                )?,
                job_from_row,
            )
        })
    }

    pub fn cancel_job(&self, job: JobId) -> Result<()> {
        self.db.with(|c| {
            let n = c.execute(
                "UPDATE jobs SET status = 'completed', conclusion = 'cancelled', finished_at = ?2,
                     payload = NULL, sealed = NULL
                 WHERE id = ?1 AND status IN ('queued', 'waiting')",
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
}
