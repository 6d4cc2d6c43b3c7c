//! The HTTP API: every route in one table, bearer-token auth as an extractor, one error type
//! that logs the cause and answers a safe message.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use tokio::sync::{Notify, broadcast};
use tokio_stream::wrappers::BroadcastStream;

use crate::artifacts;
use crate::config::Config;
use crate::logs::Live;
use crate::runner_api;
use crate::trigger::{self, Event};

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) store: Arc<store::Store>,
    pub(crate) config: Arc<Config>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) live: broadcast::Sender<Live>,
    /// The token the repositories' post-receive hooks present.
    pub(crate) hook_token: String,
    /// Where webhook deliveries go (stored, then turned into runs).
    pub(crate) intake: crate::intake::Intake,
    pub(crate) sealer: Arc<crate::secrets::Sealer>,
    /// Signalled when jobs are queued (long-polling runners look).
    pub(crate) queued: Arc<Notify>,
    /// Signalled when jobs complete (their runs' dispatchers look).
    pub(crate) done: Arc<crate::dispatch::Waiters>,
    /// The server is stopping: long polls end, no job is handed out.
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// Runners known by credential (a cache of the store's rows).
    pub(crate) runners: crate::runner_api::Runners,
    /// This server's id among those sharing the database.
    pub(crate) me: String,
    /// What webhook bodies being read may hold ([`WEBHOOK_BUDGET`] KiB).
    pub(crate) webhook_budget: Arc<tokio::sync::Semaphore>,
    /// The admin token: configured, or made on first start (the API is never open).
    pub(crate) admin_token: String,
}

pub(crate) type AppStateRef = Arc<AppState>;

/// Webhook bodies above this are refused (GitHub's own limit is 25 MiB).
const MAX_BODY: usize = 25 * 1024 * 1024;

/// The memory all webhook bodies being read may hold at once, in KiB: two bodies of the
/// largest size; more wait (then get 503), so unsigned bodies cannot fill the memory.
pub(crate) const WEBHOOK_BUDGET: usize = 2 * MAX_BODY / 1024 + 2;

