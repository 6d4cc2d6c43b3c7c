//! Running one job instance (one matrix combination) on the host, step by step.
//!
//! A job is self-contained: given the run's contexts ([`RunEnv`]), its own [`JobSpec`] (the
//! matrix values, the results and outputs of its needs) it runs on its own, which is what a
//! remote runner does with a job the server hands it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use expr::{Map, Status, Value};
use tokio_util::sync::CancellationToken;
use workflow::{Job, Node, Step, Workflow};

use crate::actions;
use crate::commands::{parse_command, parse_key_values};
use crate::error::{DefinitionError, JobError};
use crate::mask::Masker;
use crate::process::{self, Exit, Spawn};
use crate::report::{Conclusion, JobReport, StepReport};
use crate::sink::{JobLabel, Level, Line, Sink};

/// What a job checks out.
#[derive(Debug, Clone)]
pub enum Source {
    /// The work tree as it is: tracked and untracked files, git-ignored ones left out.
    WorkingTree(PathBuf),
    /// One commit of the repository.
    Commit { repo: PathBuf, sha: String },
    /// One commit as a tar archive (`git archive`), as a remote runner receives it.
    Archive(PathBuf),
}

/// What every job of a run shares.
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// The `github` context without its job-specific keys.
    pub github: Map,
    pub secrets: Map,
    /// Secrets of deployment environments: they reach only jobs whose `environment:` names
    /// that environment, over the run's secrets.
    pub environment_secrets: std::collections::HashMap<String, Map>,
    pub vars: Map,
    pub inputs: Map,
    /// Scratch space of the run: each job's workspace and temp dir, the artifact store.
    pub run_dir: PathBuf,
    /// The job's own directory (its `workspace` and `temp`), when the caller gives one: a
    /// remote runner reuses one per slot, emptied between jobs, instead of making and
    /// deleting a tree per job. `None`: `run_dir/jobs/<key>`.
    pub job_dir: Option<PathBuf>,
    pub source: Source,
    pub masker: Masker,
    /// The environment every step starts from (the host's), before GitHub's variables.
    pub base_env: Vec<(String, String)>,
    /// Where copies of remote actions are looked up, in order.
    pub action_dirs: Vec<PathBuf>,
    /// Shared caches (`actions/cache`, pip) that outlive the run.
    pub cache_dir: PathBuf,
    /// Where `actions/cache` keeps entries (a remote runner's is the server's store);
    /// `None`: under `cache_dir`.
    pub cache_store: Option<Arc<dyn crate::CacheStore>>,
    pub event_path: PathBuf,
    /// Actions given to the engine by its driver (`pipewright/deploy`, Slack), by name.
    pub actions: crate::Actions,
}

/// One job instance to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub workflow: Arc<Workflow>,
    /// The workflow's file in the source (`.github/workflows/ci.yml`): a remote runner reads
    /// the job's definition from there.
    pub file: String,
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

