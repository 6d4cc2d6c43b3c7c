//! The command line as the user types it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pipewright",
    version,
    about = "Run GitHub Actions workflows locally, exactly as GitHub would."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check workflow files and report every problem with its place.
    Validate(ValidateArgs),
    /// Run the workflows an event fires, on this machine.
    Run(Box<RunArgs>),
    /// The CI server: triggers, persistent runs, the in-process runner, logs, API.
    Serve(ServeArgs),
    /// Runs on a server.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// The log of a run on a server.
    Logs(LogsArgs),
    /// Start a workflow_dispatch run on a server.
    Dispatch(DispatchArgs),
    /// Cancel a run on a server.
    Cancel(CancelArgs),
    /// Let a run that waits for approval (a fork's pull request) go, or its jobs waiting for
    /// a protected environment's approval.
    Approve(DecideArgs),
    /// End a run that waits for approval without running it, or fail its jobs waiting for a
    /// protected environment's approval.
    Reject(DecideArgs),
    /// Run a run's workflow again (same commit and event) on a server.
    Rerun(RerunArgs),
    /// Artifacts of runs on a server: list, download, collect expired ones.
    #[command(subcommand)]
    Artifacts(crate::artifacts_cmd::ArtifactsCommand),
    /// API tokens of a server.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Alert channels of a server (`[[notify]]`): send a test message.
    #[command(subcommand)]
    Notify(crate::notify_cmd::NotifyCommand),
    /// The dashboard's accounts on a server: add, set, list.
    #[command(subcommand)]
    Users(crate::users_cmd::UsersCommand),
    /// The monitors of a server: up or down, last response time, uptime over 24 hours.
    Monitors(MonitorsArgs),
    /// The admin token of a server on this machine.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Take jobs from a server and run them on this machine.
    Runner(crate::runner_cmd::RunnerArgs),
    /// The runners of a server: registration tokens, the list.
    #[command(subcommand)]
    Runners(crate::runner_cmd::RunnersCommand),
    /// Secrets on a server (values are read from stdin and never shown).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Called by git hooks that `pipewright serve` installs.
    #[command(subcommand, hide = true)]
    Hook(HookCommand),
    /// Deploy an artifact to an environment of .pipewright/deploy.yml.
    Deploy(crate::deploy_cmd::DeployArgs),
    /// Put an earlier release of an environment back.
    Rollback(crate::deploy_cmd::RollbackArgs),
    /// List an environment's releases.
    Releases(crate::deploy_cmd::ReleasesArgs),
    /// Show or release an environment's deploy lock.
    DeployLock(crate::deploy_cmd::DeployLockArgs),
    /// The host side of a deploy (started over ssh by the commands above).
    #[command(hide = true)]
    DeployAgent,
    /// An environment's releases on this host, without the deployer (run by the deploy.sh
    /// each healthy deploy leaves in the deploy path).
    #[command(hide = true)]
    DeployHost(crate::host_cmd::HostArgs),
    /// Runs one job of a runner, confined (started by the runner, the job on stdin).
    #[command(hide = true)]
    JobExec,
}

#[derive(Debug, Args)]
pub(crate) struct MonitorsArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Print the API's JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Where the server is and how to authenticate.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "PIPEWRIGHT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) server: String,
    /// A bearer token.
    #[arg(long, env = "PIPEWRIGHT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The configuration file (TOML).
    #[arg(long, short = 'c')]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// Runs, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        repo: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run and its jobs.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    pub(crate) id: i64,
    /// Only this job.
    #[arg(long)]
    pub(crate) job: Option<String>,
    /// Follow the log until the run ends.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DispatchArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    pub(crate) repo: String,
    pub(crate) workflow: String,
    #[arg(long = "ref")]
    pub(crate) git_ref: Option<String>,
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE")]
    pub(crate) inputs: Vec<String>,
    /// Wait for the runs to end; exit 0 if they all succeeded, 1 otherwise.
    #[arg(long)]
    pub(crate) wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    pub(crate) id: i64,
}