pub(crate) fn router(state: AppStateRef) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/runs/{id}/rerun", post(rerun_run))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{id}", get(show_run))
        .route("/api/v1/runs/{id}/logs", get(run_logs))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/approve", post(approve_run))
        .route("/api/v1/runs/{id}/reject", post(reject_run))
        .route("/api/v1/repos/{repo}/dispatch", post(dispatch))
        .route("/api/v1/internal/push", post(hook_push))
        .route("/api/v1/secrets", get(list_secrets))
        .route("/api/v1/tokens", post(create_token).get(list_tokens))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(put_secret).delete(delete_secret),
        )
        .route("/api/v1/runners", get(runner_api::list_runners))
        .route(
            "/api/v1/runners/{id}",
            axum::routing::delete(runner_api::remove_runner),
        )
        .route(
            "/api/v1/runners/tokens",
            post(runner_api::create_runner_token),
        )
        .route("/api/v1/runners/register", post(runner_api::register))
        .route("/api/v1/runner/jobs/next", post(runner_api::next_job))
        .route(
            "/api/v1/runner/jobs/{id}/heartbeat",
            post(runner_api::heartbeat),
        )
        .route("/api/v1/runner/jobs/{id}/logs", post(runner_api::logs))
        .route("/api/v1/runner/jobs/{id}/finish", post(runner_api::finish))
        .route("/api/v1/runner/jobs/{id}/source", get(runner_api::source))
        .route(
            "/api/v1/runner/jobs/{id}/artifacts",
            get(artifacts::job_artifacts),
        )
        .route(
            "/api/v1/runner/jobs/{id}/artifacts/{name}",
            get(artifacts::job_artifact).put(artifacts::put_artifact),
        )
        .route(
            "/api/v1/runner/jobs/{id}/blobs/missing",
            post(artifacts::missing_blobs),
        )
        .route(
            "/api/v1/runner/jobs/{id}/blobs/{hash}",
            get(artifacts::get_blob).put(artifacts::put_blob),
        )
        .route(
            "/api/v1/runner/jobs/{id}/caches/lookup",
            post(artifacts::lookup_cache),
        )
        .route(
            "/api/v1/runner/jobs/{id}/caches",
            axum::routing::put(artifacts::save_cache),
        )
        .route("/api/v1/runs/{id}/artifacts", get(artifacts::run_artifacts))
        .route(
            "/api/v1/runs/{id}/artifacts/{name}",
            get(artifacts::run_artifact),
        )
        .route("/api/v1/admin/gc", post(artifacts::admin_gc))
        .route("/hooks/github", post(github_webhook))
        .route("/hooks/gitea", post(gitea_webhook))
        .route("/hooks/gitlab", post(gitlab_webhook))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An API error: a status and a message safe to show; the cause is logged.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::NoRun(id) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("run {id} does not exist"))
            }
            store::StoreError::NoJob(id) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("job {id} does not exist"))
            }
            e @ store::StoreError::NotHeld(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<getrandom::Error> for ApiError {
    fn from(e: getrandom::Error) -> Self {
        ApiError::internal(format!("no random bytes from the operating system: {e}"))
    }
}

impl From<crate::secrets::SecretError> for ApiError {
    fn from(e: crate::secrets::SecretError) -> Self {
        ApiError::internal(e)
    }
}

impl From<trigger::TriggerError> for ApiError {
    fn from(e: trigger::TriggerError) -> Self {
        match e {
            trigger::TriggerError::NoWorkflow(_)
            | trigger::TriggerError::NotDispatchable(_)
            | trigger::TriggerError::Inputs { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            trigger::TriggerError::Git(g) => git_error(&g),
            trigger::TriggerError::Store(s) => s.into(),
        }
    }
}

/// A git failure as an answer: what could not be read, without the server's paths (the
/// whole error is logged).
fn git_error(e: &crate::git::GitError) -> ApiError {
    tracing::warn!("git: {e}");
    let what = match e {
        crate::git::GitError::NotAnId(id) => format!("`{id}` is not a commit id"),
        _ => "git could not read that revision of the repository".to_owned(),
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, what)
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// The caller presented the admin token or an API token.
pub(crate) struct Authorized;

impl FromRequestParts<AppStateRef> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        let expected = &state.admin_token;
        let Some(given) = bearer(parts).map(str::to_owned) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token",
            ));
        };
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Ok(Authorized);
        }
        // Tokens made with `pipewright tokens create` are stored hashed.
        let store = state.store.clone();
        let hash = token_hash(&given);
        match blocking(move || Ok(store.token_name(&hash)?)).await? {
            Some(_) => Ok(Authorized),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid token")),
        }
    }
}

/// The caller presented the admin token itself (to create tokens).
pub(crate) struct Admin;

impl FromRequestParts<AppStateRef> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        let expected = &state.admin_token;
        match bearer(parts) {
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(Admin),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the admin token",
            )),
        }
    }
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// SHA-256 of a token, hex: tokens are random and long, so a slow hash adds nothing.
pub(crate) fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
}

/// `POST /api/v1/tokens`: a new API token, shown once.
async fn create_token(
    _: Admin,
    State(s): State<AppStateRef>,
    Json(body): Json<NewToken>,
) -> Result<Response, ApiError> {
    if body.name.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a token needs a name",
        ));
    }
    let token = format!("pw_{}", crate::random_token()?);
    let hash = token_hash(&token);
    let store = s.store.clone();
    let name = body.name.clone();
    let id = blocking(move || Ok(store.add_token(&name, &hash)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "name": body.name, "token": token })),
    )
        .into_response())
}

/// `GET /api/v1/tokens`: the API tokens (ids, names, when made; never the tokens).
async fn list_tokens(_: Admin, State(s): State<AppStateRef>) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let rows = blocking(move || Ok(store.tokens()?)).await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, name, created_at)| {
            serde_json::json!({"id": id, "name": name, "created_at": created_at})
        })
        .collect();
    Ok(Json(list).into_response())
}

/// `DELETE /api/v1/tokens/{id}`: the token stops working at once.
async fn revoke_token(
    _: Admin,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    if blocking(move || Ok(store.revoke_token(id)?)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no token {id}"),
        ))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API's description; a test checks it names every route of the router.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

#[derive(Deserialize)]
struct ListQuery {
    repo: Option<String>,
    limit: Option<i64>,
}

async fn list_runs(
    _: Authorized,
    State(s): State<AppStateRef>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let runs =
        blocking(move || Ok(store.runs(q.repo.as_deref(), q.limit.unwrap_or(50).clamp(1, 1000))?))
            .await?;
    Ok(Json(runs).into_response())
}