/// A post step registered by an action (e.g. `actions/cache` saves after the job).
pub(crate) struct PostStep {
    pub(crate) name: String,
    pub(crate) action: actions::Post,
    pub(crate) condition: PostCondition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostCondition {
    Always,
    Success,
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
    pub(crate) coverage: Option<f64>,
    /// What the steps wrote to `GITHUB_STEP_SUMMARY`, masked.
    pub(crate) summary: String,
    pub(crate) job_ctx: Map,
    /// The `inputs` context inside a composite action.
    pub(crate) inputs_override: Option<Map>,
    /// The `secrets` context: the run's, plus its environment's once `environment:` is known.
    pub(crate) secrets: Map,
}

pub(crate) fn obj(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

impl JobState<'_> {
    /// The contexts for expressions at step level.
    pub(crate) fn contexts(&self, extra_env: Option<&Map>) -> Map {
        let mut github = self.run.github.clone();
        github.insert("job".into(), Value::from(self.spec.job_id.as_str()));
        github.insert(
            "workspace".into(),
            Value::from(self.workspace.display().to_string()),
        );
        let mut env = self.env.clone();
        if let Some(extra) = extra_env {
            env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut c = Map::new();
        c.insert("github".into(), Value::Object(github));
        c.insert("env".into(), Value::Object(env));
        c.insert("vars".into(), Value::Object(self.run.vars.clone()));
        c.insert("secrets".into(), Value::Object(self.secrets.clone()));
        let inputs = self.inputs_override.as_ref().unwrap_or(&self.run.inputs);
        c.insert("inputs".into(), Value::Object(inputs.clone()));
        c.insert(
            "matrix".into(),
            Value::Object(self.spec.matrix.clone().unwrap_or_default()),
        );
        c.insert("strategy".into(), Value::Object(self.spec.strategy.clone()));
        c.insert("needs".into(), Value::Object(self.spec.needs.clone()));
        c.insert("steps".into(), Value::Object(self.steps_ctx.clone()));
        c.insert("job".into(), Value::Object(self.job_ctx.clone()));
        c.insert(
            "runner".into(),
            runner_context(&self.temp, &self.run.cache_dir),
        );
        c
    }

    /// The job's `HOME` (of its environment, not this process's).
    pub(crate) fn home(&self) -> Option<PathBuf> {
        self.run
            .base_env
            .iter()
            .rev()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| PathBuf::from(v))
    }

    pub(crate) fn log(&self, line: Line) {
        shown(&self.run.masker, self.sink, &self.label, line);
    }

    pub(crate) fn error(&self, message: impl Into<String>) {
        self.log(Line::Annotation {
            level: Level::Error,
            message: message.into(),
            file: None,
            line: None,
        });
    }

    /// The process environment of a step: host, GitHub's variables, the env context.
    pub(crate) fn process_env(
        &self,
        env_ctx: &Map,
        files: Option<&FileCommands>,
    ) -> Vec<(String, String)> {
        let mut env: indexmap::IndexMap<String, String> =
            self.run.base_env.iter().cloned().collect();
        for (k, v) in env_ctx {
            env.insert(k.clone(), v.to_expr_string());
        }
        let gh = &self.run.github;
        let s = |k: &str| gh.get(k).map(Value::to_expr_string).unwrap_or_default();
        let defaults = [
            ("CI", "true".to_owned()),
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("GITHUB_ACTOR", s("actor")),
            ("GITHUB_API_URL", s("api_url")),
            ("GITHUB_BASE_REF", s("base_ref")),
            ("GITHUB_EVENT_NAME", s("event_name")),
            (
                "GITHUB_EVENT_PATH",
                self.run.event_path.display().to_string(),
            ),
            ("GITHUB_GRAPHQL_URL", s("graphql_url")),
            ("GITHUB_HEAD_REF", s("head_ref")),
            ("GITHUB_JOB", self.spec.job_id.clone()),
            ("GITHUB_REF", s("ref")),
            ("GITHUB_REF_NAME", s("ref_name")),
            ("GITHUB_REF_PROTECTED", "false".to_owned()),
            ("GITHUB_REF_TYPE", s("ref_type")),
            ("GITHUB_REPOSITORY", s("repository")),
            ("GITHUB_REPOSITORY_OWNER", s("repository_owner")),
            ("GITHUB_RETENTION_DAYS", s("retention_days")),
            ("GITHUB_RUN_ATTEMPT", s("run_attempt")),
            ("GITHUB_RUN_ID", s("run_id")),
            ("GITHUB_RUN_NUMBER", s("run_number")),
            ("GITHUB_SERVER_URL", s("server_url")),
            ("GITHUB_SHA", s("sha")),
            ("GITHUB_TRIGGERING_ACTOR", s("triggering_actor")),
            ("GITHUB_WORKFLOW", s("workflow")),
            ("GITHUB_WORKFLOW_REF", s("workflow_ref")),
            ("GITHUB_WORKSPACE", self.workspace.display().to_string()),
            ("RUNNER_ARCH", runner_arch().to_owned()),
            ("RUNNER_NAME", "pipewright".to_owned()),
            ("RUNNER_OS", "Linux".to_owned()),
            ("RUNNER_ENVIRONMENT", "self-hosted".to_owned()),
            ("RUNNER_TEMP", self.temp.display().to_string()),
            (
                "RUNNER_TOOL_CACHE",
                self.run.cache_dir.join("tools").display().to_string(),
            ),
        ];
        for (k, v) in defaults {
            env.insert(k.to_owned(), v);
        }
        if let Some(f) = files {
            env.insert("GITHUB_ENV".into(), f.env.display().to_string());
            env.insert("GITHUB_OUTPUT".into(), f.output.display().to_string());
            env.insert("GITHUB_PATH".into(), f.path.display().to_string());
            env.insert(
                "GITHUB_STEP_SUMMARY".into(),
                f.summary.display().to_string(),
            );
            env.insert("GITHUB_STATE".into(), f.state.display().to_string());
        }
        if !self.path_prefix.is_empty() {
            let old = env.get("PATH").cloned().unwrap_or_default();
            let mut parts: Vec<String> = self.path_prefix.iter().rev().cloned().collect();
            if !old.is_empty() {
                parts.push(old);
            }
            env.insert("PATH".into(), parts.join(":"));
        }
        env.into_iter().collect()
    }

    /// Runs a process as (part of) a step, handling workflow commands in its output.
    pub(crate) async fn run_process(
        &mut self,
        spawn: &Spawn,
        deadline: Option<tokio::time::Instant>,
        cancel: &CancellationToken,
    ) -> std::io::Result<Exit> {
        let masker = self.run.masker.clone();
        let sink = self.sink;
        let label = self.label.clone();
        let mut stop_token: Option<String> = None;
        // A line longer than the reader's pieces is masked as a whole: it is cut where no
        // secret can straddle the cut. The two streams' pieces interleave: each has its own.
        let mut cutters = [
            (crate::mask::LineCutter::default(), false),
            (crate::mask::LineCutter::default(), false),
        ];
        let mut on_line = move |piece: process::Piece| {
            let (cutter, long_line) =
                &mut cutters[usize::from(piece.stream == process::Stream::Stderr)];
            let (raw, complete) = (piece.text, piece.complete);
            if *long_line || !complete {
                // Part of a long line: output, never a command.
                *long_line = !complete;
                if let Some(text) = cutter.piece(&masker, &raw, complete) {
                    shown(&masker, sink, &label, Line::Output(text));
                }
                return;
            }
            if let Some(tok) = &stop_token {
                if raw.trim() == format!("::{tok}::") {
                    stop_token = None;
                } else {
                    shown(&masker, sink, &label, Line::Output(raw));
                }
                return;
            }
            let Some(cmd) = parse_command(&raw) else {
                shown(&masker, sink, &label, Line::Output(raw));
                return;
            };
            let line = match cmd.name.as_str() {
                "add-mask" => {
                    masker.add(&cmd.message);
                    return;
                }
                "stop-commands" => {
                    stop_token = Some(cmd.message.clone());
                    return;
                }
                "group" => Line::GroupStart(cmd.message),
                "endgroup" => Line::GroupEnd,
                "error" | "warning" | "notice" | "debug" => Line::Annotation {
                    level: match cmd.name.as_str() {
                        "error" => Level::Error,
                        "warning" => Level::Warning,
                        "notice" => Level::Notice,
                        _ => Level::Debug,
                    },
                    message: cmd.message,
                    file: cmd.properties.get("file").cloned(),
                    line: cmd.properties.get("line").cloned(),
                },
                // Other commands (set-output, save-state, echo) are deprecated or disabled on
                // GitHub; their lines are shown as output.
                _ => Line::Output(raw),
            };
            shown(&masker, sink, &label, line);
        };
        let (exit, pgid) = process::run(spawn, &mut on_line, deadline, cancel).await?;
        self.process_groups.push(pgid);
        Ok(exit)
    }
}

/// The one way a line reaches the sink: every field masked, then neutralised (control
/// characters shown, not obeyed: see [`crate::mask::neutralise`]). A message of several
/// lines (`%0A` in a workflow command) becomes one annotation per line, so no text of a job
/// ever starts a log line of its own that is not its.
fn shown(masker: &Masker, sink: &dyn Sink, label: &JobLabel, line: Line) {
    let clean = |s: &str| crate::mask::neutralise(&masker.mask(s)).into_owned();
    match line {
        Line::Output(s) => sink.line(label, Line::Output(clean(&s))),
        Line::GroupStart(s) => sink.line(label, Line::GroupStart(clean(&s))),
        Line::GroupEnd => sink.line(label, Line::GroupEnd),
        Line::Annotation {
            level,
            message,
            file,
            line,
        } => {
            let (mut file, mut line) = (file.map(|f| clean(&f)), line.map(|l| clean(&l)));
            for part in message.split('\n') {
                sink.line(
                    label,
                    Line::Annotation {
                        level,
                        message: clean(part.strip_suffix('\r').unwrap_or(part)),
                        file: file.take(),
                        line: line.take(),
                    },
                );
            }
        }
    }
}

/// Whether `name`, an entry of a job's temp dir, is one the engine makes itself (the
/// file-command files, the steps' scripts): it overwrites them before each use, so a job
/// directory kept for the next job may keep them.
pub fn is_engine_temp_file(name: &str) -> bool {
    name == FILE_COMMANDS_DIR
        || name
            .strip_prefix("step-")
            .and_then(|rest| rest.split('.').next())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

const FILE_COMMANDS_DIR: &str = "_runner_file_commands";

/// The file-command files of one step.
pub(crate) struct FileCommands {
    pub(crate) env: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) summary: PathBuf,
    pub(crate) state: PathBuf,
}

impl FileCommands {
    fn create(temp: &Path, n: usize) -> std::io::Result<FileCommands> {
        let dir = temp.join(FILE_COMMANDS_DIR);
        std::fs::create_dir_all(&dir)?;
        let f = |name: &str| -> std::io::Result<PathBuf> {
            let p = dir.join(format!("{name}_{n}"));
            crate::files::write_reusing(&p, b"")?;
            Ok(p)
        };
        Ok(FileCommands {
            env: f("set_env")?,
            output: f("set_output")?,
            path: f("add_path")?,
            summary: f("step_summary")?,
            state: f("save_state")?,
        })
    }
}

pub(crate) fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        other => other,
    }
}

