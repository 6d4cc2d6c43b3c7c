//! GitHub's parallel steps. A `background` step (and each step of a `parallel` group) starts
//! and the job goes on: it runs beside the job's next steps on a copy of the job's state,
//! its log kept apart. What it did joins the job when a `wait`, `wait-all` or `cancel` step
//! (or the end of its `parallel` group) takes it in, as GitHub's runner defers it: its
//! log, its entry in the `steps` context, its `GITHUB_ENV`, `GITHUB_PATH` and summary
//! additions, its post steps, and its failure, which fails the step that waited.
//!
//! At most [`MAX_RUNNING`] run at once (GitHub's limit); the others wait for a place. At
//! the job's end the ones not taken in are waited for, or stopped when the job has already
//! failed or was cancelled (a background server nobody cancelled would otherwise hold the
//! job until its timeout).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use expr::{Map, Status};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use workflow::{Control, Step};

use super::JobState;
use super::context::status_value;
use super::step::{condition, failed_condition, record_step, run_step, step_name};
use crate::report::{Conclusion, JobReport, StepReport};
use crate::sink::{JobLabel, Line, Sink};

/// The most background steps running at once; GitHub's runner has the same limit.
pub(crate) const MAX_RUNNING: usize = 10;

/// The most lines of one background step kept until it is taken in; the rest are counted.
const MAX_LINES: usize = 50_000;

/// A background step's log, kept until the step joins the job.
#[derive(Default)]
pub(crate) struct Buffer(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    events: Vec<Event>,
    lines: usize,
    left_out: usize,
}

enum Event {
    Started(String),
    Line(Line),
    Finished(String, Conclusion, Duration),
}

impl Buffer {
    fn push(&self, event: Event) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(event, Event::Line(_)) {
            if kept.lines >= MAX_LINES {
                kept.left_out += 1;
                return;
            }
            kept.lines += 1;
        }
        kept.events.push(event);
    }

    /// Hands what was kept to the job's sink.
    fn replay(&self, sink: &dyn Sink, label: &JobLabel) {
        let kept = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        for event in kept.events {
            match event {
                Event::Started(name) => sink.step_started(label, &name),
                Event::Line(line) => sink.line(label, line),
                Event::Finished(name, conclusion, duration) => {
                    if kept.left_out > 0 {
                        sink.line(
                            label,
                            Line::Output(format!(
                                "({} more lines of this background step were left out)",
                                kept.left_out
                            )),
                        );
                    }
                    sink.step_finished(label, &name, conclusion, duration);
                }
            }
        }
    }
}

impl Sink for Buffer {
    fn job_started(&self, _: &JobLabel) {}
    fn step_started(&self, _: &JobLabel, step: &str) {
        self.push(Event::Started(step.to_owned()));
    }
    fn line(&self, _: &JobLabel, line: Line) {
        self.push(Event::Line(line));
    }
    fn step_finished(&self, _: &JobLabel, step: &str, conclusion: Conclusion, duration: Duration) {
        self.push(Event::Finished(step.to_owned(), conclusion, duration));
    }
    fn job_finished(&self, _: &JobLabel, _: Conclusion, _: Duration) {}
}

/// The buffers a job's background steps need: one each.
pub(crate) fn buffers(steps: &[Step]) -> Vec<Buffer> {
    steps
        .iter()
        .filter(|s| s.background)
        .map(|_| Buffer::default())
        .collect()
}

/// A background step that ended, with the copy of the job's state it ran on.
struct Done<'b> {
    index: usize,
    report: StepReport,
    state: JobState<'b>,
    /// The `env` context and the number of `GITHUB_PATH` entries when it started: what it
    /// added is what differs.
    env_before: Map,
    paths_before: usize,
    buffer: &'b Buffer,
}

type Running<'b> = Pin<Box<dyn Future<Output = Done<'b>> + Send + 'b>>;

/// A background step not yet taken in.
struct Pending {
    cancel: CancellationToken,
    /// Its place in the job's report.
    slot: usize,
}

/// A job's background steps.
pub(crate) struct Background<'b> {
    buffers: &'b [Buffer],
    used: usize,
    running: FuturesUnordered<Running<'b>>,
    pending: BTreeMap<usize, Pending>,
    finished: HashMap<usize, Done<'b>>,
    /// Background steps' indexes by id.
    ids: HashMap<String, usize>,
    places: Arc<Semaphore>,
}

