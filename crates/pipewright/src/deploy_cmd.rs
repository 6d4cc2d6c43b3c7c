//! `pipewright deploy`, `rollback`, `releases`, `deploy-lock` and the hidden `deploy-agent`:
//! reading `.pipewright/deploy.yml`, printing progress, and the exit codes (0 deployed and
//! healthy, 1 failed before anything live changed, 2 bad configuration or arguments, 3 rolled
//! back, 4 the rollback failed too, 5 locked).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use deploy::{Event, Outcome, Target};

use crate::repo;

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The environment, as named in .pipewright/deploy.yml.
    pub(crate) environment: String,
    /// The release to deploy: a directory, or a tarball.
    #[arg(long)]
    pub(crate) artifact: PathBuf,
    /// A label for the release (default: the artifact's name).
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Check the configuration and the artifact, and show the plan; touch no host.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// How long to wait for another deploy's lock (e.g. 30s; default: do not wait).
    #[arg(long, value_name = "DURATION")]
    pub(crate) lock_wait: Option<String>,
    /// The repository (default: the one around the current directory).
    #[arg(long, short = 'C')]
    pub(crate) directory: Option<PathBuf>,
    /// Record the deploy on this pipewright server as it goes (with --repo and an API
    /// token); a server that cannot record it does not stop the deploy.
    #[arg(long, env = "PIPEWRIGHT_SERVER", value_name = "URL")]
    pub(crate) server: Option<String>,
    /// The repository the server knows the deploy by (`OWNER/NAME`).
    #[arg(long, env = "PIPEWRIGHT_REPO", value_name = "OWNER/NAME")]
    pub(crate) repo: Option<String>,
    /// The server's API token.
    #[arg(long, env = "PIPEWRIGHT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    pub(crate) environment: String,
    /// The release to go back to (default: the newest healthy one before the current).
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Also restore the database from the backup taken when the next release was deployed.
    #[arg(long)]
    pub(crate) with_db: bool,
    #[arg(long, value_name = "DURATION")]
    pub(crate) lock_wait: Option<String>,
    #[arg(long, short = 'C')]
    pub(crate) directory: Option<PathBuf>,
    /// Ask this pipewright server to roll back: the job that made the environment's current
    /// deployment runs again on a runner that reaches the hosts, rolling back, and the
    /// server records it. Waits for it; the exit code is 0 when it rolled back.
    #[arg(long, value_name = "URL", conflicts_with_all = ["with_db", "lock_wait", "directory"])]
    pub(crate) server: Option<String>,
    /// With --server: the repository (default: the one repository that has this environment).
    #[arg(long, requires = "server", value_name = "OWNER/NAME")]
    pub(crate) repo: Option<String>,
    /// With --server: a bearer token.
    #[arg(long, env = "PIPEWRIGHT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ReleasesArgs {
    pub(crate) environment: String,
    /// JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[arg(long, short = 'C')]
    pub(crate) directory: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LockAction {
    Status,
    Release,
}

#[derive(Debug, Args)]
pub(crate) struct DeployLockArgs {
    pub(crate) environment: String,
    pub(crate) action: LockAction,
    /// Release the lock even if a live deploy holds it (stops that deploy's agent).
    #[arg(long)]
    pub(crate) force: bool,
    #[arg(long, short = 'C')]
    pub(crate) directory: Option<PathBuf>,
}

/// The checked configuration of one environment, with what the commands need around it.
struct Loaded {
    root: PathBuf,
    env: deploy::Environment,
    settings: deploy::Settings,
}

fn load(directory: Option<&Path>, environment: &str) -> Result<Loaded> {
    let cwd = std::env::current_dir()?;
    let start = directory.map_or_else(|| cwd.clone(), |d| cwd.join(d));
    let root = repo::Repo::discover(&start).map_or(start, |r| r.root);
    let file = root.join(".pipewright/deploy.yml");
    let shown = repo::display_path(&file, &cwd);
    let src = std::fs::read_to_string(&file).with_context(|| format!("cannot read {shown}"))?;
    let parsed = deploy::parse(&src);
    let color = crate::validate_cmd::color_stderr();
    for d in &parsed.diagnostics {
        eprint!("{}", workflow::render(d, &shown, &src, color));
    }
    let Some(config) = parsed.config else {
        bail!("{shown} is not valid");
    };
    let Some(env) = config.environments.get(environment).cloned() else {
        let names: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        bail!(
            "no environment `{environment}` in {shown}; it has: {}",
            names.join(", ")
        );
    };
    let mut settings = env.settings.clone();
    if let Some(f) = &env.env_file {
        for (k, v) in deploy::dotenv::read(&root.join(f))? {
            settings.env.entry(k).or_insert(v);
        }
    }
    Ok(Loaded {
        root,
        env,
        settings,
    })
}

