//! Job-level scheduling: the engine decides the graph of a run (needs, `if`s, matrices,
//! outputs) on the server, and every job instance it wants run goes through [`Dispatcher`]:
//! stored as a queued job with its `runs-on` labels, taken by a runner with those labels,
//! and awaited until its report is in the store.
//!
//! Nothing lives only here: a restarted server replays the run's graph, and each job it
//! reaches is found in the store (done, leased or queued) under its name.

use std::sync::Arc;
use std::time::Duration;

use engine::{Conclusion, JobReport, JobSpec, Level, Line, RunEnv, Sink};
use runner::protocol::{JobPayload, Secrets};
use store::{JobId, JobStatus, RunId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::blocking::{Blocked, blocking, store_now};
use crate::lock;
use crate::secrets::Sealer;

/// Per-job wake-ups: whoever completes a job (a runner's report, the reaper) tells the one
/// dispatcher waiting for it, not every dispatcher of every run, handing over the completed
/// row when it has it (the dispatcher then need not read it again).
#[derive(Default)]
pub(crate) struct Waiters(std::sync::Mutex<std::collections::HashMap<JobId, Arc<Waiter>>>);

#[derive(Default)]
struct Waiter {
    notify: Notify,
    done: std::sync::Mutex<Option<store::Job>>,
}

impl Waiter {
    fn take(&self) -> Option<store::Job> {
        lock(&self.done).take()
    }
}

impl Waiters {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<JobId, Arc<Waiter>>> {
        lock(&self.0)
    }

    fn register(&self, job: JobId) -> Arc<Waiter> {
        self.map().entry(job).or_default().clone()
    }

    fn forget(&self, job: JobId) {
        self.map().remove(&job);
    }

    /// Wakes the dispatcher of `job` (a permit is kept if it is not waiting right now),
    /// giving it the completed row if there is one.
    pub(crate) fn wake(&self, job: JobId, done: Option<store::Job>) {
        let waiter = self.map().get(&job).cloned();
        if let Some(w) = waiter {
            if let Some(d) = done {
                *lock(&w.done) = Some(d);
            }
            w.notify.notify_one();
        }
    }
}

/// Wakes the dispatchers of jobs whose report reached another server sharing the database
/// (or that another server ended): it looks twice a second while any dispatcher waits. The
/// look goes back a little before the last one: reports committed late, clocks apart.
pub(crate) async fn watch_completions(
    store: Arc<store::Store>,
    done: Arc<Waiters>,
    me: String,
    stop: CancellationToken,
) {
    const EVERY: Duration = Duration::from_millis(500);
    const OVERLAP_MS: i64 = 2_000;
    let mut since = store::now_ms() - OVERLAP_MS;
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = stop.cancelled() => return,
        }
        let now = store::now_ms();
        if done.map().is_empty() {
            since = now - OVERLAP_MS;
            continue;
        }
        let (s, me2) = (store.clone(), me.clone());
        match blocking(move || s.completed_elsewhere(&me2, since)).await {
            Ok(ids) => {
                for id in ids {
                    done.wake(id, None);
                }
                since = now - OVERLAP_MS;
            }
            Err(Blocked::Call(e)) => {
                tracing::warn!("looking for jobs other servers completed: {e}");
            }
            Err(Blocked::Task(_)) => {}
        }
    }
}

/// What the dispatcher of one run needs.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    pub(crate) store: Arc<store::Store>,
    pub(crate) sealer: Arc<Sealer>,
    /// Signalled when jobs are queued: waiting runners look.
    pub(crate) queued: Arc<Notify>,
    /// Per-job wake-ups when jobs complete.
    pub(crate) done: Arc<Waiters>,
    pub(crate) run: RunId,
    pub(crate) repo: String,
    pub(crate) sha: String,
    /// A re-run of the failed jobs of this run: its successful jobs are kept.
    pub(crate) keep_from: Option<RunId>,
    /// A rollback by hand: its job alone runs, rolling back; the others are kept or skipped.
    pub(crate) rollback: Option<crate::trigger::Rollback>,
    /// The run's code is trusted with the repository's secrets (not a fork's).
    pub(crate) trusted: bool,
    pub(crate) config: Arc<crate::Config>,
    /// The run's ref (protected environments take some branches only).
    pub(crate) git_ref: String,
    /// Told when an alert was queued.
    pub(crate) alerts: Arc<Notify>,
}

/// The sealing scope of a job's secrets: they open only as this job's.
pub(crate) fn seal_scope(run: RunId) -> String {
    format!("job-secrets:{run}")
}

