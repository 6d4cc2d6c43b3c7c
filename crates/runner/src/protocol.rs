//! The runner protocol, version 5: HTTP + JSON between a server and its runners. Described
//! for people in `docs/runner-protocol.md`; these types are the contract.
//!
//! A runner registers once with a one-time token and keeps the credential it gets. It then
//! long-polls `POST /api/v1/runner/jobs/next` for a job; the job comes with a lease that the
//! runner keeps alive with heartbeats and presents (header [`LEASE_HEADER`]) with every
//! report for the job. A report for a job the runner does not hold gets `409 Conflict`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks; sent at registration and with every poll.
pub const VERSION: u32 = 5;

/// The header carrying a job's lease token.
pub const LEASE_HEADER: &str = "pipewright-lease";

/// `POST /api/v1/runners/register` (bearer: a one-time registration token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register {
    pub version: u32,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: usize,
}

/// The answer to [`Register`]: the runner's id and its credential, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub runner_id: i64,
    pub credential: String,
}

/// `POST /api/v1/runner/jobs/next` (bearer: the runner's credential): waits up to `wait_ms`
/// for a job. `200` with a [`Lease`], or `204` when none came.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Next {
    pub version: u32,
    pub wait_ms: u64,
}

/// A job handed to a runner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub job: i64,
    pub lease: String,
    /// The lease lasts this long after each heartbeat.
    pub lease_ms: u64,
    pub attempt: i64,
    /// Log lines of this job are numbered after this (earlier attempts' lines).
    pub log_seq: i64,
    pub spec: JobPayload,
    pub secrets: Secrets,
    /// The names of the run's artifacts when the job was leased (what its
    /// `download-artifact` steps may fetch): `GET .../artifacts/{name}` gives each one's files.
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// The job's own token (`secrets.GITHUB_TOKEN`): a bearer token for this job's
    /// artifacts, blobs and caches (and nothing else), valid while the lease is held. The
    /// process running the job's code has this, never the runner's credential or the lease.
    pub token: String,
}

/// What to run: one job instance, with everything the server decided (matrix values, the
/// needs' outputs, the contexts). The job's steps come from `file` in the run's source,
/// fetched from `GET /api/v1/runner/jobs/{job}/source`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobPayload {
    pub run_id: i64,
    pub repo: String,
    pub sha: String,
    /// The workflow file in the source (`.github/workflows/ci.yml`).
    pub file: String,
    pub workflow_name: String,
    /// The job's id in that file.
    pub job_id: String,
    /// Unique among the run's job instances.
    pub key: String,
    /// The display name (`test (3.11)`).
    pub display: String,
    pub matrix: Option<serde_json::Value>,
    pub strategy: serde_json::Value,
    pub needs: serde_json::Value,
    pub github: serde_json::Value,
    pub vars: serde_json::Value,
    pub inputs: serde_json::Value,
    /// The `runs-on` labels the job asked for.
    pub labels: Vec<String>,
    /// The workflow's text when `file` is not in the source: a reusable workflow of another
    /// repository, fetched by the server (`owner/repo/.github/workflows/x.yml@ref`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_text: Option<String>,
    /// Whether the run's code is trusted with the repository's secrets (`false`: a pull
    /// request from a fork, or anything not proven to come from the repository itself). A
    /// runner that cannot confine a job refuses an untrusted one.
    pub trusted: bool,
    /// The job's `environment:` name, evaluated (the one whose secrets it gets, and the one
    /// its deployments may be recorded for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// The secrets a job may read: stored sealed on the server, given to the runner in the
/// lease only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Secrets {
    pub secrets: serde_json::Map<String, serde_json::Value>,
    pub environment_secrets: HashMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// `POST /api/v1/runner/jobs/{job}/heartbeat`: extends the lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The job (or its run) was cancelled: stop it and report.
    pub cancel: bool,
}

/// `POST /api/v1/runner/jobs/{job}/logs`: lines numbered by the runner, consecutive from
/// the lease's `log_seq + 1`. A batch sent again (after a network error) is stored once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogBatch {
    pub lines: Vec<LogLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: i64,
    pub text: String,
}

/// `POST /api/v1/runner/jobs/{job}/finish`: the job's report, with the log lines not sent
/// yet (numbered as in a [`LogBatch`], stored once however often the report is sent); the
/// lease ends. With `next`, the answer may carry the runner's next job, so that a runner
/// going from job to job needs one request between them, not two.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    pub report: engine::JobReport,
    #[serde(default)]
    pub lines: Vec<LogLine>,
    /// Lease another job at once if one is queued for this runner (no waiting).
    #[serde(default)]
    pub next: bool,
}

/// The answer to [`Finish`]: the next job, when one was asked for and was queued.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Finished {
    pub next: Option<Lease>,
}

/// `GET /api/v1/runner/jobs/{job}/artifacts`: the run's artifacts so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Artifacts {
    pub names: Vec<String>,
}

/// One file of an artifact or a cache entry; its content is the blob named `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the artifact's (or cache path's) root, `/`-separated, no `..`.
    pub path: String,
    /// Unix permission bits (`0o755`).
    pub mode: u32,
    pub size: u64,
    /// BLAKE3 of the content, 64 lowercase hex digits.
    pub hash: String,
}

/// An artifact's files: `GET` and `PUT /api/v1/runner/jobs/{job}/artifacts/{name}`. Every
/// blob it names must be on the server before it is put (`422` names one that is not).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<ManifestFile>,
}

/// `POST /api/v1/runner/jobs/{job}/blobs/missing`: which of these blobs the server lacks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlobQuery {
    pub hashes: Vec<String>,
}

/// The answer to [`BlobQuery`]: upload these (`PUT .../blobs/{hash}`), the rest are there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MissingBlobs {
    pub missing: Vec<String>,
}

/// `POST /api/v1/runner/jobs/{job}/caches/lookup`: `actions/cache` entries of the job's
/// repository. `200` with a [`CacheHit`], or `204` when nothing matched.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheLookup {
    pub key: String,
    pub restore_keys: Vec<String>,
}

/// The entry found: `key` itself (`exact`), else the newest entry whose key starts with the
/// first restore key that matches any.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheHit {
    pub key: String,
    pub exact: bool,
    pub files: Vec<ManifestFile>,
}

/// `PUT /api/v1/runner/jobs/{job}/caches`: a new entry; its blobs must be on the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheSave {
    pub key: String,
    pub files: Vec<ManifestFile>,
}

/// The answer to [`CacheSave`]: `created: false` when an entry had the key (entries are
/// never overwritten).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheSaved {
    pub created: bool,
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The labels every runner offers besides its own: GitHub's for a self-hosted Linux
/// machine, and the hosted images' names that workflows name in `runs-on`.
pub fn default_labels() -> Vec<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    [
        "self-hosted",
        "linux",
        arch,
        "ubuntu-latest",
        "ubuntu-24.04",
        "ubuntu-22.04",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}
