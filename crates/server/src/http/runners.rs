//! The runner protocol's server side (see `runner::protocol` and docs/runner-protocol.md):
//! registration with one-time tokens, long-polled job pickup, leases kept by heartbeats,
//! log batches, reports and sources (artifacts and caches: `artifacts`). Also the lease
//! reaper that declares runners lost.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use runner::protocol::{self, Lease};
use tokio::sync::Notify;

use super::auth::{Admin, Authorized, bearer, constant_time_eq, token_hash};
use super::error::ApiError;
use super::state::{AppState, AppStateRef};
use crate::blocking::{Blocked, blocking, store_now};
use crate::logs::Live;

/// The caller is a registered runner (its credential as bearer token).
pub(crate) struct RunnerAuth(pub(crate) Arc<store::Runner>);

impl FromRequestParts<AppStateRef> for RunnerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        let Some(given) = bearer(parts) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing runner credential",
            ));
        };
        Ok(RunnerAuth(runner_by_hash(state, token_hash(given)).await?))
    }
}

/// The registered runner whose credential hashes to `hash`.
pub(crate) async fn runner_by_hash(
    state: &AppState,
    hash: String,
) -> Result<Arc<store::Runner>, ApiError> {
    if let Some(r) = state.runners.get(&hash) {
        return Ok(r);
    }
    let store = state.store.clone();
    let key = hash.clone();
    match blocking(move || store.runner_by_credential(&key)).await? {
        Some(r) => {
            let r = Arc::new(r);
            state.runners.put(hash, r.clone());
            Ok(r)
        }
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown runner credential (register the runner again)",
        )),
    }
}

fn lease_of(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(protocol::LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("missing `{}` header", protocol::LEASE_HEADER),
            )
        })
}

/// `POST /api/v1/runners/tokens`: a one-time registration token, shown once.
pub(crate) async fn create_runner_token(
    _: Admin,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let token = crate::random_token()?;
    let (store, hash) = (s.store.clone(), token_hash(&token));
    blocking(move || store.add_runner_token(&hash)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "token": token })),
    )
        .into_response())
}

/// `GET /api/v1/runners`.
pub(crate) async fn list_runners(
    _: Authorized,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let runners = blocking(move || store.runners()).await?;
    Ok(Json(serde_json::json!({ "runners": runners })).into_response())
}

/// `DELETE /api/v1/runners/{id}`: the runner's credential stops working, its jobs are
/// queued again.
pub(crate) async fn remove_runner(
    _: Admin,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunnerId>,
) -> Result<Response, ApiError> {
    let (store, attempts) = (s.store.clone(), s.config.max_attempts);
    let released = blocking(move || store.remove_runner(id, attempts)).await?;
    s.runners.forget(id);
    let Some(released) = released else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no runner {id} to remove (a server's own runner is not removed)"),
        ));
    };
    if !released.requeued.is_empty() {
        s.queued.notify_waiters();
    }
    for (job, _) in &released.failed {
        s.done.wake(*job, None);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Refuses a runner that speaks another version of the protocol, naming both.
fn same_protocol(version: u32) -> Result<(), ApiError> {
    if version == protocol::VERSION {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        format!(
            "this server speaks runner protocol {}, the runner {version}",
            protocol::VERSION
        ),
    ))
}

/// `POST /api/v1/runners/register` with a one-time token as bearer.
pub(crate) async fn register(
    State(s): State<AppStateRef>,
    headers: HeaderMap,
    Json(body): Json<protocol::Register>,
) -> Result<Response, ApiError> {
    same_protocol(body.version)?;
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing registration token"))?;
    if body.name.trim().is_empty() || body.capacity == 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a runner needs a name and a capacity of at least 1",
        ));
    }
    // `*` takes every job, whatever it asks for: only the server's own runner has it.
    if let Some(bad) = body
        .labels
        .iter()
        .find(|l| l.trim() == "*" || l.trim().is_empty() || l.len() > 100)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`{bad}` is not a label a runner may have (`*` is the server's own runner's; labels have 1 to 100 characters)"
            ),
        ));
    }
    let credential = crate::random_token()?;
    let (store, token_hash, cred_hash) =
        (s.store.clone(), token_hash(token), token_hash(&credential));
    let capacity = i64::try_from(body.capacity).unwrap_or(i64::MAX);
    let ttl = i64::try_from(s.config.registration_token_ttl.as_millis()).unwrap_or(i64::MAX);
    let id = blocking(move || -> Result<_, ApiError> {
        Ok(store.register_runner(
            &token_hash,
            &body.name,
            &body.labels,
            capacity,
            &cred_hash,
            ttl,
        )?)
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the registration token is unknown, was used already, or expired",
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(protocol::Registered {
            runner_id: id.get(),
            credential,
        }),
    )
        .into_response())
}

