//! Running whole workflows: the job graph by `needs`, job-level `if`, matrix expansion with
//! `fail-fast` and `max-parallel`, and a bound on jobs running at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use expr::{Map, Status, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use workflow::Workflow;

use crate::concurrency::ConcurrencyGroups;
use crate::error::JobError;
use crate::graph::{
    Done, Gate, ancestors_status, any_need_skipped, cancels_siblings, concurrency_group, gate,
    needs_context, node_result, ready, selected, skipped_report,
};
use crate::job::{JobSpec, RunEnv, run_job};
use crate::report::{Conclusion, JobReport, RunReport, WorkflowReport, combine};
use crate::sink::{JobLabel, Level, Line, Sink};

/// A workflow selected to run.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The file, as shown to the user (`.github/workflows/ci.yml`).
    pub file: String,
    pub workflow: Arc<Workflow>,
    /// The workflow's text when it is not in the run's source (a reusable workflow of
    /// another repository): a remote runner is given it with the job.
    pub text: Option<Arc<str>>,
}

impl Planned {
    pub fn name(&self) -> String {
        self.workflow
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| self.file.clone())
    }
}

/// Options of a run.
#[derive(Clone)]
pub struct Options {
    /// Job instances running at once.
    pub parallel: usize,
    /// Run only this job (and the jobs it needs).
    pub only_job: Option<String>,
    /// `concurrency` groups shared with other runs (a server's, in its store); the run's own,
    /// in memory, when `None`.
    pub groups: Option<Arc<dyn ConcurrencyGroups>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("parallel", &self.parallel)
            .field("only_job", &self.only_job)
            .field("shared_groups", &self.groups.is_some())
            .finish()
    }
}

/// A job instance's run, to its report.
pub type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = JobReport> + Send>>;

/// Where job instances run. [`Local`] runs them in this process; a server hands them to its
/// runners and waits for their reports. The graph, `if`s, matrices and outputs are decided
/// here either way, so a job runs the same wherever it runs.
pub trait JobRunner: Send + Sync {
    fn run_job(
        &self,
        spec: JobSpec,
        env: Arc<RunEnv>,
        sink: Arc<dyn Sink>,
        cancel: CancellationToken,
    ) -> JobFuture;
}

/// Runs job instances in this process.
pub struct Local;

impl JobRunner for Local {
    fn run_job(
        &self,
        spec: JobSpec,
        env: Arc<RunEnv>,
        sink: Arc<dyn Sink>,
        cancel: CancellationToken,
    ) -> JobFuture {
        Box::pin(async move { run_job(&spec, &env, sink.as_ref(), &cancel).await })
    }
}

/// What every job node of a workflow shares.
#[derive(Clone)]
pub(crate) struct Scope {
    pub(crate) runner: Arc<dyn JobRunner>,
    pub(crate) env: Arc<RunEnv>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) cancel: CancellationToken,
    pub(crate) slots: Arc<Semaphore>,
    /// The run's `concurrency` groups.
    pub(crate) groups: Arc<dyn ConcurrencyGroups>,
    /// For the jobs of a called (reusable) workflow: the calling job's id, prefixed to their
    /// ids (`deploy/build`) and display names (`deploy / build`).
    pub(crate) caller: Option<String>,
}

/// Runs the workflows, each with its run environment (its `github.workflow`, its inputs);
/// every job of every workflow shares the `parallel` slots.
pub async fn run(
    planned: Vec<(Planned, Arc<RunEnv>)>,
    sink: Arc<dyn Sink>,
    cancel: CancellationToken,
    options: Options,
) -> RunReport {
    run_with(planned, sink, cancel, options, Arc::new(Local)).await
}

/// [`run`], with the job instances run by `runner`.
pub async fn run_with(
    planned: Vec<(Planned, Arc<RunEnv>)>,
    sink: Arc<dyn Sink>,
    cancel: CancellationToken,
    options: Options,
    runner: Arc<dyn JobRunner>,
) -> RunReport {
    let slots = Arc::new(Semaphore::new(options.parallel.max(1)));
    let groups = options
        .groups
        .clone()
        .unwrap_or_else(|| Arc::new(crate::concurrency::Groups::default()));
    let mut set = JoinSet::new();
    for (i, (p, env)) in planned.into_iter().enumerate() {
        let (sink, cancel, slots, options) =
            (sink.clone(), cancel.clone(), slots.clone(), options.clone());
        let scope = Scope {
            runner: runner.clone(),
            env,
            sink,
            cancel,
            slots,
            groups: groups.clone(),
            caller: None,
        };
        set.spawn(async move { (i, run_workflow(p, scope, &options).await) });
    }
    let mut reports: Vec<(usize, WorkflowReport)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            reports.push(r);
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    let workflows: Vec<WorkflowReport> = reports.into_iter().map(|(_, r)| r).collect();
    RunReport {
        conclusion: combine(workflows.iter().map(|w| w.conclusion)),
        workflows,
    }
}