fn runner_context(temp: &Path, cache: &Path) -> Value {
    obj([
        ("name", Value::from("pipewright")),
        ("os", Value::from("Linux")),
        ("arch", Value::from(runner_arch())),
        ("temp", Value::from(temp.display().to_string())),
        (
            "tool_cache",
            Value::from(cache.join("tools").display().to_string()),
        ),
        ("environment", Value::from("self-hosted")),
        ("debug", Value::from("")),
    ])
}

fn status_value(s: Status) -> Value {
    Value::from(match s {
        Status::Success => "success",
        Status::Failure => "failure",
        Status::Cancelled => "cancelled",
    })
}

fn eval_ctx<'c>(contexts: &'c Map, status: Status, host: &'c dyn expr::Host) -> expr::Context<'c> {
    expr::Context {
        contexts,
        status,
        host: Some(host),
    }
}

/// The labels of the job's `runs-on`, evaluated (a string, a list, or `{group, labels}`):
/// what a runner must offer to take the job. Empty when the job has no `runs-on`.
pub fn runs_on(spec: &JobSpec, run: &RunEnv) -> Result<Vec<String>, DefinitionError> {
    let Some(node) = spec.job().and_then(|j| j.runs_on.as_ref()) else {
        return Ok(Vec::new());
    };
    let c = job_level_contexts(spec, run);
    let ectx = expr::Context {
        contexts: &c,
        status: Status::Success,
        host: None,
    };
    let v = workflow::eval::evaluate(node, &ectx).map_err(|e| JobError::expr("`runs-on`", e))?;
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Null => {}
            other => out.push(other.to_expr_string()),
        }
    }
    let mut out = Vec::new();
    match &v {
        Value::Object(m) => {
            if let Some(l) = expr::map_get(m, "labels") {
                strings(l, &mut out);
            }
        }
        other => strings(other, &mut out),
    }
    out.retain(|l| !l.trim().is_empty());
    Ok(out)
}

