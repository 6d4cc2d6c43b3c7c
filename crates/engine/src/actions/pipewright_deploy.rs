//! `pipewright/deploy@v1`: deploys an artifact to an environment of the repository's
//! `.pipewright/deploy.yml`, as `pipewright deploy ENV --artifact DIR` does, with the step's
//! environment for `ssh` (so `webfactory/ssh-agent`'s key is used).

use super::{ActionError, Call};
use crate::job::JobState;
use crate::sink::Line;

pub(super) async fn run(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let environment = call.required("environment")?;
    let artifact = call.required("artifact")?;
    let version = call.input("version");
    let root = state.workspace.clone();
    let who = state
        .run
        .github
        .get("actor")
        .map(expr::Value::to_expr_string)
        .unwrap_or_else(|| "pipewright".into());
    let agent_binary =
        std::env::current_exe().map_err(|e| ActionError::io("the pipewright binary", e))?;
    let ssh_env: Vec<(String, String)> = state
        .process_env(&call.env, None)
        .into_iter()
        .filter(|(k, _)| k.starts_with("SSH_") || k == "HOME" || k == "PATH" || k == "USER")
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The deploy blocks (ssh, files): it runs on a blocking thread and reports lines back.
    let task = tokio::task::spawn_blocking(move || {
        let mut report = |host: &str, ev: &deploy::Event| {
            if let Some(line) = deploy::protocol::describe(host, ev) {
                let _ = tx.send(line);
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
    });
    while let Some(line) = rx.recv().await {
        state.log(Line::Output(line));
    }
    let summary = task
        .await
        .map_err(|e| ActionError::Failed(format!("the deploy stopped: {e}")))?
        .map_err(|e| ActionError::Failed(e.to_string()))?;
    let code = summary.outcome.exit_code();
    call.set_output("exit-code", &code.to_string())?;
    call.set_output(
        "outcome",
        &format!("{:?}", summary.outcome).to_ascii_lowercase(),
    )?;
    if code != 0 {
        return Err(ActionError::Failed(format!(
            "the deploy ended with exit code {code}: {}",
            summary.message
        )));
    }
    state.log(Line::Output(summary.message));
    Ok(())
}
