//! The runner protocol's HTTP client: speaking as the runner or as a job's process,
//! registering, long-polling for a job, and retrying through a server's restart.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::RunnerError;
use crate::protocol::{self, Lease};

/// The HTTP client: an idle connection is given up before the server's idle timeout (30 s
/// by default) would close it under a request.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

/// What the server answers one of [`InPlace`]'s calls with.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, Refused>> + Send + 'a>>;

/// A call of the runner protocol the server refused: the status and message its HTTP
/// route would have answered with.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

/// The runner's own calls of the protocol (the next job, a lease's heartbeat, a job's
/// lines, its report), answered in place by the server the runner runs in: its
/// in-process runner. The same calls as the HTTP routes, made by the same code on the
/// server's side, without a loopback connection and the JSON each way between them. The
/// runner is the one whose credential the server was given with it; a job's own process
/// still speaks HTTP, with the job's token.
pub trait InPlace: Send + Sync {
    /// `POST /api/v1/runner/jobs/next`.
    fn next(&self, wait_ms: u64) -> Answer<'_, Option<Lease>>;
    /// `POST /api/v1/runner/jobs/{job}/heartbeat`.
    fn heartbeat<'a>(&'a self, job: i64, lease: &'a str) -> Answer<'a, protocol::HeartbeatReply>;
    /// `POST /api/v1/runner/jobs/{job}/logs`.
    fn logs<'a>(
        &'a self,
        job: i64,
        lease: &'a str,
        batch: &'a protocol::LogBatch,
    ) -> Answer<'a, ()>;
    /// `POST /api/v1/runner/jobs/{job}/finish`.
    fn finish<'a>(
        &'a self,
        job: i64,
        lease: &'a str,
        finish: &'a protocol::Finish,
    ) -> Answer<'a, protocol::Finished>;
}

/// A client of the runner protocol: over HTTP, or in place for the runner's own calls
/// when it runs in the server's process.
#[derive(Clone)]
pub(crate) struct Client {
    /// Made at its first use: a job's process that needs no request (no artifact, no
    /// cache) makes none (building one costs a short job a good part of its time).
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    pub(crate) base: String,
    auth: Auth,
    in_place: Option<Arc<dyn InPlace>>,
}

/// Who a [`Client`] speaks as.
#[derive(Clone)]
enum Auth {
    /// The runner: its credential, and each job's lease.
    Runner(String),
    /// A job's own process: the job's token, good for its artifacts, blobs and caches only.
    Job(String),
}

impl Refused {
    /// The runner's error for this refusal of a call about `job`: as [`check`] makes of
    /// the same answer over HTTP.
    fn into_error(self, job: Option<i64>) -> RunnerError {
        match job {
            Some(job) if self.status == StatusCode::CONFLICT => RunnerError::NotHeld(job),
            _ => RunnerError::Status {
                status: self.status,
                message: self.message,
            },
        }
    }
}

pub(crate) async fn check(
    resp: reqwest::Response,
    job: Option<i64>,
) -> Result<reqwest::Response, RunnerError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == StatusCode::CONFLICT
        && let Some(job) = job
    {
        return Err(RunnerError::NotHeld(job));
    }
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<protocol::ErrorBody>(&text)
        .map(|e| e.error)
        .unwrap_or(text);
    Err(RunnerError::Status { status, message })
}

impl Client {
    pub(crate) fn new(base: &str, credential: &str, in_place: Option<Arc<dyn InPlace>>) -> Client {
        Client {
            http: Arc::default(),
            base: base.trim_end_matches('/').to_owned(),
            auth: Auth::Runner(credential.to_owned()),
            in_place,
        }
    }