/// The name of the deployment environment the job's `environment:` names, evaluated as
/// GitHub does (with the job-level contexts: github, needs, strategy, matrix, vars,
/// inputs); `None` when the job has none. A server gives a job the secrets of this
/// environment only.
pub fn environment_of(spec: &JobSpec, run: &RunEnv) -> Result<Option<String>, DefinitionError> {
    let Some(env) = spec.job().and_then(|j| j.environment.as_ref()) else {
        return Ok(None);
    };
    let c = job_level_contexts(spec, run);
    let ectx = expr::Context {
        contexts: &c,
        status: Status::Success,
        host: None,
    };
    let name = workflow::eval::evaluate_string(&env.name, &ectx)
        .map_err(|e| JobError::expr("`environment`", e))?;
    Ok(Some(name))
}

/// The contexts available at the level of a job's keys (`runs-on`, `environment`).
fn job_level_contexts(spec: &JobSpec, run: &RunEnv) -> Map {
    let mut c = Map::new();
    c.insert("github".into(), Value::Object(run.github.clone()));
    c.insert("vars".into(), Value::Object(run.vars.clone()));
    c.insert("inputs".into(), Value::Object(run.inputs.clone()));
    c.insert("needs".into(), Value::Object(spec.needs.clone()));
    c.insert(
        "matrix".into(),
        Value::Object(spec.matrix.clone().unwrap_or_default()),
    );
    c.insert("strategy".into(), Value::Object(spec.strategy.clone()));
    c
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
        .job_dir
        .clone()
        .unwrap_or_else(|| run.run_dir.join("jobs").join(&spec.key));
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
        coverage: None,
        summary: String::new(),
        job_ctx: Map::new(),
        inputs_override: None,
        secrets: run.secrets.clone(),
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
        let ctxs = state.contexts(None);
        let name =
            workflow::eval::evaluate_string(&env.name, &eval_ctx(&ctxs, Status::Success, &host))
                .map_err(|e| JobError::expr("`environment`", e))?;
        if let Some(extra) = state.run.environment_secrets.get(&name) {
            for (k, v) in extra {
                state.run.masker.add(&v.to_expr_string());
                state.secrets.insert(k.clone(), v.clone());
            }
        }
    }
    if job.container.is_some() || job.services.is_some() {
        state.log(Line::Annotation {
            level: Level::Warning,
            message: "this job asks for a `container` or `services`; the host executor runs its steps on this machine, without them".into(),
            file: None,
            line: None,
        });
    }
    // The env context: workflow env (with fewer contexts available), then job env.
    let ctxs = state.contexts(None);
    if let Some(env) = &wf.env {
        let v = workflow::eval::evaluate(env, &eval_ctx(&ctxs, Status::Success, &host))
            .map_err(|e| JobError::expr("workflow `env`", e))?;
        merge_env(&mut state.env, v);
    }
    if let Some(env) = &job.env {
        let ctxs = state.contexts(None);
        let v = workflow::eval::evaluate(env, &eval_ctx(&ctxs, Status::Success, &host))
            .map_err(|e| JobError::expr("job `env`", e))?;
        merge_env(&mut state.env, v);
    }
    let ctxs = state.contexts(None);
    let timeout = match &job.timeout_minutes {
        Some(n) => minutes(n, &eval_ctx(&ctxs, Status::Success, &host))?,
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
        let r = run_step(state, step, index, &job_cancel).await;
        report.steps.push(r);
    }
    timer.abort();
    if job_cancel.is_cancelled() && !cancel.is_cancelled() && !timed_out {
        state.error(format!(
            "the job has exceeded its maximum execution time of {}",
            human_minutes(timeout)
        ));
        state.status = Status::Failure;
    }
    // Post steps, in reverse order of registration.
    let posts = std::mem::take(&mut state.posts);
    for post in posts.into_iter().rev() {
        if post.condition == PostCondition::Success && state.status != Status::Success {
            continue;
        }
        let started = Instant::now();
        state.sink.step_started(&state.label, &post.name);
        let ok = match actions::run_post(state, post.action).await {
            Ok(()) => Conclusion::Success,
            Err(e) => {
                state.error(e.to_string());
                Conclusion::Failure
            }
        };
        state
            .sink
            .step_finished(&state.label, &post.name, ok, started.elapsed());
    }
    // Job outputs and the environment's URL, evaluated after every step.
    let ctxs = state.contexts(None);
    if let Some(env) = &job.environment {
        let ectx = eval_ctx(&ctxs, state.status, &host);
        let name = workflow::eval::evaluate_string(&env.name, &ectx).unwrap_or_default();
        let url = env
            .url
            .as_ref()
            .and_then(|u| workflow::eval::evaluate_string(u, &ectx).ok());
        report.environment = Some(serde_json::json!({"name": name, "url": url}));
    }
    for (name, node) in &job.outputs {
        match workflow::eval::evaluate_string(node, &eval_ctx(&ctxs, state.status, &host)) {
            Ok(v) => {
                // Outputs that contain a secret are not passed on, as on GitHub.
                if state.run.masker.mask(&v) != v {
                    state.log(Line::Annotation {
                        level: Level::Warning,
                        message: format!("skip output `{name}` since it may contain secret"),
                        file: None,
                        line: None,
                    });
                    continue;
                }
                report
                    .outputs
                    .insert(name.clone(), serde_json::Value::String(v));
            }
            Err(e) => state.error(format!("output `{name}`: {e}")),
        }
    }
    Ok(())
}

