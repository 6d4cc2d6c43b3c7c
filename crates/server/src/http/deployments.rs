//! Deployments known to the server. A job's `pipewright/deploy` step records its deploy
//! with the job's own token (`POST /api/v1/job/deployments`, then
//! `POST /api/v1/job/deployments/{id}` with how it ended), for the job's own environment
//! only and only while the job runs; users read them (`GET /api/v1/environments`,
//! `GET /api/v1/environments/{repo}/{name}/deployments`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Authorized, bearer};
use super::error::ApiError;
use super::runners::{JobCaller, held_by};
use super::state::AppStateRef;
use crate::blocking::blocking;

/// A job's own token, and the job it names.
pub(crate) struct JobToken {
    token: String,
    job: store::JobId,
}

impl axum::extract::FromRequestParts<AppStateRef> for JobToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).unwrap_or_default().to_owned();
        match crate::secrets::Sealer::job_of_token(&token) {
            Some(job) => Ok(JobToken {
                token,
                job: store::JobId::from(job),
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs a job's token (secrets.GITHUB_TOKEN of a running job)",
            )),
        }
    }
}

/// The running job the token belongs to, and what it was queued with.
async fn job_of(
    s: &AppStateRef,
    t: JobToken,
    headers: &HeaderMap,
) -> Result<(store::Job, runner::protocol::JobPayload), ApiError> {
    let job = held_by(s, &JobCaller::Job(t.token), t.job, headers).await?;
    let (store, id) = (s.store.clone(), job.id);
    let payload: runner::protocol::JobPayload = blocking(move || store.running_payload(id))
        .await?
        .and_then(|p| serde_json::from_str(&p).ok())
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the job is not running"))?;
    Ok((job, payload))
}

#[derive(Deserialize)]
pub(crate) struct Start {
    environment: String,
    version: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    monitors: Vec<Watch>,
}

/// A URL the server is to watch once the deploy has deployed (`health.monitor` in
/// deploy.yml).
#[derive(Deserialize)]
pub(crate) struct Watch {
    #[serde(default)]
    host: String,
    url: String,
    #[serde(default = "Watch::ok")]
    expect_status: u16,
    #[serde(default = "Watch::minute")]
    interval_seconds: u64,
}

impl Watch {
    fn ok() -> u16 {
        200
    }
    fn minute() -> u64 {
        60
    }
}

/// The most URLs one environment is watched at.
const MAX_WATCHED: usize = 32;

/// The monitors a deploy of `repo`'s `environment` asks for, checked and named
/// (`repo/environment`, with the host when there are several).
fn watches(
    repo: &str,
    environment: &str,
    list: Vec<Watch>,
) -> Result<Vec<store::WatchedUrl>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    if list.len() > MAX_WATCHED {
        return Err(bad(format!(
            "{} monitors asked for: an environment is watched at {MAX_WATCHED} URLs at most",
            list.len()
        )));
    }
    let many = list.len() > 1;
    list.into_iter()
        .map(|w| {
            let url_ok = w.url.len() <= 2048
                && reqwest::Url::parse(&w.url).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some_and(|h| !h.is_empty())
                        && u.username().is_empty()
                        && u.password().is_none()
                });
            if !url_ok {
                return Err(bad(format!(
                    "monitor URL `{}` is not an http:// or https:// URL without credentials",
                    w.url
                )));
            }
            if !(100..=599).contains(&w.expect_status) {
                return Err(bad(format!(
                    "monitor of `{}`: expect_status {} is not an HTTP status",
                    w.url, w.expect_status
                )));
            }
            if !(1..=86_400).contains(&w.interval_seconds) {
                return Err(bad(format!(
                    "monitor of `{}`: an interval of {} s is not from 1 s to a day",
                    w.url, w.interval_seconds
                )));
            }
            let name = if many && !w.host.is_empty() {
                format!("{repo}/{environment} ({})", w.host)
            } else {
                format!("{repo}/{environment}")
            };
            Ok(store::WatchedUrl {
                name,
                url: w.url,
                expect_status: i64::from(w.expect_status),
                interval_ms: i64::try_from(w.interval_seconds * 1000).unwrap_or(i64::MAX),
            })
        })
        .collect()
}