impl engine::JobRunner for Dispatcher {
    fn run_job(
        &self,
        spec: JobSpec,
        env: Arc<RunEnv>,
        sink: Arc<dyn Sink>,
        cancel: CancellationToken,
    ) -> engine::JobFuture {
        let me = self.clone();
        Box::pin(async move { me.dispatch(spec, env, sink, cancel).await })
    }
}

fn json_of(m: &expr::Map) -> serde_json::Value {
    serde_json::Value::Object(expr::map_to_json(m))
}

/// The `github` context of a rollback's job: who asked is its actor, and
/// `github.pipewright_rollback` tells its `pipewright/deploy` step what to roll back to.
fn rollback_github(github: &expr::Map, r: &crate::trigger::Rollback) -> serde_json::Value {
    let mut g = expr::map_to_json(github);
    for k in ["actor", "triggering_actor"] {
        g.insert(k.to_owned(), serde_json::Value::from(r.by.clone()));
    }
    g.insert(
        "pipewright_rollback".to_owned(),
        serde_json::json!({
            "environment": r.environment,
            "release": r.release,
            "version": r.version,
            "by": r.by,
        }),
    );
    serde_json::Value::Object(g)
}

/// The report of a job the server ended itself (cancelled while queued, runner lost).
fn report_without_runner(spec: &JobSpec, conclusion: Conclusion) -> JobReport {
    JobReport::without_steps(
        &spec.job_id,
        &spec.display,
        spec.matrix.as_ref().map(json_of),
        conclusion,
    )
}

/// A job's stored conclusion as the engine's; a job without one failed.
fn conclusion_of(c: Option<store::Conclusion>) -> Conclusion {
    c.map_or(Conclusion::Failure, crate::conclusion::to_engine)
}