impl<'b> Background<'b> {
    pub(crate) fn new(buffers: &'b [Buffer]) -> Self {
        Background {
            buffers,
            used: 0,
            running: FuturesUnordered::new(),
            pending: BTreeMap::new(),
            finished: HashMap::new(),
            ids: HashMap::new(),
            places: Arc::new(Semaphore::new(MAX_RUNNING)),
        }
    }

    /// Starts `step` (at `index` of the job's steps) beside the job's next ones.
    pub(crate) fn start<'a: 'b>(
        &mut self,
        state: &mut JobState<'a>,
        step: &'b Step,
        index: usize,
        cancel: &CancellationToken,
        report: &mut JobReport,
    ) {
        let Some(buffer) = self.buffers.get(self.used) else {
            // `buffers` counts the job's background steps: never short.
            state.error(format!(
                "step {} cannot start in the background: no log was made ready for it",
                index + 1
            ));
            state.status = Status::Failure;
            return;
        };
        let n = self.used;
        self.used += 1;
        let fork = JobState {
            spec: state.spec,
            run: state.run,
            sink: buffer,
            label: state.label.clone(),
            workspace: state.workspace.clone(),
            temp: state.temp.clone(),
            env: state.env.clone(),
            path_prefix: state.path_prefix.clone(),
            steps_ctx: state.steps_ctx.clone(),
            status: state.status,
            // Its scripts and file-command files are named apart from the job's.
            step_counter: 1_000_000 * (n + 1),
            process_groups: Vec::new(),
            posts: Vec::new(),
            pre_state: state.pre_state.clone(),
            resolved: state.resolved.clone(),
            coverage: None,
            summary: String::new(),
            job_ctx: state.job_ctx.clone(),
            inputs_override: None,
            secrets: state.secrets.clone(),
            services: Vec::new(),
            docker: state.docker.as_ref().map(|d| d.fork(n)),
            container: state.container.clone(),
        };
        let token = cancel.child_token();
        self.pending.insert(
            index,
            Pending {
                cancel: token.clone(),
                slot: report.steps.len(),
            },
        );
        if let Some(id) = &step.id {
            self.ids.insert(id.value.clone(), index);
        }
        report.steps.push(StepReport {
            id: step.id.as_ref().map(|i| i.value.clone()),
            name: step_name(state, &state.contexts(None), step),
            outcome: Conclusion::Skipped,
            conclusion: Conclusion::Skipped,
            duration: Duration::ZERO,
        });
        let places = self.places.clone();
        self.running.push(Box::pin(async move {
            let mut state = fork;
            let (env_before, paths_before) = (state.env.clone(), state.path_prefix.len());
            // Waits for a place; the semaphore is never closed.
            let _place = places.acquire_owned().await.ok();
            let report = run_step(&mut state, step, index, &token).await;
            Done {
                index,
                report,
                state,
                env_before,
                paths_before,
                buffer,
            }
        }));
        // It starts now, as on GitHub (its process is started when first polled), not when
        // the job next waits for something.
        while let Some(Some(done)) = self.running.next().now_or_never() {
            self.finished.insert(done.index, done);
        }
    }

    /// Runs `step` (a foreground step) while the background steps go on.
    pub(crate) async fn beside<F: Future>(&mut self, step: F) -> F::Output {
        let mut step = std::pin::pin!(step);
        loop {
            if self.running.is_empty() {
                return step.await;
            }
            tokio::select! {
                biased;
                out = &mut step => return out,
                Some(done) = self.running.next() => {
                    self.finished.insert(done.index, done);
                }
            }
        }
    }

