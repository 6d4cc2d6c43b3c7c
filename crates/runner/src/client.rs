//! The runner protocol's HTTP client: speaking as the runner or as a job's process,
//! registering, long-polling for a job, and retrying through a server's restart.

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

/// An HTTP client of the runner protocol.
#[derive(Clone)]
pub(crate) struct Client {
    /// Made at its first use: a job's process that needs no request (no artifact, no
    /// cache) makes none (building one costs a short job a good part of its time).
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    pub(crate) base: String,
    auth: Auth,
}

/// Who a [`Client`] speaks as.
#[derive(Clone)]
enum Auth {
    /// The runner: its credential, and each job's lease.
    Runner(String),
    /// A job's own process: the job's token, good for its artifacts, blobs and caches only.
    Job(String),
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
    pub(crate) fn new(base: &str, credential: &str) -> Client {
        Client {
            http: Arc::default(),
            base: base.trim_end_matches('/').to_owned(),
            auth: Auth::Runner(credential.to_owned()),
        }
    }

    /// A client for a job's own process, speaking with the job's token.
    pub(crate) fn for_job(base: &str, token: &str) -> Client {
        Client {
            http: Arc::default(),
            base: base.trim_end_matches('/').to_owned(),
            auth: Auth::Job(token.to_owned()),
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

/// Registers a runner with a one-time token; the credential is in the answer.
pub async fn register(
    server: &str,
    token: &str,
    name: &str,
    labels: &[String],
    capacity: usize,
) -> Result<protocol::Registered, RunnerError> {
    let client = Client::new(server, token);
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