/// [`run_workflow`] for a called workflow, boxed with an explicit `Send` so that the
/// recursion (a job calling a workflow whose job calls another) has a nameable type.
pub(crate) fn run_workflow_boxed(
    planned: Planned,
    scope: Scope,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = WorkflowReport> + Send>> {
    Box::pin(async move {
        let options = Options {
            parallel: 1,
            only_job: None,
            groups: None,
        };
        run_workflow(planned, scope, &options).await
    })
}

async fn run_workflow(planned: Planned, scope: Scope, options: &Options) -> WorkflowReport {
    let name = planned.name();
    let wf = planned.workflow.clone();
    let ids = selected(&wf, options.only_job.as_deref());
    // Workflow-level `concurrency`: the whole workflow waits for (or takes) its group.
    let mut scope = scope;
    let _held = match &wf.concurrency {
        None => None,
        Some(c) => {
            let ctxs = base_contexts(&scope.env, &Map::new());
            let ectx = expr::Context {
                contexts: &ctxs,
                status: Status::Success,
                host: None,
            };
            let (group, cancel_in_progress) = match concurrency_group(c, &ectx) {
                Ok(g) => g,
                Err(e) => {
                    // The whole workflow fails, each of its jobs with the message.
                    let label = JobLabel {
                        workflow: name.clone(),
                        job_id: String::new(),
                        display: name.clone(),
                    };
                    scope.sink.line(
                        &label,
                        Line::Annotation {
                            level: Level::Error,
                            message: format!("workflow `{name}`: {e}"),
                            file: None,
                            line: None,
                        },
                    );
                    let jobs = ids
                        .iter()
                        .map(|id| {
                            let mut r = skipped_report(&wf, id);
                            r.outcome = Conclusion::Failure;
                            r.conclusion = Conclusion::Failure;
                            r
                        })
                        .collect();
                    return WorkflowReport {
                        file: planned.file.clone(),
                        name,
                        conclusion: Conclusion::Failure,
                        jobs,
                    };
                }
            };
            let token = scope.cancel.child_token();
            // The workflow's own name in its run (its jobs go by their display names): a
            // called workflow's is its caller's.
            let holder = match &scope.caller {
                Some(c) => format!("workflow:{c}"),
                None => format!("workflow:{}", planned.file),
            };
            match scope
                .groups
                .acquire(&group, &holder, cancel_in_progress, &token)
                .await
            {
                Some(h) => {
                    scope.cancel = token;
                    Some(h)
                }
                None => {
                    let jobs = ids
                        .iter()
                        .map(|id| {
                            let mut r = skipped_report(&wf, id);
                            r.outcome = Conclusion::Cancelled;
                            r.conclusion = Conclusion::Cancelled;
                            r
                        })
                        .collect();
                    return WorkflowReport {
                        file: planned.file.clone(),
                        name,
                        conclusion: Conclusion::Cancelled,
                        jobs,
                    };
                }
            }
        }
    };
    let mut done: HashMap<String, Done> = HashMap::new();
    let mut reports: HashMap<String, Vec<JobReport>> = HashMap::new();
    let mut started: HashSet<String> = HashSet::new();
    let mut set: JoinSet<(String, Done, Vec<JobReport>)> = JoinSet::new();
    loop {
        // Start every job whose needs are all done.
        for id in ready(&wf, &ids, &done, &started) {
            let Some(job) = wf.jobs.get(&id) else {
                continue;
            };
            started.insert(id.clone());
            let needs = needs_context(job, &done);
            let status = ancestors_status(&wf, &id, &done, scope.cancel.is_cancelled());
            let any_need_skipped = any_need_skipped(job, &done);
            let (wf, scope, name) = (wf.clone(), scope.clone(), name.clone());
            let file = planned.file.clone();
            let text = planned.text.clone();
            set.spawn(async move {
                let node = JobNode {
                    wf: &wf,
                    file: &file,
                    text: text.as_ref(),
                    wf_name: &name,
                    id: &id,
                    status,
                    any_need_skipped,
                };
                let (d, r) = run_job_node(node, needs, scope).await;
                (id, d, r)
            });
        }
        match set.join_next().await {
            Some(Ok((id, d, r))) => {
                done.insert(id.clone(), d);
                reports.insert(id, r);
            }
            Some(Err(_)) => {}
            None => break,
        }
    }
    // Report in workflow order; jobs never reached (their needs were never done) are skipped.
    let mut jobs = Vec::new();
    for id in &ids {
        match reports.remove(id) {
            Some(r) => jobs.extend(r),
            None => jobs.push(skipped_report(&wf, id)),
        }
    }
    if let Some(c) = &scope.caller {
        for j in &mut jobs {
            if !j.id.contains('/') {
                j.id = format!("{c}/{}", j.id);
            }
            if !j.name.starts_with(&format!("{c} / ")) {
                j.name = format!("{c} / {}", j.name);
            }
        }
    }
    WorkflowReport {
        file: planned.file.clone(),
        name,
        conclusion: combine(jobs.iter().map(|j| j.conclusion)),
        jobs,
    }
}

pub(crate) fn base_contexts(env: &RunEnv, needs: &Map) -> Map {
    let mut c = Map::new();
    c.insert("github".into(), Value::Object(env.context.github.clone()));
    c.insert("vars".into(), Value::Object(env.context.vars.clone()));
    c.insert("inputs".into(), Value::Object(env.context.inputs.clone()));
    c.insert("needs".into(), Value::Object(needs.clone()));
    c
}

/// A job of the graph about to be considered.
struct JobNode<'a> {
    wf: &'a Arc<Workflow>,
    file: &'a str,
    text: Option<&'a Arc<str>>,
    wf_name: &'a str,
    id: &'a str,
    /// The status its `if` sees.
    status: Status,
    any_need_skipped: bool,
}