async fn show_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (run, jobs) = blocking(move || Ok((store.run(id)?, store.jobs(id)?))).await?;
    let mut v = serde_json::to_value(&run).map_err(ApiError::internal)?;
    v["jobs"] = serde_json::to_value(jobs).map_err(ApiError::internal)?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    job: Option<String>,
    follow: Option<bool>,
}

/// Whether job `name` (display name) or `job_id` is what `filter` asks for.
fn job_matches(filter: Option<&str>, name: &str, job_id: &str) -> bool {
    filter.is_none_or(|n| name == n || job_id == n || name.starts_with(&format!("{n} (")))
}

/// A stored line on its way to a reader: (job, job's display name, sequence, text).
type LogItem = (i64, Arc<str>, i64, String);

/// Lines of `run` (the jobs `filter` selects) after the positions in `last`, at most
/// [`CATCH_UP`] of them; and whether there may be more.
fn catch_up(
    store: &store::Store,
    data: &std::path::Path,
    run: i64,
    filter: Option<&str>,
    last: &std::collections::HashMap<i64, i64>,
) -> Result<(Vec<LogItem>, bool), ApiError> {
    let mut out = Vec::new();
    for job in store.jobs(run)? {
        if !job_matches(filter, &job.name, &job.job_id) {
            continue;
        }
        let name: Arc<str> = job.name.as_str().into();
        let after = last.get(&job.id).copied().unwrap_or(0);
        crate::logfiles::each_line(store, data, job.id, after, &mut |seq, text| {
            out.push((job.id, name.clone(), seq, text));
            out.len() < CATCH_UP
        })
        .map_err(ApiError::internal)?;
        if out.len() >= CATCH_UP {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

/// Lines a follower reads from the store at once when it fell behind.
const CATCH_UP: usize = 2000;

async fn run_logs(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    // Subscribe before reading what is stored, so no line falls between the two.
    let rx = s.live.subscribe();
    let store = s.store.clone();
    let job_name = q.job.clone();
    let (run, jobs) = blocking(move || {
        let run = store.run(id)?;
        let jobs = store.jobs(id)?;
        if let Some(n) = &job_name
            && !jobs.iter().any(|j| j.name == *n || j.job_id == *n)
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("run {id} has no job `{n}`"),
            ));
        }
        Ok((run, jobs))
    })
    .await?;
    // What is stored, read in pages by a blocking task, a bounded channel between: a log of
    // any size is sent with little memory.
    let (tx, stored) = tokio::sync::mpsc::channel::<LogItem>(1024);
    let (store, data, filter) = (s.store.clone(), s.config.data_dir.clone(), q.job.clone());
    let selected: Vec<(i64, Arc<str>)> = jobs
        .iter()
        .filter(|j| job_matches(filter.as_deref(), &j.name, &j.job_id))
        .map(|j| (j.id, j.name.as_str().into()))
        .collect();
    tokio::task::spawn_blocking(move || {
        for (job, name) in &selected {
            let read = crate::logfiles::each_line(&store, &data, *job, 0, &mut |seq, text| {
                tx.blocking_send((*job, name.clone(), seq, text)).is_ok()
            });
            if let Err(e) = read {
                tracing::warn!(run = id, job, "reading a job log: {e}");
            }
        }
    });
    let stored = tokio_stream::wrappers::ReceiverStream::new(stored);
    if !q.follow.unwrap_or(false) {
        // Lines gathered into chunks of about 64 KiB.
        let body = stored.ready_chunks(256).map(|items| {
            let mut text = String::new();
            for (_, name, _, line) in items {
                text.push_str(&format!("[{name}] {line}\n"));
            }
            Ok::<_, Infallible>(text)
        });
        return Ok((
            [("content-type", "text/plain; charset=utf-8")],
            axum::body::Body::from_stream(body),
        )
            .into_response());
    }
    let line_event = |name: &str, text: &str| {
        SseEvent::default()
            .event("line")
            .data(format!("[{name}] {text}"))
    };
    // Live: the stored lines, then new ones, until the run is done. A follower that fell
    // behind the broadcast (or sees a gap) reads what it missed from the store.
    struct Follow {
        stored: Option<tokio_stream::wrappers::ReceiverStream<LogItem>>,
        live: BroadcastStream<Live>,
        last: std::collections::HashMap<i64, i64>,
        queue: std::collections::VecDeque<SseEvent>,
        /// Read the store before taking more from the broadcast.
        behind: bool,
        /// The run ended: after the catch-up, `done`.
        done: Option<String>,
        finished: bool,
    }
    let completed = (run.status == "completed").then(|| run.conclusion.unwrap_or_default());
    let start = Follow {
        stored: Some(stored),
        live: BroadcastStream::new(rx),
        last: std::collections::HashMap::new(),
        queue: std::collections::VecDeque::new(),
        behind: false,
        done: None,
        finished: false,
    };
    let (store, data, filter) = (s.store.clone(), s.config.data_dir.clone(), q.job.clone());
    let events = stream::unfold(start, move |mut f| {
        let (store, data, filter, completed) = (
            store.clone(),
            data.clone(),
            filter.clone(),
            completed.clone(),
        );
        async move {
            loop {
                if let Some(e) = f.queue.pop_front() {
                    return Some((Ok::<_, Infallible>(e), f));
                }
                if f.finished {
                    return None;
                }
                if let Some(stored) = f.stored.as_mut() {
                    match stored.next().await {
                        Some((job, name, seq, text)) => {
                            f.last.insert(job, seq);
                            f.queue.push_back(line_event(&name, &text));
                        }
                        None => {
                            f.stored = None;
                            if let Some(c) = &completed {
                                f.queue.push_back(SseEvent::default().event("done").data(c));
                                f.finished = true;
                            }
                        }
                    }
                    continue;
                }
                if f.behind || f.done.is_some() {
                    let (s2, d2, fl, last) =
                        (store.clone(), data.clone(), filter.clone(), f.last.clone());
                    let read = tokio::task::spawn_blocking(move || {
                        catch_up(&s2, &d2, id, fl.as_deref(), &last)
                    })
                    .await;
                    let (items, more) = match read {
                        Ok(Ok(r)) => r,
                        _ => (Vec::new(), false),
                    };
                    for (job, name, seq, text) in items {
                        f.last.insert(job, seq);
                        f.queue.push_back(line_event(&name, &text));
                    }
                    f.behind = more;
                    if !more && let Some(c) = f.done.take() {
                        f.queue.push_back(SseEvent::default().event("done").data(c));
                        f.finished = true;
                    }
                    continue;
                }
                match f.live.next().await? {
                    Ok(Live::Line {
                        run,
                        job,
                        job_name,
                        seq,
                        text,
                    }) if run == id => {
                        if !job_matches(filter.as_deref(), &job_name, &job_name) {
                            continue;
                        }
                        let last = f.last.get(&job).copied().unwrap_or(0);
                        if seq == last + 1 {
                            f.last.insert(job, seq);
                            f.queue.push_back(line_event(&job_name, &text));
                        } else if seq > last + 1 {
                            f.behind = true; // a gap: read it from the store
                        }
                    }
                    Ok(Live::RunDone { run, conclusion }) if run == id => {
                        // Every line is stored before `done`: read what was not seen yet.
                        f.done = Some(conclusion);
                    }
                    Err(_lagged) => f.behind = true,
                    _ => {}
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize)]
struct RerunQuery {
    /// Only the jobs that did not succeed (and what needs them); the others are kept.
    failed: Option<bool>,
}

async fn rerun_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
    Query(q): Query<RerunQuery>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let failed = q.failed.unwrap_or(false);
    let new_id = blocking(move || Ok(store.rerun(id, failed)?)).await?;
    s.wake.notify_waiters();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "runs": [new_id] })),
    )
        .into_response())
}

