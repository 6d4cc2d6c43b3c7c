//! Node actions' `pre` scripts as the job starts, before its first step, as GitHub runs
//! them: for each of the job's steps that uses a remote action (vendored or fetched) whose
//! `action.yml` has `runs.pre`, in the steps' order, its `pre-if` evaluated then, its inputs
//! and env as they evaluate then (no step has run). What a `pre` saves with GITHUB_STATE
//! reaches the action's `main` and `post` as `STATE_*`; its GITHUB_ENV and GITHUB_PATH reach
//! every step. A `pre` that fails fails the job: its steps are skipped as after a failed
//! step. A local action (`uses: ./path`) is not there yet when the job starts: its `pre`
//! runs just before its `main`.

use std::time::Instant;

use expr::{Map, Status, Value};
use tokio_util::sync::CancellationToken;
use workflow::Step;

use super::JobState;
use super::context::{eval_ctx, merge_env};
use super::file_commands::{FileCommands, apply_file_commands};
use crate::actions::{self, Call};
use crate::process::Exit;
use crate::report::Conclusion;

pub(super) async fn run(state: &mut JobState<'_>, steps: &[Step], cancel: &CancellationToken) {
    for (index, step) in steps.iter().enumerate() {
        let Some(uses) = &step.uses else {
            continue;
        };
        let uses = uses.value.clone();
        if uses.starts_with("./") || uses.starts_with("$/") || uses.starts_with("docker://") {
            continue;
        }
        let name = uses.split('@').next().unwrap_or(&uses).to_ascii_lowercase();
        if actions::is_builtin(&name) || state.run.host.actions.get(&name).is_some() {
            continue;
        }
        // An action that cannot be had is its step's to report.
        let Ok(Some(dir)) = actions::remote_dir(state, &uses).await else {
            continue;
        };
        let has_pre = actions::local::load(&dir)
            .is_ok_and(|a| matches!(a.runs, workflow::action::Runs::Node { pre: Some(_), .. }));
        if !has_pre || state.status != Status::Success {
            continue;
        }
        let title = format!("Pre {uses}");
        let started = Instant::now();
        let outcome = match pre_step(state, step, index, &uses, &dir, &title, cancel).await {
            Ok(o) => o,
            Err(e) => {
                state.sink.step_started(&state.label, &title);
                state.error(e);
                Some(Conclusion::Failure)
            }
        };
        if let Some(conclusion) = outcome {
            if conclusion == Conclusion::Failure {
                state.status = Status::Failure;
            }
            state
                .sink
                .step_finished(&state.label, &title, conclusion, started.elapsed());
        }
    }
}

/// One action's `pre`, shown as a step: how it ended (`Skipped` by its `pre-if`). An error
/// before it could start (its `with` or `env` not evaluating) is returned.
async fn pre_step(
    state: &mut JobState<'_>,
    step: &Step,
    index: usize,
    uses: &str,
    dir: &std::path::Path,
    title: &str,
    cancel: &CancellationToken,
) -> Result<Option<Conclusion>, String> {
    let host = actions::HashFiles(state.workspace.clone());
    let ctxs = state.contexts(None);
    let ectx = eval_ctx(&ctxs, state.status, &host);
    let with = match &step.with {
        Some(w) => match workflow::eval::evaluate(w, &ectx) {
            Ok(Value::Object(m)) => m,
            Ok(_) => Map::new(),
            Err(e) => return Err(format!("`with` of `{uses}`: {e}")),
        },
        None => Map::new(),
    };
    let mut env_ctx = state.env.clone();
    if let Some(env) = &step.env {
        match workflow::eval::evaluate(env, &ectx) {
            Ok(v) => merge_env(&mut env_ctx, v),
            Err(e) => return Err(format!("step `env` of `{uses}`: {e}")),
        }
    }
    drop(ctxs);
    state.step_counter += 1;
    let files = FileCommands::create(&state.temp, state.step_counter, state.step_file_mode())
        .map_err(|e| format!("file commands: {e}"))?;
    let call = Call {
        uses: uses.to_owned(),
        with,
        env: env_ctx,
        files: &files,
        deadline: None,
        step: Some(index),
    };
    state.sink.step_started(&state.label, title);
    let result = actions::local::pre_at_start(state, &call, dir, cancel).await;
    match result {
        Ok(None) => Ok(None),
        Ok(Some((None, _))) => {
            // Skipped by its `pre-if`: `main` does not run it either.
            state.pre_state.insert(index, Map::new());
            Ok(Some(Conclusion::Skipped))
        }
        Ok(Some((Some(exit), saved))) => {
            state.pre_state.insert(index, saved);
            if let Err(e) = apply_file_commands(state, &files) {
                state.error(e.to_string());
                return Ok(Some(Conclusion::Failure));
            }
            Ok(Some(match exit {
                Exit::Code(0) => Conclusion::Success,
                Exit::Code(c) => {
                    state.error(format!("Process completed with exit code {c}."));
                    Conclusion::Failure
                }
                other => {
                    state.error(format!("`pre` of `{uses}` ended: {other:?}"));
                    Conclusion::Failure
                }
            }))
        }
        Err(e) => {
            state.error(e.to_string());
            Ok(Some(Conclusion::Failure))
        }
    }
}
