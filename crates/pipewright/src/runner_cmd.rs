//! `pipewright runner` (take jobs from a server) and `pipewright runners` (registration
//! tokens, the list).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cli::ServerArgs;
use crate::client_cmd::{Client, runtime};

#[derive(Debug, Args)]
pub(crate) struct RunnerArgs {
    /// The server's URL.
    #[arg(long, env = "PIPEWRIGHT_SERVER")]
    server: String,
    /// A one-time registration token (`pipewright runners token`); needed the first time
    /// only: the credential the runner receives is kept in its work directory. Prefer
    /// `--token-file` or the environment: a flag shows in the process list.
    #[arg(long, env = "PIPEWRIGHT_RUNNER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the registration token.
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Run jobs as this unprivileged user (the runner must run as root): the runner's
    /// credential and work directory are then out of the jobs' reach.
    #[arg(long, env = "PIPEWRIGHT_JOB_USER")]
    job_user: Option<String>,
    /// How jobs are confined: `landlock` (each job in a process of its own, confined by
    /// Landlock where the kernel has it, as `--job-user`), or `none` (in the runner's own
    /// process, as its user; jobs of untrusted origin are then refused).
    #[arg(long, default_value = "landlock", value_parser = ["landlock", "none"])]
    isolation: String,
    /// A path every job may write besides its own directory (repeatable).
    #[arg(long = "writable")]
    writable: Vec<PathBuf>,
    /// Labels besides the defaults (self-hosted, linux, the architecture, ubuntu-latest),
    /// comma-separated: jobs whose `runs-on` names them come here.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Run the jobs of a `runs-on` label in a container of IMAGE, a local image (repeatable;
    /// `host`: on this machine). A confined job reaches Docker through the runner's Docker
    /// broker (it needs `--job-user`; `PIPEWRIGHT_DOCKER_BROKER=0` turns it off).
    #[arg(long = "image", value_name = "LABEL=IMAGE")]
    images: Vec<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1)]
    capacity: usize,
    /// Workspaces, downloaded sources, caches, and the runner's credential.
    #[arg(long, default_value = "pipewright-runner")]
    work_dir: PathBuf,
    /// The runner's name on the server (default: the host name).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunnersCommand {
    /// Creates a one-time registration token (needs the admin token) and prints it.
    Token {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lists the registered runners.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Removes a runner (needs the admin token): its credential stops working, its jobs are
    /// queued again.
    Remove {
        #[command(flatten)]
        server: ServerArgs,
        id: i64,
    },
}

/// What a registered runner keeps in its work directory.
#[derive(Debug, Serialize, Deserialize)]
struct Registration {
    server: String,
    runner_id: i64,
    credential: String,
    labels: Vec<String>,
}

const REGISTRATION: &str = "runner.json";

