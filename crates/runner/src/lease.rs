//! One leased job from lease to report: heartbeats, its lines sent as it runs, the slot it
//! runs in (in this process, confined in one of its own, or refused), then the report, which
//! may bring the next job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use engine::{JobReport, Line, Sink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::job::{Site, source};
use crate::protocol::{self, Lease};
use crate::sink::send_logs;
use crate::slots::ready_slot;
use crate::{
    Client, Leased, RemoteSink, RunnerConfig, RunnerError, Slot, Workflows, confined, context_of,
    failed_report, io, label_of, retry, run_here,
};

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
        let timeout = Duration::from_millis(lease.lease_ms.max(1000));
        let reply = match client.heartbeat(&lease, timeout).await {
            Ok(r) => Some(r),
            Err(RunnerError::NotHeld(_)) => {
                lost.store(true, Ordering::Relaxed);
                cancel.cancel();
                return;
            }
            // The server may be restarting: the lease outlives a short outage.
            Err(_) => None,
        };
        if reply.is_some_and(|r| r.cancel) {
            cancel.cancel();
        }
    }
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
pub(crate) async fn execute(
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
    let done = retry(&never, || client.finish(&lease, &finish)).await;
    tracing::debug!(job = lease.job, ms = t0.elapsed().as_millis(), "reported");
    uploaded?;
    Ok(done?.next)
}

/// Fetches the remote actions the job uses (here, on the trusted side: a job never writes
/// the cache another job runs actions from), saying what each is in the job's log; the
/// source the job gets reads that cache only.
async fn fetch_actions(
    config: &RunnerConfig,
    workflows: &Workflows,
    tar: &std::path::Path,
    lease: &Arc<Lease>,
    sink: &RemoteSink,
) -> Result<Option<engine::ActionSource>, RunnerError> {
    let Some(source) = config.action_source.clone() else {
        return Ok(None);
    };
    let known = workflows.known(tar, &lease.spec.file, lease.spec.workflow_text.as_deref())?;
    let Some(job) = known.workflow.jobs.get(lease.spec.job_id.as_str()) else {
        return Ok(Some(source.cached()));
    };
    // Only `uses:` steps name actions: a job of `run:` steps has nothing to fetch, and is
    // not sent to a blocking thread and back to find that out.
    if job.steps.iter().all(|s| s.uses.is_none()) {
        return Ok(Some(source.cached()));
    }
    let steps = job.steps.clone();
    let registered: Vec<String> = config.actions.names().map(str::to_owned).collect();
    let fetching = source.clone();
    let lines = tokio::task::spawn_blocking(move || {
        engine::prefetch(&fetching, &steps, &|name: &str| {
            engine::is_builtin(name) || registered.iter().any(|r| r == name)
        })
    })
    .await
    .unwrap_or_default();
    for line in lines {
        sink.line(&label_of(lease), Line::Output(line));
    }
    Ok(Some(source.cached()))
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
    let action_source = fetch_actions(config, workflows, &tar, lease, sink).await?;
    let Some(isolation) = &config.isolation else {
        ready_slot(&slot.dir)?;
        crate::job::write_event(&slot.dir.join("job"), lease)?;
        let site = Site {
            slot: slot.dir.clone(),
            base_env: config.base_env.clone(),
            action_dirs: vec![config.work_dir.join("actions")],
            cache_dir: config
                .work_dir
                .join("cache")
                .join(engine::files::safe_name(&lease.spec.repo)),
            actions: config.actions.clone(),
            images: config.images.clone(),
            action_source: action_source.clone(),
            this_machine_only: config.labels.iter().any(|l| l == "*"),
            docker_host: None,
        };
        let job = Leased {
            lease: lease.clone(),
            context: context_of(lease),
            tar,
        };
        return Ok(run_here(client, workflows, &site, job, sink, cancel).await);
    };
    let user = isolation.user.as_ref();
    isolation.ready(slot.n, &slot.dir).await?;
    // The source, read-only, where the job may read it.
    let linked = slot.dir.join("source.tar");
    if std::fs::hard_link(&tar, &linked).is_err() {
        std::fs::copy(&tar, &linked).map_err(io(&linked))?;
    }
    let job_dir = slot.dir.join("job");
    crate::job::write_event(&job_dir, lease)?;
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
    // The workflow's text as this runner read it (once per commit), reduced to the job: the
    // job's process need not read the archive again, nor parse the other jobs. Read before
    // the broker starts: nothing after it returns early, so it always reaches its `finish`.
    let text = workflows
        .known(&tar, &lease.spec.file, lease.spec.workflow_text.as_deref())?
        .text_for_job(&lease.spec.job_id);
    // The job's user may not open the Docker engine's socket; the broker opens it for the
    // job's containers, checking each request (docs/security.md §15).
    // It needs a job user of its own: what a mount names must be out of that user's reach.
    let broker = user
        .filter(|_| crate::broker::enabled())
        .and_then(|u| Some((u, crate::broker::engine_socket()?)))
        .and_then(|(u, engine)| {
            let rules = crate::broker::Rules {
                root: std::path::absolute(&job_dir).unwrap_or_else(|_| job_dir.clone()),
                // The job's id and a nonce: runners of several servers may share an engine.
                label: format!("job-{}-{}", lease.job, engine::docker::random_hex()),
                runner: crate::broker::runner_label(&config.work_dir),
            };
            crate::broker::Broker::start(
                &slot.dir.join("docker.sock"),
                &engine,
                u,
                rules,
                slot.pulls.clone(),
            )
            .inspect_err(|e| {
                tracing::warn!("the job's Docker broker: {e}");
                // Said where the job's author looks: its containers will find no engine.
                sink.line(
                    &label_of(lease),
                    Line::Annotation {
                        level: engine::Level::Warning,
                        message: format!(
                            "this job cannot reach Docker: its runner's Docker broker did not start: {e}"
                        ),
                        file: None,
                        line: None,
                    },
                );
            })
            .ok()
        });
    // Its steps' `docker` talks to the broker too.
    if let Some(b) = &broker {
        base_env.push(("DOCKER_HOST".into(), b.host()));
    }
    let site = Site {
        slot: slot.dir.clone(),
        base_env,
        action_dirs: vec![config.work_dir.join("actions")],
        cache_dir,
        actions: config.actions.clone(),
        images: config.images.clone(),
        action_source,
        this_machine_only: config.labels.iter().any(|l| l == "*"),
        docker_host: broker.as_ref().map(crate::broker::Broker::host),
    };
    let job = confined::Launch {
        slot: slot.n,
        site: &site,
        lease,
        source: &linked,
        workflow: &text,
        job_pid: broker.as_ref().map(crate::broker::Broker::job_pid),
    };
    let (report, uploaded, ended) = confined::run(isolation, client, job, sink, cancel).await;
    if let Some(b) = broker
        && !b.finish().await
    {
        // A container left running may still have the job's directories mounted: the next
        // job gets new ones.
        let why = RunnerError::Io {
            path: slot.dir.clone(),
            source: std::io::Error::other("what the job made in Docker could not all be removed"),
        };
        if let Err(e) = crate::set_aside(&slot.dir, &why) {
            tracing::warn!("{e}");
        }
    }
    // The job's containers are gone; once its processes are too (its process ended and the
    // slot's cgroup was emptied, or, without one, its descendants were killed by it), the
    // slot is readied for the next job, while this one's report goes out.
    isolation.ready_ahead(slot.n, &slot.dir, ended);
    Ok((report, uploaded))
}