/// Runs one job of the graph: its `if`, its matrix, its instances.
async fn run_job_node(node: JobNode<'_>, needs: Map, scope: Scope) -> (Done, Vec<JobReport>) {
    let JobNode {
        wf,
        file,
        text,
        wf_name,
        id,
        status,
        any_need_skipped,
    } = node;
    let Scope {
        env,
        sink,
        cancel,
        slots,
        caller,
        ..
    } = scope.clone();
    let Some(job) = wf.jobs.get(id) else {
        return (Done::of(Conclusion::Skipped), Vec::new());
    };
    let label = JobLabel {
        workflow: wf_name.to_owned(),
        job_id: id.to_owned(),
        display: id.to_owned(),
    };
    let fail = |msg: String| {
        sink.line(
            &label,
            Line::Annotation {
                level: Level::Error,
                message: msg,
                file: None,
                line: None,
            },
        );
        let mut r = skipped_report(wf, id);
        r.outcome = Conclusion::Failure;
        r.conclusion = Conclusion::Failure;
        (Done::of(Conclusion::Failure), vec![r])
    };
    let skip = || (Done::of(Conclusion::Skipped), vec![skipped_report(wf, id)]);
    let ctxs = base_contexts(&env, &needs);
    let ectx = expr::Context {
        contexts: &ctxs,
        status,
        host: None,
    };
    let cond_src = job.if_.as_ref().map_or("", |c| c.value.as_str());
    match gate(id, cond_src, &ectx, any_need_skipped) {
        Gate::Run => {}
        Gate::Skip => return skip(),
        Gate::Fail(message) => return fail(message),
    }
    if let Some(uses) = &job.uses {
        return match crate::call::call_workflow(&uses.value, id, job, &ectx, scope).await {
            Ok(r) => r,
            Err(e) => fail(format!("job `{id}`: {e}")),
        };
    }
    // The matrix, evaluated with the contexts `strategy` may use.
    let strategy = job.strategy.clone().unwrap_or_default();
    let configs = match &strategy.matrix {
        None => vec![None],
        Some(node) => match workflow::eval::evaluate(node, &ectx) {
            Err(e) => return fail(format!("the matrix of job `{id}`: {e}")),
            Ok(v) => match plan::matrix::Matrix::from_value(&v) {
                Err(e) => return fail(format!("the matrix of job `{id}`: {e}")),
                Ok(m) => match plan::matrix::configurations(&m) {
                    Err(e) => return fail(format!("the matrix of job `{id}`: {e}")),
                    Ok(c) if c.is_empty() => return skip(),
                    Ok(c) => c.into_iter().map(Some).collect(),
                },
            },
        },
    };
    let bool_of = |n: &Option<workflow::Node>, default: bool| -> Result<bool, JobError> {
        match n {
            None => Ok(default),
            Some(n) => workflow::eval::evaluate(n, &ectx)
                .map(|v| v.truthy())
                .map_err(|e| JobError::expr("the strategy", e)),
        }
    };
    let fail_fast = match bool_of(&strategy.fail_fast, true) {
        Ok(b) => b,
        Err(e) => return fail(format!("`fail-fast` of job `{id}`: {e}")),
    };
    let max_parallel = match &strategy.max_parallel {
        None => configs.len(),
        Some(n) => match workflow::eval::evaluate(n, &ectx) {
            Ok(Value::Number(x)) if x >= 1.0 => x as usize,
            Ok(Value::String(s)) if s.trim().parse::<usize>().is_ok_and(|x| x >= 1) => {
                s.trim().parse().unwrap_or(1)
            }
            Ok(v) => {
                return fail(format!(
                    "`max-parallel` of job `{id}` must be a positive number, got `{}`",
                    v.to_expr_string()
                ));
            }
            Err(e) => return fail(format!("`max-parallel` of job `{id}`: {e}")),
        },
    };
    let total = configs.len();
    let group_cancel = cancel.child_token();
    let local = Arc::new(Semaphore::new(max_parallel.max(1)));
    let mut set = JoinSet::new();
    for (index, config) in configs.into_iter().enumerate() {
        let mut strategy_ctx = Map::new();
        strategy_ctx.insert("fail-fast".into(), Value::Bool(fail_fast));
        strategy_ctx.insert("job-index".into(), Value::Number(index as f64));
        strategy_ctx.insert("job-total".into(), Value::Number(total as f64));
        strategy_ctx.insert("max-parallel".into(), Value::Number(max_parallel as f64));
        let (matrix, suffix) = match config {
            Some(c) => (Some(c.values), c.display_suffix),
            None => (None, String::new()),
        };
        // The display name: `name` evaluated with the matrix, else the id, plus the matrix
        // values unless the name already uses the matrix.
        let mut dctx = ctxs.clone();
        dctx.insert(
            "matrix".into(),
            Value::Object(matrix.clone().unwrap_or_default()),
        );
        dctx.insert("strategy".into(), Value::Object(strategy_ctx.clone()));
        let name_uses_matrix = job
            .name
            .as_ref()
            .and_then(|n| n.as_str())
            .is_some_and(|n| n.contains("matrix."));
        let base_name = match &job.name {
            Some(n) => workflow::eval::evaluate_string(
                n,
                &expr::Context {
                    contexts: &dctx,
                    status,
                    host: None,
                },
            )
            .unwrap_or_else(|_| id.to_owned()),
            None => id.to_owned(),
        };
        let display = if suffix.is_empty() || name_uses_matrix {
            base_name
        } else {
            plan::matrix::display_name(&base_name, &suffix)
        };
        let display = match &caller {
            Some(c) => format!("{c} / {display}"),
            None => display,
        };
        let concurrency = job.concurrency.as_ref().map(|c| {
            let ectx = expr::Context {
                contexts: &dctx,
                status,
                host: None,
            };
            concurrency_group(c, &ectx).map_err(|e| format!("job `{display}`: {e}"))
        });
        let spec = JobSpec {
            workflow: wf.clone(),
            file: file.to_owned(),
            text: text.cloned(),
            workflow_name: wf_name.to_owned(),
            job_id: id.to_owned(),
            key: format!(
                "{}-{}{id}-{index}",
                crate::files::safe_name(wf_name),
                caller
                    .as_deref()
                    .map(|c| format!("{}-", crate::files::safe_name(c)))
                    .unwrap_or_default()
            ),
            display,
            matrix,
            strategy: strategy_ctx,
            needs: needs.clone(),
        };
        // Instances start in matrix order: the `max-parallel` permit is taken here, before
        // the next instance is considered.
        let local_permit = local.clone().acquire_owned().await;
        let (runner, env, sink, group_cancel, slots, groups) = (
            scope.runner.clone(),
            env.clone(),
            sink.clone(),
            group_cancel.clone(),
            slots.clone(),
            scope.groups.clone(),
        );
        set.spawn(async move {
            let _local = local_permit;
            let _slot = slots.acquire_owned().await;
            // This instance's own token: a concurrency group may cancel it alone.
            let token = group_cancel.child_token();
            let held = match &concurrency {
                Some(Ok((group, cancel_in_progress))) => groups
                    .acquire(group, &spec.display, *cancel_in_progress, &token)
                    .await
                    .map(Some),
                Some(Err(message)) => {
                    // Its group cannot be told: the instance fails with the reason.
                    let label = JobLabel {
                        workflow: spec.workflow_name.clone(),
                        job_id: spec.job_id.clone(),
                        display: spec.display.clone(),
                    };
                    sink.line(
                        &label,
                        Line::Annotation {
                            level: Level::Error,
                            message: message.clone(),
                            file: None,
                            line: None,
                        },
                    );
                    let matrix = spec
                        .matrix
                        .as_ref()
                        .map(|m| Value::Object(m.clone()).to_json());
                    let r = JobReport::without_steps(
                        &spec.job_id,
                        &spec.display,
                        matrix,
                        Conclusion::Failure,
                    );
                    if cancels_siblings(r.conclusion, fail_fast) {
                        group_cancel.cancel();
                    }
                    return (index, r);
                }
                None => Some(None),
            };
            if group_cancel.is_cancelled() || held.is_none() {
                // A sibling failed under fail-fast before this one started.
                let mut r = skipped_report(&spec.workflow, &spec.job_id);
                r.name = spec.display.clone();
                r.matrix = spec
                    .matrix
                    .as_ref()
                    .map(|m| Value::Object(m.clone()).to_json());
                r.outcome = Conclusion::Cancelled;
                r.conclusion = Conclusion::Cancelled;
                return (index, r);
            }
            let started = Instant::now();
            let mut r = runner.run_job(spec, env, sink, token.clone()).await;
            drop(held);
            r.duration = started.elapsed();
            if cancels_siblings(r.conclusion, fail_fast) {
                group_cancel.cancel();
            }
            (index, r)
        });
    }
    let mut reports: Vec<(usize, JobReport)> = Vec::new();
    let mut outputs = Map::new();
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            for (k, v) in &r.outputs {
                outputs.insert(k.clone(), Value::from_json(v.clone()));
            }
            reports.push((i, r));
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    let reports: Vec<JobReport> = reports.into_iter().map(|(_, r)| r).collect();
    let conclusions: Vec<Conclusion> = reports.iter().map(|r| r.conclusion).collect();
    let result = node_result(cancel.is_cancelled(), &conclusions);
    (Done { result, outputs }, reports)
}