    /// A `wait`, `wait-all` or `cancel` step, or the end of a `parallel` group.
    pub(crate) async fn control(
        &mut self,
        state: &mut JobState<'_>,
        step: &Step,
        control: &Control,
        index: usize,
        cancel: &CancellationToken,
        report: &mut JobReport,
    ) -> StepReport {
        let started = Instant::now();
        let ctxs = state.contexts(None);
        let name = step_name(state, &ctxs, step);
        let id = step.id.as_ref().map(|i| i.value.clone());
        let ctx_id = id.clone().unwrap_or_else(|| format!("__step{index}"));
        let mut own = StepReport {
            id,
            name: name.clone(),
            outcome: Conclusion::Skipped,
            conclusion: Conclusion::Skipped,
            duration: Duration::ZERO,
        };
        match condition(state, &ctxs, step, &name, cancel) {
            Ok(true) => {}
            Ok(false) => {
                record_step(state, &ctx_id, &own, Map::new());
                return own;
            }
            Err(msg) => return failed_condition(state, &ctx_id, own, msg, started),
        }
        let named = |ids: &HashMap<String, usize>, n: &workflow::Spanned<String>| {
            ids.get(&n.value).copied()
        };
        let steps: Vec<usize> = match control {
            Control::Wait(names) => names.iter().filter_map(|n| named(&self.ids, n)).collect(),
            Control::WaitAll => self.pending.keys().copied().collect(),
            Control::Cancel(n) => named(&self.ids, n).into_iter().collect(),
            Control::Group(n) => (index.saturating_sub(*n)..index).collect(),
        };
        if let Control::Cancel(_) = control {
            for i in &steps {
                if let Some(p) = self.pending.get(i) {
                    p.cancel.cancel();
                }
            }
        }
        let failed = self.take_in(state, &steps, report).await;
        state.sink.step_started(&state.label, &name);
        for failure in &failed {
            state.error(format!("the background step `{failure}` failed"));
        }
        own.outcome = if failed.is_empty() {
            Conclusion::Success
        } else {
            Conclusion::Failure
        };
        own.conclusion = own.outcome;
        if !failed.is_empty() {
            state.status = Status::Failure;
            state
                .job_ctx
                .insert("status".into(), status_value(state.status));
        }
        record_step(state, &ctx_id, &own, Map::new());
        own.duration = started.elapsed();
        state
            .sink
            .step_finished(&state.label, &name, own.conclusion, own.duration);
        own
    }

    /// At the job's end: the background steps not taken in are waited for, or stopped first
    /// when the job has failed or was cancelled. Shown as one more step.
    pub(crate) async fn finish(
        &mut self,
        state: &mut JobState<'_>,
        cancel: &CancellationToken,
        report: &mut JobReport,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let started = Instant::now();
        let stop = state.status != Status::Success || cancel.is_cancelled();
        if stop {
            for p in self.pending.values() {
                p.cancel.cancel();
            }
        }
        let steps: Vec<usize> = self.pending.keys().copied().collect();
        let failed = self.take_in(state, &steps, report).await;
        let name = if stop {
            "Stop the background steps still running"
        } else {
            "Wait for all background steps"
        };
        state.sink.step_started(&state.label, name);
        for failure in &failed {
            state.error(format!("the background step `{failure}` failed"));
        }
        let conclusion = if failed.is_empty() {
            Conclusion::Success
        } else {
            state.status = Status::Failure;
            Conclusion::Failure
        };
        let duration = started.elapsed();
        report.steps.push(StepReport {
            id: None,
            name: name.to_owned(),
            outcome: conclusion,
            conclusion,
            duration,
        });
        state
            .sink
            .step_finished(&state.label, name, conclusion, duration);
    }

    /// Waits for the background steps at `indexes` (those not taken in yet) and takes what
    /// they did into the job; returns the names of those that failed.
    async fn take_in(
        &mut self,
        state: &mut JobState<'_>,
        indexes: &[usize],
        report: &mut JobReport,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        for &index in indexes {
            let Some(pending) = self.pending.remove(&index) else {
                continue;
            };
            while !self.finished.contains_key(&index) {
                match self.running.next().await {
                    Some(done) => {
                        self.finished.insert(done.index, done);
                    }
                    None => break,
                }
            }
            let Some(done) = self.finished.remove(&index) else {
                continue;
            };
            done.buffer.replay(state.sink, &state.label);
            let Done {
                report: step,
                state: fork,
                env_before,
                paths_before,
                ..
            } = done;
            let ctx_id = step.id.clone().unwrap_or_else(|| format!("__step{index}"));
            if let Some(entry) = fork.steps_ctx.get(&ctx_id) {
                state.steps_ctx.insert(ctx_id, entry.clone());
            }
            for (k, v) in &fork.env {
                if env_before.get(k) != Some(v) {
                    state.env.insert(k.clone(), v.clone());
                }
            }
            state
                .path_prefix
                .extend(fork.path_prefix.iter().skip(paths_before).cloned());
            state.summary.push_str(&fork.summary);
            if fork.coverage.is_some() {
                state.coverage = fork.coverage;
            }
            state.posts.extend(fork.posts);
            state.process_groups.extend(fork.process_groups);
            state.resolved.extend(fork.resolved);
            if let (Some(d), Some(f)) = (state.docker.as_mut(), fork.docker) {
                d.absorb(f);
            }
            if step.conclusion == Conclusion::Failure {
                failed.push(step.name.clone());
            }
            if let Some(slot) = report.steps.get_mut(pending.slot) {
                *slot = step;
            }
        }
        failed
    }
}
