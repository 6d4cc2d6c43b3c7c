//! `pipewright runner`: takes jobs from a server and runs them with the engine.
//!
//! The runner registers once ([`register`]), then long-polls for jobs, so a job queued on the
//! server is picked up at once rather than after a poll interval. Each job comes with a lease
//! the runner keeps alive with heartbeats; its log lines go back in numbered batches (sent
//! again after a network error; the server keeps each line once), its artifacts are uploaded
//! (only the files the server lacks), `actions/cache` goes through the server's store,
//! and its report ends the lease. A cancelled job is stopped; a job whose lease was lost is
//! stopped without a report (the server has given it to another runner or failed it).
//!
//! The server's in-process runner is this same code, talking to its own server over loopback.

mod cgroup;
mod confined;
pub mod protocol;
mod transfer;

pub use confined::{Isolation, job_exec, reap_slots};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use engine::{Conclusion, JobLabel, JobReport, JobSpec, Line, RunEnv, Sink, Source};
use expr::{Map, Value};
use protocol::{Lease, LogLine};
use reqwest::StatusCode;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    /// The server says this runner does not hold the job (its lease was lost).
    #[error("the server gave job {0} to another runner or ended it (lease lost)")]
    NotHeld(i64),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Job(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunnerError + '_ {
    move |source| RunnerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a runner needs to know.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The server's base URL (`http://127.0.0.1:8080`).
    pub server: String,
    pub credential: String,
    pub labels: Vec<String>,
    pub capacity: usize,
    /// Jobs' workspaces, downloaded sources, caches.
    pub work_dir: PathBuf,
    /// The environment every step starts from.
    pub base_env: Vec<(String, String)>,
    /// How jobs are confined (`None`: they run in this process, as this user, and no job
    /// of untrusted origin is taken).
    pub isolation: Option<Isolation>,
    /// The actions the engine is given, for jobs run in this process.
    pub actions: engine::Actions,
}

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
struct Client {
    /// Made at its first use: a job's process that needs no request (no artifact, no
    /// cache) makes none (building one costs a short job a good part of its time).
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    base: String,
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

async fn check(
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
    fn new(base: &str, credential: &str) -> Client {
        Client {
            http: Arc::default(),
            base: base.trim_end_matches('/').to_owned(),
            auth: Auth::Runner(credential.to_owned()),
        }
    }

    /// A client for a job's own process, speaking with the job's token.
    fn for_job(base: &str, token: &str) -> Client {
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

    fn job_request(
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

    async fn next(&self, wait_ms: u64) -> Result<Option<Lease>, RunnerError> {
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

/// The environment jobs start from: this process's, without pipewright's own variables
/// (`PIPEWRIGHT_*` carry tokens, keys and database addresses).
pub fn job_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| !k.starts_with("PIPEWRIGHT_"))
        .collect()
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), RunnerError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Takes and runs jobs until `shutdown`: then takes no more and lets the running ones finish.
pub async fn run(config: RunnerConfig, shutdown: CancellationToken) -> Result<(), RunnerError> {
    let mut config = config;
    std::fs::create_dir_all(&config.work_dir).map_err(io(&config.work_dir))?;
    if let Some(iso) = &mut config.isolation {
        // The work directory holds the runner's credential, its sources and caches.
        iso.hidden.push(config.work_dir.clone());
        iso.cgroups = cgroup::Slots::detect(&config.work_dir);
        if iso.cgroups.is_none() {
            tracing::info!(
                "no cgroup for the slots (cgroup v2 and root are needed): a job's processes are ended by its own process"
            );
        }
        if iso.user.is_some() {
            // The job user passes through to its slot and caches, lists nothing.
            for dir in [
                config.work_dir.clone(),
                config.work_dir.join("slots"),
                config.work_dir.join("cache"),
            ] {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                set_mode(&dir, 0o711)?;
            }
        }
    }
    // A job process a crashed runner left behind ends before anything else (blocking: it
    // waits for such a process to go, up to 5 s).
    let dir = config.work_dir.clone();
    let _ = tokio::task::spawn_blocking(move || reap_slots(&dir)).await;
    let config = Arc::new(config);
    let client = Client::new(&config.server, &config.credential);
    let workflows = Arc::new(Workflows::default());
    // The free slots, by number: as many as jobs may run at once; a job holds one.
    let (free, mut slots) = mpsc::unbounded_channel();
    for n in 0..config.capacity.max(1) {
        let _ = free.send(n);
    }
    let root = config.work_dir.join("slots");
    let mut running = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        while running.try_join_next().is_some() {}
        let slot = tokio::select! {
            n = slots.recv() => match n {
                Some(n) => Slot { n, dir: root.join(n.to_string()), free: free.clone() },
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        let next = tokio::select! {
            n = client.next(25_000) => n,
            () = shutdown.cancelled() => break,
        };
        match next {
            Ok(Some(lease)) => {
                tracing::debug!(job = lease.job, "leased");
                backoff = Duration::from_millis(100);
                let (client, config, workflows, shutdown) = (
                    client.clone(),
                    config.clone(),
                    workflows.clone(),
                    shutdown.clone(),
                );
                running.spawn(async move {
                    // Job after job while the server has one ready when the last is reported.
                    let mut lease = Some(lease);
                    while let Some(l) = lease.take() {
                        let job = l.job;
                        let more = !shutdown.is_cancelled();
                        match execute(&client, &config, &workflows, &slot, l, more).await {
                            Ok(next) => lease = next,
                            Err(e) => tracing::warn!(job, "{e}"),
                        }
                    }
                    drop(slot);
                });
            }
            Ok(None) => backoff = Duration::from_millis(100),
            Err(RunnerError::Status { status, message })
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
            {
                return Err(RunnerError::Status { status, message });
            }
            Err(e) => {
                tracing::warn!("polling for jobs: {e}; again in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    while running.join_next().await.is_some() {}
    if let Some(cgroups) = config.isolation.as_ref().and_then(|i| i.cgroups.clone()) {
        let _ = tokio::task::spawn_blocking(move || cgroups.remove()).await;
    }
    Ok(())
}

/// A slot a job holds, and its directory (`work_dir/slots/N`), kept from job to job and
/// emptied between them: making and deleting a tree of directories and files for every job
/// costs more than the job itself when jobs are short (the file system's inode allocation).
/// Dropped, the slot is free again.
struct Slot {
    n: usize,
    dir: PathBuf,
    free: mpsc::UnboundedSender<usize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.free.send(self.n);
    }
}

/// Empties `dir` (keeping it), except the entries `keep` accepts; creates it if missing.
pub(crate) fn empty_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<(), RunnerError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::create_dir_all(dir).map_err(io(dir));
        }
        Err(e) => return Err(io(dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io(dir))?;
        if keep(&e.file_name().to_string_lossy()) {
            continue;
        }
        let path = e.path();
        let removed = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(io(&path))?;
    }
    Ok(())
}

/// Readies a slot's directory for a job: the workspace and the temp dir empty (the temp
/// dir keeps the engine's own files, which it truncates before each use), no artifacts.
///
/// A job may leave what cannot be deleted as it is: read-only directories (Go's module
/// cache makes them) are made writable and deleted; whatever still resists, the slot's
/// whole directory is set aside (`slots/.aside-*`, for the owner to look at) and the slot
/// starts anew. A slot never stays unusable.
fn ready_slot(dir: &Path) -> Result<(), RunnerError> {
    let Err(first) = empty_slot(dir) else {
        return Ok(());
    };
    make_writable(dir);
    if empty_slot(dir).is_ok() {
        return Ok(());
    }
    set_aside(dir, &first)?;
    empty_slot(dir)
}

/// Moves a slot's directory that cannot be emptied aside (`slots/.aside-*`, for the owner to
/// look at), saying why.
fn set_aside(dir: &Path, why: &RunnerError) -> Result<(), RunnerError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = dir
        .file_name()
        .map_or_else(|| "slot".to_owned(), |n| n.to_string_lossy().into_owned());
    let aside = dir.with_file_name(format!(".aside-{name}-{stamp}"));
    std::fs::rename(dir, &aside).map_err(io(dir))?;
    tracing::warn!(
        "{why}; the slot's directory was set aside as {}",
        aside.display()
    );
    Ok(())
}

/// Adds the owner's write and search permission to every directory under `dir` (deleting
/// an entry needs write permission on its directory).
pub(crate) fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

fn empty_slot(dir: &Path) -> Result<(), RunnerError> {
    let job = dir.join("job");
    empty_dir(&job.join("workspace"), |_| false)?;
    empty_dir(&job.join("temp"), engine::is_engine_temp_file)?;
    let artifacts = dir.join("artifacts");
    if artifacts.exists() {
        std::fs::remove_dir_all(&artifacts).map_err(io(&artifacts))?;
    }
    Ok(())
}


fn map_of(v: &serde_json::Value) -> Map {
    match Value::from_json(v.clone()) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Retries `f` on network errors (the server restarting) until it answers, the lease is
/// lost, or `give_up` is cancelled.
async fn retry<T, F, Fut>(give_up: &CancellationToken, mut f: F) -> Result<T, RunnerError>
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

/// The job's source: the commit as a tar, downloaded once per commit.
async fn source(
    client: &Client,
    config: &RunnerConfig,
    lease: &Lease,
) -> Result<PathBuf, RunnerError> {
    let dir = config.work_dir.join("sources");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // Every repository's source: the runner's alone (a job gets its own, linked into its
    // slot).
    set_mode(&dir, 0o700)?;
    let tar = dir.join(format!(
        "{}-{}.tar",
        engine::files::safe_name(&lease.spec.repo),
        engine::files::safe_name(&lease.spec.sha)
    ));
    if tar.exists() {
        return Ok(tar);
    }
    let never = CancellationToken::new();
    let bytes = retry(&never, || async {
        let resp = client
            .job_request(reqwest::Method::GET, lease, "/source")
            .send()
            .await?;
        Ok(check(resp, Some(lease.job)).await?.bytes().await?)
    })
    .await?;
    let tmp = dir.join(format!(".{}.{}", lease.job, std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &tar).map_err(io(&tar))?;
    Ok(tar)
}

/// Lines waiting to be sent may hold at most this many bytes: a step printing faster than
/// the server takes its lines waits (its pipe fills, it blocks), the runner's memory does not
/// grow.
const LOG_BUDGET: usize = 4 << 20;
/// A batch of lines holds at most this many bytes (and 2,000 lines).
const BATCH_BYTES: usize = 1 << 20;

/// A line waiting to be sent, holding its share of [`LOG_BUDGET`] until it is.
type Queued = (String, Option<tokio::sync::OwnedSemaphorePermit>);

/// A job's lines, formatted as the server stores them, to the log sender.
struct RemoteSink {
    tx: mpsc::UnboundedSender<Queued>,
    /// [`LOG_BUDGET`], in KiB.
    budget: Arc<Semaphore>,
}

impl RemoteSink {
    fn new(tx: mpsc::UnboundedSender<Queued>) -> Self {
        RemoteSink {
            tx,
            budget: Arc::new(Semaphore::new(LOG_BUDGET >> 10)),
        }
    }

    fn send(&self, text: String) {
        let kib = u32::try_from(text.len() >> 10)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let permit = match self.budget.clone().try_acquire_many_owned(kib) {
            Ok(p) => Some(p),
            // Over budget: wait for the sender, off the async workers (the engine calls sinks
            // from its tasks). A current-thread runtime cannot wait here: it goes unbounded.
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        let budget = self.budget.clone();
                        tokio::task::block_in_place(|| h.block_on(budget.acquire_many_owned(kib)))
                            .ok()
                    }
                    _ => None,
                }
            }
            Err(tokio::sync::TryAcquireError::Closed) => None,
        };
        let _ = self.tx.send((text, permit));
    }
}

/// The stored form of a line: output as is, markers for groups, steps and annotations.
pub fn format_line(line: Line) -> String {
    match line {
        Line::Output(t) => t,
        Line::GroupStart(t) => format!("##[group]{t}"),
        Line::GroupEnd => "##[endgroup]".to_owned(),
        Line::Annotation {
            level,
            message,
            file,
            line,
        } => {
            let place = match (file, line) {
                (Some(f), Some(l)) => format!(" {f}:{l}:"),
                (Some(f), None) => format!(" {f}:"),
                _ => String::new(),
            };
            format!("##[{}]{place} {message}", level.as_str())
        }
    }
}

impl Sink for RemoteSink {
    fn job_started(&self, _job: &JobLabel) {}

    fn step_started(&self, _job: &JobLabel, step: &str) {
        self.send(format!("##[step] {step}"));
    }

    fn line(&self, _job: &JobLabel, line: Line) {
        self.send(format_line(line));
    }

    fn step_finished(
        &self,
        _job: &JobLabel,
        step: &str,
        conclusion: Conclusion,
        duration: Duration,
    ) {
        self.send(format!(
            "##[step-end] {step}: {} ({:.2}s)",
            conclusion.as_str(),
            duration.as_secs_f64()
        ));
    }

    fn job_finished(&self, _job: &JobLabel, _conclusion: Conclusion, _duration: Duration) {}
}

/// Sends the job's lines in numbered batches until the sink is dropped; stops (and marks
/// the lease lost) if the server says the job is no longer this runner's. The lines still
/// being gathered when the sink is dropped are returned, not sent: they go with the report.
async fn send_logs(
    client: Client,
    lease: Arc<Lease>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    lost: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> Vec<LogLine> {
    let mut seq = lease.log_seq;
    let never = CancellationToken::new();
    // The first batch waits longest: a short job's lines then all go with its report.
    let mut window = Duration::from_millis(50);
    while let Some((first, permit)) = rx.recv().await {
        let mut bytes = first.len();
        let mut lines = vec![first];
        // Their budget is given back once the batch is sent.
        let mut permits = vec![permit];
        let mut ended = false;
        // Gather what else is there, a few milliseconds' worth, up to a batch.
        let deadline = tokio::time::Instant::now() + window;
        window = Duration::from_millis(10);
        while lines.len() < 2000 && bytes < BATCH_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((l, p))) => {
                    bytes += l.len();
                    lines.push(l);
                    permits.push(p);
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if lost.load(Ordering::Relaxed) {
            continue;
        }
        let lines: Vec<LogLine> = lines
            .into_iter()
            .map(|text| {
                seq += 1;
                LogLine { seq, text }
            })
            .collect();
        if ended {
            return lines;
        }
        let batch = protocol::LogBatch { lines };
        let sent = retry(&never, || async {
            let resp = client
                .job_request(reqwest::Method::POST, &lease, "/logs")
                .json(&batch)
                .send()
                .await?;
            check(resp, Some(lease.job)).await.map(drop)
        })
        .await;
        drop(permits);
        if let Err(RunnerError::NotHeld(_)) = sent {
            lost.store(true, Ordering::Relaxed);
            cancel.cancel();
        } else if let Err(e) = sent {
            tracing::warn!(job = lease.job, "sending log lines: {e}");
        }
    }
    Vec::new()
}

/// Keeps the lease alive; cancels the job when the server asks, or when the lease is lost.
async fn heartbeats(
    client: Client,
    lease: Arc<Lease>,
    lost: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let every = Duration::from_millis((lease.lease_ms / 3).clamp(100, 1000));
    loop {
        tokio::time::sleep(every).await;
        let resp = client
            .job_request(reqwest::Method::POST, &lease, "/heartbeat")
            .timeout(Duration::from_millis(lease.lease_ms.max(1000)))
            .send()
            .await;
        let reply = match resp {
            Ok(r) => match check(r, Some(lease.job)).await {
                Ok(r) => r.json::<protocol::HeartbeatReply>().await.ok(),
                Err(RunnerError::NotHeld(_)) => {
                    lost.store(true, Ordering::Relaxed);
                    cancel.cancel();
                    return;
                }
                Err(_) => None,
            },
            // The server may be restarting: the lease outlives a short outage.
            Err(_) => None,
        };
        if reply.is_some_and(|r| r.cancel) {
            cancel.cancel();
        }
    }
}

/// Where a job runs on this machine and what it starts from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Site {
    /// The slot's directory: `job/` (workspace, temp, home, the event), `artifacts/`.
    pub slot: PathBuf,
    /// The environment every step starts from.
    pub base_env: Vec<(String, String)>,
    pub action_dirs: Vec<PathBuf>,
    /// Caches that outlive the job (`setup-python`'s pip cache, the tool cache).
    pub cache_dir: PathBuf,
    /// The actions the engine is given (not sent to a job's process: it has its own).
    #[serde(skip)]
    pub actions: engine::Actions,
}

/// Everything to run the job: its spec and run environment, from the lease and the source.
fn prepare(
    site: &Site,
    client: &Client,
    workflows: &Workflows,
    lease: &Arc<Lease>,
    tar: PathBuf,
) -> Result<(JobSpec, RunEnv), RunnerError> {
    let spec = &lease.spec;
    let wf = workflows.get(&tar, &spec.file)?;
    let masker = engine::Masker::new();
    let mut secrets = Map::new();
    for (k, v) in &lease.secrets.secrets {
        let v = Value::from_json(v.clone());
        masker.add(&v.to_expr_string());
        secrets.insert(k.clone(), v);
    }
    // The job's own token stands for `GITHUB_TOKEN` (a secret, masked as one).
    if !lease.token.is_empty() {
        masker.add(&lease.token);
        secrets.insert("GITHUB_TOKEN".into(), Value::from(lease.token.as_str()));
    }
    let mut environment_secrets = std::collections::HashMap::new();
    for (env, m) in &lease.secrets.environment_secrets {
        let mut out = Map::new();
        for (k, v) in m {
            let v = Value::from_json(v.clone());
            masker.add(&v.to_expr_string());
            out.insert(k.clone(), v);
        }
        environment_secrets.insert(env.clone(), out);
    }
    let mut github = map_of(&spec.github);
    if !lease.token.is_empty() {
        github.insert("token".into(), Value::from(lease.token.as_str()));
    }
    let job_dir = site.slot.join("job");
    let event_path = job_dir.join("event.json");
    let event = spec
        .github
        .get("event")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    std::fs::create_dir_all(&job_dir).map_err(io(&job_dir))?;
    engine::files::write_reusing(&event_path, &serde_json::to_vec(&event).unwrap_or_default())
        .map_err(io(&event_path))?;
    let env = RunEnv {
        github,
        secrets,
        environment_secrets,
        vars: map_of(&spec.vars),
        inputs: map_of(&spec.inputs),
        run_dir: site.slot.clone(),
        job_dir: Some(job_dir),
        source: Source::Archive(tar),
        masker,
        base_env: site.base_env.clone(),
        action_dirs: site.action_dirs.clone(),
        cache_dir: site.cache_dir.clone(),
        // `actions/cache` entries are the server's, shared by every runner.
        cache_store: Some(Arc::new(transfer::RemoteCache {
            client: client.clone(),
            lease: lease.clone(),
        })),
        event_path,
        actions: site.actions.clone(),
    };
    let job = JobSpec {
        workflow: wf,
        file: spec.file.clone(),
        workflow_name: spec.workflow_name.clone(),
        job_id: spec.job_id.clone(),
        key: spec.key.clone(),
        display: spec.display.clone(),
        matrix: spec.matrix.as_ref().map(map_of),
        strategy: map_of(&spec.strategy),
        needs: map_of(&spec.needs),
    };
    Ok((job, env))
}

/// Workflows read from sources, parsed, kept per (source, file): the jobs of one run (and
/// of every run of one commit) read and parse their workflow once per runner.
#[derive(Default)]
struct Workflows(std::sync::Mutex<std::collections::HashMap<(PathBuf, String), Known>>);

/// A workflow file as read from a source, and parsed.
#[derive(Clone)]
struct Known {
    text: Arc<str>,
    workflow: Arc<workflow::Workflow>,
}

impl Workflows {
    fn get(&self, tar: &Path, file: &str) -> Result<Arc<workflow::Workflow>, RunnerError> {
        Ok(self.known(tar, file, None)?.workflow)
    }

    /// The text of `file` in `tar` (read once per runner; a job's own process is given it).
    fn text(&self, tar: &Path, file: &str) -> Result<Arc<str>, RunnerError> {
        Ok(self.known(tar, file, None)?.text)
    }

    /// The workflow, parsed from `text` when given, else read from the source.
    fn known(&self, tar: &Path, file: &str, text: Option<&str>) -> Result<Known, RunnerError> {
        let key = (tar.to_owned(), file.to_owned());
        if let Some(w) = self.lock().get(&key) {
            return Ok(w.clone());
        }
        let text: Arc<str> = match text {
            Some(t) => t.into(),
            None => engine::read_source_file(&Source::Archive(tar.to_owned()), file)
                .map_err(|e| RunnerError::Job(format!("{file}: {e}")))?
                .into(),
        };
        // The server validated it when it queued the run.
        let parsed = workflow::parse_model(&text);
        if let Some(d) = parsed.diagnostics.iter().find(|d| d.is_error()) {
            return Err(RunnerError::Job(format!(
                "{file}:{}:{}: {}",
                d.span.start.line, d.span.start.col, d.message
            )));
        }
        let wf = Arc::new(
            parsed
                .workflow
                .ok_or_else(|| RunnerError::Job(format!("{file} is not a workflow")))?,
        );
        let known = Known { text, workflow: wf };
        let mut map = self.lock();
        // A bounded memory: sources come and go with commits.
        if map.len() >= 64 {
            map.clear();
        }
        map.insert(key, known.clone());
        Ok(known)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(PathBuf, String), Known>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs a job here, in this process: its artifacts downloaded, its steps run, its new
/// artifacts uploaded. The report, and whether the upload went well. (The job's own
/// process runs this too, confined: [`confined`].)
async fn run_here(
    client: &Client,
    workflows: &Workflows,
    site: &Site,
    lease: &Arc<Lease>,
    tar: PathBuf,
    sink: &dyn Sink,
    cancel: &CancellationToken,
) -> (JobReport, Result<(), RunnerError>) {
    let artifacts = site.slot.join("artifacts");
    let prepared = async {
        let had = transfer::download_artifacts(client, lease, &artifacts).await?;
        let (spec, env) = prepare(site, client, workflows, lease, tar)?;
        Ok::<_, RunnerError>((spec, env, had))
    }
    .await;
    let (report, had) = match prepared {
        Ok((spec, env, had)) => (engine::run_job(&spec, &env, sink, cancel).await, had),
        Err(e) => {
            sink.line(
                &label_of(lease),
                Line::Annotation {
                    level: engine::Level::Error,
                    message: format!("the runner could not start the job: {e}"),
                    file: None,
                    line: None,
                },
            );
            (failed_report(lease), Vec::new())
        }
    };
    let uploaded = transfer::upload_artifacts(client, lease, &artifacts, &had).await;
    (report, uploaded)
}

fn label_of(lease: &Lease) -> JobLabel {
    JobLabel {
        workflow: lease.spec.workflow_name.clone(),
        job_id: lease.spec.job_id.clone(),
        display: lease.spec.display.clone(),
    }
}

fn failed_report(lease: &Lease) -> JobReport {
    JobReport::without_steps(
        &lease.spec.job_id,
        &lease.spec.display,
        lease.spec.matrix.clone(),
        Conclusion::Failure,
    )
}

/// The variables of the runner's environment a job of untrusted origin starts with.
fn untrusted_may_see(name: &str) -> bool {
    matches!(
        name,
        "PATH"
            | "LANG"
            | "LANGUAGE"
            | "TZ"
            | "TERM"
            | "SHELL"
            | "http_proxy"
            | "https_proxy"
            | "no_proxy"
            | "HTTP_PROXY"
            | "HTTPS_PROXY"
            | "NO_PROXY"
    ) || name.starts_with("LC_")
}

/// Why a runner refuses a job of untrusted origin it cannot confine.
const UNTRUSTED_REFUSED: &str = "this job comes from a pull request of a fork (untrusted code), and this runner cannot confine it: untrusted jobs need a user of their own and Landlock (Linux 5.13 or later), and this runner has not both. Give the runner an unprivileged user for jobs (`job_user` in the `[runner]` section of the server's configuration, `--job-user` for `pipewright runner`), on a kernel with Landlock";

/// Runs one leased job to its report, in `slot`'s directory. With `more`, asks for the next
/// job with the report and returns it if the server had one.
async fn execute(
    client: &Client,
    config: &RunnerConfig,
    workflows: &Workflows,
    slot: &Slot,
    lease: Lease,
    more: bool,
) -> Result<Option<Lease>, RunnerError> {
    let lease = Arc::new(lease);
    let lost = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let hb = tokio::spawn(heartbeats(
        client.clone(),
        lease.clone(),
        lost.clone(),
        cancel.clone(),
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    let logs = tokio::spawn(send_logs(
        client.clone(),
        lease.clone(),
        rx,
        lost.clone(),
        cancel.clone(),
    ));
    let sink = RemoteSink::new(tx);
    let t0 = std::time::Instant::now();
    let (report, uploaded) =
        match run_in_slot(client, config, workflows, slot, &lease, &sink, &cancel).await {
            Ok(done) => done,
            Err(e) => {
                sink.line(
                    &label_of(&lease),
                    Line::Annotation {
                        level: engine::Level::Error,
                        message: format!("the runner could not start the job: {e}"),
                        file: None,
                        line: None,
                    },
                );
                (failed_report(&lease), Ok(()))
            }
        };
    tracing::debug!(job = lease.job, ms = t0.elapsed().as_millis(), "ran");
    drop(sink);
    let tail = logs.await.unwrap_or_default();
    hb.abort();
    tracing::debug!(job = lease.job, ms = t0.elapsed().as_millis(), "logs sent");
    if lost.load(Ordering::Relaxed) {
        return Err(RunnerError::NotHeld(lease.job));
    }
    let never = CancellationToken::new();
    // The next job only if this one's artifacts are in: a failed upload ends the chain.
    let finish = protocol::Finish {
        report,
        lines: tail,
        next: more && uploaded.is_ok(),
    };
    let done = retry(&never, || async {
        let resp = client
            .job_request(reqwest::Method::POST, &lease, "/finish")
            .json(&finish)
            .send()
            .await?;
        Ok(check(resp, Some(lease.job))
            .await?
            .json::<protocol::Finished>()
            .await?)
    })
    .await;
    tracing::debug!(job = lease.job, ms = t0.elapsed().as_millis(), "reported");
    uploaded?;
    Ok(done?.next)
}

/// Readies the slot and runs the job there: confined in a process of its own when the
/// runner confines jobs, else in this process.
async fn run_in_slot(
    client: &Client,
    config: &RunnerConfig,
    workflows: &Workflows,
    slot: &Slot,
    lease: &Arc<Lease>,
    sink: &RemoteSink,
    cancel: &CancellationToken,
) -> Result<(JobReport, Result<(), RunnerError>), RunnerError> {
    let trusted = lease.spec.trusted;
    let may_run = config
        .isolation
        .as_ref()
        .map_or(trusted, |i| trusted || i.takes_untrusted());
    if !may_run {
        sink.line(
            &label_of(lease),
            Line::Annotation {
                level: engine::Level::Error,
                message: UNTRUSTED_REFUSED.into(),
                file: None,
                line: None,
            },
        );
        return Ok((failed_report(lease), Ok(())));
    }
    let tar = source(client, config, lease).await?;
    let Some(isolation) = &config.isolation else {
        ready_slot(&slot.dir)?;
        let site = Site {
            slot: slot.dir.clone(),
            base_env: config.base_env.clone(),
            action_dirs: vec![config.work_dir.join("actions")],
            cache_dir: config
                .work_dir
                .join("cache")
                .join(engine::files::safe_name(&lease.spec.repo)),
            actions: config.actions.clone(),
        };
        return Ok(run_here(client, workflows, &site, lease, tar, sink, cancel).await);
    };
    let user = isolation.user.as_ref();
    confined::ready_slot(&slot.dir, user, isolation.cgroups.is_some())?;
    // The source, read-only, where the job may read it.
    let linked = slot.dir.join("source.tar");
    if std::fs::hard_link(&tar, &linked).is_err() {
        std::fs::copy(&tar, &linked).map_err(io(&linked))?;
    }
    let job_dir = slot.dir.join("job");
    // Caches that outlive the job are the repository's, for its trusted runs only: a
    // fork's job gets a cache of its own, gone with the job.
    let cache_dir = if trusted {
        let dir = config.work_dir.join("cache").join(format!(
            "{}.{}",
            engine::files::safe_name(&lease.spec.repo),
            user.map_or(0, |u| u.uid)
        ));
        confined::owned_dir(&dir, user)?;
        dir
    } else {
        let dir = job_dir.join("cache");
        confined::owned_dir(&dir, user)?;
        dir
    };
    // A trusted job starts from the runner's environment (what its admin set for jobs); a
    // fork's from the few variables a shell and a network need, nothing else of it.
    let mut base_env: Vec<(String, String)> = config
        .base_env
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "HOME" | "TMPDIR" | "USER" | "LOGNAME"))
        .filter(|(k, _)| trusted || untrusted_may_see(k))
        .cloned()
        .collect();
    base_env.push(("HOME".into(), job_dir.join("home").display().to_string()));
    base_env.push(("TMPDIR".into(), job_dir.join("temp").display().to_string()));
    if let Some(u) = user {
        base_env.push(("USER".into(), u.name.clone()));
        base_env.push(("LOGNAME".into(), u.name.clone()));
    }
    let site = Site {
        slot: slot.dir.clone(),
        base_env,
        action_dirs: vec![config.work_dir.join("actions")],
        cache_dir,
        actions: config.actions.clone(),
    };
    // The workflow's text as this runner read it (once per commit): the job's process
    // need not read the archive again.
    let text = workflows.text(&tar, &lease.spec.file)?;
    let job = confined::Launch {
        slot: slot.n,
        site: &site,
        lease,
        source: &linked,
        workflow: &text,
    };
    Ok(confined::run(isolation, client, job, sink, cancel).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stored_with_markers() {
        assert_eq!(format_line(Line::Output("x".into())), "x");
        assert_eq!(format_line(Line::GroupStart("g".into())), "##[group]g");
        assert_eq!(
            format_line(Line::Annotation {
                level: engine::Level::Error,
                message: "m".into(),
                file: Some("f".into()),
                line: Some("3".into()),
            }),
            "##[error] f:3: m"
        );
    }

    #[test]
    fn a_slot_is_emptied_but_for_the_engine_s_own_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let slot = d.path().join("0");
        ready_slot(&slot).unwrap();
        let (ws, temp) = (slot.join("job/workspace"), slot.join("job/temp"));
        std::fs::create_dir_all(ws.join("ro/sub")).unwrap();
        std::fs::write(ws.join("ro/sub/f"), "x").unwrap();
        std::fs::write(ws.join(".hidden"), "x").unwrap();
        for p in [ws.join("ro/sub"), ws.join("ro")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        std::fs::create_dir_all(temp.join("_runner_file_commands")).unwrap();
        std::fs::write(temp.join("step-1.sh"), "true").unwrap();
        std::fs::write(temp.join("step-x.sh"), "mine").unwrap();
        std::fs::create_dir_all(slot.join("artifacts/dist")).unwrap();
        ready_slot(&slot).unwrap();
        assert_eq!(std::fs::read_dir(&ws).unwrap().count(), 0);
        let mut kept: Vec<String> = std::fs::read_dir(&temp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(kept, ["_runner_file_commands", "step-1.sh"]);
        assert!(!slot.join("artifacts").exists());
        // Nothing was set aside.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
