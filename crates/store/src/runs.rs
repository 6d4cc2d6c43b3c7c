//! Runs: created by triggers, queued, orchestrated by one server at a time (a lease it
//! renews), cancelled, approved or rejected, re-run.

use crate::db::{Db, Dialect, Row, params};
use crate::jobs::{JOB_FIELDS, Job, job_from_row};
use crate::{Conclusion, JobId, Result, RunId, RunStatus, Store, StoreError, now_ms, rows};
use serde::Serialize;

/// A workflow run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: RunId,
    pub repo: String,
    pub workflow: String,
    pub event: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    /// `waiting` (held for approval), `queued`, `running` or `completed`.
    pub status: RunStatus,
    /// `success`, `failure`, `cancelled`, `skipped`, or null while not completed.
    pub conclusion: Option<Conclusion>,
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
    pub rerun_of: Option<RunId>,
    /// A re-run of the failed jobs only: the jobs that succeeded in `rerun_of` are kept.
    pub rerun_failed: bool,
    /// The workflow file's text at `sha`, when the trigger kept it.
    #[serde(skip)]
    pub workflow_text: Option<String>,
}

/// Which runs a page lists (each `None`: any).
#[derive(Debug, Clone, Default)]
pub struct RunFilter<'a> {
    pub repo: Option<&'a str>,
    /// `refs/heads/main`.
    pub git_ref: Option<&'a str>,
    pub event: Option<&'a str>,
    /// A status (`running`) or a conclusion (`failure`).
    pub status: Option<&'a str>,
    /// Runs older than this one.
    pub before: Option<RunId>,
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

pub(crate) fn run_from_row(r: &Row) -> Result<Run> {
    Ok(Run {
        id: RunId::from(r.i64("id")?),
        repo: r.string("repo")?,
        workflow: r.string("workflow")?,
        event: r.string("event")?,
        git_ref: r.string("git_ref")?,
        sha: r.string("sha")?,
        status: r.value("status")?,
        conclusion: r.opt_value("conclusion")?,
        reason: r.opt_string("reason")?,
        attempt: r.i64("attempt")?,
        created_at: r.i64("created_at")?,
        started_at: r.opt_i64("started_at")?,
        finished_at: r.opt_i64("finished_at")?,
        event_json: r.string("event_json")?,
        cancel_requested: r.i64("cancel_requested")? != 0,
        rerun_of: r.opt_i64("rerun_of")?.map(RunId::from),
        rerun_failed: r.i64("rerun_failed")? != 0,
        workflow_text: r.opt_string("workflow_text")?,
    })
}

