//! Turning events (a push, a webhook, a dispatch) into queued runs: one run for each workflow
//! of the commit that the event fires. A workflow that fails validation is recorded as a
//! failed run with its diagnostics, not dropped.

use serde::{Deserialize, Serialize};

use crate::config::RepoConfig;
use crate::git;

/// An event for one repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    /// `push`: the commit before the push (for changed paths).
    pub before: Option<String>,
    /// `pull_request`: the base branch.
    pub base_ref: Option<String>,
    /// `pull_request`: the head branch.
    pub head_ref: Option<String>,
    /// The activity type (`opened`, ...).
    pub action: Option<String>,
    /// `workflow_dispatch` inputs.
    #[serde(default)]
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// Only this workflow file (dispatch).
    pub workflow: Option<String>,
    #[serde(default)]
    pub payload: serde_json::Value,
    /// A pull request from a fork: it gets no secrets.
    #[serde(default)]
    pub fork: bool,
    /// A rollback asked for by hand: the run re-runs the job that deployed, rolling back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

/// A rollback asked for from the dashboard, the API or `pipewright rollback --server`: a
/// re-run of the run whose job made the environment's current deployment, in which that job
/// alone runs again, its `pipewright/deploy` step rolling back to `release` (told through
/// the job's `github.pipewright_rollback`), the run's other jobs kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// The display name of the job that deployed.
    pub job: String,
    pub environment: String,
    /// The release to serve again, and its version.
    pub release: String,
    pub version: String,
    /// Who asked.
    pub by: String,
}

