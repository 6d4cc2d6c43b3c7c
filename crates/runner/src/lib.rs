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
//! The server's in-process runner is this same code; its own calls (the next job,
//! heartbeats, lines, reports) are answered in place by the server ([`InPlace`]), its
//! jobs' processes speak HTTP over loopback like any job's.
//!
//! Its parts: the runner protocol's HTTP client (`client`), the slots jobs run in and their
//! directories (`slots`), a leased job from lease to report (`lease`), preparing and running
//! a job in this process (`job`, with the workflows it read in `workflows`), a job's lines on
//! their way to the server (`sink`), artifacts and caches through the server (`transfer`),
//! and a job in a confined process of its own (`confined`).

mod broker;
mod cgroup;
mod client;
mod confined;
mod job;
mod lease;
pub mod protocol;
mod sink;
mod slots;
mod transfer;
mod workflows;

pub use client::{Answer, InPlace, Refused, register};
pub use confined::{Isolation, job_exec, reap_slots};
pub use job::Site;
pub use sink::format_line;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

// What the modules share, at the crate's root: `confined` and `transfer` name it so
// (`crate::Client`, `crate::retry`, ...).
use client::{Client, check, retry};
use job::{Leased, context_of, failed_report, label_of, run_here};
use sink::RemoteSink;
use slots::{Slot, empty_dir, make_writable, set_aside};
use workflows::Workflows;

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
    /// `runs-on` labels whose jobs run in a container of an image (see
    /// [`engine::RunEnv::images`]).
    pub images: Vec<(String, String)>,
    /// Where remote actions come from. The runner fetches a job's before the job starts,
    /// into a cache the job reads and cannot write (`None`: jobs get only built-in and
    /// local actions).
    pub action_source: Option<engine::ActionSource>,
    /// The server this runner runs in, which answers its own calls in place (`None`: a
    /// runner of its own, over HTTP).
    pub in_place: Option<InPlaceServer>,
}

/// The server a runner runs in ([`InPlace`]).
#[derive(Clone)]
pub struct InPlaceServer(pub Arc<dyn InPlace>);

impl std::fmt::Debug for InPlaceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InPlaceServer")
    }
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
    // What the jobs' brokers let them pull: each job's alone while it runs.
    let pulls = broker::Pulls::new(&config.work_dir);
    // Also where the broker is off now: what its jobs pulled when it was on is removed.
    if (config.isolation.is_some() && broker::enabled()) || pulls.left() != (Vec::new(), Vec::new())
    {
        broker::sweep(&config.work_dir, &pulls).await;
    }
    if let Some(iso) = &config.isolation {
        for n in 0..config.capacity.max(1) {
            iso.prewarm(n, confined::Ended::over());
        }
    }
    let config = Arc::new(config);
    let client = Client::new(
        &config.server,
        &config.credential,
        config.in_place.as_ref().map(|s| s.0.clone()),
    );
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
                Some(n) => Slot {
                    n,
                    dir: root.join(n.to_string()),
                    free: free.clone(),
                    pulls: pulls.clone(),
                },
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
                        match lease::execute(&client, &config, &workflows, &slot, l, more).await {
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
