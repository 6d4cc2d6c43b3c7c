//! `pipewright serve`: the CI server. Triggers (post-receive hooks of local bare
//! repositories, signed webhooks, dispatch, schedules) queue runs in the store; the
//! orchestrator walks each run's job graph and queues its job instances; runners (remote
//! `pipewright runner` processes, and the in-process one, which speaks the same protocol over
//! loopback) lease them, run them and report back; logs are stored and streamed live; an HTTP
//! API under `/api/v1` shows and controls it all.
//!
//! The server keeps no state only in memory: a killed server restarts from the store
//! (queued runs and jobs stay queued; jobs on remote runners go on reporting to it; jobs the
//! in-process runner held are retried, or failed with the reason; the runs it was
//! orchestrating are taken up where they were).

mod blobs;
mod blocking;
mod conclusion;
mod config;
mod dispatch;
mod environments;
mod executor;
pub mod git;
mod groups;
mod http;
mod intake;
mod listen;
mod logfiles;
mod logs;
mod memory;
pub use memory::{start_tuned, tune as tune_memory};
mod notify;
mod poll;
mod schedule;
mod secrets;
mod status;
pub mod trigger;
mod web;

use std::sync::Arc;

use blocking::{Blocked, blocking};
pub use config::{Config, ConfigError, RepoConfig};
pub use environments::Protection;
pub use http::read_webhook;
pub use notify::{AlertEvent, Channel, ChannelKind, Monitor};
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot install the post-receive hook of `{repo}`: {source}")]
    Hook {
        repo: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Secrets(#[from] secrets::SecretError),
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    #[error("a start-up task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the operating system gave no random bytes: {0}")]
    Random(#[from] getrandom::Error),
    #[error("confining jobs: {0}")]
    Confine(#[from] engine::confine::ConfineError),
    #[error("hashing a password: {0}")]
    Password(String),
}

/// Serves until `shutdown` is cancelled: stops taking runs, lets running ones finish.
/// `exe` is the pipewright binary the repositories' hooks call.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    exe: &std::path::Path,
    actions: engine::Actions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| ServeError::DataDir {
        path: dir.clone(),
        source,
    })?;
    // Others may pass through the data directory (to a job's directory in `work/`), never
    // list it; what it holds is the server's alone (files 0600, directories 0700).
    restrict(dir, 0o711)?;
    for sub in ["blobs", "logs", "mirrors", "actions", "cache"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|source| ServeError::DataDir {
            path: path.clone(),
            source,
        })?;
        restrict(&path, 0o700)?;
    }
    if config.job_user.is_some() {
        // The job user passes through it to its slot in `work/`.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).map_err(
            |source| ServeError::DataDir {
                path: dir.clone(),
                source,
            },
        )?;
    }
    // Which server this is, among those sharing the database: from the configuration, or
    // made once and kept in the data directory.
    let server_id = match &config.server_id {
        Some(id) => id.clone(),
        None => {
            let file = dir.join("server-id");
            match std::fs::read_to_string(&file) {
                Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
                _ => {
                    let id = format!("server-{}", &random_token()?[..16]);
                    write_private(&file, &id)?;
                    id
                }
            }
        }
    };
    // The in-process runner: a new credential for this process; the jobs the last one held
    // died with it. (Blocking work: the PostgreSQL client must not run on an async thread.)
    let embedded_credential = random_token()?;
    // It takes any job: on a single machine there is nothing else to run them.
    let embedded_labels = vec!["*".to_owned()];
    let (url, default_db) = (config.database_url.clone(), dir.join("pipewright.db"));
    let admin_password = config.admin_password.clone();
    let (labels, capacity, max_attempts, credential_hash, me) = (
        embedded_labels.clone(),
        i64::try_from(config.embedded_capacity).unwrap_or(i64::MAX),
        config.max_attempts,
        http::token_hash(&embedded_credential),
        server_id.clone(),
    );
    // The embedded database is the server's alone, its journal files too (SQLite makes
    // them with the database's mode).
    if url.is_none() {
        for name in ["pipewright.db", "pipewright.db-wal", "pipewright.db-shm"] {
            let path = dir.join(name);
            if name == "pipewright.db" && !path.exists() {
                write_private(&path, "")?;
            }
            if path.exists() {
                restrict(&path, 0o600)?;
            }
        }
    }
    let work = dir.join("work");
    let (store, released) = blocking(move || {
        // The jobs of the in-process runner that outlived a crash end before their jobs
        // are queued again: a job never runs twice at once.
        runner::reap_slots(&work);
        let store = store::Store::open_url(url.as_deref(), &default_db)?;
        let id = store.embedded_runner(&me, &labels, capacity, &credential_hash)?;
        let released =
            store.release_runner(id, max_attempts, "the server stopped while the job ran")?;
        web::first_admin(&store, admin_password.as_deref())?;
        Ok::<_, ServeError>((Arc::new(store), released))
    })
    .await
    .map_err(Blocked::flatten)?;
    if released != store::Released::default() {
        tracing::warn!(
            requeued = released.requeued.len(),
            failed = released.failed.len(),
            "jobs of the in-process runner interrupted by the last stop"
        );
    }
    // The hooks' token: made once, kept in the data directory.
    let token_file = dir.join("hook-token");
    let hook_token = match std::fs::read_to_string(&token_file) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = random_token()?;
            write_private(&token_file, &t)?;
            t
        }
    };
    restrict(&token_file, 0o600)?;
    let admin_token = match &config.admin_token {
        Some(t) => t.clone(),
        None => admin_token(dir)?,
    };
    let local = listener.local_addr().map_err(ServeError::Http)?;
    if !local.ip().is_loopback() && !config.public_url.starts_with("https://") {
        tracing::warn!(
            %local,
            "listening beyond this machine without TLS: tokens, secrets and logs would cross the network in the clear; put a TLS-terminating proxy in front and set public_url to its https:// address"
        );
    }
    let hook_url = format!("http://{local}");
    // Where this server listens (useful with `listen = "127.0.0.1:0"`); written aside and
    // renamed, so a reader never sees it half written.
    let url_file = dir.join("listen-url");
    let tmp = dir.join(".listen-url.tmp");
    std::fs::write(&tmp, &hook_url)
        .and_then(|()| std::fs::rename(&tmp, &url_file))
        .map_err(|source| ServeError::DataDir {
            path: url_file.clone(),
            source,
        })?;
    // A polled repository's mirror is only written by our fetches: no hook.
    for repo in config.repos.iter().filter(|r| r.poll.is_none()) {
        git::install_hook(&repo.path, exe, &hook_url, &repo.name, &token_file).map_err(
            |source| ServeError::Hook {
                repo: repo.name.clone(),
                source,
            },
        )?;
    }
    let sealer = Arc::new(secrets::Sealer::load(
        config.secret_key.as_deref(),
        &dir.join("secret.key"),
    )?);
    let mut config = config;
    if !config.public_url_configured {
        // `listen` may name port 0: the address jobs reach the server at is the bound one.
        config.public_url = hook_url.clone();
    }
    let config = Arc::new(config);
    let wake = Arc::new(Notify::new());
    let queued = Arc::new(Notify::new());
    let alerts = Arc::new(Notify::new());
    let done = Arc::new(dispatch::Waiters::default());
    // Bounded: a follower that falls behind reads what it missed from the store.
    let (live, _) = broadcast::channel(512);
    let (events, rx) = mpsc::unbounded_channel();
    // Told when a run ends, so the allocator's free pages go back soon after (memory.rs).
    let (run_ended, ended_runs) = tokio::sync::watch::channel(());
    let writer = tokio::spawn(logs::writer(store.clone(), rx, live.clone(), run_ended));
    let executor = Arc::new(executor::Executor {
        store: store.clone(),
        config: config.clone(),
        wake: wake.clone(),
        events,
        shutdown: shutdown.clone(),
        sealer: sealer.clone(),
        queued: queued.clone(),
        done: done.clone(),
        me: server_id.clone(),
        lease_ms: config.lease_ms,
        alerts: alerts.clone(),
    });
    // Runs made and taken by this server's API, handed to its executor.
    let (handed, handed_rx) = mpsc::unbounded_channel();
    let exec_task = tokio::spawn(executor.run(handed_rx));
    let reaper = tokio::spawn(http::reaper(
        store.clone(),
        config.max_attempts,
        std::time::Duration::from_millis(u64::try_from(config.lease_ms).unwrap_or(30_000)),
        queued.clone(),
        done.clone(),
        shutdown.clone(),
    ));
    let completions = tokio::spawn(dispatch::watch_completions(
        store.clone(),
        done.clone(),
        server_id.clone(),
        shutdown.clone(),
    ));
    let gc = tokio::spawn(http::gc_task(
        store.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let isolation = if config.confine_jobs {
        // Jobs may read none of the server's files, nor the repositories (theirs comes as
        // a source archive; the others are not theirs).
        let mut hidden = vec![config.data_dir.clone()];
        hidden.extend(config.config_file.clone());
        hidden.extend(config.repos.iter().map(|r| r.path.clone()));
        let iso = runner::Isolation::new(
            exe.to_owned(),
            config.job_user.as_deref(),
            true,
            hidden,
            config.writable_paths.clone(),
        )?;
        let (said, warn) = iso.describe();
        if warn {
            tracing::warn!("in-process runner: {said}");
        } else {
            tracing::info!("in-process runner: {said}");
        }
        Some(iso)
    } else {
        tracing::warn!(
            "in-process runner: jobs run in the server's process as its user, unconfined (isolation = \"none\"); jobs of untrusted origin are refused"
        );
        None
    };
    let sender = tokio::spawn(notify::sender(
        store.clone(),
        Arc::new(config.channels.clone()),
        server_id.clone(),
        alerts.clone(),
        shutdown.clone(),
    ));
    let monitors = tokio::spawn(notify::monitor::run(
        store.clone(),
        config.clone(),
        alerts.clone(),
        shutdown.clone(),
    ));
    let sched_task = tokio::spawn(schedule::run(
        store.clone(),
        config.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    let poll_now = poll::poll_now(&config);
    let poll_task = tokio::spawn(poll::run(
        store.clone(),
        config.clone(),
        wake.clone(),
        poll_now.clone(),
        shutdown.clone(),
    ));
    let trimmer = tokio::spawn(memory::trimmer(ended_runs, shutdown.clone()));
    let archiver = tokio::spawn(logfiles::archiver(
        store.clone(),
        config.data_dir.clone(),
        shutdown.clone(),
    ));
    let (intake, intake_task) = intake::Intake::start(
        store.clone(),
        config.clone(),
        wake.clone(),
        poll_now,
        shutdown.clone(),
    );
    let limits = listen::Limits {
        max_connections: config.max_connections,
        idle_timeout: config.idle_timeout,
    };
    let state = Arc::new(http::AppState {
        store,
        config,
        wake,
        handed,
        live,
        hook_token,
        intake,
        sealer,
        queued,
        done,
        stopping: shutdown.clone(),
        runners: http::Runners::default(),
        me: server_id.clone(),
        webhook_budget: Arc::new(tokio::sync::Semaphore::new(http::WEBHOOK_BUDGET)),
        admin_token,
        alerts,
    });
    // The in-process runner's own calls are answered in place; its jobs' processes (its
    // artifacts, its caches) come over HTTP with their jobs' tokens.
    let config = state.config.clone();
    let embedded = (config.embedded_capacity > 0).then(|| {
        let in_place = http::InPlace::new(state.clone(), &embedded_credential);
        let rc = runner::RunnerConfig {
            server: hook_url.clone(),
            credential: embedded_credential,
            labels: embedded_labels,
            capacity: config.embedded_capacity,
            work_dir: config.data_dir.join("work"),
            base_env: runner::job_env(),
            isolation,
            actions,
            images: config.runner_images.clone(),
            action_source: Some(engine::ActionSource::from_env(
                config.data_dir.join("work").join("actions-cache"),
            )),
            in_place: Some(runner::InPlaceServer(Arc::new(in_place))),
        };
        tokio::spawn(runner::run(rc, shutdown.clone()))
    });
    let app = http::router(state);
    tracing::info!(%local, "pipewright serve listening");
    // On shutdown the in-process runner takes no more jobs and finishes its running ones,
    // whose processes upload their artifacts through the HTTP server: it stops after them.
    let http_stop = CancellationToken::new();
    let (s, stop2) = (shutdown.clone(), http_stop.clone());
    let sequence = tokio::spawn(async move {
        s.cancelled().await;
        if let Some(e) = embedded {
            match e.await {
                Ok(Err(err)) => tracing::error!("in-process runner: {err}"),
                Err(err) => tracing::error!("in-process runner: {err}"),
                Ok(Ok(())) => {}
            }
        }
        stop2.cancel();
    });
    listen::serve(listener, app, limits, http_stop).await;
    let _ = sequence.await;
    let _ = exec_task.await;
    let _ = sched_task.await;
    let _ = reaper.await;
    let _ = poll_task.await;
    let _ = intake_task.await;
    let _ = archiver.await;
    let _ = trimmer.await;
    let _ = gc.await;
    let _ = completions.await;
    let _ = sender.await;
    let _ = monitors.await;
    writer.abort();
    Ok(())
}

/// Locks `m`; a panic elsewhere while it was held does not make the data unusable here
/// (every guarded value stays consistent between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A random token: 24 bytes from the operating system (`getrandom`, which needs no file
/// descriptor), hex. There is no fallback: without randomness, nothing is made.
pub(crate) fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The file in the data directory holding the admin token the server made.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The admin token made on the first start without one configured (kept in the data
/// directory, readable by the server's user only); said once, when made.
fn admin_token(dir: &std::path::Path) -> Result<String, ServeError> {
    let file = dir.join(ADMIN_TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&file)
        && !t.trim().is_empty()
    {
        restrict(&file, 0o600)?;
        return Ok(t.trim().to_owned());
    }
    let token = format!("pwa_{}", random_token()?);
    write_private(&file, &token)?;
    tracing::warn!(
        file = %file.display(),
        "no admin token was configured: one was made and kept in the data directory; `pipewright token show` prints it"
    );
    eprintln!("pipewright: the admin token is {token} (`pipewright token show` prints it again)");
    Ok(token)
}

/// Writes `contents` to a new or existing file readable by its owner only.
fn write_private(path: &std::path::Path, contents: &str) -> Result<(), ServeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|source| ServeError::DataDir {
            path: path.to_owned(),
            source,
        })?;
    restrict(path, 0o600)
}

/// Takes from `path`'s mode whatever `mode` does not allow (a file made before, or by hand,
/// with wider permissions).
fn restrict(path: &std::path::Path, mode: u32) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ServeError::DataDir {
        path: path.to_owned(),
        source,
    };
    let current = std::fs::metadata(path).map_err(err)?.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))
            .map_err(err)?;
    }
    Ok(())
}
