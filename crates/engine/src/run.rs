//! Running whole workflows: the job graph by `needs`, job-level `if`, matrix expansion with
//! `fail-fast` and `max-parallel`, and a bound on jobs running at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use expr::{Map, Status, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use workflow::{Job, Workflow};

use crate::concurrency::ConcurrencyGroups;
use crate::error::JobError;
use crate::job::{JobSpec, RunEnv, obj, run_job};
use crate::report::{Conclusion, JobReport, RunReport, WorkflowReport, combine};
use crate::sink::{JobLabel, Level, Line, Sink};

/// A workflow selected to run.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The file, as shown to the user (`.github/workflows/ci.yml`).
    pub file: String,
    pub workflow: Arc<Workflow>,
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
struct Scope {
    runner: Arc<dyn JobRunner>,
    env: Arc<RunEnv>,
    sink: Arc<dyn Sink>,
    cancel: CancellationToken,
    slots: Arc<Semaphore>,
    /// The run's `concurrency` groups.
    groups: Arc<dyn ConcurrencyGroups>,
    /// For the jobs of a called (reusable) workflow: the calling job's id, prefixed to their
    /// ids (`deploy/build`) and display names (`deploy / build`).
    caller: Option<String>,
}

/// The outcome of one job (all its matrix instances), as `needs` sees it.
#[derive(Debug, Clone)]
struct Done {
    result: Conclusion,
    outputs: Map,
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

/// The jobs to run: all, or one job and everything it needs.
fn selected(wf: &Workflow, only: Option<&str>) -> Vec<String> {
    let Some(only) = only else {
        return wf.jobs.keys().cloned().collect();
    };
    let mut keep = HashSet::new();
    let mut stack = vec![only.to_owned()];
    while let Some(id) = stack.pop() {
        if let Some(job) = wf.jobs.get(&id)
            && keep.insert(id)
        {
            stack.extend(job.needs.iter().map(|n| n.value.clone()));
        }
    }
    wf.jobs
        .keys()
        .filter(|k| keep.contains(*k))
        .cloned()
        .collect()
}

/// [`run_workflow`] for a called workflow, boxed with an explicit `Send` so that the
/// recursion (a job calling a workflow whose job calls another) has a nameable type.
fn run_workflow_boxed(
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
            let (group, cancel_in_progress) = concurrency_group(c, &ectx);
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
        for id in &ids {
            if started.contains(id) {
                continue;
            }
            let Some(job) = wf.jobs.get(id) else { continue };
            if !job
                .needs
                .iter()
                .all(|n| done.contains_key(&n.value) || !ids.contains(&n.value))
            {
                continue;
            }
            started.insert(id.clone());
            let needs = needs_context(job, &done);
            let status = ancestors_status(&wf, id, &done, &scope.cancel);
            let any_need_skipped = job.needs.iter().any(|n| {
                done.get(&n.value)
                    .is_some_and(|d| d.result == Conclusion::Skipped)
            });
            let (wf, scope, id, name) = (wf.clone(), scope.clone(), id.clone(), name.clone());
            let file = planned.file.clone();
            set.spawn(async move {
                let node = JobNode {
                    wf: &wf,
                    file: &file,
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

/// A `concurrency:` evaluated: its group, and whether it cancels what is in progress.
fn concurrency_group(c: &workflow::Concurrency, ectx: &expr::Context<'_>) -> (String, bool) {
    let group = workflow::eval::evaluate_string(&c.group, ectx).unwrap_or_default();
    let cancel_in_progress = c
        .cancel_in_progress
        .as_ref()
        .and_then(|n| workflow::eval::evaluate(n, ectx).ok())
        .is_some_and(|v| v.truthy());
    (group, cancel_in_progress)
}

fn needs_context(job: &Job, done: &HashMap<String, Done>) -> Map {
    let mut needs = Map::new();
    for n in &job.needs {
        let d = done.get(&n.value);
        needs.insert(
            n.value.clone(),
            obj([
                (
                    "result",
                    Value::from(d.map_or("skipped", |d| d.result.as_str())),
                ),
                (
                    "outputs",
                    Value::Object(d.map(|d| d.outputs.clone()).unwrap_or_default()),
                ),
            ]),
        );
    }
    needs
}

/// The status a job's `if` sees: failure if any ancestor failed, cancelled if the run was.
fn ancestors_status(
    wf: &Workflow,
    id: &str,
    done: &HashMap<String, Done>,
    cancel: &CancellationToken,
) -> Status {
    if cancel.is_cancelled() {
        return Status::Cancelled;
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<&str> = wf
        .jobs
        .get(id)
        .map(|j| j.needs.iter().map(|n| n.value.as_str()).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        match done.get(n).map(|d| d.result) {
            Some(Conclusion::Failure) => return Status::Failure,
            Some(Conclusion::Cancelled) => return Status::Cancelled,
            _ => {}
        }
        if let Some(j) = wf.jobs.get(n) {
            stack.extend(j.needs.iter().map(|x| x.value.as_str()));
        }
    }
    Status::Success
}

fn skipped_report(wf: &Workflow, id: &str) -> JobReport {
    let name = wf
        .jobs
        .get(id)
        .and_then(|j| j.name.as_ref())
        .and_then(|n| n.as_str())
        .filter(|n| !n.contains("${{"))
        .unwrap_or(id)
        .to_owned();
    JobReport {
        id: id.to_owned(),
        name,
        matrix: None,
        outcome: Conclusion::Skipped,
        conclusion: Conclusion::Skipped,
        steps: Vec::new(),
        outputs: serde_json::Map::new(),
        coverage: None,
        summary: String::new(),
        environment: None,
        duration: std::time::Duration::ZERO,
    }
}

fn base_contexts(env: &RunEnv, needs: &Map) -> Map {
    let mut c = Map::new();
    c.insert("github".into(), Value::Object(env.github.clone()));
    c.insert("vars".into(), Value::Object(env.vars.clone()));
    c.insert("inputs".into(), Value::Object(env.inputs.clone()));
    c.insert("needs".into(), Value::Object(needs.clone()));
    c
}

/// A job of the graph about to be considered.
struct JobNode<'a> {
    wf: &'a Arc<Workflow>,
    file: &'a str,
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
        return (
            Done {
                result: Conclusion::Skipped,
                outputs: Map::new(),
            },
            Vec::new(),
        );
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
        (
            Done {
                result: Conclusion::Failure,
                outputs: Map::new(),
            },
            vec![r],
        )
    };
    let skip = || {
        (
            Done {
                result: Conclusion::Skipped,
                outputs: Map::new(),
            },
            vec![skipped_report(wf, id)],
        )
    };
    let ctxs = base_contexts(&env, &needs);
    let ectx = expr::Context {
        contexts: &ctxs,
        status,
        host: None,
    };
    let cond_src = job.if_.as_ref().map_or("", |c| c.value.as_str());
    let cond = match expr::parse_condition(cond_src) {
        Ok(c) => c,
        Err(e) => return fail(format!("the `if` of job `{id}`: {e}")),
    };
    if any_need_skipped && !cond.uses_status_function() {
        return skip();
    }
    match cond.evaluate(&ectx) {
        Ok(true) => {}
        Ok(false) => return skip(),
        Err(e) => return fail(format!("the `if` of job `{id}`: {e}")),
    }
    if let Some(uses) = &job.uses {
        return match call_workflow(&uses.value, id, job, &ectx, scope).await {
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
            concurrency_group(c, &ectx)
        });
        let spec = JobSpec {
            workflow: wf.clone(),
            file: file.to_owned(),
            workflow_name: wf_name.to_owned(),
            job_id: id.to_owned(),
            key: format!(
                "{}-{}{id}-{index}",
                sanitize(wf_name),
                caller
                    .as_deref()
                    .map(|c| format!("{}-", sanitize(c)))
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
                Some((group, cancel_in_progress)) => groups
                    .acquire(group, &spec.display, *cancel_in_progress, &token)
                    .await
                    .map(Some),
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
            if r.conclusion == Conclusion::Failure && fail_fast {
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
    let result = if cancel.is_cancelled() {
        Conclusion::Cancelled
    } else if reports.iter().any(|r| r.conclusion == Conclusion::Failure) {
        Conclusion::Failure
    } else if reports
        .iter()
        .any(|r| r.conclusion == Conclusion::Cancelled)
    {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    };
    (Done { result, outputs }, reports)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Reads a file of the run's source (a workflow, a called workflow): the work tree, or the commit being run.
pub fn read_source_file(
    source: &crate::job::Source,
    rel: &str,
) -> Result<String, crate::error::DefinitionError> {
    read_source(source, rel).map_err(Into::into)
}

fn read_source(source: &crate::job::Source, rel: &str) -> Result<String, JobError> {
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

/// A job that calls a reusable workflow (`uses: ./.github/workflows/x.yml`): its jobs run as
/// a nested graph, with the inputs and secrets the caller passes, and its `workflow_call`
/// outputs become the calling job's outputs.
async fn call_workflow(
    uses: &str,
    id: &str,
    job: &Job,
    ectx: &expr::Context<'_>,
    scope: Scope,
) -> Result<(Done, Vec<JobReport>), JobError> {
    let bad = |m: String| JobError::invalid(format!("calling `{uses}`"), m);
    let Some(rel) = uses.strip_prefix("./") else {
        return Err(bad(
            "only local reusable workflows (`./.github/workflows/...`) can run without the network"
                .into(),
        ));
    };
    let rel = rel.split('@').next().unwrap_or(rel);
    let src = read_source(&scope.env.source, rel)?;
    let parsed = workflow::parse(&src);
    if let Some(d) = parsed.diagnostics.iter().find(|d| d.is_error()) {
        return Err(bad(format!(
            "{rel}:{}:{}: {}",
            d.span.start.line, d.span.start.col, d.message
        )));
    }
    let called = Arc::new(
        parsed
            .workflow
            .ok_or_else(|| bad(format!("{rel} is not a workflow")))?,
    );
    let Some(trigger) = called.on.events.get("workflow_call") else {
        return Err(bad(format!(
            "{rel} has no `on.workflow_call`, so it cannot be called"
        )));
    };
    // Inputs: the caller's `with`, typed by the called workflow, defaults filled in.
    let with = match &job.with {
        Some(w) => {
            match workflow::eval::evaluate(w, ectx).map_err(|e| JobError::expr("`with`", e))? {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        }
        None => Map::new(),
    };
    let mut inputs = Map::new();
    for (name, def) in &trigger.inputs {
        let v = match expr::map_get(&with, name) {
            Some(v) => v.clone(),
            None => match &def.default {
                Some(d) => workflow::eval::evaluate(d, ectx)
                    .map_err(|e| JobError::expr(format!("default of input `{name}`"), e))?,
                None if def.required => return Err(bad(format!("input `{name}` is required"))),
                None => match def.kind {
                    workflow::InputType::Boolean => Value::Bool(false),
                    workflow::InputType::Number => Value::Number(0.0),
                    _ => Value::String(String::new()),
                },
            },
        };
        let v = match (def.kind, v) {
            (workflow::InputType::Boolean, v @ Value::Bool(_)) => v,
            (workflow::InputType::Number, v @ Value::Number(_)) => v,
            (workflow::InputType::String, Value::String(s)) => Value::String(s),
            (workflow::InputType::String, v) => Value::String(v.to_expr_string()),
            (kind, v) => {
                return Err(bad(format!(
                    "input `{name}` must be a {}, got `{}`",
                    kind.name(),
                    v.to_expr_string()
                )));
            }
        };
        inputs.insert(name.clone(), v);
    }
    for k in with.keys() {
        if !trigger.inputs.keys().any(|n| n.eq_ignore_ascii_case(k)) {
            return Err(bad(format!("{rel} has no input `{k}`")));
        }
    }
    // Secrets: `inherit`, or the ones passed by name.
    let mut secrets = Map::new();
    match &job.secrets {
        Some(n) if n.as_str() == Some("inherit") => secrets = scope.env.secrets.clone(),
        Some(n) => {
            // `secrets:` of a calling job may read the `secrets` context.
            let mut c = ectx.contexts.clone();
            c.insert("secrets".into(), Value::Object(scope.env.secrets.clone()));
            let sctx = expr::Context {
                contexts: &c,
                status: ectx.status,
                host: None,
            };
            match workflow::eval::evaluate(n, &sctx).map_err(|e| JobError::expr("`secrets`", e))? {
                Value::Object(m) => {
                    for (k, v) in m {
                        secrets.insert(k, Value::String(v.to_expr_string()));
                    }
                }
                _ => return Err(bad("`secrets` must be `inherit` or a mapping".into())),
            }
        }
        None => {}
    }
    for (name, required) in &trigger.secrets {
        // An empty value (a caller's secret that does not exist) counts as not provided.
        if *required && expr::map_get(&secrets, name).is_none_or(|v| v.to_expr_string().is_empty())
        {
            return Err(bad(format!("secret `{name}` is required by {rel}")));
        }
    }
    if let Some(t) = expr::map_get(&scope.env.secrets, "GITHUB_TOKEN") {
        secrets
            .entry("GITHUB_TOKEN".to_owned())
            .or_insert_with(|| t.clone());
    }
    let mut env = (*scope.env).clone();
    env.inputs = inputs.clone();
    env.secrets = secrets;
    let caller = match &scope.caller {
        Some(c) => format!("{c} / {id}"),
        None => id.to_owned(),
    };
    let inner = Scope {
        env: Arc::new(env),
        caller: Some(caller),
        ..scope.clone()
    };
    let planned = Planned {
        file: rel.to_owned(),
        workflow: called.clone(),
    };
    let called_wf = called.clone();
    let report = run_workflow_boxed(planned, inner.clone()).await;
    // `jobs.<id>.result` / `.outputs` of the called workflow, for its outputs.
    let mut jobs = Map::new();
    for (jid, _) in &called_wf.jobs {
        let mine: Vec<&JobReport> = report
            .jobs
            .iter()
            .filter(|j| j.id.rsplit('/').next() == Some(jid.as_str()))
            .collect();
        let result = if mine.iter().any(|j| j.conclusion == Conclusion::Failure) {
            Conclusion::Failure
        } else if mine.iter().any(|j| j.conclusion == Conclusion::Cancelled) {
            Conclusion::Cancelled
        } else if mine.iter().all(|j| j.conclusion == Conclusion::Skipped) {
            Conclusion::Skipped
        } else {
            Conclusion::Success
        };
        let mut outputs = Map::new();
        for j in &mine {
            for (k, v) in &j.outputs {
                outputs.insert(k.clone(), Value::from_json(v.clone()));
            }
        }
        jobs.insert(
            jid.clone(),
            obj([
                ("result", Value::from(result.as_str())),
                ("outputs", Value::Object(outputs)),
            ]),
        );
    }
    let mut c = base_contexts(&inner.env, &Map::new());
    c.insert("jobs".into(), Value::Object(jobs));
    let octx = expr::Context {
        contexts: &c,
        status: Status::Success,
        host: None,
    };
    let mut outputs = Map::new();
    for (name, node) in &trigger.outputs {
        let v = workflow::eval::evaluate_string(node, &octx)
            .map_err(|e| JobError::expr(format!("output `{name}`"), e))?;
        outputs.insert(name.clone(), Value::String(v));
    }
    Ok((
        Done {
            result: report.conclusion,
            outputs,
        },
        report.jobs,
    ))
}
