//! Commit statuses: each run's state posted to the repository's forge (GitHub, Gitea,
//! Forgejo: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`), so branch protection can require
//! green pipelines. A forge that does not answer never holds a run up: failures are logged.

use std::time::Duration;

use crate::config::Forge;

/// Posts `state` (`pending`, `success`, `failure`, `error`) for `run`.
pub(crate) async fn post(
    forge: &Forge,
    public_url: &str,
    run: &store::Run,
    state: &str,
    description: &str,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("commit status: {e}");
            return;
        }
    };
    let url = format!(
        "{}/repos/{}/statuses/{}",
        forge.api_url, forge.repo, run.sha
    );
    let body = serde_json::json!({
        "state": state,
        "context": format!("pipewright/{}", run.workflow.rsplit('/').next().unwrap_or(&run.workflow)),
        "description": description,
        "target_url": format!("{public_url}/api/v1/runs/{}", run.id),
    });
    let result = client
        .post(&url)
        .bearer_auth(&forge.token)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "pipewright")
        .json(&body)
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(status = %r.status(), %url, "commit status refused"),
        Err(e) => tracing::warn!(%url, "commit status not posted: {e}"),
    }
}

/// The status state for a run's conclusion.
pub(crate) fn state_of(conclusion: store::Conclusion) -> &'static str {
    match conclusion {
        store::Conclusion::Success | store::Conclusion::Skipped => "success",
        store::Conclusion::Failure => "failure",
        store::Conclusion::Cancelled => "error",
    }
}
