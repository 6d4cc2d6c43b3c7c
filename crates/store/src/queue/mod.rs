//! The job queue: leases to runners by label, heartbeats, reports, jobs of lost runners
//! released. Statements written once where the dialects agree; PostgreSQL's own (one round trip
//! per report, runners skipping each other's rows) in `postgres`.

mod postgres;

use crate::db::{Db, Dialect, Param, Row, params};
use crate::jobs::{JOB_FIELDS, Job, job_from_row};
use crate::logs::insert_lines;
use crate::{Conclusion, JobId, Result, RunId, RunnerId, Store, StoreError, now_ms};
use postgres::{first_page_taken, pg_complete, pg_take_ctes};

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

/// What became of the jobs of a lost runner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Released {
    /// (job, run) queued again for another attempt.
    pub requeued: Vec<(JobId, RunId)>,
    /// (job, run) failed: no attempts left.
    pub failed: Vec<(JobId, RunId)>,
}

/// A runner's report of a job, as server `server` received it: the conclusion, the report
/// (JSON) and the job's last log lines.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub conclusion: Conclusion,
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
pub(crate) const COMPLETE: &str =
    "UPDATE jobs SET status = 'completed', conclusion = ?4, report = ?5,
         finished_at = ?6, lease = NULL, lease_until = NULL, payload = NULL, sealed = NULL,
         reported_by = ?7
     WHERE id = ?1 AND runner_id = ?2 AND lease = ?3 AND status = 'running'";

/// The oldest queued jobs are looked at this many at a time.
pub(crate) const PAGE: i64 = 16;