/// Prometheus text format: runs and jobs by conclusion, queue depth, job durations,
/// runners online. Every figure is a counter kept by the database or a count of what is in
/// flight: the cost of a scrape does not grow with the history. With `[auth] metrics_token`
/// it needs that token (or the admin token).
async fn metrics(State(s): State<AppStateRef>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(expected) = &s.config.metrics_token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.as_bytes())
            && !constant_time_eq(given.as_bytes(), s.admin_token.as_bytes())
        {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the metrics token",
            ));
        }
    }
    let store = s.store.clone();
    let (stats, jobs_queued, runners, deliveries) = blocking(move || {
        Ok((
            store.stats()?,
            store.queue_depth()?,
            store.runners()?,
            store.pending_count()?,
        ))
    })
    .await?;
    // Online: asked for work or reported within two leases (a long poll lasts 25 s).
    let recent = store::now_ms() - (2 * s.config.lease_ms).max(60_000);
    let online = runners
        .iter()
        .filter(|r| r.last_seen >= recent && (r.capacity > 0))
        .count();
    let mut out = String::new();
    out.push_str("# HELP pipewright_runs_total Completed runs by conclusion.\n# TYPE pipewright_runs_total counter\n");
    for (c, n) in &stats.runs_by_conclusion {
        out.push_str(&format!(
            "pipewright_runs_total{{conclusion=\"{c}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP pipewright_jobs_total Completed jobs by conclusion.\n# TYPE pipewright_jobs_total counter\n");
    for (c, n) in &stats.jobs_by_conclusion {
        out.push_str(&format!(
            "pipewright_jobs_total{{conclusion=\"{c}\"}} {n}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP pipewright_queue_depth Jobs waiting for a runner.\n# TYPE pipewright_queue_depth gauge\npipewright_queue_depth {jobs_queued}\n"
    ));
    out.push_str(&format!(
        "# HELP pipewright_runs_running Runs being run.\n# TYPE pipewright_runs_running gauge\npipewright_runs_running {}\n",
        stats.runs_running
    ));
    out.push_str(&format!(
        "# HELP pipewright_runners_online Runners able to take jobs.\n# TYPE pipewright_runners_online gauge\npipewright_runners_online {online}\n"
    ));
    out.push_str(&format!(
        "# HELP pipewright_webhook_deliveries_pending Webhook deliveries accepted, not yet turned into runs.\n# TYPE pipewright_webhook_deliveries_pending gauge\npipewright_webhook_deliveries_pending {deliveries}\n"
    ));
    out.push_str("# HELP pipewright_job_duration_seconds Job durations.\n# TYPE pipewright_job_duration_seconds histogram\n");
    let mut count = 0;
    for (le, n) in &stats.duration_buckets {
        out.push_str(&format!(
            "pipewright_job_duration_seconds_bucket{{le=\"{le}\"}} {n}\n"
        ));
        if le == "+Inf" {
            count = *n;
        }
    }
    out.push_str(&format!(
        "pipewright_job_duration_seconds_sum {}\npipewright_job_duration_seconds_count {count}\n",
        stats.duration_sum_ms as f64 / 1000.0,
    ));
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

/// `POST /api/v1/runs/{id}/approve`: a run waiting for approval is queued.
async fn approve_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    decide(&s, id, true).await
}

/// `POST /api/v1/runs/{id}/reject`: a run waiting for approval ends without running.
async fn reject_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    decide(&s, id, false).await
}

/// Approves or rejects run `id`, which must be waiting for approval.
async fn decide(s: &AppStateRef, id: i64, approve: bool) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let run = blocking(move || {
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
        tracing::info!(run = id, "run approved");
        s.wake.notify_waiters();
    } else {
        tracing::info!(run = id, "run rejected");
    }
    Ok(Json(run).into_response())
}

async fn cancel_run(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let run = blocking(move || Ok(store.request_cancel(id)?)).await?;
    Ok(Json(run).into_response())
}

#[derive(Deserialize)]
struct DispatchBody {
    workflow: String,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    inputs: serde_json::Map<String, serde_json::Value>,
}

async fn dispatch(
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
    let store = s.store.clone();
    let ids = blocking(move || {
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
        Ok(trigger::enqueue(&store, &cfg, &event)?)
    })
    .await?;
    s.wake.notify_waiters();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "runs": ids })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct PushBody {
    repo: String,
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
}