/// `POST /api/v1/job/deployments`: a job's deploy starts; its id.
pub(crate) async fn start(
    t: JobToken,
    State(s): State<AppStateRef>,
    headers: HeaderMap,
    Json(body): Json<Start>,
) -> Result<Response, ApiError> {
    let (job, payload) = job_of(&s, t, &headers).await?;
    if !payload.trusted {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a job of untrusted origin (a fork's pull request) records no deployments",
        ));
    }
    if payload.environment.as_deref() != Some(body.environment.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            match &payload.environment {
                Some(e) => {
                    format!("this job's environment is `{e}`: it records deployments to `{e}` only")
                }
                None => format!(
                    "this job has no `environment:`; a job records deployments to its own environment only (add `environment: {}`)",
                    body.environment
                ),
            },
        ));
    }
    // Who: the event's actor; a push to a local repository names none, then the commit's
    // author.
    let actor = ["triggering_actor", "actor"]
        .iter()
        .find_map(|k| {
            payload.github[k]
                .as_str()
                .filter(|a| !a.is_empty() && *a != crate::executor::NO_ACTOR)
        })
        .map(str::to_owned);
    let who = match actor {
        Some(a) => a,
        None => {
            let path = s.config.repo(&payload.repo).map(|r| r.path.clone());
            let sha = payload.sha.clone();
            blocking(move || {
                Ok::<_, std::convert::Infallible>(
                    path.and_then(|p| crate::git::author(&p, &sha))
                        .map_or_else(|| "pipewright".to_owned(), |(author, _)| author),
                )
            })
            .await
            .unwrap_or_else(|_| "pipewright".to_owned())
        }
    };
    let monitors = watches(&payload.repo, &body.environment, body.monitors)?;
    let new = store::NewDeployment {
        monitors,
        repo: payload.repo,
        environment: body.environment,
        version: body.version,
        sha: payload.sha,
        run_id: Some(job.run_id),
        job_id: Some(job.id),
        who,
        hosts: serde_json::to_string(&body.hosts).unwrap_or_else(|_| "[]".into()),
    };
    let store = s.store.clone();
    let id = blocking(move || store.start_deployment(&new)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response())
}

#[derive(Deserialize)]
pub(crate) struct End {
    status: String,
    release: Option<String>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    phases: Vec<serde_json::Value>,
}

/// `POST /api/v1/job/deployments/{id}`: how the job's deploy ended (once).
pub(crate) async fn finish(
    t: JobToken,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(body): Json<End>,
) -> Result<Response, ApiError> {
    let (job, _) = job_of(&s, t, &headers).await?;
    end(&s, id, Some(job.id), body).await
}

/// Ends deployment `id` as `body` says (once), queueing its alerts: `job`'s own, or (none)
/// one made outside the jobs.
async fn end(
    s: &AppStateRef,
    id: i64,
    job: Option<store::JobId>,
    body: End,
) -> Result<Response, ApiError> {
    if !store::DEPLOYMENT_ENDS.contains(&body.status.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not how a deployment ends (one of {})",
                body.status,
                store::DEPLOYMENT_ENDS.join(", ")
            ),
        ));
    }
    let store = s.store.clone();
    let d = blocking(move || store.deployment(id)).await?;
    // A job ends its own deployments; an API token those made outside jobs.
    if d.job_id != job {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            match job {
                Some(_) => format!("deployment {id} is not this job's"),
                None => format!("deployment {id} is a job's: that job ends it"),
            },
        ));
    }
    let end = store::DeploymentEnd {
        status: body.status,
        release: body.release,
        message: body.message,
        phases: serde_json::to_string(&body.phases).unwrap_or_else(|_| "[]".into()),
    };
    let (store, config) = (s.store.clone(), s.config.clone());
    let ended = blocking(move || {
        store.finish_deployment(id, &end, |d| {
            crate::notify::deployment_alerts(&config.channels, &config.public_url, d)
        })
    })
    .await?;
    let Some(d) = ended else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("deployment {id} has ended already"),
        ));
    };
    s.alerts.notify_one();
    Ok(Json(d).into_response())
}

#[derive(Deserialize)]
pub(crate) struct CliStart {
    repo: String,
    environment: String,
    version: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    sha: String,
    who: String,
    #[serde(default)]
    monitors: Vec<Watch>,
}

/// `POST /api/v1/deployments` (an API token): a deploy made outside the server's jobs
/// (`pipewright deploy --server`) starts; its id.
pub(crate) async fn cli_start(
    _: Authorized,
    State(s): State<AppStateRef>,
    Json(body): Json<CliStart>,
) -> Result<Response, ApiError> {
    if s.config.repo(&body.repo).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository `{}` is not configured", body.repo),
        ));
    }
    if body.environment.trim().is_empty() || body.who.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a deployment needs an environment and who deploys",
        ));
    }
    let monitors = watches(&body.repo, &body.environment, body.monitors)?;
    let new = store::NewDeployment {
        monitors,
        repo: body.repo,
        environment: body.environment,
        version: body.version,
        sha: body.sha,
        run_id: None,
        job_id: None,
        who: body.who,
        hosts: serde_json::to_string(&body.hosts).unwrap_or_else(|_| "[]".into()),
    };
    let store = s.store.clone();
    let id = blocking(move || store.start_deployment(&new)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response())
}

