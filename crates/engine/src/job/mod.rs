//! Running one job instance (one matrix combination) on the host, step by step.
//!
//! A job is self-contained: given the run's contexts ([`RunEnv`]), its own [`JobSpec`] (the
//! matrix values, the results and outputs of its needs) it runs on its own, which is what a
//! remote runner does with a job the server hands it.
//!
//! Its parts: the contexts and the process environment of a step (`context`), what the job
//! shows and the workflow commands in its output (`log`), a step (`step`), the file-command
//! files (`file_commands`), and what runs after the steps: post steps and outputs (`finish`).

mod background;
mod containers;
mod context;
mod file_commands;
mod finish;
mod log;
mod pre;
mod step;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use expr::{Map, Status, Value};
use tokio_util::sync::CancellationToken;
use workflow::{Job, Node, Workflow};

pub(crate) use containers::{ImageStep, run_image};
pub use context::{HOST_VARIABLES, environment_of, job_environment, runs_on};
use context::{eval_ctx, merge_env};
pub(crate) use file_commands::FileCommands;
pub use file_commands::{clear_engine_temp, is_engine_temp_file, make_first_step_files};
pub(crate) use finish::{PostCondition, PostStep};
pub(crate) use step::{find_on_path, run_step, which};

use crate::actions;
use crate::error::JobError;
use crate::process;
use crate::report::{Conclusion, JobReport};
pub(crate) use crate::run_env::{RunEnv, Source};
use crate::services;
use crate::sink::{JobLabel, Line, Sink};

/// One job instance to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub workflow: Arc<Workflow>,
    /// The workflow's file in the source (`.github/workflows/ci.yml`): a remote runner reads
    /// the job's definition from there.
    pub file: String,
    /// The workflow's text when `file` is not in the source (a reusable workflow of another
    /// repository).
    pub text: Option<Arc<str>>,
    pub workflow_name: String,
    pub job_id: String,
    /// Unique among the run's job instances; names the job's directory.
    pub key: String,
    pub display: String,
    pub matrix: Option<Map>,
    pub strategy: Map,
    /// `needs.<id>.result` / `.outputs` of the direct needs.
    pub needs: Map,
}

impl JobSpec {
    fn job(&self) -> Option<&Job> {
        self.workflow.jobs.get(&self.job_id)
    }
}

/// The mutable state of a running job.
pub(crate) struct JobState<'a> {
    pub(crate) spec: &'a JobSpec,
    pub(crate) run: &'a RunEnv,
    pub(crate) sink: &'a dyn Sink,
    pub(crate) label: JobLabel,
    pub(crate) workspace: PathBuf,
    pub(crate) temp: PathBuf,
    /// The `env` context: workflow, then job, then `GITHUB_ENV` additions.
    pub(crate) env: Map,
    pub(crate) path_prefix: Vec<String>,
    pub(crate) steps_ctx: Map,
    pub(crate) status: Status,
    pub(crate) step_counter: usize,
    pub(crate) process_groups: Vec<i32>,
    pub(crate) posts: Vec<PostStep>,
    /// The job's steps whose action's `pre` was dealt with as the job started (run, or
    /// skipped by its `pre-if`), by step index: the `STATE_*` it saved, for `main` and `post`.
    pub(crate) pre_state: std::collections::HashMap<usize, expr::Map>,
    /// Remote actions' directories, by `uses`, once resolved (fetched once a job).
    pub(crate) resolved: std::collections::HashMap<String, PathBuf>,
    pub(crate) coverage: Option<f64>,
    /// What the steps wrote to `GITHUB_STEP_SUMMARY`, masked.
    pub(crate) summary: String,
    pub(crate) job_ctx: Map,
    /// The `inputs` context inside a composite action.
    pub(crate) inputs_override: Option<Map>,
    /// The `secrets` context: the run's, plus its environment's once `environment:` is known.
    pub(crate) secrets: Map,
    /// The job's services run from local binaries, stopped when the state goes.
    pub(crate) services: Vec<services::Local>,
    /// What the job made in Docker (services, its container, networks, volumes).
    pub(crate) docker: Option<containers::JobDocker>,
    /// The job's own container, where its processes run.
    pub(crate) container: Option<containers::InContainer>,
}