impl Event {
    /// A push of `git_ref` from `before` to `after`, as a post-receive hook or a poll sees it
    /// (`before` all zeros for a new ref).
    pub fn push(repo: &str, git_ref: &str, before: &str, after: &str) -> Event {
        Event {
            name: "push".into(),
            payload: serde_json::json!({"ref": git_ref, "before": before, "after": after,
                "repository": {"full_name": repo}}),
            git_ref: git_ref.to_owned(),
            sha: after.to_owned(),
            before: Some(before.to_owned()),
            ..Event::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("workflow `{0}` does not exist at this commit")]
    NoWorkflow(String),
    #[error("workflow `{0}` has no `workflow_dispatch` trigger")]
    NotDispatchable(String),
    #[error("{workflow}: {source}")]
    Inputs {
        workflow: String,
        #[source]
        source: workflow::inputs::InputError,
    },
}

/// The event with what its payload lacks of the fields GitHub's webhooks have (the
/// repository's `default_branch` and owner, the sender, a push's `head_commit`, a pull
/// request's head and base with their repositories): a push through the server's git hook
/// or a poll has only `ref`, `before`, `after`; a real delivery keeps everything it has.
fn complete_payload(repo: &RepoConfig, event: &Event) -> Event {
    // The commit's message and author, read only where the payload would lack them.
    let lacks = |key: &str| event.payload.get(key).is_none();
    let needs_commit = match event.name.as_str() {
        "push" => lacks("head_commit"),
        "pull_request" | "pull_request_target" => lacks("pull_request"),
        _ => false,
    };
    let commit = if needs_commit {
        git::commit_info_at(&repo.commits, &repo.path, &event.sha).unwrap_or_default()
    } else {
        workflow::payload::CommitInfo::default()
    };
    let branch = |r: &str| r.strip_prefix("refs/heads/").unwrap_or(r).to_owned();
    let head_ref = event
        .head_ref
        .clone()
        .unwrap_or_else(|| branch(&event.git_ref));
    let base_ref = event.base_ref.clone().unwrap_or_default();
    let actor = event
        .payload
        .pointer("/sender/login")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(crate::executor::NO_ACTOR)
        .to_owned();
    let defaults = workflow::payload::payload(&workflow::payload::Facts {
        event: &event.name,
        full_name: &repo.name,
        default_branch: &repo.default_branch,
        actor: &actor,
        sha: &event.sha,
        git_ref: &event.git_ref,
        head_ref: &head_ref,
        base_ref: &base_ref,
        base_sha: "",
        action: event.action.as_deref(),
        commit: &commit,
    });
    let mut out = event.clone();
    if !out.payload.is_object() {
        out.payload = serde_json::Value::Object(serde_json::Map::new());
    }
    workflow::payload::fill_missing(&mut out.payload, defaults);
    out
}

/// Queues the runs `event` fires in `repo` (all in one transaction); returns their ids.
pub fn enqueue(
    store: &store::Store,
    repo: &RepoConfig,
    event: &Event,
) -> Result<Vec<store::RunId>, TriggerError> {
    let runs = plan(repo, event)?;
    Ok(store.create_runs(&runs)?)
}

/// [`enqueue`], the runs that are to run taken at once for orchestrator `me` (this server,
/// which orchestrates them without looking for them in the store first): the ids of all, and
/// the runs taken.
pub fn enqueue_taken(
    store: &store::Store,
    repo: &RepoConfig,
    event: &Event,
    me: &str,
    lease_ms: i64,
) -> Result<(Vec<store::RunId>, Vec<store::Run>), TriggerError> {
    let runs = plan(repo, event)?;
    Ok(store.create_runs_taken(&runs, me, lease_ms)?)
}

/// The runs `event` fires in `repo`: one for each workflow of the commit whose triggers
/// match, with the workflow's text; a failed one for each invalid workflow that would have
/// run. Reads git only.
pub fn plan(repo: &RepoConfig, event: &Event) -> Result<Vec<store::NewRun>, TriggerError> {
    let files = git::workflows_at(&repo.commits, &repo.path, &event.sha)?;
    let named = |path: &str, w: &str| path == w || path.rsplit('/').next() == Some(w);
    if let Some(w) = &event.workflow
        && !files.iter().any(|(p, _)| named(p, w))
    {
        return Err(TriggerError::NoWorkflow(w.clone()));
    }
    let needs_paths = event.name == "push" || event.name == "pull_request";
    let changed = if needs_paths {
        git::changed_paths(
            &repo.commits,
            &repo.path,
            event.before.as_deref(),
            &event.sha,
        )
    } else {
        None
    };
    let trigger = plan::trigger::Event {
        name: event.name.clone(),
        git_ref: Some(event.git_ref.clone()),
        base_branch: event.base_ref.clone(),
        action: event.action.clone(),
        changed_paths: changed.map(|c| c.to_vec()),
    };
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let event = &complete_payload(repo, event);
    let event_json = serde_json::to_string(event).unwrap_or_default();
    let mut runs = Vec::new();
    for (path, text) in files.iter() {
        if let Some(w) = &event.workflow
            && !named(path, w)
        {
            continue;
        }
        let mut new = store::NewRun {
            repo: repo.name.clone(),
            workflow: path.clone(),
            event: event.name.clone(),
            git_ref: event.git_ref.clone(),
            sha: event.sha.clone(),
            event_json: event_json.clone(),
            workflow_text: Some(text.clone()),
            failure: None,
            // A fork's pull request waits for someone's approval where the repository asks.
            held: event.fork && repo.fork_approval,
        };
        let parsed = workflow::parse(text);
        if parsed.has_errors() {
            // Only a workflow that would have run is worth a failed run: check its `on` loosely.
            let mentions = text.contains(&event.name);
            if mentions || event.workflow.is_some() {
                let reason: Vec<String> = parsed
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| {
                        format!(
                            "{path}:{}:{}: {}",
                            d.span.start.line, d.span.start.col, d.message
                        )
                    })
                    .collect();
                new.failure = Some(format!("invalid workflow:\n{}", reason.join("\n")));
                runs.push(new);
            }
            continue;
        }
        let Some(wf) = parsed.workflow else { continue };
        if event.name == "workflow_dispatch" {
            if !wf.on.events.contains_key("workflow_dispatch") {
                return Err(TriggerError::NotDispatchable(path.clone()));
            }
            // The inputs as the run will see them: typed, defaults filled in.
            let given: expr::Map = event
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), expr::Value::from_json(v.clone())))
                .collect();
            let inputs = workflow::inputs::dispatch_inputs(&wf, &given).map_err(|source| {
                TriggerError::Inputs {
                    workflow: path.clone(),
                    source,
                }
            })?;
            let mut typed = event.clone();
            typed.inputs = inputs
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            new.event_json = serde_json::to_string(&typed).unwrap_or_default();
        } else if !wf.fires(&trigger).unwrap_or(false) {
            continue;
        }
        runs.push(new);
    }
    Ok(runs)
}
