//! One step: its name, its `if`, its `env` and timeout, running its script in a shell or
//! its action, and its outcome and conclusion in the `steps` context.

use std::time::{Duration, Instant};

use expr::{Map, Status, Value};
use tokio_util::sync::CancellationToken;
use workflow::{Control, Node, Step};

use super::JobState;
use super::context::{eval_ctx, merge_env, status_value};
use super::file_commands::{FileCommands, apply_file_commands};
use super::{minutes, obj};
use crate::actions;
use crate::error::JobError;
use crate::process::{Exit, Spawn};
use crate::report::{Conclusion, StepReport};

/// The name GitHub shows for a step without `name`.
fn default_step_name(step: &Step) -> String {
    let ids = |names: &[workflow::Spanned<String>]| {
        names
            .iter()
            .map(|n| n.value.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &step.control {
        Some(Control::Wait(names)) => return format!("Wait for {}", ids(names)),
        Some(Control::WaitAll) => return "Wait for all background steps".to_owned(),
        Some(Control::Cancel(name)) => return format!("Cancel {}", name.value),
        Some(Control::Group(_)) => return "Wait for the parallel steps".to_owned(),
        None => {}
    }
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
    let name = step_name(state, &ctxs, step);
    let id = step.id.as_ref().map(|i| i.value.clone());
    let ctx_id = id.clone().unwrap_or_else(|| format!("__step{index}"));
    let mut report = StepReport {
        id: id.clone(),
        name: name.clone(),
        outcome: Conclusion::Skipped,
        conclusion: Conclusion::Skipped,
        duration: Duration::ZERO,
    };
    let run_it = match condition(state, &ctxs, step, &name, cancel) {
        Ok(b) => b,
        Err(msg) => return failed_condition(state, &ctx_id, report, msg, started),
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
    // The contexts it runs with are the ones its name and `if` saw: nothing of them
    // changed since (made once: they copy the event, the env, the steps so far).
    let (outcome, outputs) = match execute_step(state, ctxs, step, index, step_cancel).await {
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

/// The step's `if`, evaluated with the job's status so far; an `Err` is the message of an
/// `if` that cannot be evaluated.
pub(crate) fn condition(
    state: &JobState<'_>,
    ctxs: &Map,
    step: &Step,
    name: &str,
    cancel: &CancellationToken,
) -> Result<bool, String> {
    let host = actions::HashFiles(state.workspace.clone());
    let cond_src = step.if_.as_ref().map_or("", |c| c.value.as_str());
    match expr::parse_condition(cond_src) {
        Ok(c) => {
            let status = if cancel.is_cancelled() && state.status == Status::Success {
                Status::Cancelled
            } else {
                state.status
            };
            c.evaluate(&eval_ctx(ctxs, status, &host))
                .map_err(|e| format!("the `if` of step `{name}`: {e}"))
        }
        Err(e) => Err(format!("the `if` of step `{name}`: {e}")),
    }
}

/// A step whose `if` cannot be evaluated: shown as a failed step with the message, and the
/// job fails.
pub(crate) fn failed_condition(
    state: &mut JobState<'_>,
    ctx_id: &str,
    mut report: StepReport,
    msg: String,
    started: Instant,
) -> StepReport {
    state.sink.step_started(&state.label, &report.name);
    state.error(msg);
    state.status = Status::Failure;
    report.outcome = Conclusion::Failure;
    report.conclusion = Conclusion::Failure;
    record_step(state, ctx_id, &report, Map::new());
    report.duration = started.elapsed();
    state.sink.step_finished(
        &state.label,
        &report.name,
        Conclusion::Failure,
        report.duration,
    );
    report
}

/// The step's name as shown: its `name` evaluated, else GitHub's default, masked.
pub(crate) fn step_name(state: &JobState<'_>, ctxs: &Map, step: &Step) -> String {
    let host = actions::HashFiles(state.workspace.clone());
    let name = match &step.name {
        Some(n) => workflow::eval::evaluate_string(n, &eval_ctx(ctxs, state.status, &host))
            .unwrap_or_else(|_| n.as_str().unwrap_or_default().to_owned()),
        None => default_step_name(step),
    };
    crate::mask::neutralise(&state.run.masker().mask(&name)).into_owned()
}

pub(crate) fn record_step(state: &mut JobState<'_>, id: &str, report: &StepReport, outputs: Map) {
    state.steps_ctx.insert(
        id.to_owned(),
        obj([
            ("outputs", Value::Object(outputs)),
            ("outcome", Value::from(report.outcome.as_str())),
            ("conclusion", Value::from(report.conclusion.as_str())),
        ]),
    );
}

/// Runs the step's action or script, its expressions evaluated in `ctxs`; returns its outcome
/// and outputs.
async fn execute_step(
    state: &mut JobState<'_>,
    ctxs: Map,
    step: &Step,
    index: usize,
    cancel: &CancellationToken,
) -> Result<(Conclusion, Map), JobError> {
    let host = actions::HashFiles(state.workspace.clone());
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
    let files = FileCommands::create(&state.temp, state.step_counter, state.step_file_mode())
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
        let env = state.process_env(&env_ctx, Some(&files));
        // Looked up once, on the step's own `PATH` (which `GITHUB_PATH` may have changed),
        // where the step's process will be started from.
        let bash = match &state.container {
            // Asked of the container when the step runs (one process, not two).
            Some(_) => Bash::AskTheContainer,
            None => crate::process::find("bash", &env, &cwd).map_or(Bash::Absent, Bash::Here),
        };
        let (program, args, ext) = shell_command(shell.as_deref(), bash)?;
        let script_path = state.temp.join(format!("step-{}{ext}", state.step_counter));
        crate::files::write_reusing_mode(&script_path, script.as_bytes(), state.step_file_mode())
            .map_err(|e| JobError::io("cannot write the script", e))?;
        let script_str = script_path.display().to_string();
        let spawn = Spawn {
            program,
            args: args
                .into_iter()
                .map(|a| a.replace("{0}", &script_str))
                .collect(),
            cwd,
            env,
        };
        if spawn.program.is_empty() {
            return Err(JobError::invalid("`shell`", "the command is empty"));
        }
        match state.run_process(&spawn, deadline, cancel).await {
            Ok(exit) => exit,
            Err(e) => return Err(JobError::io(format!("cannot run `{}`", spawn.program), e)),
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
            step: Some(index),
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

/// The program and arguments for a `shell:` value, and the script file's extension.
/// Whether the default shell is bash (GitHub's rule: bash where it is on the step's
/// `PATH`, else sh), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bash {
    Here(std::path::PathBuf),
    Absent,
    AskTheContainer,
}

fn shell_command(
    shell: Option<&str>,
    bash: Bash,
) -> Result<(String, Vec<String>, &'static str), JobError> {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Ok(match shell.map(str::trim) {
        None | Some("") => match bash {
            Bash::Here(path) => (path.display().to_string(), v(&["-e", "{0}"]), ".sh"),
            Bash::Absent => ("sh".into(), v(&["-e", "{0}"]), ".sh"),
            Bash::AskTheContainer => (
                "sh".into(),
                v(&[
                    "-c",
                    r#"if command -v bash >/dev/null 2>&1; then exec bash -e "$0"; else exec sh -e "$0"; fi"#,
                    "{0}",
                ]),
                ".sh",
            ),
        },
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

/// Whether `program` is on the `PATH` of `env` (a job's environment: a confined job's
/// process starts from an empty one of its own).
pub(crate) fn which(program: &str, env: &[(String, String)]) -> bool {
    env.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .is_some_and(|(_, paths)| find_on_path(program, paths.as_ref()).is_some())
}

/// Where `program` is in the directories of `path` (a `PATH` value), if anywhere.
pub(crate) fn find_on_path(program: &str, path: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
