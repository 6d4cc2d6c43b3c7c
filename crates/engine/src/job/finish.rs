//! What a job does after its steps: the post steps actions registered, then the job's
//! outputs and its environment's URL.

use std::time::Instant;

use expr::Status;
use workflow::Job;

use super::JobState;
use super::context::eval_ctx;
use crate::actions;
use crate::report::{Conclusion, JobReport};
use crate::sink::{Level, Line};

/// A post step registered by an action (e.g. `actions/cache` saves after the job).
pub(crate) struct PostStep {
    pub(crate) name: String,
    pub(crate) action: actions::Post,
    pub(crate) condition: PostCondition,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PostCondition {
    Always,
    Success,
    /// An action's `post-if`, evaluated with the job's status when the post step would run.
    If(String),
}

/// Post steps, in reverse order of registration.
pub(super) async fn run_posts(state: &mut JobState<'_>) {
    let posts = std::mem::take(&mut state.posts);
    for post in posts.into_iter().rev() {
        let run = match &post.condition {
            PostCondition::Always => true,
            PostCondition::Success => state.status == Status::Success,
            PostCondition::If(cond) => match state.condition(cond, "`post-if`") {
                Ok(b) => b,
                Err(e) => {
                    state.error(format!("{}: {e}", post.name));
                    false
                }
            },
        };
        if !run {
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
}

/// Job outputs and the environment's URL, evaluated after every step.
pub(super) fn outputs(
    state: &mut JobState<'_>,
    job: &Job,
    host: &actions::HashFiles,
    report: &mut JobReport,
) {
    // Nothing to evaluate: the contexts (a copy of the event and more) are not made.
    if job.environment.is_none() && job.outputs.is_empty() {
        return;
    }
    let ctxs = state.contexts(None);
    if let Some(env) = &job.environment {
        let ectx = eval_ctx(&ctxs, state.status, host);
        let name = workflow::eval::evaluate_string(&env.name, &ectx).unwrap_or_default();
        let url = env
            .url
            .as_ref()
            .and_then(|u| workflow::eval::evaluate_string(u, &ectx).ok());
        report.environment = Some(serde_json::json!({"name": name, "url": url}));
    }
    for (name, node) in &job.outputs {
        match workflow::eval::evaluate_string(node, &eval_ctx(&ctxs, state.status, host)) {
            Ok(v) => {
                // Outputs that contain a secret are not passed on, as on GitHub.
                if state.run.masker().mask(&v) != v {
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
}