/// `POST /api/v1/deployments/{id}` (an API token): how it ended.
pub(crate) async fn cli_finish(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
    Json(body): Json<End>,
) -> Result<Response, ApiError> {
    end(&s, id, None, body).await
}

/// `GET /api/v1/environments`: every environment deployed to, with what serves it and its
/// last deployment.
pub(crate) async fn environments(
    _: Authorized,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let envs = blocking(move || store.environments()).await?;
    Ok(Json(serde_json::json!({ "environments": envs })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct Limit {
    limit: Option<i64>,
}

/// `GET /api/v1/environments/{repo}/{name}/deployments`: the environment's deployments,
/// newest first (`repo` percent-encoded: `acme%2Fapp`).
pub(crate) async fn deployments(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path((repo, name)): Path<(String, String)>,
    Query(q): Query<Limit>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let list = blocking(move || store.deployments(&repo, &name, limit)).await?;
    Ok(Json(serde_json::json!({ "deployments": list })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct RollbackAsk {
    /// The release to serve again; the one before the current when none.
    to: Option<String>,
}

/// `POST /api/v1/environments/{repo}/{name}/rollback` (`{"to": RELEASE}`): queues a
/// rollback as a run (see [`roll_back`]); the run and what it rolls back to.
pub(crate) async fn rollback(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path((repo, name)): Path<(String, String)>,
    Json(ask): Json<RollbackAsk>,
) -> Result<Response, ApiError> {
    let (run, order) = roll_back(&s, repo, name, ask.to, "api".to_owned()).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "run": run,
            "release": order.release,
            "version": order.version,
            "url": format!("{}/runs/{run}", s.config.public_url),
        })),
    )
        .into_response())
}

/// Rolls environment `name` of `repo` back to release `to` (else the release that served
/// before the current one), as asked by `by`: a re-run of the run whose job made the current
/// deployment, in which that job alone runs again, on a runner, with the environment's
/// secrets, its `pipewright/deploy` step rolling back and recording it.
pub(crate) async fn roll_back(
    s: &AppStateRef,
    repo: String,
    name: String,
    to: Option<String>,
    by: String,
) -> Result<(store::RunId, crate::trigger::Rollback), ApiError> {
    let store = s.store.clone();
    let (repo2, name2) = (repo.clone(), name.clone());
    let found = blocking(move || -> Result<_, ApiError> {
        let history = store.deployments(&repo2, &name2, 500)?;
        let served: Vec<&store::Deployment> = history
            .iter()
            .filter(|d| d.status == "deployed" && d.release.is_some())
            .collect();
        let Some(current) = served.first().copied() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("nothing has been deployed to `{name2}` of {repo2}: there is nothing to roll back"),
            ));
        };
        let (Some(run), Some(job)) = (current.run_id, current.job_id) else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the current deployment of `{name2}` was not made by a job, so no job knows how to reach its hosts: roll back with `pipewright rollback {name2}` where they are reachable"
                ),
            ));
        };
        let target = match &to {
            Some(release) => served
                .iter()
                .find(|d| d.release.as_deref() == Some(release.as_str()))
                .copied()
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("no deployment of release `{release}` to `{name2}` is known"),
                    )
                })?,
            None => served
                .iter()
                .find(|d| d.release != current.release)
                .copied()
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        format!("`{name2}` has served no other release: there is none to roll back to"),
                    )
                })?,
        };
        if target.release == current.release {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "release `{}` serves `{name2}` already",
                    target.release.as_deref().unwrap_or_default()
                ),
            ));
        }
        let job = store.job(job)?;
        let event = store.run(run)?.event_json;
        Ok((run, job.name, event, target.release.clone().unwrap_or_default(), target.version.clone()))
    })
    .await?;
    let (run, job, event_json, release, version) = found;
    let mut event: crate::trigger::Event = serde_json::from_str(&event_json)
        .map_err(|_| ApiError::internal(format!("run {run}'s event is unreadable")))?;
    let order = crate::trigger::Rollback {
        job,
        environment: name,
        release,
        version,
        by,
    };
    event.rollback = Some(order.clone());
    let event_json = serde_json::to_string(&event).map_err(ApiError::internal)?;
    let store = s.store.clone();
    let new = blocking(move || store.rerun_as(run, &event_json)).await?;
    s.wake.notify_waiters();
    tracing::info!(
        run = new.get(),
        repo,
        environment = order.environment,
        release = order.release,
        by = order.by,
        "rollback queued"
    );
    Ok((new, order))
}