    /// A client for a job's own process, speaking with the job's token.
    pub(crate) fn for_job(base: &str, token: &str) -> Client {
        Client {
            http: Arc::default(),
            base: base.trim_end_matches('/').to_owned(),
            auth: Auth::Job(token.to_owned()),
            in_place: None,
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(http_client)
    }

    /// The runner's credential (a job's client has none).
    fn credential(&self) -> &str {
        match &self.auth {
            Auth::Runner(c) => c,
            Auth::Job(_) => "",
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn job_request(
        &self,
        method: reqwest::Method,
        lease: &Lease,
        what: &str,
    ) -> reqwest::RequestBuilder {
        let request = self.http().request(
            method,
            self.url(&format!("/api/v1/runner/jobs/{}{what}", lease.job)),
        );
        match &self.auth {
            Auth::Runner(credential) => request
                .bearer_auth(credential)
                .header(protocol::LEASE_HEADER, &lease.lease),
            Auth::Job(token) => request.bearer_auth(token),
        }
        .timeout(Duration::from_secs(300))
    }

    pub(crate) async fn next(&self, wait_ms: u64) -> Result<Option<Lease>, RunnerError> {
        if let Some(server) = &self.in_place {
            return server.next(wait_ms).await.map_err(|r| r.into_error(None));
        }
        let resp = self
            .http()
            .post(self.url("/api/v1/runner/jobs/next"))
            .bearer_auth(self.credential())
            .timeout(Duration::from_millis(wait_ms + 10_000))
            .json(&protocol::Next {
                version: protocol::VERSION,
                wait_ms,
            })
            .send()
            .await?;
        let resp = check(resp, None).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(resp.json().await?))
    }
}

impl Client {
    /// Keeps `lease` alive; whether the server asks for the job to be cancelled.
    pub(crate) async fn heartbeat(
        &self,
        lease: &Lease,
        timeout: Duration,
    ) -> Result<protocol::HeartbeatReply, RunnerError> {
        if let Some(server) = &self.in_place {
            return server
                .heartbeat(lease.job, &lease.lease)
                .await
                .map_err(|r| r.into_error(Some(lease.job)));
        }
        let resp = self
            .job_request(reqwest::Method::POST, lease, "/heartbeat")
            .timeout(timeout)
            .send()
            .await?;
        Ok(check(resp, Some(lease.job)).await?.json().await?)
    }

    /// Sends a batch of `lease`'s job's lines.
    pub(crate) async fn logs(
        &self,
        lease: &Lease,
        batch: &protocol::LogBatch,
    ) -> Result<(), RunnerError> {
        if let Some(server) = &self.in_place {
            return server
                .logs(lease.job, &lease.lease, batch)
                .await
                .map_err(|r| r.into_error(Some(lease.job)));
        }
        let resp = self
            .job_request(reqwest::Method::POST, lease, "/logs")
            .json(batch)
            .send()
            .await?;
        check(resp, Some(lease.job)).await.map(drop)
    }

    /// Sends `lease`'s job's report (and its last lines); the next job, if asked for and
    /// the server had one.
    pub(crate) async fn finish(
        &self,
        lease: &Lease,
        finish: &protocol::Finish,
    ) -> Result<protocol::Finished, RunnerError> {
        if let Some(server) = &self.in_place {
            return server
                .finish(lease.job, &lease.lease, finish)
                .await
                .map_err(|r| r.into_error(Some(lease.job)));
        }
        let resp = self
            .job_request(reqwest::Method::POST, lease, "/finish")
            .json(finish)
            .send()
            .await?;
        Ok(check(resp, Some(lease.job)).await?.json().await?)
    }
}

/// Registers a runner with a one-time token; the credential is in the answer.
pub async fn register(
    server: &str,
    token: &str,
    name: &str,
    labels: &[String],
    capacity: usize,
) -> Result<protocol::Registered, RunnerError> {
    let client = Client::new(server, token, None);
    let resp = client
        .http()
        .post(client.url("/api/v1/runners/register"))
        .bearer_auth(token)
        .json(&protocol::Register {
            version: protocol::VERSION,
            name: name.to_owned(),
            labels: labels.to_vec(),
            capacity,
        })
        .send()
        .await?;
    Ok(check(resp, None).await?.json().await?)
}

/// Retries `f` on network errors (the server restarting) until it answers, the lease is
/// lost, or `give_up` is cancelled.
pub(crate) async fn retry<T, F, Fut>(
    give_up: &CancellationToken,
    mut f: F,
) -> Result<T, RunnerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RunnerError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Err(RunnerError::Http(e)) if !give_up.is_cancelled() => {
                tracing::debug!("server unreachable, again in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(RunnerError::Status { status, .. })
                if status.is_server_error() && !give_up.is_cancelled() =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal answered in place is the error the same answer over HTTP gives: a job's
    /// lease held by no one else is lost on 409, a server error is retried, and the rest
    /// end the call with the server's message.
    #[tokio::test]
    async fn a_refusal_in_place_is_the_error_its_route_would_give() {
        let refused = |status, message: &str| Refused {
            status,
            message: message.to_owned(),
        };
        assert!(matches!(
            refused(StatusCode::CONFLICT, "not held").into_error(Some(7)),
            RunnerError::NotHeld(7)
        ));
        match refused(StatusCode::CONFLICT, "taken").into_error(None) {
            RunnerError::Status { status, message } => {
                assert_eq!((status, message.as_str()), (StatusCode::CONFLICT, "taken"));
            }
            other => panic!("{other}"),
        }
        match refused(StatusCode::UNAUTHORIZED, "unknown runner credential").into_error(Some(7)) {
            RunnerError::Status { status, message } => {
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                assert_eq!(message, "unknown runner credential");
            }
            other => panic!("{other}"),
        }
        // A server error in place is retried as over HTTP, until the server answers.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let answer = retry(&CancellationToken::new(), || async {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Err(refused(StatusCode::SERVICE_UNAVAILABLE, "busy").into_error(Some(7)))
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 42);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
