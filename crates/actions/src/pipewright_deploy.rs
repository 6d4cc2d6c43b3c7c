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

use engine::{Action, ActionFailed, ActionFuture, ActionStep};
use serde_json::json;

pub(crate) struct Deploy;

impl Action for Deploy {
    fn run(&self, step: ActionStep) -> ActionFuture {
        Box::pin(deploy(step))
    }
}

/// What the deploy's events said, for the server's record.
#[derive(Default)]
struct Seen {
    release: Option<String>,
    phases: Vec<serde_json::Value>,
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
    let agent_binary =
        std::env::current_exe().map_err(|e| ActionFailed(format!("the pipewright binary: {e}")))?;
    let ssh_env: Vec<(String, String)> = step
        .env
        .iter()
        .filter(|(k, _)| {
            k.starts_with("SSH_") || ["HOME", "PATH", "USER", "TMPDIR"].contains(&k.as_str())
        })
        .cloned()
        .collect();
    let recorder = Recorder::of(&step);
    let recorded = match &recorder {
        Some(r) => {
            let hosts = deploy::workflow_action::load_environment(&root, &environment)
                .map(|(env, _)| env.hosts)
                .unwrap_or_default();
            let shown_version = if version.is_empty() {
                std::path::Path::new(&artifact)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                version.clone()
            };
            r.start(&step, &environment, &shown_version, &hosts).await
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
            remember(&seen_by_deploy, host, ev);
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
        r.finish(&step, id, status, &message, seen).await;
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

fn status_of(outcome: deploy::Outcome) -> &'static str {
    use deploy::Outcome;
    match outcome {
        Outcome::Ok => "deployed",
        Outcome::Failed => "failed",
        Outcome::RolledBack => "rolled_back",
        Outcome::RollbackFailed => "rollback_failed",
        Outcome::Locked => "locked",
    }
}

fn remember(seen: &Mutex<Seen>, host: &str, ev: &deploy::Event) {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    match ev {
        deploy::Event::Ready { release, .. } => {
            seen.release.get_or_insert_with(|| release.clone());
        }
        // Each phase as it ended (its start says nothing more).
        deploy::Event::Phase {
            phase,
            status,
            ms,
            message,
        } if status != "start" => seen.phases.push(json!({
            "host": host,
            "phase": phase,
            "status": status,
            "ms": ms,
            "message": message,
        })),
        deploy::Event::Result {
            release: Some(release),
            ..
        } => {
            seen.release.get_or_insert_with(|| release.clone());
        }
        _ => {}
    }
}

/// The server a job reports to: its API and the job's own token.
struct Recorder {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Recorder {
    /// A recorder when the step runs in a server's job (a job token, an API URL).
    fn of(step: &ActionStep) -> Option<Recorder> {
        let get = |k: &str| step.github.get(k).map(expr::Value::to_expr_string);
        let token = get("token").filter(|t| t.starts_with("pwj_"))?;
        let api = get("api_url").filter(|u| !u.is_empty())?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .ok()?;
        Some(Recorder { http, api, token })
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.api.trim_end_matches('/')))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!(
                "{status}: {}",
                v["error"].as_str().unwrap_or("no details")
            ))
        }
    }

    async fn start(
        &self,
        step: &ActionStep,
        environment: &str,
        version: &str,
        hosts: &[String],
    ) -> Option<i64> {
        let body = json!({ "environment": environment, "version": version, "hosts": hosts });
        match self.post("/job/deployments", body).await {
            Ok(v) => v["id"].as_i64(),
            Err(e) => {
                step.say(format!(
                    "pipewright: the server did not record this deploy ({e}); deploying anyway"
                ));
                None
            }
        }
    }

    async fn finish(&self, step: &ActionStep, id: i64, status: &str, message: &str, seen: Seen) {
        let body = json!({
            "status": status,
            "release": seen.release,
            "message": message,
            "phases": seen.phases,
        });
        if let Err(e) = self.post(&format!("/job/deployments/{id}"), body).await {
            step.say(format!(
                "pipewright: the server did not record how this deploy ended ({e})"
            ));
        }
    }
}
