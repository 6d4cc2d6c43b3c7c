//! `pipewright/deploy@v1`: deploys an artifact to an environment of the repository's
//! `.pipewright/deploy.yml`, as `pipewright deploy ENV --artifact DIR` does, with the step's
//! environment for `ssh` (so `webfactory/ssh-agent`'s key is used).

use engine::{Action, ActionFailed, ActionFuture, ActionStep};

pub(crate) struct Deploy;

impl Action for Deploy {
    fn run(&self, step: ActionStep) -> ActionFuture {
        Box::pin(deploy(step))
    }
}

async fn deploy(step: ActionStep) -> Result<Vec<(String, String)>, ActionFailed> {
    let environment = step.required("environment")?;
    let artifact = step.required("artifact")?;
    let version = step.input("version");
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
        .filter(|(k, _)| k.starts_with("SSH_") || k == "HOME" || k == "PATH" || k == "USER")
        .cloned()
        .collect();
    let log = step.log.clone();
    // The deploy blocks (ssh, files): it runs on a blocking thread and reports lines back.
    let summary = tokio::task::spawn_blocking(move || {
        let mut report = |host: &str, ev: &deploy::Event| {
            if let Some(line) = deploy::protocol::describe(host, ev) {
                let _ = log.send(line);
            }
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
        deploy::workflow_action::deploy(&inputs, &mut report)
    })
    .await
    .map_err(|e| ActionFailed(format!("the deploy stopped: {e}")))?
    .map_err(|e| ActionFailed(e.to_string()))?;
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
