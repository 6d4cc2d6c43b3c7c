//! Local actions (`uses: ./path`) and offline copies of remote ones: composite actions run
//! their steps in the job; Node actions run with the host's `node`.

use std::path::Path;

use expr::{Map, Value};
use tokio_util::sync::CancellationToken;
use workflow::action::{Action, Runs};

use super::{ActionError, Call};
use crate::job::{JobState, PostCondition};
use crate::process::{Exit, Spawn};
use crate::report::Conclusion;

pub(crate) fn load(dir: &Path) -> Result<Action, ActionError> {
    let file = ["action.yml", "action.yaml"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| ActionError::Failed(format!("no action.yml in {}", dir.display())))?;
    let src = std::fs::read_to_string(&file)
        .map_err(|e| ActionError::io(file.display().to_string(), e))?;
    workflow::action::parse_action(&src).map_err(|diags| {
        ActionError::Failed(
            diags
                .iter()
                .map(|d| {
                    format!(
                        "{}:{}:{}: {}",
                        file.display(),
                        d.span.start.line,
                        d.span.start.col,
                        d.message
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// The action's inputs: `with:` values over the defaults of action.yml.
fn inputs(state: &JobState<'_>, action: &Action, call: &Call<'_>) -> Result<Map, ActionError> {
    let ctxs = state.contexts(Some(&call.env));
    let host = super::HashFiles(state.workspace.clone());
    let ectx = expr::Context {
        contexts: &ctxs,
        status: state.status,
        host: Some(&host),
    };
    let mut out = Map::new();
    for (name, default) in &action.inputs {
        let v = match expr::map_get(&call.with, name) {
            Some(v) => v.clone(),
            None => match default {
                Some(d) => {
                    Value::String(workflow::eval::evaluate_string(d, &ectx).map_err(|e| {
                        ActionError::Failed(format!("default of input `{name}`: {e}"))
                    })?)
                }
                None => Value::String(String::new()),
            },
        };
        out.insert(name.clone(), Value::String(v.to_expr_string()));
    }
    for (k, v) in &call.with {
        if !out.keys().any(|n| n.eq_ignore_ascii_case(k)) {
            out.insert(k.clone(), Value::String(v.to_expr_string()));
        }
    }
    Ok(out)
}

/// A Node action's `pre` as the job starts: `None` when the action has none (or is not a
/// Node action); else whether it ran (`pre-if` may skip it) and how it ended, and the
/// `STATE_*` it saved.
pub(crate) async fn pre_at_start(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<Option<(Option<Exit>, Map)>, ActionError> {
    let action = load(dir)?;
    let Runs::Node {
        pre: Some(pre),
        pre_if,
        using,
        ..
    } = &action.runs
    else {
        return Ok(None);
    };
    let wanted = pre_if
        .as_deref()
        .map_or(Ok(true), |c| state.condition(c, "`pre-if`"))
        .map_err(|e| ActionError::Failed(e.to_string()))?;
    if !wanted {
        return Ok(Some((None, Map::new())));
    }
    if !crate::job::which("node", &state.run.host.base_env) {
        return Err(ActionError::Failed(format!(
            "`{}` is a Node action ({using}) and `node` is not installed",
            call.uses
        )));
    }
    let inputs = inputs(state, &action, call)?;
    let env_ctx = super::input_env(&call.env, &inputs);
    let exit = node(state, dir, pre, &env_ctx, call, cancel).await?;
    let mut saved = Map::new();
    take_state(call.files, &mut saved)?;
    Ok(Some((Some(exit), saved)))
}

pub(super) async fn run(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<Exit, ActionError> {
    let action = load(dir)?;
    let inputs = inputs(state, &action, call)?;
    match &action.runs {
        Runs::Docker { .. } => docker(state, call, dir, inputs, &action.runs, cancel).await,
        Runs::Node {
            main,
            using,
            pre,
            post,
            pre_if,
            post_if,
        } => {
            if !crate::job::which("node", &state.run.host.base_env) {
                return Err(ActionError::Failed(format!(
                    "`{}` is a Node action ({using}) and `node` is not installed",
                    call.uses
                )));
            }
            let mut env_ctx = super::input_env(&call.env, &inputs);
            // `pre` ran (or was skipped by its `pre-if`) as the job started; what it saved
            // with GITHUB_STATE reaches `main` and `post` as STATE_*.
            let dealt_with = call.step.and_then(|i| state.pre_state.remove(&i));
            let pre_now = dealt_with.is_none();
            if let Some(saved) = dealt_with {
                env_ctx.extend(saved);
            }
            // Otherwise (a local action, not there when the job started; one inside a
            // composite) it runs just before `main`.
            if pre_now
                && let Some(pre) = pre
                && pre_if
                    .as_deref()
                    .map_or(Ok(true), |c| state.condition(c, "`pre-if`"))
                    .map_err(|e| ActionError::Failed(e.to_string()))?
            {
                let exit = node(state, dir, pre, &env_ctx, call, cancel).await?;
                take_state(call.files, &mut env_ctx)?;
                if !exit.success() {
                    return Ok(exit);
                }
            }
            let exit = node(state, dir, main, &env_ctx, call, cancel).await?;
            take_state(call.files, &mut env_ctx)?;
            if let Some(post) = post {
                crate::actions::register_post(
                    state,
                    format!("Post {}", call.uses),
                    crate::actions::Post::Node {
                        script: dir.join(post),
                        env: env_ctx,
                    },
                    match post_if {
                        Some(c) => PostCondition::If(c.clone()),
                        None => PostCondition::Always,
                    },
                );
            }
            Ok(exit)
        }
        Runs::Composite(steps) => {
            // The composite's steps see its inputs and their own steps context.
            let saved_steps = std::mem::take(&mut state.steps_ctx);
            let saved_inputs = state.inputs_override.replace(inputs);
            let mut failed = false;
            for (i, step) in steps.iter().enumerate() {
                let r = Box::pin(crate::job::run_step(state, step, 1000 + i, cancel)).await;
                if r.conclusion == Conclusion::Failure {
                    failed = true;
                }
            }
            // Outputs are evaluated against the composite's steps before restoring the job's.
            let ctxs = state.contexts(None);
            let host = super::HashFiles(state.workspace.clone());
            let ectx = expr::Context {
                contexts: &ctxs,
                status: state.status,
                host: Some(&host),
            };
            let mut result = Ok(());
            for (name, node) in &action.outputs {
                match workflow::eval::evaluate_string(node, &ectx) {
                    Ok(v) => {
                        if let Err(e) = call.set_output(name, &v) {
                            result = Err(e);
                        }
                    }
                    Err(e) => result = Err(ActionError::Failed(format!("output `{name}`: {e}"))),
                }
            }
            state.steps_ctx = saved_steps;
            state.inputs_override = saved_inputs;
            result?;
            Ok(if failed { Exit::Code(1) } else { Exit::Code(0) })
        }
    }
}

/// A Docker action: its image (`docker://NAME`, or its Dockerfile built here once per
/// content), `runs.args` and `runs.env` evaluated with its inputs, the inputs as `INPUT_*`.
async fn docker(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    dir: &Path,
    inputs: Map,
    runs: &Runs,
    cancel: &CancellationToken,
) -> Result<Exit, ActionError> {
    let Runs::Docker {
        image,
        entrypoint,
        args,
        env,
    } = runs
    else {
        return Err(ActionError::Failed(format!(
            "`{}` is not a Docker action",
            call.uses
        )));
    };
    let mut env_ctx = super::input_env(&call.env, &inputs);
    // `runs.args` and `runs.env` see the action's inputs.
    let saved_inputs = state.inputs_override.replace(inputs);
    let evaluated = (|| {
        let ctxs = state.contexts(None);
        let host = super::HashFiles(state.workspace.clone());
        let ectx = expr::Context {
            contexts: &ctxs,
            status: state.status,
            host: Some(&host),
        };
        let mut out = Vec::new();
        for a in args {
            out.push(
                workflow::eval::evaluate_string(a, &ectx)
                    .map_err(|e| ActionError::Failed(format!("`runs.args`: {e}")))?,
            );
        }
        let mut more = Map::new();
        if let Some(env) = env {
            match workflow::eval::evaluate(env, &ectx) {
                Ok(Value::Object(m)) => more = m,
                Ok(_) => {}
                Err(e) => return Err(ActionError::Failed(format!("`runs.env`: {e}"))),
            }
        }
        Ok((out, more))
    })();
    state.inputs_override = saved_inputs;
    let (args, more) = evaluated?;
    for (k, v) in more {
        env_ctx.insert(k, Value::String(v.to_expr_string()));
    }
    let image = match image.strip_prefix("docker://") {
        Some(name) => name.to_owned(),
        None => build(state, call, dir, image).await?,
    };
    let step = crate::job::ImageStep {
        image,
        entrypoint: entrypoint.clone(),
        args,
    };
    crate::job::run_image(state, step, &env_ctx, call.files, call.deadline, cancel).await
}

/// The image of an action's Dockerfile, built once per content of the action's directory
/// (`pipewright-action:<digest>`).
async fn build(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    dir: &Path,
    dockerfile: &str,
) -> Result<String, ActionError> {
    if dockerfile.split('/').any(|c| c == "..") || dockerfile.starts_with('/') {
        return Err(ActionError::Failed(format!(
            "`{}`: `runs.image` {dockerfile} is outside the action's directory",
            call.uses
        )));
    }
    // A confined job's Docker broker builds no image: the engine would read the Dockerfile
    // on the machine's side (its pulls, its downloads from the machine's network).
    if state.run.host.docker_host.is_some() {
        return Err(ActionError::Failed(format!(
            "`{}` is a Docker action built from its Dockerfile, which a confined job may not \
             build (docs/security.md §15): give it an image (`runs.image: docker://…`) on this \
             machine, or run the job where it is trusted",
            call.uses
        )));
    }
    let digest = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || content_digest(&dir))
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))?
            .map_err(|e| ActionError::io(call.uses.clone(), e))?
    };
    let tag = format!("pipewright-action:{digest}");
    let engine = crate::docker::Engine::connect_to(state.run.host.docker_host.as_deref())
        .await
        .map_err(|e| ActionError::Failed(format!("`{}` is a Docker action: {e}", call.uses)))?;
    if engine.has_image(&tag).await {
        return Ok(tag);
    }
    state.log(crate::sink::Line::GroupStart(format!(
        "Building {dockerfile} of `{}` as {tag}",
        call.uses
    )));
    let mut lines = Vec::new();
    let built = engine
        .build(dir, dockerfile, &tag, &mut |l| lines.push(l))
        .await;
    for l in lines {
        state.log(crate::sink::Line::Output(l));
    }
    state.log(crate::sink::Line::GroupEnd);
    built.map_err(|e| ActionError::Failed(e.to_string()))?;
    Ok(tag)
}

/// A digest of every file's path, mode and content under `dir`, in a stable order.
fn content_digest(dir: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let mut h = sha2::Sha256::new();
    let mut entries: Vec<_> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    entries.retain(|e| e.file_type().is_file() || e.file_type().is_symlink());
    for e in entries {
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        h.update(rel.display().to_string().as_bytes());
        h.update([0]);
        if e.file_type().is_symlink() {
            h.update(
                std::fs::read_link(e.path())?
                    .display()
                    .to_string()
                    .as_bytes(),
            );
        } else {
            h.update(
                e.metadata()
                    .map_err(std::io::Error::other)?
                    .permissions()
                    .mode()
                    .to_le_bytes(),
            );
            h.update(std::fs::read(e.path())?);
        }
        h.update([0]);
    }
    Ok(h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Runs `script` of a Node action with `node`.
async fn node(
    state: &mut JobState<'_>,
    dir: &Path,
    script: &str,
    env_ctx: &Map,
    call: &Call<'_>,
    cancel: &CancellationToken,
) -> Result<Exit, ActionError> {
    let spawn = Spawn {
        program: "node".into(),
        args: vec![dir.join(script).display().to_string()],
        cwd: state.workspace.clone(),
        env: state.process_env(env_ctx, Some(call.files)),
    };
    state
        .run_process(&spawn, call.deadline, cancel)
        .await
        .map_err(|e| ActionError::io("node", e))
}

/// What a script saved with `GITHUB_STATE`, moved into `env` as `STATE_<name>`.
fn take_state(files: &crate::job::FileCommands, env: &mut Map) -> Result<(), ActionError> {
    let text = std::fs::read_to_string(&files.state).unwrap_or_default();
    let pairs = crate::commands::parse_key_values(&text)
        .map_err(|e| ActionError::Failed(format!("GITHUB_STATE: {e}")))?;
    for (k, v) in pairs {
        env.insert(format!("STATE_{k}"), Value::String(v));
    }
    crate::files::write_reusing(&files.state, b"").map_err(|e| ActionError::io("GITHUB_STATE", e))
}