/// A push reported by a repository's post-receive hook.
async fn hook_push(
    State(s): State<AppStateRef>,
    headers: HeaderMap,
    Json(body): Json<PushBody>,
) -> Result<Response, ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|t| constant_time_eq(t.as_bytes(), s.hook_token.as_bytes())) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid hook token",
        ));
    }
    let cfg = s.config.repo(&body.repo).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository `{}` is not configured", body.repo),
        )
    })?;
    if body.after.chars().all(|c| c == '0') {
        return Ok((StatusCode::OK, Json(serde_json::json!({ "runs": [] }))).into_response()); // a deleted ref
    }
    // Ids go to git: anything else is refused, whoever sends it.
    for (what, id) in [("after", &body.after), ("before", &body.before)] {
        let new_ref = what == "before" && id.chars().all(|c| c == '0');
        if !(crate::git::is_commit_id(id) || new_ref) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`{what}` is not a commit id"),
            ));
        }
    }
    let store = s.store.clone();
    let ids = blocking(move || {
        let event = Event::push(&cfg.name, &body.git_ref, &body.before, &body.after);
        Ok(trigger::enqueue(&store, &cfg, &event)?)
    })
    .await?;
    s.wake.notify_waiters();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "runs": ids })),
    )
        .into_response())
}

