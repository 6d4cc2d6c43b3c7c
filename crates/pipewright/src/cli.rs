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
    /// The event payload (JSON), as GitHub would send it.
    #[arg(long)]
    pub(crate) event_path: Option<PathBuf>,
    /// Print the plan and run nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Write a JSON report of the run to this file.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Where jobs' workspaces go (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// Keep the work directory after the run.
    #[arg(long)]
    pub(crate) keep: bool,
    /// The repository (default: the git work tree around the current directory).
    #[arg(long, short = 'C')]
    pub(crate) directory: Option<PathBuf>,
}