impl Dispatcher {
    async fn dispatch(
        self,
        spec: JobSpec,
        env: Arc<RunEnv>,
        sink: Arc<dyn Sink>,
        cancel: CancellationToken,
    ) -> JobReport {
        let label = engine::JobLabel {
            workflow: spec.workflow_name.clone(),
            job_id: spec.job_id.clone(),
            display: spec.display.clone(),
        };
        let fail = |message: String| {
            sink.line(
                &label,
                Line::Annotation {
                    level: Level::Error,
                    message,
                    file: None,
                    line: None,
                },
            );
            report_without_runner(&spec, Conclusion::Failure)
        };
        let rolls_back = self.rollback.as_ref().filter(|r| r.job == spec.display);
        if let Some(old) = self.keep_from.filter(|_| rolls_back.is_none()) {
            let (store, run, name) = (self.store.clone(), self.run, spec.display.clone());
            match blocking(move || store.reuse_job(run, old, &name)).await {
                Ok(Some(job)) => return self.report(&spec, &job),
                Ok(None) | Err(Blocked::Task(_)) => {}
                Err(Blocked::Call(e)) => {
                    tracing::warn!(run = run.get(), "keeping a job of run {old}: {e}");
                }
            }
            // A rollback runs its one job: what cannot be kept is not run again.
            if self.rollback.is_some() {
                return report_without_runner(&spec, Conclusion::Skipped);
            }
        }
        let labels = match engine::runs_on(&spec, &env) {
            Ok(l) => l,
            Err(e) => return fail(format!("job `{}`: {e}", spec.job_id)),
        };
        // The job gets the run's secrets and those of its own environment, nothing else (an
        // `environment:` that does not evaluate gets none: the job fails on it anyway).
        let environment = engine::environment_of(&spec, &env).ok().flatten();
        // A protected environment: some branches only; and the job may wait for approval.
        let protection = environment.as_deref().and_then(|e| {
            crate::environments::protection_of(&self.config.protections, &self.repo, e)
        });
        if let Some(why) = protection.and_then(|p| p.refuses(&self.git_ref)) {
            return fail(format!("job `{}`: {why}", spec.display));
        }
        // A rollback was asked for by an operator: that is its approval.
        let held = protection
            .filter(|p| p.require_approval && rolls_back.is_none())
            .map(|p| {
                crate::notify::approval_alerts(
                    &self.config,
                    &self.repo,
                    &self.git_ref,
                    &self.sha,
                    self.run,
                    &spec.display,
                    &p.name,
                )
            });
        let payload = JobPayload {
            environment: environment.clone(),
            run_id: self.run.get(),
            repo: self.repo.clone(),
            sha: self.sha.clone(),
            file: spec.file.clone(),
            workflow_text: spec.text.as_deref().map(str::to_owned),
            workflow_name: spec.workflow_name.clone(),
            job_id: spec.job_id.clone(),
            key: spec.key.clone(),
            display: spec.display.clone(),
            matrix: spec.matrix.as_ref().map(json_of),
            strategy: json_of(&spec.strategy),
            needs: json_of(&spec.needs),
            github: match rolls_back {
                Some(r) => rollback_github(&env.context.github, r),
                None => json_of(&env.context.github),
            },
            vars: json_of(&env.context.vars),
            inputs: json_of(&env.context.inputs),
            labels: labels.clone(),
            trusted: self.trusted,
        };
        let secrets = Secrets {
            secrets: expr::map_to_json(env.context.secrets.run()),
            environment_secrets: environment
                .clone()
                .and_then(|name| {
                    let s = env.context.secrets.environment(&name)?;
                    Some((name, expr::map_to_json(s)))
                })
                .into_iter()
                .collect(),
        };
        let sealed = match self.sealer.seal(
            &seal_scope(self.run),
            "",
            &spec.display,
            &serde_json::to_string(&secrets).unwrap_or_default(),
        ) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot queue job `{}`: {e}", spec.display)),
        };
        let payload = serde_json::to_string(&payload).unwrap_or_default();
        let labels = serde_json::to_string(&labels).unwrap_or_default();
        let (store, run, name, job_id) = (
            self.store.clone(),
            self.run,
            spec.display.clone(),
            spec.job_id.clone(),
        );
        let waits = held.is_some();
        let job = match store_now(&self.store, move || {
            store.enqueue_job_held(
                run,
                &name,
                &job_id,
                &labels,
                &payload,
                &sealed,
                held.as_deref(),
            )
        })
        .await
        {
            Ok(j) => j,
            Err(Blocked::Call(e)) => {
                return fail(format!("cannot queue job `{}`: {e}", spec.display));
            }
            Err(Blocked::Task(_)) => return fail(format!("cannot queue job `{}`", spec.display)),
        };
        if job.status == JobStatus::Completed {
            // Found done (a restarted server replaying the run).
            return self.report(&spec, &job);
        }
        if waits && job.status == JobStatus::Waiting {
            sink.line(
                &label,
                Line::Annotation {
                    level: Level::Notice,
                    message: format!(
                        "this job waits for approval to use environment `{}` (pipewright approve {} --job '{}')",
                        environment.as_deref().unwrap_or_default(),
                        self.run,
                        spec.display
                    ),
                    file: None,
                    line: None,
                },
            );
            self.alerts.notify_one();
        }
        self.queued.notify_waiters();
        let id = job.id;
        let wake = self.done.register(id);
        let report = self.await_job(id, &spec, &wake, &cancel).await;
        self.done.forget(id);
        report
    }

    /// Waits until job `id` is completed (woken by its report, which hands the row over;
    /// looks now and then anyway, for reports taken by another server process); asks it to
    /// stop if `cancel` fires.
    async fn await_job(
        &self,
        id: JobId,
        spec: &JobSpec,
        wake: &Waiter,
        cancel: &CancellationToken,
    ) -> JobReport {
        let mut asked_to_cancel = false;
        // Queued or leased when this began: the first look is after a wake-up.
        let mut look = false;
        loop {
            if let Some(j) = wake.take().filter(|j| j.status == JobStatus::Completed) {
                return self.report(spec, &j);
            }
            if look {
                let store = self.store.clone();
                match blocking(move || store.job(id)).await {
                    Ok(j) if j.status == JobStatus::Completed => return self.report(spec, &j),
                    Ok(_) | Err(Blocked::Task(_)) => {}
                    Err(Blocked::Call(e)) => tracing::warn!(job = id.get(), "reading a job: {e}"),
                }
            }
            look = true;
            tokio::select! {
                () = wake.notify.notified() => {}
                // Reports taken by another server process wake nobody here.
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
                () = cancel.cancelled(), if !asked_to_cancel => {
                    asked_to_cancel = true;
                    let store = self.store.clone();
                    if let Err(Blocked::Call(e)) = blocking(move || store.cancel_job(id)).await {
                        tracing::warn!(job = id.get(), "cancelling a job: {e}");
                    }
                }
            }
        }
    }

    fn report(&self, spec: &JobSpec, job: &store::Job) -> JobReport {
        let mut report = job
            .report
            .as_deref()
            .and_then(|r| serde_json::from_str::<JobReport>(r).ok())
            .unwrap_or_else(|| report_without_runner(spec, conclusion_of(job.conclusion)));
        if let (Some(s), Some(f)) = (job.started_at, job.finished_at) {
            report.duration = Duration::from_millis(u64::try_from(f - s).unwrap_or(0));
        }
        report
    }
}
