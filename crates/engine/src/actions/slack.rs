//! `slackapi/slack-github-action`: posts the payload to an incoming-webhook URL.

use super::{ActionError, Call};
use crate::job::JobState;
use crate::sink::Line;

pub(super) async fn run(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut url = call.input("webhook");
    if url.is_empty() {
        url = expr::map_get(&call.env, "SLACK_WEBHOOK_URL")
            .map(expr::Value::to_expr_string)
            .unwrap_or_default();
    }
    if url.is_empty() {
        return Err(ActionError::Failed(
            "`slackapi/slack-github-action` needs the `webhook` input or SLACK_WEBHOOK_URL".into(),
        ));
    }
    let mut payload = call.input("payload");
    if payload.is_empty() {
        let file = call.input("payload-file-path");
        if !file.is_empty() {
            let p = crate::files::normalize(&state.workspace, state.home().as_deref(), &file);
            payload = std::fs::read_to_string(&p)
                .map_err(|e| ActionError::io(p.display().to_string(), e))?;
        }
    }
    if payload.trim().is_empty() {
        return Err(ActionError::Failed(
            "`slackapi/slack-github-action`: no `payload` given".into(),
        ));
    }
    let body: serde_json::Value = serde_json::from_str(&payload)
        .map_err(|e| ActionError::Failed(format!("the Slack payload is not valid JSON: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| ActionError::Failed(format!("HTTP client: {e}")))?;
    let resp = client.post(&url).json(&body).send().await.map_err(|e| {
        ActionError::Failed(format!(
            "cannot post to the Slack webhook: {}",
            state.run.masker.mask(&e.to_string())
        ))
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ActionError::Failed(format!(
            "the Slack webhook answered {status}"
        )));
    }
    state.log(Line::Output(format!(
        "Posted the payload to the Slack webhook ({status})"
    )));
    call.set_output(
        "time",
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
    )?;
    Ok(())
}