/// Reads a file of the run's source (a workflow, a called workflow): the work tree, or the commit being run.
pub fn read_source_file(
    source: &crate::job::Source,
    rel: &str,
) -> Result<String, crate::error::DefinitionError> {
    read_source(source, rel).map_err(Into::into)
}

pub(crate) fn read_source(source: &crate::job::Source, rel: &str) -> Result<String, JobError> {
    match source {
        crate::job::Source::WorkingTree(root) => std::fs::read_to_string(root.join(rel))
            .map_err(|e| JobError::io(format!("cannot read {rel}"), e)),
        crate::job::Source::Commit { repo, sha } => {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["show", "--end-of-options"])
                .arg(format!("{sha}:{rel}"))
                .output()
                .map_err(|e| JobError::io("git show", e))?;
            if !out.status.success() {
                return Err(JobError::invalid(rel, format!("not in commit {sha}")));
            }
            String::from_utf8(out.stdout).map_err(|_| JobError::invalid(rel, "not UTF-8"))
        }
        crate::job::Source::Archive(tar) => {
            let out = std::process::Command::new("tar")
                .arg("-x")
                .arg("-O")
                .arg("-f")
                .arg(tar)
                .arg("--")
                .arg(rel)
                .output()
                .map_err(|e| JobError::io("tar", e))?;
            if !out.status.success() {
                return Err(JobError::invalid(rel, "not in the source archive"));
            }
            String::from_utf8(out.stdout).map_err(|_| JobError::invalid(rel, "not UTF-8"))
        }
    }
}