fn merge_env(env: &mut Map, v: Value) {
    if let Value::Object(m) = v {
        for (k, v) in m {
            env.insert(k, Value::String(v.to_expr_string()));
        }
    }
}

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

/// The name GitHub shows for a step without `name`.
fn default_step_name(step: &Step) -> String {
    if let Some(uses) = &step.uses {
        return format!("Run {}", uses.value);
    }
    let run = step.run.as_ref().and_then(Node::as_str).unwrap_or_default();
    let first = run
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    format!("Run {}", first.trim())
}

pub(crate) async fn run_step(
    state: &mut JobState<'_>,
    step: &Step,
    index: usize,
    cancel: &CancellationToken,
) -> StepReport {
    let started = Instant::now();
    let host = actions::HashFiles(state.workspace.clone());
    let ctxs = state.contexts(None);
    let name = match &step.name {
        Some(n) => workflow::eval::evaluate_string(n, &eval_ctx(&ctxs, state.status, &host))
            .unwrap_or_else(|_| n.as_str().unwrap_or_default().to_owned()),
        None => default_step_name(step),
    };
    let name = crate::mask::neutralise(&state.run.masker.mask(&name)).into_owned();
    let id = step.id.as_ref().map(|i| i.value.clone());
    let ctx_id = id.clone().unwrap_or_else(|| format!("__step{index}"));
    let mut report = StepReport {
        id: id.clone(),
        name: name.clone(),
        outcome: Conclusion::Skipped,
        conclusion: Conclusion::Skipped,
        duration: Duration::ZERO,
    };
    // The condition, evaluated with the job's status so far.
    let cond_src = step.if_.as_ref().map_or("", |c| c.value.as_str());
    let run_it = match expr::parse_condition(cond_src) {
        Ok(c) => {
            let status = if cancel.is_cancelled() && state.status == Status::Success {
                Status::Cancelled
            } else {
                state.status
            };
            match c.evaluate(&eval_ctx(&ctxs, status, &host)) {
                Ok(b) => Ok(b),
                Err(e) => Err(format!("the `if` of step `{name}`: {e}")),
            }
        }
        Err(e) => Err(format!("the `if` of step `{name}`: {e}")),
    };
    let run_it = match run_it {
        Ok(b) => b,
        Err(msg) => {
            state.sink.step_started(&state.label, &name);
            state.error(msg);
            state.status = Status::Failure;
            report.outcome = Conclusion::Failure;
            report.conclusion = Conclusion::Failure;
            record_step(state, &ctx_id, &report, Map::new());
            state
                .sink
                .step_finished(&state.label, &name, Conclusion::Failure, started.elapsed());
            return report;
        }
    };
    if !run_it {
        record_step(state, &ctx_id, &report, Map::new());
        return report;
    }
    state.sink.step_started(&state.label, &name);
    state.step_counter += 1;
    // A step that runs after cancellation (`always()`, `cancelled()`) runs to its end.
    let fresh = CancellationToken::new();
    let step_cancel = if cancel.is_cancelled() {
        &fresh
    } else {
        cancel
    };
    let (outcome, outputs) = match execute_step(state, step, step_cancel).await {
        Ok((o, outputs)) => (o, outputs),
        Err(msg) => {
            state.error(msg.to_string());
            (Conclusion::Failure, Map::new())
        }
    };
    report.outcome = outcome;
    report.conclusion = outcome;
    if outcome == Conclusion::Failure {
        let ctxs = state.contexts(None);
        let coe = step
            .continue_on_error
            .as_ref()
            .map(|n| workflow::eval::evaluate(n, &eval_ctx(&ctxs, state.status, &host)));
        match coe {
            Some(Ok(v)) if v.truthy() => report.conclusion = Conclusion::Success,
            Some(Err(e)) => state.error(format!("`continue-on-error`: {e}")),
            _ => {}
        }
    }
    match report.conclusion {
        Conclusion::Failure => state.status = Status::Failure,
        Conclusion::Cancelled if state.status == Status::Success => {
            state.status = Status::Cancelled
        }
        _ => {}
    }
    state
        .job_ctx
        .insert("status".into(), status_value(state.status));
    record_step(state, &ctx_id, &report, outputs);
    report.duration = started.elapsed();
    state
        .sink
        .step_finished(&state.label, &name, report.conclusion, report.duration);
    report
}

