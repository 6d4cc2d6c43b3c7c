//! Runs: listed, shown, run again, cancelled, approved or rejected, and dispatched
//! (`workflow_dispatch`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Authorized;
use super::error::{ApiError, git_error};
use super::state::AppStateRef;
use crate::blocking::blocking;
use crate::trigger::{self, Event};

#[derive(Deserialize)]
pub(super) struct ListQuery {
    repo: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn list_runs(
    _: Authorized,
    State(s): State<AppStateRef>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let runs =
        blocking(move || store.runs(q.repo.as_deref(), q.limit.unwrap_or(50).clamp(1, 1000)))
            .await?;
    Ok(Json(runs).into_response())
}

pub(super) async fn show_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (run, jobs) =
        blocking(move || -> Result<_, ApiError> { Ok((store.run(id)?, store.jobs(id)?)) }).await?;
    let mut v = serde_json::to_value(&run).map_err(ApiError::internal)?;
    v["jobs"] = serde_json::to_value(jobs).map_err(ApiError::internal)?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub(super) struct RerunQuery {
    /// Only the jobs that did not succeed (and what needs them); the others are kept.
    failed: Option<bool>,
}

pub(super) async fn rerun_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
    Query(q): Query<RerunQuery>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let failed = q.failed.unwrap_or(false);
    let new_id = blocking(move || store.rerun(id, failed)).await?;
    s.wake.notify_waiters();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "runs": [new_id] })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct Decision {
    /// One job (its display name) of those waiting for their environment's approval.
    job: Option<String>,
}

/// `POST /api/v1/runs/{id}/approve[?job=NAME]`: a run waiting for approval is queued; or,
/// the run's jobs waiting for their environment's approval (all, or the one named) are.
pub(super) async fn approve_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
    Query(q): Query<Decision>,
) -> Result<Response, ApiError> {
    decide(&s, id, true, q.job).await
}

/// `POST /api/v1/runs/{id}/reject[?job=NAME]`: a run waiting for approval ends without
/// running; or, its jobs waiting for their environment's approval fail without running.
pub(super) async fn reject_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
    Query(q): Query<Decision>,
) -> Result<Response, ApiError> {
    decide(&s, id, false, q.job).await
}

/// Approves or rejects run `id`, or its jobs that wait for approval.
pub(crate) async fn decide(
    s: &AppStateRef,
    id: store::RunId,
    approve: bool,
    job: Option<String>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let held = blocking(move || store.run(id)).await?.status == store::RunStatus::Waiting;
    if !held || job.is_some() {
        return decide_jobs(s, id, approve, job).await;
    }
    let store = s.store.clone();
    let run = blocking(move || -> Result<_, ApiError> {
        Ok(if approve {
            store.approve_run(id)?
        } else {
            store.reject_run(id)?
        })
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("run {id} is not waiting for approval"),
        )
    })?;
    if approve {
        tracing::info!(run = id.get(), "run approved");
        s.wake.notify_waiters();
    } else {
        tracing::info!(run = id.get(), "run rejected");
    }
    Ok(Json(run).into_response())
}

/// Approves or rejects the jobs of run `id` that wait for their environment's approval.
async fn decide_jobs(
    s: &AppStateRef,
    id: store::RunId,
    approve: bool,
    job: Option<String>,
) -> Result<Response, ApiError> {
    let (store, name) = (s.store.clone(), job.clone());
    let jobs = blocking(move || {
        if approve {
            store.approve_jobs(id, name.as_deref())
        } else {
            store.reject_jobs(
                id,
                name.as_deref(),
                "rejected: not approved to use its environment",
            )
        }
    })
    .await?;
    if jobs.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            match job {
                Some(j) => format!("run {id} has no job `{j}` waiting for approval"),
                None => format!("run {id} is not waiting for approval, nor any of its jobs"),
            },
        ));
    }
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    if approve {
        tracing::info!(run = id.get(), jobs = ?names, "jobs approved");
        s.queued.notify_waiters();
    } else {
        tracing::info!(run = id.get(), jobs = ?names, "jobs rejected");
        for j in &jobs {
            s.done.wake(j.id, Some(j.clone()));
        }
    }
    let store = s.store.clone();
    let run = blocking(move || store.run(id)).await?;
    Ok(Json(serde_json::json!({
        "id": run.id,
        "status": run.status,
        "jobs": names,
        "decision": if approve { "approved" } else { "rejected" },
    }))
    .into_response())
}

pub(super) async fn cancel_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let run = blocking(move || store.request_cancel(id)).await?;
    Ok(Json(run).into_response())
}

#[derive(Deserialize)]
pub(super) struct DispatchBody {
    workflow: String,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    inputs: serde_json::Map<String, serde_json::Value>,
}

pub(super) async fn dispatch(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(repo): Path<String>,
    Json(body): Json<DispatchBody>,
) -> Result<Response, ApiError> {
    let cfg = s.config.repo(&repo).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository `{repo}` is not configured"),
        )
    })?;
    // The stages of a dispatched job's path are told at debug level (scripts/job-path).
    tracing::debug!(%repo, "dispatch asked");
    let (store, me, lease_ms) = (s.store.clone(), s.me.clone(), s.config.lease_ms);
    let (ids, taken) = blocking(move || -> Result<_, ApiError> {
        let r = body.git_ref.unwrap_or_else(|| cfg.default_branch.clone());
        let full = if r.starts_with("refs/") {
            r.clone()
        } else {
            format!("refs/heads/{r}")
        };
        let sha = crate::git::resolve(&cfg.path, &full)
            .or_else(|_| crate::git::resolve(&cfg.path, &r))
            .map_err(|e| git_error(&e))?;
        let event = Event {
            name: "workflow_dispatch".into(),
            git_ref: full,
            sha,
            inputs: body.inputs,
            workflow: Some(body.workflow),
            ..Event::default()
        };
        // Taken for this server as they are made: its executor gets them at once.
        Ok(trigger::enqueue_taken(&store, &cfg, &event, &me, lease_ms)?)
    })
    .await?;
    if let Some(first) = ids.first() {
        tracing::debug!(run = first.get(), runs = ids.len(), "dispatch stored");
    }
    for run in taken {
        // The executor gone (the server stopping): the run is this server's in the store,
        // taken up again after a restart or by another server once its lease lapsed.
        if s.handed.send(run).is_err() {
            tracing::warn!("a dispatched run is left to be taken up: the server is stopping");
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "runs": ids })),
    )
        .into_response())
}
