//! `slackapi/slack-github-action`: posts the payload to an incoming-webhook URL.

use engine::{Action, ActionFailed, ActionFuture, ActionStep};

pub(crate) struct Slack;

impl Action for Slack {
    fn run(&self, step: ActionStep) -> ActionFuture {
        Box::pin(post(step))
    }
}

async fn post(step: ActionStep) -> Result<Vec<(String, String)>, ActionFailed> {
    let name = "`slackapi/slack-github-action`";
    let mut url = step.input("webhook");
    if url.is_empty() {
        url = step.var("SLACK_WEBHOOK_URL").unwrap_or_default().to_owned();
    }
    if url.is_empty() {
        return Err(ActionFailed(format!(
            "{name} needs the `webhook` input or SLACK_WEBHOOK_URL"
        )));
    }
    let mut payload = step.input("payload");
    if payload.is_empty() {
        let file = step.input("payload-file-path");
        if !file.is_empty() {
            let p = step.workspace.join(&file);
            payload = std::fs::read_to_string(&p)
                .map_err(|e| ActionFailed(format!("{}: {e}", p.display())))?;
        }
    }
    if payload.trim().is_empty() {
        return Err(ActionFailed(format!("{name}: no `payload` given")));
    }
    let body: serde_json::Value = serde_json::from_str(&payload)
        .map_err(|e| ActionFailed(format!("the Slack payload is not valid JSON: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| ActionFailed(format!("HTTP client: {e}")))?;
    // The engine masks the message: the URL is often a secret.
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| ActionFailed(format!("cannot post to the Slack webhook: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ActionFailed(format!("the Slack webhook answered {status}")));
    }
    step.say(format!(
        "Posted the payload to the Slack webhook ({status})"
    ));
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default();
    Ok(vec![("time".to_owned(), time)])
}