/// The `SET` of a lease, its parameters (runner, lease, until when, now) appended to
/// `values` (numbered after those already there).
pub(crate) fn take_set(values: &mut Vec<Param>, runner: RunnerId, want: &Want<'_>) -> String {
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
pub(crate) fn take_returning(prefix: &str) -> String {
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

/// Leases the oldest matching job from the queued jobs after the first `offset`, a page at
/// a time (up to 256 jobs deep).
pub(crate) fn take_from(
    c: &mut dyn Db,
    mut offset: i64,
    runner: RunnerId,
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
                matching.push(JobId::from(row.i64("id")?));
            }
        }
        let mut taken = None;
        if c.dialect() == Dialect::Postgres {
            // The oldest of them that nobody else is taking right now.
            if !matching.is_empty() {
                let ids = matching
                    .iter()
                    .map(JobId::to_string)
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
pub(crate) fn leased(c: &mut dyn Db, r: &Row, lease: &str) -> Result<Leased> {
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

/// [`Store::release`] within a transaction of the caller's.
pub(crate) fn release_in(
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
        let (job, run, attempt) = (
            JobId::from(r.i64("id")?),
            RunId::from(r.i64("run_id")?),
            r.i64("attempt")?,
        );
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

/// Checks that `runner` holds `job` under `lease`; the job as it is.
pub(crate) fn held(c: &mut dyn Db, job: JobId, runner: RunnerId, lease: &str) -> Result<Job> {
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
    /// Leases the oldest queued job whose `runs-on` labels are all among `labels` (a runner
    /// with the label `*` takes any job) to the runner, until `lease_ms` from now. `lease` is
    /// the caller's random lease token.
    pub fn take_job(&self, runner: RunnerId, want: &Want<'_>) -> Result<Option<Leased>> {
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
    pub fn held_job(&self, job: JobId, runner: RunnerId, lease: &str) -> Result<Job> {
        self.db.with(|c| held(c, job, runner, lease))
    }

    /// A running job and its lease (the job's token is made from it): `None` once the job
    /// is not running any more, or its lease ran out.
    pub fn running_job(&self, job: JobId) -> Result<Option<(Job, String)>> {
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

    /// What running job `job` was queued with (its payload), while it runs.
    pub fn running_payload(&self, job: JobId) -> Result<Option<String>> {
        self.db.with(|c| {
            c.query_opt(
                "SELECT payload FROM jobs WHERE id = ?1 AND status = 'running'",
                params![job],
            )?
            .map(|r| r.opt_string("payload"))
            .transpose()
            .map(Option::flatten)
        })
    }

    /// Extends the lease of a held job; true if the job (or its run) is to be cancelled.
    pub fn heartbeat(
        &self,
        job: JobId,
        runner: RunnerId,
        lease: &str,
        lease_ms: i64,
    ) -> Result<bool> {
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
        job: JobId,
        runner: RunnerId,
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
        job: JobId,
        runner: RunnerId,
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
    pub fn release_runner(
        &self,
        runner: RunnerId,
        max_attempts: i64,
        reason: &str,
    ) -> Result<Released> {
        self.release("runner_id = ?1", runner.get(), max_attempts, reason)
    }

    /// The jobs runners hold now: runner, run, job's display name (for `/runners`).
    pub fn running_jobs_by_runner(&self) -> Result<Vec<(RunnerId, RunId, String)>> {
        self.db.with(|c| {
            c.query(
                "SELECT runner_id, run_id, name FROM jobs
                 WHERE status = 'running' AND runner_id IS NOT NULL ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    RunnerId::from(r.i64("runner_id")?),
                    RunId::from(r.i64("run_id")?),
                    r.string("name")?,
                ))
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobStatus;
    use crate::tests::*;

    #[test]
    fn a_report_brings_its_last_lines_once_and_only_under_its_lease() {
        for s in stores() {
            let run = s.create_run(&new_run("r")).unwrap();
            let job = s.enqueue_job(run, "j", "j", "[]", "{}", b"").unwrap();
            s.add_runner_token("t").unwrap();
            let r = s
                .register_runner("t", "r", &[], 1, "c", 3_600_000)
                .unwrap()
                .unwrap();
            s.take_job(r, &want(&[], "L", 60_000)).unwrap().unwrap();
            assert_eq!(
                s.running_jobs_by_runner().unwrap(),
                [(r, run, "j".to_owned())]
            );
            // More lines than one statement takes, some of them sent before.
            let lines: Vec<(i64, String)> = (1..=150).map(|i| (i, format!("line {i}"))).collect();
            s.append_job_logs(job.id, r, "L", &lines[..70]).unwrap();
            assert!(matches!(
                s.complete_job(
                    job.id,
                    r,
                    "wrong",
                    &outcome(Conclusion::Success, &lines[70..]),
                    None
                ),
                Err(StoreError::NotHeld(_))
            ));
            assert_eq!(s.job_log_page(job.id, 0, 1000).unwrap().len(), 70);
            let done = s
                .complete_job(
                    job.id,
                    r,
                    "L",
                    &outcome(Conclusion::Success, &lines[60..]),
                    None,
                )
                .unwrap()
                .0;
            assert_eq!(done.status, JobStatus::Completed);
            assert!(s.running_jobs_by_runner().unwrap().is_empty());
            let page = s.job_log_page(job.id, 0, 1000).unwrap();
            assert_eq!(page, lines);
            // Sent again (the answer was lost): refused, nothing changes.
            assert!(matches!(
                s.complete_job(
                    job.id,
                    r,
                    "L",
                    &outcome(Conclusion::Failure, &[(151, "x".into())]),
                    None
                ),
                Err(StoreError::NotHeld(_))
            ));
            assert_eq!(s.job_log_page(job.id, 0, 1000).unwrap().len(), 150);
            assert_eq!(s.completed_elsewhere("me", 0).unwrap(), Vec::<JobId>::new());
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
    }

    #[test]
    fn a_report_takes_the_runner_s_next_job_only_when_it_is_accepted() {
        for s in stores() {
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
                    &outcome(Conclusion::Success, &[]),
                    Some(&want(&linux, "L2", 60_000))
                ),
                Err(StoreError::NotHeld(_))
            ));
            assert_eq!(s.job(third.id).unwrap().status, JobStatus::Queued);
            let (done, next) = s
                .complete_job(
                    first.id,
                    r,
                    "L1",
                    &outcome(Conclusion::Success, &[(1, "x".into())]),
                    Some(&want(&linux, "L2", 60_000)),
                )
                .unwrap();
            assert_eq!(done.status, JobStatus::Completed);
            let next = next.unwrap().unwrap();
            assert_eq!(
                (next.job.id, next.lease.as_str()),
                (third.id, "L2"),
                "b wants gpu"
            );
            assert_eq!(
                s.held_job(third.id, r, "L2").unwrap().status,
                JobStatus::Running
            );
            let (_, next) = s
                .complete_job(
                    third.id,
                    r,
                    "L2",
                    &outcome(Conclusion::Success, &[]),
                    Some(&want(&linux, "L3", 60_000)),
                )
                .unwrap();
            assert!(next.unwrap().is_none());
        }
    }

    #[test]
    fn jobs_are_leased_by_labels_and_released_when_their_runner_is_lost() {
        let linux = vec!["linux".to_owned()];
        for s in stores() {
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
            assert_eq!(j.conclusion, Some(Conclusion::Failure));
            assert_eq!(j.reason.as_deref(), Some("runner lost"));
            s.cancel_job(gpu.id).unwrap();
            assert_eq!(
                s.job(gpu.id).unwrap().conclusion,
                Some(Conclusion::Cancelled)
            );
        }
    }
}