/// The lease handed out for a job taken from the store.
fn lease_from(s: &AppState, leased: store::Leased) -> Result<Lease, ApiError> {
    let spec: protocol::JobPayload =
        serde_json::from_str(&leased.payload).map_err(ApiError::internal)?;
    let secrets = if leased.sealed.is_empty() {
        protocol::Secrets::default()
    } else {
        let text = s
            .sealer
            .open(
                &crate::dispatch::seal_scope(leased.job.run_id),
                "",
                &leased.job.name,
                &leased.sealed,
            )
            .map_err(ApiError::internal)?;
        serde_json::from_str(&text).map_err(ApiError::internal)?
    };
    let token = s.sealer.job_token(leased.job.id.get(), &leased.lease)?;
    Ok(Lease {
        token,
        job: leased.job.id.get(),
        lease: leased.lease,
        lease_ms: u64::try_from(s.config.lease_ms).unwrap_or(30_000),
        attempt: leased.job.attempt,
        log_seq: leased.log_seq,
        spec,
        secrets,
        artifacts: leased.artifacts,
    })
}

/// `POST /api/v1/runner/jobs/next`: a job for this runner, waiting up to `wait_ms` for one.
pub(crate) async fn next_job(
    RunnerAuth(runner): RunnerAuth,
    State(s): State<AppStateRef>,
    Json(body): Json<protocol::Next>,
) -> Result<Response, ApiError> {
    same_protocol(body.version)?;
    Ok(match next_for(&s, &runner, body.wait_ms).await? {
        Some(lease) => Json(lease).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// A job for `runner`, waiting up to `wait_ms` for one (the route's and the in-process
/// runner's).
pub(crate) async fn next_for(
    s: &AppState,
    runner: &Arc<store::Runner>,
    wait_ms: u64,
) -> Result<Option<Lease>, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(60_000));
    if s.runners.seen_due(runner.id) {
        let (store, id) = (s.store.clone(), runner.id);
        blocking(move || store.touch_runner(id)).await?;
    }
    loop {
        if s.stopping.is_cancelled() {
            return Ok(None);
        }
        let notified = s.queued.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (store, r, lease, lease_ms) = (
            s.store.clone(),
            runner.clone(),
            crate::random_token()?,
            s.config.lease_ms,
        );
        if let Some(leased) = store_now(&s.store, move || -> Result<_, ApiError> {
            let want = store::Want {
                labels: &r.labels,
                lease: &lease,
                lease_ms,
            };
            Ok(store.take_job(r.id, &want)?)
        })
        .await?
        {
            tracing::info!(
                job = leased.job.id.get(),
                run = leased.job.run_id.get(),
                runner = %runner.name,
                "job leased"
            );
            return Ok(Some(lease_from(s, leased)?));
        }
        tokio::select! {
            () = &mut notified => {}
            // Jobs queued by another server process, or released by the reaper elsewhere.
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = tokio::time::sleep_until(deadline) => return Ok(None),
            () = s.stopping.cancelled() => return Ok(None),
        }
    }
}

/// `POST /api/v1/runner/jobs/{job}/heartbeat`.
pub(crate) async fn heartbeat(
    RunnerAuth(runner): RunnerAuth,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lease = lease_of(&headers)?;
    Ok(Json(heartbeat_for(&s, &runner, job, lease).await?).into_response())
}

/// Keeps `runner`'s lease of `job` alive (the route's and the in-process runner's).
pub(crate) async fn heartbeat_for(
    s: &AppState,
    runner: &store::Runner,
    job: store::JobId,
    lease: String,
) -> Result<protocol::HeartbeatReply, ApiError> {
    let (store, lease_ms, id) = (s.store.clone(), s.config.lease_ms, runner.id);
    let cancel = blocking(move || store.heartbeat(job, id, &lease, lease_ms)).await?;
    Ok(protocol::HeartbeatReply { cancel })
}

/// Lines from a runner as they are stored: whatever a runner sends, a stored line holds no
/// control character a terminal would obey (see [`engine::mask::neutralise`]).
fn stored_lines(lines: Vec<protocol::LogLine>) -> Vec<(i64, String)> {
    lines
        .into_iter()
        .map(|l| {
            let text = match engine::mask::neutralise(&l.text) {
                std::borrow::Cow::Borrowed(_) => l.text,
                std::borrow::Cow::Owned(clean) => clean,
            };
            (l.seq, text)
        })
        .collect()
}

/// `POST /api/v1/runner/jobs/{job}/logs`.
pub(crate) async fn logs(
    RunnerAuth(runner): RunnerAuth,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
    Json(batch): Json<protocol::LogBatch>,
) -> Result<Response, ApiError> {
    let lease = lease_of(&headers)?;
    logs_for(&s, &runner, job, lease, batch.lines).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Stores a batch of `job`'s lines from `runner`, which holds it (the route's and the
/// in-process runner's).
pub(crate) async fn logs_for(
    s: &AppState,
    runner: &store::Runner,
    job: store::JobId,
    lease: String,
    lines: Vec<protocol::LogLine>,
) -> Result<(), ApiError> {
    let (store, id) = (s.store.clone(), runner.id);
    let lines = stored_lines(lines);
    let (held, lines) = blocking(move || -> Result<_, ApiError> {
        let held = store.append_job_logs(job, id, &lease, &lines)?;
        Ok((held, lines))
    })
    .await?;
    let (run, name) = (held.run_id, held.name);
    for (seq, text) in lines {
        let _ = s.live.send(Live::Line {
            run,
            job,
            job_name: name.clone(),
            seq,
            text,
        });
    }
    Ok(())
}

/// `POST /api/v1/runner/jobs/{job}/finish`: the report and the last lines in one
/// transaction; then, if asked, the runner's next job.
pub(crate) async fn finish(
    RunnerAuth(runner): RunnerAuth,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
    Json(body): Json<protocol::Finish>,
) -> Result<Response, ApiError> {
    let lease = lease_of(&headers)?;
    let answer = finish_for(&s, &runner, job, lease, &body.report, body.lines, body.next).await?;
    Ok(Json(answer).into_response())
}

/// `runner`'s report of `job` and its last lines, in one transaction; then, if `next`, the
/// runner's next job (the route's and the in-process runner's).
pub(crate) async fn finish_for(
    s: &AppState,
    runner: &store::Runner,
    job: store::JobId,
    lease: String,
    report: &engine::JobReport,
    lines: Vec<protocol::LogLine>,
    next: bool,
) -> Result<protocol::Finished, ApiError> {
    let store = s.store.clone();
    let conclusion = crate::conclusion::to_store(report.conclusion);
    let report = serde_json::to_string(report).map_err(ApiError::internal)?;
    let lines = stored_lines(lines);
    let sent = lines.clone();
    let id = runner.id;
    let me = s.me.clone();
    let want_next = next && !s.stopping.is_cancelled();
    let (labels, next_lease, lease_ms) = (
        runner.labels.clone(),
        crate::random_token()?,
        s.config.lease_ms,
    );
    let (done, next) = store_now(&s.store, move || -> Result<_, ApiError> {
        let want = store::Want {
            labels: &labels,
            lease: &next_lease,
            lease_ms,
        };
        let (done, next) = store.complete_job(
            job,
            id,
            &lease,
            &store::Outcome {
                conclusion,
                report: &report,
                lines: &lines,
                server: &me,
            },
            want_next.then_some(&want),
        )?;
        // The report is in: failing to lease the next job only sends the runner to poll.
        let next = next.unwrap_or_else(|e| {
            tracing::warn!(runner = id.get(), "leasing a job with a report: {e}");
            None
        });
        Ok((done, next))
    })
    .await?;
    for (seq, text) in sent {
        let _ = s.live.send(Live::Line {
            run: done.run_id,
            job,
            job_name: done.name.clone(),
            seq,
            text,
        });
    }
    tracing::debug!(job = job.get(), run = done.run_id.get(), "job's end stored");
    s.done.wake(job, Some(done));
    let mut answer = protocol::Finished::default();
    if let Some(leased) = next {
        tracing::info!(
            job = leased.job.id.get(),
            run = leased.job.run_id.get(),
            runner = %runner.name,
            "job leased"
        );
        answer.next = Some(lease_from(s, leased)?);
    }
    Ok(answer)
}

/// Who calls one of a job's routes: the runner holding it (its credential, the lease in a
/// header) or the job's own process (the job's token, good for its artifacts, blobs and
/// caches only, while the job runs).
pub(crate) enum JobCaller {
    Runner(Arc<store::Runner>),
    Job(String),
}

impl FromRequestParts<AppStateRef> for JobCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(t) if t.starts_with(crate::secrets::JOB_TOKEN_PREFIX) => {
                Ok(JobCaller::Job(t.to_owned()))
            }
            _ => Ok(JobCaller::Runner(
                RunnerAuth::from_request_parts(parts, state).await?.0,
            )),
        }
    }
}