/// The forges whose webhooks are understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forge {
    GitHub,
    /// Gitea and Forgejo (which also sends Gitea's headers).
    Gitea,
    GitLab,
}

async fn github_webhook(
    state: State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    webhook(Forge::GitHub, state, headers, body).await
}

async fn gitea_webhook(
    state: State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    webhook(Forge::Gitea, state, headers, body).await
}

async fn gitlab_webhook(
    state: State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    webhook(Forge::GitLab, state, headers, body).await
}

/// What a delivery asks for.
enum Delivery {
    Ping,
    Ignored(String),
    /// Authentic, but not something to run (a commit id that is not one).
    Invalid(String),
    Run(Box<Event>),
}

/// `Invalid` unless every id in `ids` is a full commit id (an id is given to git).
fn ids_checked(ids: &[(&str, &str)], run: Event) -> Delivery {
    for (what, id) in ids {
        if !crate::git::is_commit_id(id) {
            return Delivery::Invalid(format!("`{what}` is not a commit id: `{id}`"));
        }
    }
    Delivery::Run(Box::new(run))
}

fn str_at(json: &serde_json::Value, ptr: &str) -> Option<String> {
    json.pointer(ptr)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// What an authentic delivery of `forge` (`github`, `gitea`, `gitlab`) for event `kind`
/// asks to run, read as the server reads one: any bytes give an answer, never a panic (the
/// fuzz target `webhook` holds it to that).
pub fn read_webhook(forge: &str, kind: &str, body: &[u8]) -> Option<Event> {
    let forge = match forge {
        "github" => Forge::GitHub,
        "gitea" => Forge::Gitea,
        "gitlab" => Forge::GitLab,
        _ => return None,
    };
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    match parse_delivery(forge, kind, &json) {
        Delivery::Run(e) => Some(*e),
        Delivery::Ping | Delivery::Ignored(_) | Delivery::Invalid(_) => None,
    }
}

/// Reads a forge's push or pull/merge request event into our [`Event`].
fn parse_delivery(forge: Forge, kind: &str, json: &serde_json::Value) -> Delivery {
    let deleted = |after: &str| after.is_empty() || after.chars().all(|c| c == '0');
    match (forge, kind) {
        (Forge::GitHub | Forge::Gitea, "ping") | (Forge::GitLab, "System Hook") => Delivery::Ping,
        (Forge::GitHub | Forge::Gitea, "push") | (Forge::GitLab, "Push Hook" | "Tag Push Hook") => {
            let after = str_at(json, "/after").unwrap_or_default();
            if deleted(&after) {
                return Delivery::Ignored("a deleted ref".into());
            }
            let before = str_at(json, "/before");
            let zeros = before
                .as_deref()
                .is_none_or(|b| b.chars().all(|c| c == '0'));
            let mut ids = vec![("after", after.as_str())];
            if let (false, Some(b)) = (zeros, before.as_deref()) {
                ids.push(("before", b));
            }
            ids_checked(
                &ids,
                Event {
                    name: "push".into(),
                    git_ref: str_at(json, "/ref").unwrap_or_default(),
                    sha: after.clone(),
                    before: before.clone(),
                    payload: json.clone(),
                    ..Event::default()
                },
            )
        }
        (Forge::GitHub | Forge::Gitea, "pull_request") => {
            let action = str_at(json, "/action").unwrap_or_default();
            // Gitea says `synchronized` where GitHub says `synchronize`.
            let action = if action == "synchronized" {
                "synchronize".to_owned()
            } else {
                action
            };
            if !["opened", "synchronize", "reopened"].contains(&action.as_str()) {
                return Delivery::Ignored(action);
            }
            let number = json["number"].as_u64().unwrap_or(0);
            let head_repo = str_at(json, "/pull_request/head/repo/full_name");
            let base_repo = str_at(json, "/pull_request/base/repo/full_name");
            let sha = str_at(json, "/pull_request/head/sha").unwrap_or_default();
            ids_checked(
                &[("pull_request.head.sha", &sha)],
                Event {
                    name: "pull_request".into(),
                    git_ref: format!("refs/pull/{number}/merge"),
                    base_ref: str_at(json, "/pull_request/base/ref"),
                    head_ref: str_at(json, "/pull_request/head/ref"),
                    // A fork unless proven otherwise: a head repository that is missing or
                    // null (GitHub sends null once the fork is deleted) is not the base.
                    fork: !(head_repo.is_some() && head_repo == base_repo),
                    action: Some(action),
                    payload: json.clone(),
                    sha: sha.clone(),
                    ..Event::default()
                },
            )
        }
        (Forge::GitLab, "Merge Request Hook") => {
            let action = match str_at(json, "/object_attributes/action").as_deref() {
                Some("open") => "opened",
                Some("update") => "synchronize",
                Some("reopen") => "reopened",
                other => return Delivery::Ignored(other.unwrap_or_default().to_owned()),
            };
            let iid = json
                .pointer("/object_attributes/iid")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let source = json
                .pointer("/object_attributes/source_project_id")
                .filter(|v| !v.is_null());
            let target = json.pointer("/object_attributes/target_project_id");
            let sha = str_at(json, "/object_attributes/last_commit/id").unwrap_or_default();
            ids_checked(
                &[("object_attributes.last_commit.id", &sha)],
                Event {
                    name: "pull_request".into(),
                    git_ref: format!("refs/merge-requests/{iid}/head"),
                    base_ref: str_at(json, "/object_attributes/target_branch"),
                    head_ref: str_at(json, "/object_attributes/source_branch"),
                    // A fork unless both projects are named and the same.
                    fork: !(source.is_some() && source == target),
                    action: Some(action.to_owned()),
                    payload: json.clone(),
                    sha: sha.clone(),
                    ..Event::default()
                },
            )
        }
        (_, other) => Delivery::Ignored(other.to_owned()),
    }
}

/// `POST /hooks/{github,gitea,gitlab}`: push and pull/merge request events, authenticated by
/// a repository's `webhook_secret` before anything in the body is believed or even parsed:
/// the repository is the one whose secret signs the body. A body is read whole only within
/// a budget shared by all deliveries ([`WEBHOOK_BUDGET`]), so a flood of large unsigned
/// bodies holds a bounded amount of memory.
async fn webhook(
    forge: Forge,
    State(s): State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (event_header, delivery_header) = match forge {
        Forge::GitHub => ("x-github-event", "x-github-delivery"),
        Forge::Gitea => ("x-gitea-event", "x-gitea-delivery"),
        Forge::GitLab => ("x-gitlab-event", "x-gitlab-event-uuid"),
    };
    let kind = header(event_header)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("missing {event_header}")))?;
    let delivery = header(delivery_header);
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is over 25 MiB",
        ));
    }
    // The body's share of the budget (KiB), waited for a little, then refused.
    let kib = u32::try_from(declared.unwrap_or(MAX_BODY) / 1024 + 1).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.webhook_budget.clone().acquire_many_owned(kib),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        tracing::warn!("webhook deliveries: the memory budget for bodies is spent");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many deliveries at once",
        )
    })?;
    let limit = declared.unwrap_or(MAX_BODY).min(MAX_BODY);
    // Read into a buffer of the announced size (no growth by doubling on the way), within a
    // deadline: a sender that stalls does not keep its share of the budget.
    let read = async {
        let mut buf = Vec::with_capacity(declared.unwrap_or(64 * 1024).min(MAX_BODY));
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is over 25 MiB or longer than announced",
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let body = tokio::time::timeout(s.config.idle_timeout, read)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            )
        })??;
    let signed_by = |secret: &str| match forge {
        Forge::GitHub => header("x-hub-signature-256")
            .is_some_and(|sig| verify_signature(secret.as_bytes(), &body, &sig)),
        Forge::Gitea => header("x-gitea-signature")
            .or_else(|| header("x-forgejo-signature"))
            .is_some_and(|sig| {
                verify_signature(secret.as_bytes(), &body, &format!("sha256={sig}"))
            }),
        Forge::GitLab => header("x-gitlab-token")
            .is_some_and(|t| constant_time_eq(t.as_bytes(), secret.as_bytes())),
    };
    let signers: Vec<&crate::config::RepoConfig> = s
        .config
        .repos
        .iter()
        .filter(|r| r.webhook_secret.as_deref().is_some_and(signed_by))
        .collect();
    // Nothing says which repositories exist to a caller that cannot sign.
    if signers.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad or missing signature",
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    drop(body);
    drop(permit);
    let names: Vec<String> = match forge {
        Forge::GitLab => [
            str_at(&json, "/project/path_with_namespace"),
            str_at(&json, "/project/name"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        _ => [
            str_at(&json, "/repository/full_name"),
            str_at(&json, "/repository/name"),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    // Repositories sharing a secret: the one the (authentic) body names.
    let cfg = match signers.as_slice() {
        [one] => (*one).clone(),
        many => many
            .iter()
            .find(|r| names.contains(&r.name))
            .map(|r| (*r).clone())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the delivery names none of the repositories its secret is for",
                )
            })?,
    };
    let event = match parse_delivery(forge, &kind, &json) {
        Delivery::Ping => {
            return Ok((StatusCode::OK, Json(serde_json::json!({ "pong": true }))).into_response());
        }
        Delivery::Ignored(what) => {
            return Ok((
                StatusCode::OK,
                Json(serde_json::json!({ "runs": [], "ignored": what })),
            )
                .into_response());
        }
        Delivery::Invalid(what) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, what));
        }
        Delivery::Run(e) => *e,
    };
    // Stored, answered, then turned into runs by the intake. Idempotent by delivery id: a
    // redelivery queues nothing.
    let event_json = serde_json::to_string(&event).map_err(ApiError::internal)?;
    let accepted = s
        .intake
        .accept(store::NewDelivery {
            key: delivery.map(|d| format!("{forge:?}:{d}")),
            repo: cfg.name.clone(),
            event_json,
        })
        .await
        .map_err(|e| match e {
            crate::intake::IntakeError::Stopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
            }
            e @ (crate::intake::IntakeError::Store(_) | crate::intake::IntakeError::Task) => {
                ApiError::internal(e)
            }
        })?;
    Ok(match accepted {
        Some(id) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "delivery": id, "queued": true })),
        )
            .into_response(),
        None => (
            StatusCode::OK,
            Json(serde_json::json!({ "runs": [], "duplicate": true })),
        )
            .into_response(),
    })
}

