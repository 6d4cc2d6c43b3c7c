//! `pipewright serve`.

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;

/// Structured logs on stderr for the long-running commands (`serve`, `runner`), filtered
/// by `PIPEWRIGHT_LOG` (default `info`).
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIPEWRIGHT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

pub(crate) fn run(args: &ServeArgs) -> Result<u8> {
    // The allocator's tunables: this process starts again with them, before any thread.
    server::start_tuned();
    init_logging();
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PIPEWRIGHT_"))
        .collect();
    let config = server::Config::load(args.config.as_deref(), &env).context("configuration")?;
    let exe = std::env::current_exe().context("cannot find the pipewright binary")?;
    // Blocking work (the store, git, files) on a small pool of threads kept alive: the
    // default pool (up to 512 threads, gone after 10 s idle) started and ended dozens of
    // threads as jobs came and went, and each left its stack and allocator arena in the
    // resident set (bench/soak.sh).
    // The allocator, set for a long-running process before its threads start.
    server::tune_memory();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down: no new runs are taken, running ones finish");
            s.cancel();
        });
        server::serve(config, listener, &exe, actions::registry(), shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

/// `pipewright token show`: the admin token, from the configuration or the file the server
/// made in its data directory (readable by the server's user only).
pub(crate) fn token(cmd: crate::cli::TokenCommand) -> Result<u8> {
    let crate::cli::TokenCommand::Show { config } = cmd;
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PIPEWRIGHT_"))
        .collect();
    let config = server::Config::load(config.as_deref(), &env).context("configuration")?;
    if let Some(t) = &config.admin_token {
        println!("{t}");
        return Ok(0);
    }
    let file = config.data_dir.join(server::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read {} (the server makes it on its first start; it is readable by the server's user only)",
            file.display()
        )
    })?;
    println!("{}", token.trim());
    Ok(0)
}
