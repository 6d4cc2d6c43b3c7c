//! Recording a deploy on a pipewright server as it starts and as it ends: from a server's
//! job with the job's own token (`POST /api/v1/job/deployments`, for the job's own
//! environment), or from `pipewright deploy --server` with an API token
//! (`POST /api/v1/deployments`). A server that cannot record it never stops the deploy; the
//! caller says so and deploys anyway.

use serde_json::{Value, json};

/// Why the server did not record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("the server answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// A server to record deploys on.
pub struct Recorder {
    http: reqwest::Client,
    /// The API's base (`https://ci.example.com/api/v1`) and the route's prefix under it.
    api: String,
    prefix: &'static str,
    token: String,
}

/// What a deploy is, as it starts.
pub struct Start<'a> {
    /// The repository; a job's record takes its own run's.
    pub repo: Option<&'a str>,
    pub environment: &'a str,
    pub version: &'a str,
    pub hosts: &'a [String],
    /// The commit and who deploys; a job's record takes its own run's.
    pub sha: Option<&'a str>,
    pub who: Option<&'a str>,
    /// What the server watches once the deploy has deployed ([`watched`]).
    pub monitors: &'a [Watched],
}

/// A URL the server requests to watch an environment once it has deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// The host it watches (empty: the whole environment).
    pub host: String,
    pub url: String,
    pub expect_status: u16,
    pub interval_seconds: u64,
}

/// What a server watches after a deploy to `env` of the repository at `root` (see
/// `Environment::monitor_urls`; host names as ssh resolves them with the environment's ssh
/// configuration).
pub fn watched(
    root: &std::path::Path,
    env: &deploy::config::Environment,
    settings: &deploy::config::Settings,
) -> Vec<Watched> {
    let Some(health) = &settings.health else {
        return Vec::new();
    };
    let config = env.ssh_config.as_ref().map(|c| root.join(c));
    let hostname = |h: &str| deploy::ssh::hostname(h, config.as_deref());
    env.monitor_urls(&settings.env, &hostname)
        .into_iter()
        .map(|(host, url)| Watched {
            host,
            url,
            expect_status: health.expect_status,
            interval_seconds: health.monitor.interval_ms.div_ceil(1000),
        })
        .collect()
}

impl Recorder {
    /// For a job of a server: its own token (`pwj_…`) and the API it runs against.
    pub fn for_job(api: &str, token: &str) -> Option<Recorder> {
        (token.starts_with("pwj_") && !api.is_empty())
            .then(|| Recorder::new(api, "/job/deployments", token))
            .flatten()
    }

    /// For `pipewright deploy --server URL` with an API token.
    pub fn for_cli(server: &str, token: &str) -> Option<Recorder> {
        Recorder::new(
            &format!("{}/api/v1", server.trim_end_matches('/')),
            "/deployments",
            token,
        )
    }

    fn new(api: &str, prefix: &'static str, token: &str) -> Option<Recorder> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            // A new connection per request: a deploy's start and end may be minutes apart,
            // and the command line's runtime does not run between them, so a pooled
            // connection the server closed meanwhile would only fail when reused.
            .pool_max_idle_per_host(0)
            .build()
            .ok()?;
        Some(Recorder {
            http,
            api: api.trim_end_matches('/').to_owned(),
            prefix,
            token: token.to_owned(),
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, RecordError> {
        let r = self
            .http
            .post(format!("{}{}{path}", self.api, self.prefix))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| RecordError::Unreachable(e.without_url().to_string()))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(v)
        } else {
            Err(RecordError::Refused {
                status: status.as_u16(),
                message: v["error"].as_str().unwrap_or("no details").to_owned(),
            })
        }
    }

    /// Records the deploy's start: its id on the server.
    pub async fn start(&self, s: &Start<'_>) -> Result<i64, RecordError> {
        let mut body = json!({
            "environment": s.environment,
            "version": s.version,
            "hosts": s.hosts,
            "monitors": s.monitors.iter().map(|w| json!({
                "host": w.host,
                "url": w.url,
                "expect_status": w.expect_status,
                "interval_seconds": w.interval_seconds,
            })).collect::<Vec<_>>(),
        });
        for (k, v) in [("repo", s.repo), ("sha", s.sha), ("who", s.who)] {
            if let Some(v) = v {
                body[k] = Value::from(v);
            }
        }
        let v = self.post("", body).await?;
        v["id"].as_i64().ok_or_else(|| RecordError::Refused {
            status: 200,
            message: "the answer has no id".into(),
        })
    }

    /// Records how deploy `id` ended.
    pub async fn finish(
        &self,
        id: i64,
        status: &str,
        message: &str,
        seen: deploy::record::Seen,
    ) -> Result<(), RecordError> {
        let body = json!({
            "status": status,
            "release": seen.release,
            "message": message,
            "phases": seen.phases,
        });
        self.post(&format!("/{id}"), body).await.map(|_| ())
    }
}