/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
pub(crate) fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[derive(Deserialize)]
struct SecretScope {
    repo: Option<String>,
    environment: Option<String>,
}

fn valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

/// `PUT /api/v1/secrets/{name}?repo=R&environment=E`, the value as the body.
async fn put_secret(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(name): Path<String>,
    Query(scope): Query<SecretScope>,
    body: String,
) -> Result<Response, ApiError> {
    if !valid_secret_name(&name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`{name}` is not a valid secret name: letters, digits and `_`, not starting with a digit or GITHUB_"
            ),
        ));
    }
    let repo = scope.repo.unwrap_or_default();
    if !repo.is_empty() && s.config.repo(&repo).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository `{repo}` is not configured"),
        ));
    }
    let environment = scope.environment.unwrap_or_default();
    let sealed = s
        .sealer
        .seal(&repo, &environment, &name, body.trim_end_matches('\n'))?;
    let store = s.store.clone();
    blocking(move || Ok(store.put_secret(&repo, &environment, &name, &sealed)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_secret(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(name): Path<String>,
    Query(scope): Query<SecretScope>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let found = blocking(move || {
        Ok(store.delete_secret(
            &scope.repo.unwrap_or_default(),
            &scope.environment.unwrap_or_default(),
            &name,
        )?)
    })
    .await?;
    Ok(if found {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response())
}

/// Names and scopes only, never values.
async fn list_secrets(_: Authorized, State(s): State<AppStateRef>) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let rows = blocking(move || Ok(store.secret_names()?)).await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(repo, environment, name, updated_at)| {
            serde_json::json!({"name": name, "repo": repo, "environment": environment, "updated_at": updated_at})
        })
        .collect();
    Ok(Json(list).into_response())
}

#[cfg(test)]
mod tests {
    /// Every route of `router` is described in openapi.json, and nothing else is.
    #[test]
    fn openapi_matches_the_router() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let mut documented: Vec<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let src = include_str!("http.rs");
        // The router function only.
        let start = src.find("pub(crate) fn router(").unwrap();
        let body = &src[start..start + src[start..].find("\n}\n").unwrap()];
        let mut routed: Vec<String> = body
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"'))
            .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
