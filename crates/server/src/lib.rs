//! `pipewright serve`: the CI server. Triggers (post-receive hooks of local bare
//! repositories, signed webhooks, dispatch) queue runs in the store; the in-process runner
//! takes them at once and runs them with the engine; logs are stored and streamed live; an
//! HTTP API under `/api/v1` shows and controls it all.
//!
//! The server keeps no state only in memory: a killed server restarts from the store
//! (queued runs stay queued; runs it was running are retried once, then failed with the
//! reason).

mod config;
mod executor;
pub mod git;
mod http;
mod logs;
mod schedule;
mod secrets;
mod status;
pub mod trigger;

use std::sync::Arc;

pub use config::{Config, ConfigError, RepoConfig};
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
}

/// How many times a run interrupted by a server stop is attempted in all.
const MAX_ATTEMPTS: i64 = 2;

/// Serves until `shutdown` is cancelled: stops taking runs, lets running ones finish.
/// `exe` is the pipewright binary the repositories' hooks call.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    exe: &std::path::Path,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| ServeError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let store = Arc::new(store::Store::open(&dir.join("pipewright.db"))?);
    let (requeued, failed) = store.recover(MAX_ATTEMPTS)?;
    if requeued + failed > 0 {
        tracing::warn!(
            requeued,
            failed,
            "recovered runs interrupted by the last stop"
        );
    }
    // The hooks' token: made once, kept in the data directory.
    let token_file = dir.join("hook-token");
    let hook_token = match std::fs::read_to_string(&token_file) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = random_token();
            std::fs::write(&token_file, &t).map_err(|source| ServeError::DataDir {
                path: token_file.clone(),
                source,
            })?;
            t
        }
    };
    let local = listener.local_addr().map_err(ServeError::Http)?;
    let hook_url = format!("http://{local}");
    // Where this server listens (useful with `listen = "127.0.0.1:0"`).
    std::fs::write(dir.join("listen-url"), &hook_url).map_err(|source| ServeError::DataDir {
        path: dir.join("listen-url"),
        source,
    })?;
    for repo in &config.repos {
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
    let config = Arc::new(config);
    let wake = Arc::new(Notify::new());
    let (live, _) = broadcast::channel(4096);
    let (events, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(logs::writer(store.clone(), rx, live.clone()));
    let executor = Arc::new(executor::Executor {
        store: store.clone(),
        config: config.clone(),
        wake: wake.clone(),
        events,
        shutdown: shutdown.clone(),
        sealer: sealer.clone(),
    });
    let exec_task = tokio::spawn(executor.run());
    let sched_task = tokio::spawn(schedule::run(
        store.clone(),
        config.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    let state = Arc::new(http::AppState {
        store,
        config,
        wake,
        live,
        hook_token,
        sealer,
    });
    let app = http::router(state);
    tracing::info!(%local, "pipewright serve listening");
    let s = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { s.cancelled().await })
        .await
        .map_err(ServeError::Http)?;
    let _ = exec_task.await;
    let _ = sched_task.await;
    writer.abort();
    Ok(())
}

pub(crate) fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    hex::encode(bytes)
}