/// The job `job`, checked to be held by its caller: the runner with the lease, or the
/// job's process with a token made from that lease (so it ends with the lease).
pub(crate) async fn held_by(
    s: &AppStateRef,
    caller: &JobCaller,
    job: store::JobId,
    headers: &HeaderMap,
) -> Result<store::Job, ApiError> {
    let token = match caller {
        JobCaller::Runner(runner) => return held(s, runner, job, headers).await,
        JobCaller::Job(token) => token.clone(),
    };
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this job token is not valid for this job, or the job has ended",
        )
    };
    if crate::secrets::Sealer::job_of_token(&token) != Some(job.get()) {
        return Err(refused());
    }
    let store = s.store.clone();
    let Some((j, lease)) = blocking(move || store.running_job(job)).await? else {
        return Err(refused());
    };
    let expected = s.sealer.job_token(job.get(), &lease)?;
    if !constant_time_eq(expected.as_bytes(), token.as_bytes()) {
        return Err(refused());
    }
    Ok(j)
}

/// The job a runner holds, checked.
pub(crate) async fn held(
    s: &AppStateRef,
    runner: &store::Runner,
    job: store::JobId,
    headers: &HeaderMap,
) -> Result<store::Job, ApiError> {
    let lease = lease_of(headers)?;
    let (store, id) = (s.store.clone(), runner.id);
    Ok(blocking(move || store.held_job(job, id, &lease)).await?)
}