pub(crate) fn who() -> String {
    if let Ok(w) = std::env::var("PIPEWRIGHT_DEPLOYER") {
        return w;
    }
    // The account's name even where the environment names none (a service, `su -c`).
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| whoami::username().ok())
        .unwrap_or_else(|| "unknown".into());
    match whoami::hostname() {
        Ok(host) if !host.is_empty() => format!("{user}@{host}"),
        _ => user,
    }
}

pub(crate) fn lock_wait(s: Option<&str>) -> Result<u64> {
    match s {
        None => Ok(0),
        Some(s) => match workflow::duration::parse_duration(s) {
            Some(d) => Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => bail!("--lock-wait `{s}` is not a duration (such as 30s or 2m)"),
        },
    }
}

fn target<'a>(l: &'a Loaded) -> Result<Target<'a>> {
    Ok(Target {
        env: &l.env,
        root: &l.root,
        who: who(),
        agent_binary: engine::process::running_binary()
            .context("cannot find the pipewright binary")?,
        settings: l.settings.clone(),
        ssh_env: Vec::new(),
    })
}

/// Prints progress on stderr.
fn progress(host: &str, ev: &Event) {
    if let Some(line) = deploy::protocol::describe(host, ev) {
        eprintln!("{line}");
    }
}

fn conclude(summary: &deploy::Summary) -> u8 {
    eprintln!("{}: {}", outcome_word(summary.outcome), summary.message);
    summary.outcome.exit_code()
}

/// How a command ended, in words.
pub(crate) fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "done",
        Outcome::Failed => "failed, nothing live changed",
        Outcome::RolledBack => "failed and rolled back",
        Outcome::RollbackFailed => "failed, and the rollback failed too",
        Outcome::Locked => "another deploy holds the lock",
    }
}