#[derive(Debug, Args)]
pub(crate) struct DecideArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    pub(crate) id: i64,
    /// Only this job (its name as `runs show` gives it) of those waiting for approval.
    #[arg(long)]
    pub(crate) job: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RerunArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    pub(crate) id: i64,
    /// Only the jobs that did not succeed; the successful ones are kept with their outputs.
    #[arg(long)]
    pub(crate) failed: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Creates a token (needs the admin token) and prints it once.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
    },
    /// Lists the API tokens: ids, names, when made (needs the admin token).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revokes an API token at once (needs the admin token).
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Prints the server's admin token, read on the server's machine from its
    /// configuration or, when none is configured, from its data directory.
    Show {
        /// The server's configuration file (TOML).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Sets a secret; the value is read from stdin.
    Set {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
        /// Only for this repository (default: every repository).
        #[arg(long)]
        repo: Option<String>,
        /// Only for jobs whose `environment:` is this one.
        #[arg(long)]
        environment: Option<String>,
    },
    /// Names and scopes of the secrets.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Deletes a secret.
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        environment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HookCommand {
    /// Reads `old new ref` lines from stdin and reports each push to the server.
    PostReceive {
        #[arg(long)]
        server: String,
        #[arg(long)]
        repo: String,
        #[arg(long)]
        token_file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Workflow files (default: every file in .github/workflows/).
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The event: push, pull_request, workflow_dispatch, schedule, ...
    #[arg(default_value = "push")]
    pub(crate) event: String,
    /// Job instances running at once (default: the number of cores).
    #[arg(long, short = 'j')]
    pub(crate) jobs: Option<usize>,
    /// Only this workflow file (a path, or a file name in .github/workflows/).
    #[arg(long, short = 'W')]
    pub(crate) workflow: Vec<PathBuf>,
    /// Only this job (and the jobs it needs).
    #[arg(long)]
    pub(crate) job: Option<String>,
    /// The ref the event is for (default: the current branch).
    #[arg(long = "ref")]
    pub(crate) git_ref: Option<String>,
    /// The base branch of a pull request (default: the repository's default branch).
    #[arg(long)]
    pub(crate) base_ref: Option<String>,
    /// Check out this commit instead of the work tree.
    #[arg(long)]
    pub(crate) sha: Option<String>,
    /// A secret: NAME=VALUE.
    #[arg(long = "secret", short = 's', value_name = "NAME=VALUE")]
    pub(crate) secrets: Vec<String>,
    /// A dotenv file of secrets.
    #[arg(long)]
    pub(crate) secrets_file: Option<PathBuf>,
    /// A configuration variable: NAME=VALUE.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub(crate) vars: Vec<String>,
    /// A dotenv file of variables.
    #[arg(long)]
    pub(crate) vars_file: Option<PathBuf>,
    /// A workflow_dispatch input: NAME=VALUE.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE")]
    pub(crate) inputs: Vec<String>,
    /// The event payload (JSON), as GitHub would send it (default: one made from the
    /// repository, with the fields GitHub's have).
    #[arg(long, visible_alias = "event-file", value_name = "FILE")]
    pub(crate) event_path: Option<PathBuf>,
    /// Fetch no action: use only the action cache and vendored copies (also
    /// PIPEWRIGHT_OFFLINE). Actions are fetched from PIPEWRIGHT_ACTIONS_URL (default
    /// https://github.com; several, separated by commas, tried in order).
    #[arg(long)]
    pub(crate) offline: bool,
    /// A variable of this environment jobs get (they get only PATH, HOME, USER, LANG, LC_*,
    /// TZ, TMPDIR, SSH_AUTH_SOCK, DOCKER_HOST and the proxies' otherwise); NAME=VALUE sets it.
    #[arg(long = "pass-env", value_name = "NAME")]
    pub(crate) pass_env: Vec<String>,
    /// Run the jobs of a `runs-on` label in a container of IMAGE (a local image; `host`:
    /// on this machine, the default), unless a job names its own `container`.
    #[arg(long = "image", short = 'P', value_name = "LABEL=IMAGE")]
    pub(crate) images: Vec<String>,
    /// Print the plan and run nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Write a JSON report of the run to this file.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Where jobs' workspaces go (default: a directory of the user's kept from run to run,
    /// `$TMPDIR/pipewright-UID/N`, emptied after each run).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// Keep the work directory after the run (a new temporary one, not emptied).
    #[arg(long)]
    pub(crate) keep: bool,
    /// The repository (default: the git work tree around the current directory).
    #[arg(long, short = 'C')]
    pub(crate) directory: Option<PathBuf>,
}