/// `GET /api/v1/runner/jobs/{job}/source`: the run's commit as a tar archive.
pub(crate) async fn source(
    RunnerAuth(runner): RunnerAuth,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let j = held(&s, &runner, job, &headers).await?;
    let store = s.store.clone();
    let run = blocking(move || store.run(j.run_id)).await?;
    let repo = s.config.repo(&run.repo).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository `{}` is not configured", run.repo),
        )
    })?;
    let path = repo.path.clone();
    let sha = run.sha.clone();
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(&path)
        .args(["archive", "--format=tar", "--end-of-options", &sha])
        .output()
        .await
        .map_err(ApiError::internal)?;
    if !out.status.success() {
        return Err(ApiError::internal(format!(
            "git archive {sha}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(([("content-type", "application/x-tar")], out.stdout).into_response())
}

/// (job, run) pairs as bare numbers, as the log has always shown them.
fn bare(jobs: &[(store::JobId, store::RunId)]) -> Vec<(i64, i64)> {
    jobs.iter().map(|(j, r)| (j.get(), r.get())).collect()
}

/// Declares runners lost when their jobs' leases run out: each job is queued again for
/// another attempt or failed with "runner lost". Runs until `stop`.
///
/// The first look comes one lease after the start: a server that was down longer than a
/// lease gives its runners that long to reach it again before calling them lost.
pub(crate) async fn reaper(
    store: Arc<store::Store>,
    max_attempts: i64,
    lease: Duration,
    queued: Arc<Notify>,
    done: Arc<crate::dispatch::Waiters>,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = (lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    tokio::select! {
        () = tokio::time::sleep(lease) => {}
        () = stop.cancelled() => return,
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let s = store.clone();
        match blocking(move || s.expire_leases(max_attempts)).await {
            Ok(released) => {
                if !released.requeued.is_empty() {
                    tracing::warn!(jobs = ?bare(&released.requeued), "runner lost: jobs queued again");
                    queued.notify_waiters();
                }
                if !released.failed.is_empty() {
                    tracing::warn!(jobs = ?bare(&released.failed), "runner lost: jobs failed");
                    for (job, _) in &released.failed {
                        done.wake(*job, None);
                    }
                }
            }
            Err(Blocked::Call(e)) => tracing::error!("expiring leases: {e}"),
            Err(Blocked::Task(_)) => {}
        }
    }
}