pub(crate) fn deploy(args: &DeployArgs) -> Result<u8> {
    let l = load(args.directory.as_deref(), &args.environment)?;
    let wait = lock_wait(args.lock_wait.as_deref())?;
    let (dir, _guard) = deploy::artifact_dir(&args.artifact).map_err(anyhow::Error::new)?;
    let version = args.version.clone().unwrap_or_else(|| {
        args.artifact
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    if args.dry_run {
        let m = deploy::manifest::Manifest::build(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?;
        let files = m
            .entries
            .iter()
            .filter(|e| matches!(e, deploy::manifest::Entry::File { .. }))
            .count();
        println!(
            "would deploy {version} ({files} files, {} bytes) to {} at {} on {}",
            m.total_bytes(),
            args.environment,
            l.settings.path,
            l.env.hosts.join(", ")
        );
        return Ok(0);
    }
    let t = target(&l)?;
    let record = Record::start(args, &l, &t, &version)?;
    let opts = deploy::DeployOptions {
        version,
        lock_wait_ms: wait,
        fault: std::env::var("PIPEWRIGHT_TEST_FAULT").ok(),
    };
    let mut seen = deploy::record::Seen::default();
    let done = t.deploy(&dir, &opts, &mut |host: &str, ev: &Event| {
        progress(host, ev);
        seen.remember(host, ev);
    });
    if let Some(r) = record {
        let (status, message) = match &done {
            Ok(s) => (deploy::record::status_of(s.outcome), s.message.clone()),
            Err(e) => ("failed", e.to_string()),
        };
        r.finish(status, &message, seen);
    }
    match done {
        Ok(summary) => {
            eprintln!(
                "sent {} files ({} bytes), linked {}; {} bytes to the host in all",
                summary.files_sent, summary.bytes_sent, summary.files_linked, summary.wire_bytes
            );
            Ok(conclude(&summary))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}

/// A deploy being recorded on a server (`--server`).
struct Record {
    runtime: tokio::runtime::Runtime,
    recorder: actions::record::Recorder,
    id: i64,
    server: String,
}

impl Record {
    /// Records the start on `--server`, if there is one and it can; says so when not.
    fn start(
        args: &DeployArgs,
        l: &Loaded,
        t: &Target<'_>,
        version: &str,
    ) -> Result<Option<Record>> {
        let Some(server) = args.server.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let Some(repo) = args.repo.as_deref().filter(|r| !r.is_empty()) else {
            eprintln!(
                "note: not recorded on {server}: say which repository it deploys with --repo or PIPEWRIGHT_REPO"
            );
            return Ok(None);
        };
        let Some(recorder) =
            actions::record::Recorder::for_cli(server, args.token.as_deref().unwrap_or_default())
        else {
            return Ok(None);
        };
        let runtime = crate::client_cmd::runtime()?;
        let sha = crate::repo::Repo::discover(&l.root)
            .ok()
            .and_then(|r| r.head())
            .unwrap_or_default();
        let monitors = actions::record::watched(&l.root, &l.env, &l.settings);
        let start = actions::record::Start {
            repo: Some(repo),
            environment: &args.environment,
            version,
            hosts: &l.env.hosts,
            sha: Some(&sha),
            who: Some(&t.who),
            monitors: &monitors,
        };
        match runtime.block_on(recorder.start(&start)) {
            Ok(id) => Ok(Some(Record {
                runtime,
                recorder,
                id,
                server: server.to_owned(),
            })),
            Err(e) => {
                eprintln!("note: {server} did not record this deploy ({e}); deploying anyway");
                Ok(None)
            }
        }
    }

    fn finish(self, status: &str, message: &str, seen: deploy::record::Seen) {
        let done = self
            .runtime
            .block_on(self.recorder.finish(self.id, status, message, seen));
        match done {
            Ok(()) => eprintln!("recorded on {} as deployment {}", self.server, self.id),
            Err(e) => eprintln!(
                "note: {} did not record how this deploy ended ({e})",
                self.server
            ),
        }
    }
}

pub(crate) fn rollback(args: &RollbackArgs) -> Result<u8> {
    if let Some(server) = &args.server {
        return crate::client_cmd::rollback_on_server(
            &crate::cli::ServerArgs {
                server: server.clone(),
                token: args.token.clone(),
            },
            &args.environment,
            args.repo.as_deref(),
            args.to.as_deref(),
        );
    }
    let l = load(args.directory.as_deref(), &args.environment)?;
    let wait = lock_wait(args.lock_wait.as_deref())?;
    let t = target(&l)?;
    match t.rollback(args.to.as_deref(), args.with_db, wait, &mut progress) {
        Ok(summary) => Ok(conclude(&summary)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}

pub(crate) fn releases(args: &ReleasesArgs) -> Result<u8> {
    let l = load(args.directory.as_deref(), &args.environment)?;
    let t = target(&l)?;
    let hosts = match t.releases(&mut progress) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    if args.json {
        let v: Vec<_> = hosts
            .iter()
            .map(|(h, r)| serde_json::json!({"host": h, "releases": r}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    for (host, releases) in &hosts {
        print_releases(host, releases);
    }
    Ok(0)
}

/// One host's releases as a table.
pub(crate) fn print_releases(host: &str, releases: &[deploy::ReleaseInfo]) {
    println!("{host}:");
    println!(
        "  {:<20} {:<16} {:<21} {:<12} DEPLOYED BY",
        "RELEASE", "VERSION", "CREATED", "STATUS"
    );
    for r in releases {
        println!(
            "  {:<20} {:<16} {:<21} {:<12} {}",
            r.id, r.version, r.created, r.status, r.deployed_by
        );
    }
}

pub(crate) fn deploy_lock(args: &DeployLockArgs) -> Result<u8> {
    let l = load(args.directory.as_deref(), &args.environment)?;
    let t = target(&l)?;
    let release = matches!(args.action, LockAction::Release);
    let hosts = match t.lock(release, args.force, &mut |_, _| {}) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let mut code = 0;
    for (host, holder, released) in hosts {
        match (holder, released) {
            (_, true) => println!("{host}: released"),
            (None, false) => println!("{host}: free"),
            (Some(h), false) => {
                println!("{host}: held: {h}");
                if release {
                    eprintln!("{host}: not released: a live deploy holds it (use --force)");
                }
                code = 5;
            }
        }
    }
    Ok(code)
}

/// `pipewright deploy-agent`: the host side, on stdin and stdout.
pub(crate) fn agent() -> u8 {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    deploy::agent::serve(stdin, stdout)
}