/// Inserts a run: queued, or completed and failed when it has a `failure`.
pub(crate) fn insert_run(c: &mut dyn Db, new: &NewRun) -> Result<RunId> {
    let now = now_ms();
    let (status, conclusion, finished) = match new.failure {
        Some(_) => (RunStatus::Completed, Some(Conclusion::Failure), Some(now)),
        None if new.held => (RunStatus::Waiting, None, None),
        None => (RunStatus::Queued, None, None),
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
    .map(RunId::from)
}

/// What taking a run for an orchestrator sets (`?1` now, `?2` the orchestrator, `?3` the end
/// of its lease): the statement's start, which run it takes to follow.
const TAKE: &str = "UPDATE runs SET status = 'running', started_at = ?1, orchestrator = ?2,
     orchestrator_until = ?3";

impl Store {
    pub fn create_run(&self, new: &NewRun) -> Result<RunId> {
        self.db.with(|c| insert_run(c, new))
    }

    /// Records several runs at once (the runs one event fires): all or none.
    pub fn create_runs(&self, runs: &[NewRun]) -> Result<Vec<RunId>> {
        self.db
            .tx(|c| runs.iter().map(|r| insert_run(c, r)).collect())
    }

    /// Records the runs one event fires, as [`Store::create_runs`] does, and takes those
    /// that are to run (not failed, not held for approval) for orchestrator `me` in the same
    /// transaction, as [`Store::take_queued`] would: the server that made them orchestrates
    /// them without looking for them first. The ids of all, and the runs taken.
    pub fn create_runs_taken(
        &self,
        runs: &[NewRun],
        me: &str,
        lease_ms: i64,
    ) -> Result<(Vec<RunId>, Vec<Run>)> {
        self.db.tx(|c| {
            let (mut ids, mut taken) = (Vec::new(), Vec::new());
            for r in runs {
                let id = insert_run(c, r)?;
                ids.push(id);
                let now = now_ms();
                if let Some(row) = c.query_opt(
                    &format!("{TAKE} WHERE id = ?4 AND status = 'queued' RETURNING *"),
                    params![now, me, now + lease_ms, id],
                )? {
                    taken.push(run_from_row(&row)?);
                }
            }
            Ok((ids, taken))
        })
    }

    pub fn run(&self, id: RunId) -> Result<Run> {
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

    /// A page of runs, newest first, matching `filter`: those before run `before` (for the
    /// next page), at most `limit`.
    pub fn runs_page(&self, filter: &RunFilter<'_>, limit: i64) -> Result<Vec<Run>> {
        self.db.with(|c| {
            rows(
                c.query(
                    "SELECT * FROM runs
                     WHERE (CAST(?1 AS TEXT) IS NULL OR repo = ?1)
                       AND (CAST(?2 AS TEXT) IS NULL OR git_ref = ?2)
                       AND (CAST(?3 AS TEXT) IS NULL OR event = ?3)
                       AND (CAST(?4 AS TEXT) IS NULL OR status = ?4 OR conclusion = ?4)
                       AND id < ?5
                     ORDER BY id DESC LIMIT ?6",
                    params![
                        filter.repo,
                        filter.git_ref,
                        filter.event,
                        filter.status,
                        // A range on the key, never `NULL OR`: the scan then starts
                        // at `before` (an older page of 100,000 runs read them all).
                        filter.before.map_or(i64::MAX, RunId::get),
                        limit
                    ],
                )?,
                run_from_row,
            )
        })
    }

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
                    "{TAKE}
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

    pub fn finish_run(
        &self,
        id: RunId,
        conclusion: Conclusion,
        reason: Option<&str>,
    ) -> Result<()> {
        self.finish_run_alerting(id, conclusion, reason, &[], |_, _| Vec::new())
    }

    /// Ends run `id` and queues, in the same transaction, the alerts `alerts` makes of it
    /// given the conclusion (success or failure) of the run before it of the same
    /// repository, workflow and ref, if any: an alert is queued once with the end it tells
    /// of, or not at all. The jobs of `not_run` (skipped, or cancelled before they started)
    /// that have no row get one first, those already recorded left as they are: one commit
    /// ends a run, however many jobs it has.
    pub fn finish_run_alerting(
        &self,
        id: RunId,
        conclusion: Conclusion,
        reason: Option<&str>,
        not_run: &[crate::NotRun],
        alerts: impl FnOnce(&Run, Option<Conclusion>) -> Vec<crate::NewAlert>,
    ) -> Result<()> {
        let now = now_ms();
        self.db.tx(|c| {
            crate::jobs::insert_not_run(c, id, not_run)?;
            let run = c.query_opt(
                "UPDATE runs SET status = 'completed', conclusion = ?2,
                     reason = COALESCE(?3, reason), finished_at = ?4
                 WHERE id = ?1 RETURNING *",
                params![id, conclusion, reason, now],
            )?;
            let Some(run) = run else {
                return Ok(());
            };
            let run = run_from_row(&run)?;
            // A deploy its job never said the end of (the job was killed, or lost its
            // server) ends with the run.
            c.execute(
                "UPDATE deployments SET status = 'failed', finished_at = ?2,
                     message = 'the job ended before its deploy said how it ended'
                 WHERE run_id = ?1 AND status = 'running'",
                params![id, now],
            )?;
            let before = c
                .query_opt(
                    "SELECT conclusion FROM runs
                     WHERE repo = ?1 AND workflow = ?2 AND git_ref = ?3 AND id < ?4
                       AND status = 'completed' AND conclusion IN ('success', 'failure')
                     ORDER BY id DESC LIMIT 1",
                    params![&run.repo, &run.workflow, &run.git_ref, id],
                )?
                .map(|r| r.value::<Conclusion>("conclusion"))
                .transpose()?;
            crate::alerts::insert_alerts(c, &alerts(&run, before), now).map(drop)
        })
    }

    /// Asks a run to stop: a queued run is cancelled at once; a running one is flagged for
    /// its orchestrator and its runners. Returns the run as it is now.
    pub fn request_cancel(&self, id: RunId) -> Result<Run> {
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
    pub fn approve_run(&self, id: RunId) -> Result<Option<Run>> {
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
    pub fn reject_run(&self, id: RunId) -> Result<Option<Run>> {
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

    /// A new queued run with the same repository, workflow, event and commit as `id`, as its
    /// next attempt. With `failed_only`, the jobs that succeeded in `id` are kept rather than
    /// run again (see [`Store::reuse_job`]).
    pub fn rerun(&self, id: RunId, failed_only: bool) -> Result<RunId> {
        self.rerun_with(id, failed_only, None)
    }

    /// A re-run of run `id` whose successful jobs are kept, with the event `event_json`
    /// instead of the run's (a rollback's: the event says which job runs again and how).
    pub fn rerun_as(&self, id: RunId, event_json: &str) -> Result<RunId> {
        self.rerun_with(id, true, Some(event_json))
    }

    fn rerun_with(&self, id: RunId, failed_only: bool, event_json: Option<&str>) -> Result<RunId> {
        let run = self.run(id)?;
        let event_json = event_json.unwrap_or(&run.event_json);
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
                    event_json,
                    run.attempt + 1,
                    id,
                    i64::from(failed_only),
                    run.workflow_text.as_deref()
                ],
            )?
            .first_i64()
            .map(RunId::from)
        })
    }

    /// For a re-run of failed jobs: the job `name` of `old_run`, if it succeeded, copied into
    /// `run` (its report and its log) instead of running again.
    pub fn reuse_job(&self, run: RunId, old_run: RunId, name: &str) -> Result<Option<Job>> {
        self.db.tx(|c| {
            let Some(old) = c.query_opt(
                "SELECT id FROM jobs WHERE run_id = ?1 AND name = ?2 AND status = 'completed'
                 AND conclusion = 'success' AND report IS NOT NULL",
                params![old_run, name],
            )?
            else {
                return Ok(None);
            };
            let old = JobId::from(old.first_i64()?);
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
                crate::artifacts::copy_job_artifacts(c, old_run, run, name)?;
            }
            Ok(Some(new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::*;

    #[test]
    fn a_rerun_as_keeps_the_successful_jobs_and_carries_its_own_event() {
        for s in stores() {
            let backend = s.backend();
            let first = s.create_run(&new_run("acme/app")).unwrap();
            let again = s
                .rerun_as(first, r#"{"rollback":{"job":"deploy"}}"#)
                .unwrap();
            let run = s.run(again).unwrap();
            assert_eq!(run.rerun_of, Some(first), "{backend}");
            assert!(run.rerun_failed, "{backend}");
            assert_eq!(run.attempt, 2, "{backend}");
            assert_eq!(
                run.event_json, r#"{"rollback":{"job":"deploy"}}"#,
                "{backend}"
            );
            let plain = s.rerun(first, false).unwrap();
            assert_eq!(s.run(plain).unwrap().event_json, "{}", "{backend}");
        }
    }

    #[test]
    fn a_run_s_end_records_the_jobs_that_never_ran_in_the_same_commit() {
        for s in stores() {
            let backend = s.backend();
            let id = s.create_run(&new_run("r")).unwrap();
            // One job ran (and failed); the others never started.
            s.annotate_job(id, "build", "build", "no runner").unwrap();
            let jobs = [
                ("build".to_owned(), "build".to_owned(), Conclusion::Success),
                ("test".to_owned(), "test".to_owned(), Conclusion::Skipped),
                (
                    "deploy".to_owned(),
                    "deploy".to_owned(),
                    Conclusion::Cancelled,
                ),
            ];
            s.finish_run_alerting(id, Conclusion::Failure, None, &jobs, |_, _| Vec::new())
                .unwrap();
            let mut got: Vec<(String, Option<Conclusion>)> = s
                .jobs(id)
                .unwrap()
                .into_iter()
                .map(|j| (j.name, j.conclusion))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                got,
                [
                    ("build".to_owned(), Some(Conclusion::Failure)),
                    ("deploy".to_owned(), Some(Conclusion::Cancelled)),
                    ("test".to_owned(), Some(Conclusion::Skipped)),
                ],
                "{backend}: the row of the job that ran is kept as it was"
            );
            assert_eq!(s.run(id).unwrap().status, RunStatus::Completed, "{backend}");
        }
    }

    #[test]
    fn a_run_s_end_queues_its_alerts_knowing_the_run_before() {
        for s in stores() {
            let backend = s.backend();
            let mut seen = Vec::new();
            for conclusion in [
                Conclusion::Failure,
                Conclusion::Cancelled,
                Conclusion::Success,
                Conclusion::Success,
            ] {
                let id = s.create_run(&new_run("r")).unwrap();
                s.finish_run_alerting(id, conclusion, None, &[], |run, before| {
                    assert_eq!((run.id, run.conclusion), (id, Some(conclusion)));
                    seen.push(before);
                    vec![crate::NewAlert {
                        channel: "ops".into(),
                        event: format!("{conclusion}"),
                        subject: String::new(),
                        body: "{}".into(),
                    }]
                })
                .unwrap();
            }
            // A cancelled run says nothing of the branch's state: the one after it compares
            // with the failure before.
            assert_eq!(
                seen,
                [
                    None,
                    Some(Conclusion::Failure),
                    Some(Conclusion::Failure),
                    Some(Conclusion::Success)
                ],
                "{backend}"
            );
            assert_eq!(s.alerts(10).unwrap().len(), 4, "{backend}");
        }
    }

    #[test]
    fn queue_take_finish_and_recover() {
        for mut s in stores() {
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
            s.reopen();
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
                s.request_cancel(b).unwrap().conclusion,
                Some(Conclusion::Cancelled)
            );
        }
    }

    #[test]
    fn runs_made_and_taken_at_once_are_their_orchestrator_s_and_no_one_else_takes_them() {
        for mut s in stores() {
            let backend = s.backend();
            let held = NewRun {
                held: true,
                ..new_run("r")
            };
            let failed = NewRun {
                failure: Some("invalid workflow".into()),
                ..new_run("r")
            };
            let (ids, taken) = s
                .create_runs_taken(&[new_run("r"), held, failed, new_run("r")], "me", 60_000)
                .unwrap();
            assert_eq!(ids.len(), 4, "{backend}");
            // The two that are to run, and only they: running, this server's.
            assert_eq!(
                taken.iter().map(|r| r.id).collect::<Vec<_>>(),
                [ids[0], ids[3]],
                "{backend}"
            );
            for r in &taken {
                assert_eq!(r.status, RunStatus::Running, "{backend}");
                assert!(r.started_at.is_some(), "{backend}");
            }
            assert_eq!(
                s.run(ids[1]).unwrap().status,
                RunStatus::Waiting,
                "{backend}"
            );
            assert_eq!(
                s.run(ids[2]).unwrap().conclusion,
                Some(Conclusion::Failure),
                "{backend}"
            );
            // No other server takes them while their orchestrator renews its lease; a
            // restarted one takes its own up again.
            assert!(
                s.take_queued("other", 60_000).unwrap().is_none(),
                "{backend}"
            );
            assert!(
                s.take_over_runs("other", 60_000, false).unwrap().is_empty(),
                "{backend}"
            );
            s.reopen();
            let mut again: Vec<RunId> = s
                .take_over_runs("me", 60_000, true)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            again.sort();
            assert_eq!(again, [ids[0], ids[3]], "{backend}");
        }
    }

    #[test]
    fn an_unknown_status_or_conclusion_is_an_error_not_a_panic() {
        for s in stores() {
            let a = s.create_run(&new_run("r")).unwrap();
            s.db.with(|c| {
                c.execute(
                    "UPDATE runs SET status = 'paused', conclusion = 'maybe' WHERE id = ?1",
                    params![a],
                )
            })
            .unwrap();
            let err = s.run(a).unwrap_err();
            assert!(
                matches!(&err, StoreError::Unknown { what: "run status", value } if value == "paused"),
                "{}: {err}",
                s.backend()
            );
            assert_eq!(
                err.to_string(),
                "the database holds an unknown run status `paused`"
            );
            let job = s.enqueue_job(a, "j", "j", "[]", "{}", b"").unwrap();
            s.db.with(|c| {
                c.execute(
                    "UPDATE jobs SET conclusion = 'maybe' WHERE id = ?1",
                    params![job.id],
                )
            })
            .unwrap();
            assert!(matches!(
                s.job(job.id),
                Err(StoreError::Unknown {
                    what: "conclusion",
                    ..
                })
            ));
        }
    }
}