fn load(work_dir: &Path) -> Result<Option<Registration>> {
    let path = work_dir.join(REGISTRATION);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{} is damaged", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save(work_dir: &Path, r: &Registration) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = work_dir.join(REGISTRATION);
    let tmp = work_dir.join(".runner.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(r)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "runner".to_owned())
}

pub(crate) fn run(args: &RunnerArgs) -> Result<u8> {
    crate::serve_cmd::init_logging();
    let work_dir = std::path::absolute(&args.work_dir)
        .with_context(|| format!("work directory {}", args.work_dir.display()))?;
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;
    let mut labels = runner::protocol::default_labels();
    for l in &args.labels {
        let l = l.trim();
        if !l.is_empty() && !labels.iter().any(|x| x.eq_ignore_ascii_case(l)) {
            labels.push(l.to_owned());
        }
    }
    // No more worker threads than jobs at once: a runner of one slot has one (a thread
    // idling beside it only costs wake-ups).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.capacity.clamp(1, cores))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = args.server.trim_end_matches('/').to_owned();
        let registration = match load(&work_dir)? {
            Some(r) if r.server == server => r,
            Some(r) => bail!(
                "{} registers this work directory with {}, not {server}: use another --work-dir",
                work_dir.join(REGISTRATION).display(),
                r.server
            ),
            None => {
                let token = match (&args.token, &args.token_file) {
                    (Some(t), _) => t.clone(),
                    (None, Some(f)) => std::fs::read_to_string(f)
                        .with_context(|| format!("cannot read {}", f.display()))?
                        .trim()
                        .to_owned(),
                    (None, None) => bail!(
                        "this runner is not registered yet: give a registration token with --token-file, PIPEWRIGHT_RUNNER_TOKEN or --token (from `pipewright runners token`)"
                    ),
                };
                let token = &token;
                let name = args.name.clone().unwrap_or_else(host_name);
                let r = runner::register(&server, token, &name, &labels, args.capacity)
                    .await
                    .context("registration")?;
                let reg = Registration {
                    server: server.clone(),
                    runner_id: r.runner_id,
                    credential: r.credential,
                    labels: labels.clone(),
                };
                save(&work_dir, &reg)?;
                tracing::info!(runner = reg.runner_id, "registered");
                reg
            }
        };
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("stopping: no new jobs are taken, running ones finish");
            s.cancel();
        });
        let isolation = match args.isolation.as_str() {
            "none" => {
                if args.job_user.is_some() {
                    bail!("--job-user needs --isolation landlock (a job runs as another user in a process of its own)");
                }
                tracing::warn!("jobs run in this process as its user, unconfined (--isolation none); jobs of untrusted origin are refused");
                None
            }
            _ => {
                let exe = std::env::current_exe().context("cannot find the pipewright binary")?;
                let iso = runner::Isolation::new(
                    exe,
                    args.job_user.as_deref(),
                    true,
                    Vec::new(),
                    args.writable.clone(),
                )
                .context("confining jobs")?;
                let (said, warn) = iso.describe();
                if warn {
                    tracing::warn!("{said}");
                } else {
                    tracing::info!("{said}");
                }
                Some(iso)
            }
        };
        tracing::info!(runner = registration.runner_id, labels = ?registration.labels, "waiting for jobs");
        let action_source = engine::ActionSource::from_env(work_dir.join("actions-cache"));
        runner::run(
            runner::RunnerConfig {
                server,
                credential: registration.credential,
                labels: registration.labels,
                capacity: args.capacity,
                work_dir,
                base_env: runner::job_env(),
                isolation,
                actions: actions::registry(),
                images: crate::run_cmd::images(&args.images)?,
                action_source: Some(action_source),
                in_place: None,
            },
            shutdown,
        )
        .await
        .context("runner")?;
        Ok(0)
    })
}

pub(crate) fn runners(cmd: RunnersCommand) -> Result<u8> {
    runtime()?.block_on(async move {
        match cmd {
            RunnersCommand::Token { server } => {
                let c = Client::new(&server)?;
                let v = c
                    .json(reqwest::Method::POST, "/api/v1/runners/tokens", None)
                    .await?;
                println!("{}", v["token"].as_str().unwrap_or_default());
            }
            RunnersCommand::Remove { server, id } => {
                let c = Client::new(&server)?;
                c.send(c.request(reqwest::Method::DELETE, &format!("/api/v1/runners/{id}")))
                    .await?;
                println!("runner {id} removed");
            }
            RunnersCommand::List { server, json } => {
                let c = Client::new(&server)?;
                let v = c
                    .json(reqwest::Method::GET, "/api/v1/runners", None)
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v["runners"])?);
                } else {
                    for r in v["runners"].as_array().into_iter().flatten() {
                        println!(
                            "{}\t{}\tcapacity {}\t{}",
                            r["id"],
                            r["name"].as_str().unwrap_or_default(),
                            r["capacity"],
                            r["labels"]
                                .as_array()
                                .map(|a| a
                                    .iter()
                                    .filter_map(|l| l.as_str())
                                    .collect::<Vec<_>>()
                                    .join(","))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        Ok(0)
    })
}