impl JobState<'_> {
    /// The permissions of the files the job's steps get from the engine (their scripts,
    /// their file-command files): their own user's, as a script holds the values its
    /// expressions were replaced with (secrets among them) and the job's directories are
    /// open to other users passing through (its services may run as another user). In a
    /// job's container whose user cannot use such files (the image's own user, a user
    /// namespace of its own), they stay readable by all.
    pub(crate) fn step_file_mode(&self) -> u32 {
        self.container
            .as_ref()
            .map_or(0o600, containers::InContainer::file_mode)
    }
}

pub(crate) fn obj(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Runs the job. Never fails: every problem becomes a failed step or job with a message.
pub async fn run_job(
    spec: &JobSpec,
    run: &RunEnv,
    sink: &dyn Sink,
    cancel: &CancellationToken,
) -> JobReport {
    let started = Instant::now();
    let label = JobLabel {
        workflow: spec.workflow_name.clone(),
        job_id: spec.job_id.clone(),
        display: spec.display.clone(),
    };
    sink.job_started(&label);
    let job_dir = run
        .host
        .job_dir
        .clone()
        .unwrap_or_else(|| run.host.run_dir.join("jobs").join(&spec.key));
    let mut state = JobState {
        spec,
        run,
        sink,
        label: label.clone(),
        workspace: job_dir.join("workspace"),
        temp: job_dir.join("temp"),
        env: Map::new(),
        path_prefix: Vec::new(),
        steps_ctx: Map::new(),
        status: Status::Success,
        step_counter: 0,
        process_groups: Vec::new(),
        posts: Vec::new(),
        pre_state: std::collections::HashMap::new(),
        resolved: std::collections::HashMap::new(),
        coverage: None,
        summary: String::new(),
        job_ctx: Map::new(),
        inputs_override: None,
        secrets: run.context.secrets.run().clone(),
        services: Vec::new(),
        docker: None,
        container: None,
    };
    state
        .job_ctx
        .insert("status".into(), Value::from("success"));
    state
        .job_ctx
        .insert("container".into(), obj([("network", Value::from(""))]));
    state
        .job_ctx
        .insert("services".into(), Value::Object(Map::new()));
    let mut report = JobReport {
        id: spec.job_id.clone(),
        name: spec.display.clone(),
        matrix: spec
            .matrix
            .as_ref()
            .map(|m| Value::Object(m.clone()).to_json()),
        outcome: Conclusion::Success,
        conclusion: Conclusion::Success,
        steps: Vec::new(),
        outputs: serde_json::Map::new(),
        coverage: None,
        summary: String::new(),
        environment: None,
        duration: Duration::ZERO,
    };
    let Some(job) = spec.job() else {
        state.error(format!("job `{}` is not in the workflow", spec.job_id));
        report.outcome = Conclusion::Failure;
        report.conclusion = Conclusion::Failure;
        sink.job_finished(&label, report.conclusion, started.elapsed());
        return report;
    };
    let result = prepare_and_run(&mut state, job, cancel, &mut report).await;
    // Files a container made as root in the job's directories are handed back to this
    // process's user, so the directories can go.
    if let (Some(c), Some(d)) = (&state.container, &state.docker)
        && !nix::unistd::geteuid().is_root()
    {
        let owner = format!("{}:{}", nix::unistd::geteuid(), nix::unistd::getegid());
        let dirs: Vec<String> = c.paths.containers().map(str::to_owned).collect();
        let mut cmd = vec!["chown", "-R", owner.as_str()];
        cmd.extend(dirs.iter().map(String::as_str));
        let _ = d.engine.exec_quiet(&c.id, &cmd).await;
    }
    state.container = None;
    if let Some(d) = state.docker.take() {
        d.remove(&state).await;
    }
    // The services stop (and their directories go) with the job; what they printed is kept
    // in its log, folded.
    for service in std::mem::take(&mut state.services) {
        let (lines, before) = service.log_tail(SERVICE_LOG_LINES);
        state.log(Line::GroupStart(format!(
            "Service `{}`: its log",
            service.id
        )));
        if before > 0 {
            state.log(Line::Output(format!("({before} earlier lines left out)")));
        }
        for line in lines {
            state.log(Line::Output(line));
        }
        state.log(Line::GroupEnd);
    }
    // Orphans: processes a step left running (a server started with `&`) end with the job.
    for pgid in std::mem::take(&mut state.process_groups) {
        process::kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
    }
    let outcome = match result {
        Err(msg) => {
            state.error(msg.to_string());
            Conclusion::Failure
        }
        Ok(()) if cancel.is_cancelled() => Conclusion::Cancelled,
        Ok(()) => match state.status {
            Status::Success => Conclusion::Success,
            Status::Failure => Conclusion::Failure,
            Status::Cancelled => Conclusion::Cancelled,
        },
    };
    report.outcome = outcome;
    report.conclusion = outcome;
    if outcome == Conclusion::Failure {
        let host = actions::HashFiles(state.workspace.clone());
        let ctxs = state.contexts(None);
        let coe = job
            .continue_on_error
            .as_ref()
            .map(|n| workflow::eval::evaluate(n, &eval_ctx(&ctxs, state.status, &host)));
        if let Some(Ok(v)) = coe
            && v.truthy()
        {
            report.conclusion = Conclusion::Success;
        }
    }
    report.coverage = state.coverage;
    report.summary = std::mem::take(&mut state.summary);
    report.duration = started.elapsed();
    sink.job_finished(&label, report.conclusion, report.duration);
    report
}

/// Job set-up, steps, post steps and outputs. An `Err` is a job-level failure message.
async fn prepare_and_run(
    state: &mut JobState<'_>,
    job: &Job,
    cancel: &CancellationToken,
    report: &mut JobReport,
) -> Result<(), JobError> {
    for dir in [&state.workspace, &state.temp] {
        std::fs::create_dir_all(dir)
            .map_err(|e| JobError::io(format!("cannot create {}", dir.display()), e))?;
    }
    let wf = &state.spec.workflow;
    let host = actions::HashFiles(state.workspace.clone());
    // The environment's secrets join the context before anything else is evaluated.
    if let Some(env) = &job.environment {
        let ctxs = state.contexts_for([&env.name]);
        let name =
            workflow::eval::evaluate_string(&env.name, &eval_ctx(&ctxs, Status::Success, &host))
                .map_err(|e| JobError::expr("`environment`", e))?;
        // Masked since they were put in the run's secrets.
        if let Some(extra) = state.run.context.secrets.environment(&name) {
            for (k, v) in extra {
                state.secrets.insert(k.clone(), v.clone());
            }
        }
    }
    let labels = runs_on(state.spec, state.run).map_err(|e| e.0)?;
    // The image the job's labels map to, if any (`host`: none).
    let image = labels
        .iter()
        .find_map(|l| {
            state
                .run
                .host
                .images
                .iter()
                .find(|(label, _)| label.eq_ignore_ascii_case(l))
        })
        .map(|(_, image)| image.clone())
        .filter(|i| i != "host");
    if state.run.host.this_machine_only
        && image.is_none()
        && let Some(os) = foreign_os(&labels)
    {
        return Err(JobError::invalid(
            "`runs-on`",
            format!(
                "`{os}` asks for another operating system: pipewright runs this job on this {} machine only",
                std::env::consts::OS
            ),
        ));
    }
    containers::start(
        state,
        job.container.as_ref(),
        image,
        job.services.as_ref(),
        &host,
    )
    .await?;
    // The env context: workflow env (with fewer contexts available), then job env. The
    // contexts (a copy of the event, the env and more) are made only where something is
    // evaluated with them.
    if let Some(env) = &wf.env {
        let ctxs = state.contexts_for([env]);
        let v = workflow::eval::evaluate(env, &eval_ctx(&ctxs, Status::Success, &host))
            .map_err(|e| JobError::expr("workflow `env`", e))?;
        merge_env(&mut state.env, v);
    }
    if let Some(env) = &job.env {
        let ctxs = state.contexts_for([env]);
        let v = workflow::eval::evaluate(env, &eval_ctx(&ctxs, Status::Success, &host))
            .map_err(|e| JobError::expr("job `env`", e))?;
        merge_env(&mut state.env, v);
    }
    let timeout = match &job.timeout_minutes {
        Some(n) => minutes(
            n,
            &eval_ctx(&state.contexts_for([n]), Status::Success, &host),
        )?,
        None => Duration::from_secs(360 * 60),
    };
    let job_deadline = tokio::time::Instant::now() + timeout;
    // A job past its deadline is stopped like a cancelled one, but it fails.
    let job_cancel = cancel.child_token();
    let timer = {
        let t = job_cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(job_deadline).await;
            t.cancel();
        })
    };
    let mut timed_out = false;
    pre::run(state, &job.steps, &job_cancel).await;
    let buffers = background::buffers(&job.steps);
    let mut background = background::Background::new(&buffers);
    for (index, step) in job.steps.iter().enumerate() {
        if job_cancel.is_cancelled() && !cancel.is_cancelled() && !timed_out {
            timed_out = true;
            state.error(format!(
                "the job has exceeded its maximum execution time of {}",
                human_minutes(timeout)
            ));
            state.status = Status::Failure;
        }
        if cancel.is_cancelled() {
            state.status = Status::Cancelled;
        }
        let r = match &step.control {
            Some(control) => {
                background
                    .control(state, step, control, index, &job_cancel, report)
                    .await
            }
            None if step.background => {
                background.start(state, step, index, &job_cancel, report);
                continue;
            }
            None => {
                background
                    .beside(run_step(state, step, index, &job_cancel))
                    .await
            }
        };
        report.steps.push(r);
    }
    background.finish(state, &job_cancel, report).await;
    timer.abort();
    if job_cancel.is_cancelled() && !cancel.is_cancelled() && !timed_out {
        state.error(format!(
            "the job has exceeded its maximum execution time of {}",
            human_minutes(timeout)
        ));
        state.status = Status::Failure;
    }
    finish::run_posts(state).await;
    finish::outputs(state, job, &host, report);
    Ok(())
}