fn record_step(state: &mut JobState<'_>, id: &str, report: &StepReport, outputs: Map) {
    state.steps_ctx.insert(
        id.to_owned(),
        obj([
            ("outputs", Value::Object(outputs)),
            ("outcome", Value::from(report.outcome.as_str())),
            ("conclusion", Value::from(report.conclusion.as_str())),
        ]),
    );
}

/// Runs the step's action or script; returns its outcome and outputs.
async fn execute_step(
    state: &mut JobState<'_>,
    step: &Step,
    cancel: &CancellationToken,
) -> Result<(Conclusion, Map), JobError> {
    let host = actions::HashFiles(state.workspace.clone());
    let ctxs = state.contexts(None);
    let status = state.status;
    let ectx = eval_ctx(&ctxs, status, &host);
    let mut step_env = Map::new();
    if let Some(env) = &step.env {
        match workflow::eval::evaluate(env, &ectx) {
            Ok(v) => merge_env(&mut step_env, v),
            Err(e) => return Err(JobError::expr("step `env`", e)),
        }
    }
    let deadline = match &step.timeout_minutes {
        Some(n) => Some(tokio::time::Instant::now() + minutes(n, &ectx)?),
        None => None,
    };
    let files = FileCommands::create(&state.temp, state.step_counter)
        .map_err(|e| JobError::io("file commands", e))?;
    let mut env_ctx = state.env.clone();
    env_ctx.extend(step_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let exit = if let Some(run) = &step.run {
        let script =
            workflow::eval::evaluate_string(run, &ectx).map_err(|e| JobError::expr("`run`", e))?;
        let job = state.spec.job();
        let wf = &state.spec.workflow;
        let shell_node = step
            .shell
            .as_ref()
            .or(job.and_then(|j| j.defaults.shell.as_ref()))
            .or(wf.defaults.shell.as_ref());
        let shell = match shell_node {
            Some(n) => Some(
                workflow::eval::evaluate_string(n, &ectx)
                    .map_err(|e| JobError::expr("`shell`", e))?,
            ),
            None => None,
        };
        let wd_node = step
            .working_directory
            .as_ref()
            .or(job.and_then(|j| j.defaults.working_directory.as_ref()))
            .or(wf.defaults.working_directory.as_ref());
        let cwd = match wd_node {
            Some(n) => {
                let wd = workflow::eval::evaluate_string(n, &ectx)
                    .map_err(|e| JobError::expr("`working-directory`", e))?;
                state.workspace.join(wd)
            }
            None => state.workspace.clone(),
        };
        if !cwd.is_dir() {
            return Err(JobError::invalid(
                "`working-directory`",
                format!("`{}` does not exist", cwd.display()),
            ));
        }
        let (program, args, ext) = shell_command(shell.as_deref(), &state.run.base_env)?;
        let script_path = state.temp.join(format!("step-{}{ext}", state.step_counter));
        crate::files::write_reusing(&script_path, script.as_bytes())
            .map_err(|e| JobError::io("cannot write the script", e))?;
        let script_str = script_path.display().to_string();
        let spawn = Spawn {
            program,
            args: args
                .into_iter()
                .map(|a| a.replace("{0}", &script_str))
                .collect(),
            cwd,
            env: state.process_env(&env_ctx, Some(&files)),
        };
        if spawn.program.is_empty() {
            return Err(JobError::invalid("`shell`", "the command is empty"));
        }
        match state.run_process(&spawn, deadline, cancel).await {
            Ok(exit) => exit,
            Err(e) => return Err(JobError::io(format!("cannot start `{}`", spawn.program), e)),
        }
    } else if let Some(uses) = &step.uses {
        let with = match &step.with {
            Some(w) => match workflow::eval::evaluate(w, &ectx) {
                Ok(Value::Object(m)) => m,
                Ok(_) => Map::new(),
                Err(e) => return Err(JobError::expr("`with`", e)),
            },
            None => Map::new(),
        };
        let call = actions::Call {
            uses: uses.value.clone(),
            with,
            env: env_ctx.clone(),
            files: &files,
            deadline,
        };
        match actions::run(state, call, cancel).await {
            Ok(exit) => exit,
            Err(e) => return Err(e.into()),
        }
    } else {
        return Err(JobError::invalid(
            "the step",
            "it has neither `run` nor `uses`",
        ));
    };
    let outputs = apply_file_commands(state, &files);
    let outcome = match exit {
        Exit::Code(0) => Conclusion::Success,
        Exit::Code(c) => {
            state.error(format!("Process completed with exit code {c}."));
            Conclusion::Failure
        }
        Exit::Signal(s) => {
            state.error(format!("Process was killed by signal {s}."));
            Conclusion::Failure
        }
        Exit::TimedOut => {
            state.error("The step has timed out.".to_owned());
            Conclusion::Failure
        }
        Exit::Cancelled => {
            if cancel.is_cancelled() && state.status != Status::Failure {
                Conclusion::Cancelled
            } else {
                Conclusion::Failure
            }
        }
    };
    let outputs = outputs.unwrap_or_else(|e| {
        state.error(e.to_string());
        Map::new()
    });
    Ok((outcome, outputs))
}

/// Reads the step's file commands: env, path, outputs, summary.
fn apply_file_commands(state: &mut JobState<'_>, files: &FileCommands) -> Result<Map, JobError> {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let env = parse_key_values(&read(&files.env)).map_err(|source| JobError::FileCommand {
        file: "GITHUB_ENV",
        source,
    })?;
    for (k, v) in env {
        state.env.insert(k, Value::String(v));
    }
    for line in read(&files.path).lines() {
        let line = line.trim();
        if !line.is_empty() {
            state.path_prefix.push(line.to_owned());
        }
    }
    let summary = read(&files.summary);
    if !summary.is_empty() {
        let text = state.run.masker.mask(&summary);
        state.summary.push_str(&text);
    }
    let mut outputs = Map::new();
    for (k, v) in
        parse_key_values(&read(&files.output)).map_err(|source| JobError::FileCommand {
            file: "GITHUB_OUTPUT",
            source,
        })?
    {
        outputs.insert(k, Value::String(v));
    }
    Ok(outputs)
}

