//! `pipewright/deploy@v1`: deploys an artifact to an environment of the repository's
//! `.pipewright/deploy.yml`, as `pipewright deploy ENV --artifact DIR` does, with the step's
//! environment for `ssh` (so `webfactory/ssh-agent`'s key is used).
//!
//! In a job of `pipewright serve` (the job's own token in `github.token`), the deploy is
//! recorded on the server as it starts and as it ends (release, each host's phases, the
//! outcome), for the job's own environment; the server shows it and sends its alerts. A
//! server that cannot record it never stops the deploy: the step's log says so.
//!
//! In a rollback asked for on the server (`github.pipewright_rollback` names this step's
//! environment), the step rolls the hosts back to that release instead of deploying, and
//! records that as the environment's deployment of the release's version.

use std::sync::{Arc, Mutex};

use deploy::record::{Seen, status_of};
use engine::{Action, ActionFailed, ActionFuture, ActionStep};

use crate::record::{Recorder, Start};

pub(crate) struct Deploy;

impl Action for Deploy {
    fn run(&self, step: ActionStep) -> ActionFuture {
        Box::pin(deploy(step))
    }
}

/// A rollback the server asked this job for: the release and its version.
struct RollbackOrder {
    release: String,
    version: String,
    by: String,
}

fn rollback_order(step: &ActionStep, environment: &str) -> Option<RollbackOrder> {
    let order = step.github.get("pipewright_rollback")?.to_json();
    let field = |k: &str| order[k].as_str().map(str::to_owned);
    if field("environment")?.as_str() != environment {
        return None;
    }
    Some(RollbackOrder {
        release: field("release")?,
        version: field("version").unwrap_or_default(),
        by: field("by").unwrap_or_default(),
    })
}

async fn deploy(step: ActionStep) -> Result<Vec<(String, String)>, ActionFailed> {
    let environment = step.required("environment")?;
    let order = rollback_order(&step, &environment);
    let artifact = match &order {
        Some(_) => step.input("artifact"),
        None => step.required("artifact")?,
    };
    let version = match &order {
        Some(o) => o.version.clone(),
        None => step.input("version"),
    };
    let root = step.workspace.clone();
    let who = step
        .github
        .get("actor")
        .map(expr::Value::to_expr_string)
        .unwrap_or_else(|| "pipewright".into());
    // The program this job's process runs, even if its file was replaced since it started
    // (an upgrade while the runner runs): its version is the one the job was planned for.
    let agent_binary = engine::process::running_binary()
        .map_err(|e| ActionFailed(format!("the pipewright binary: {e}")))?;
    let ssh_env: Vec<(String, String)> = step
        .env
        .iter()
        .filter(|(k, _)| {
            k.starts_with("SSH_") || ["HOME", "PATH", "USER", "TMPDIR"].contains(&k.as_str())
        })
        .cloned()
        .collect();
    let recorder = {
        let get = |k: &str| {
            step.github
                .get(k)
                .map(expr::Value::to_expr_string)
                .unwrap_or_default()
        };
        Recorder::for_job(&get("api_url"), &get("token"))
    };
    let recorded = match &recorder {
        Some(r) => {
            let (hosts, monitors) = deploy::workflow_action::load_environment(&root, &environment)
                .map(|(env, settings)| {
                    let watched = crate::record::watched(&root, &env, &settings);
                    (env.hosts, watched)
                })
                .unwrap_or_default();
            let shown_version = if version.is_empty() {
                std::path::Path::new(&artifact)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                version.clone()
            };
            let start = Start {
                repo: None,
                environment: &environment,
                version: &shown_version,
                hosts: &hosts,
                sha: None,
                who: None,
                monitors: &monitors,
            };
            match r.start(&start).await {
                Ok(id) => Some(id),
                Err(e) => {
                    step.say(format!(
                        "pipewright: the server did not record this deploy ({e}); deploying anyway"
                    ));
                    None
                }
            }
        }
        None => None,
    };
    if let Some(o) = &order {
        step.say(format!(
            "pipewright: rolling {environment} back to release {} ({}), as {} asked",
            o.release, o.version, o.by
        ));
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = step.log.clone();
    let seen_by_deploy = seen.clone();
    let rollback_to = order.as_ref().map(|o| o.release.clone());
    // The deploy blocks (ssh, files): it runs on a blocking thread and reports lines back.
    let summary = tokio::task::spawn_blocking(move || {
        let mut report = |host: &str, ev: &deploy::Event| {
            if let Some(line) = deploy::protocol::describe(host, ev) {
                let _ = log.send(line);
            }
            seen_by_deploy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remember(host, ev);
        };
        let inputs = deploy::workflow_action::DeployInputs {
            root: &root,
            environment: &environment,
            artifact: std::path::Path::new(&artifact),
            version: (!version.is_empty()).then_some(version.as_str()),
            agent_binary,
            who,
            ssh_env,
        };
        match &rollback_to {
            Some(release) => deploy::workflow_action::rollback(&inputs, release, &mut report),
            None => deploy::workflow_action::deploy(&inputs, &mut report),
        }
    })
    .await
    .map_err(|e| ActionFailed(format!("the deploy stopped: {e}")));
    let mut seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    if let (Some(r), Some(id)) = (&recorder, recorded) {
        let (status, message) = match &summary {
            // A rollback that worked: the release serves again, as deployed.
            Ok(Ok(s)) if order.is_some() && s.outcome == deploy::Outcome::Ok => {
                seen.release = order.as_ref().map(|o| o.release.clone());
                ("deployed", format!("rolled back by hand: {}", s.message))
            }
            Ok(Ok(s)) if order.is_some() => {
                ("failed", format!("the rollback failed: {}", s.message))
            }
            Ok(Ok(s)) => (status_of(s.outcome), s.message.clone()),
            Ok(Err(e)) => ("failed", e.to_string()),
            Err(e) => ("failed", e.to_string()),
        };
        if let Err(e) = r.finish(id, status, &message, seen).await {
            step.say(format!(
                "pipewright: the server did not record how this deploy ended ({e})"
            ));
        }
    }
    let summary = summary?.map_err(|e| ActionFailed(e.to_string()))?;
    let code = summary.outcome.exit_code();
    if code != 0 {
        return Err(ActionFailed(format!(
            "the deploy ended with exit code {code}: {}",
            summary.message
        )));
    }
    step.say(summary.message);
    Ok(vec![
        ("exit-code".to_owned(), code.to_string()),
        (
            "outcome".to_owned(),
            format!("{:?}", summary.outcome).to_ascii_lowercase(),
        ),
    ])
}