/// The first of `labels` that names an operating system other than this one (GitHub's
/// `windows-*`, `macos-*` images and the `windows`/`macos` labels of self-hosted runners).
fn foreign_os(labels: &[String]) -> Option<&str> {
    let this = std::env::consts::OS;
    labels.iter().map(String::as_str).find(|l| {
        let l = l.to_ascii_lowercase();
        let os = if l.starts_with("windows") {
            "windows"
        } else if l.starts_with("macos") || l == "osx" {
            "macos"
        } else if l.starts_with("ubuntu") || l == "linux" {
            "linux"
        } else {
            return false;
        };
        os != this
    })
}

/// The most lines of a service's own log kept in its job's log.
const SERVICE_LOG_LINES: usize = 500;

fn human_minutes(d: Duration) -> String {
    let m = d.as_secs_f64() / 60.0;
    if m.fract() == 0.0 {
        format!("{m} minutes")
    } else {
        format!("{m:.2} minutes")
    }
}

/// `timeout-minutes`: a positive number, fractions allowed.
fn minutes(node: &Node, ctx: &expr::Context<'_>) -> Result<Duration, JobError> {
    const WHAT: &str = "`timeout-minutes`";
    let v = workflow::eval::evaluate(node, ctx).map_err(|e| JobError::expr(WHAT, e))?;
    let n = match v {
        Value::Number(n) => n,
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| JobError::invalid(WHAT, format!("`{s}` is not a number")))?,
        other => {
            return Err(JobError::invalid(
                WHAT,
                format!("expected a number, got `{}`", other.to_expr_string()),
            ));
        }
    };
    if !n.is_finite() || n <= 0.0 {
        return Err(JobError::invalid(
            WHAT,
            format!("expected a positive number of minutes, got {n}"),
        ));
    }
    Ok(Duration::from_secs_f64((n * 60.0).min(1e9)))
}