/// The program and arguments for a `shell:` value, and the script file's extension.
fn shell_command(
    shell: Option<&str>,
    env: &[(String, String)],
) -> Result<(String, Vec<String>, &'static str), JobError> {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Ok(match shell.map(str::trim) {
        None | Some("") => {
            if which("bash", env) {
                ("bash".into(), v(&["-e", "{0}"]), ".sh")
            } else {
                ("sh".into(), v(&["-e", "{0}"]), ".sh")
            }
        }
        Some("bash") => (
            "bash".into(),
            v(&["--noprofile", "--norc", "-eo", "pipefail", "{0}"]),
            ".sh",
        ),
        Some("sh") => ("sh".into(), v(&["-e", "{0}"]), ".sh"),
        Some("python") => ("python".into(), v(&["{0}"]), ".py"),
        Some("pwsh") => ("pwsh".into(), v(&["-command", ". '{0}'"]), ".ps1"),
        Some("cmd" | "powershell") => {
            return Err(JobError::invalid(
                "`shell`",
                format!(
                    "`{}` is only available on Windows runners",
                    shell.unwrap_or_default()
                ),
            ));
        }
        Some(custom) => {
            if !custom.contains("{0}") {
                return Err(JobError::invalid(
                    "`shell`",
                    format!(
                        "custom shell `{custom}` must contain `{{0}}`, the place of the script file"
                    ),
                ));
            }
            let mut parts = custom.split_whitespace().map(str::to_owned);
            let program = parts.next().unwrap_or_default();
            (program, parts.collect(), "")
        }
    })
}

/// Whether `program` is on the PATH.
/// Whether `program` is on the `PATH` of `env` (a job's environment: a confined job's
/// process starts from an empty one of its own).
pub(crate) fn which(program: &str, env: &[(String, String)]) -> bool {
    env.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .is_some_and(|(_, paths)| std::env::split_paths(paths).any(|d| d.join(program).is_file()))
}
