//! The `pipewright` binary: the command line over the engine. Errors end here, printed with
//! their chain; exit codes follow the documented contract (0 ok, 1 a job failed, 2 invalid
//! workflow or invocation, 130 cancelled).

mod artifacts_cmd;
mod cli;
mod client_cmd;
mod console;
mod deploy_cmd;
mod host_cmd;
mod notify_cmd;
mod repo;
mod run_cmd;
mod run_dir;
mod runner_cmd;
mod serve_cmd;
mod users_cmd;
mod validate_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// The command line, as `Cli::try_parse` reads it. The parser (clap's tree of every
/// subcommand and argument) is dropped only by the commands that go on running: for a short
/// one (`pipewright dispatch --wait`), taking it apart would be a tenth of its own work
/// (callgrind), and the process ends soon after.
fn parse_args() -> Result<cli::Cli, clap::Error> {
    let mut cmd = cli::Cli::command();
    let parsed = match cmd.try_get_matches_from_mut(std::env::args_os()) {
        Ok(mut m) => cli::Cli::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut cmd)),
        Err(e) => Err(e),
    };
    if matches!(
        parsed,
        Ok(cli::Cli {
            command: cli::Command::Serve(_) | cli::Command::Runner(_) | cli::Command::DeployHost(_),
            ..
        })
    ) {
        drop(cmd);
    } else {
        std::mem::forget(cmd);
    }
    parsed
}

fn main() -> ExitCode {
    // A runner starts this for every job: straight to it, without building the whole
    // command line's parser (a millisecond of a short job).
    if std::env::args_os().nth(1).is_some_and(|a| a == "job-exec") {
        serve_cmd::init_logging();
        return ExitCode::from(runner::job_exec(actions::registry()));
    }
    let cli = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if prints_and_ends(&cli.command) {
        quiet_on_closed_output();
    }
    let result = match cli.command {
        cli::Command::Validate(args) => validate_cmd::run(&args),
        cli::Command::Run(args) => run_cmd::run(*args),
        cli::Command::Serve(args) => serve_cmd::run(&args),
        cli::Command::Runs(cmd) => client_cmd::runs(cmd),
        cli::Command::Logs(args) => client_cmd::logs(&args),
        cli::Command::Dispatch(args) => client_cmd::dispatch(&args),
        cli::Command::Cancel(args) => client_cmd::cancel(&args),
        cli::Command::Approve(args) => client_cmd::decide(&args, "approve"),
        cli::Command::Reject(args) => client_cmd::decide(&args, "reject"),
        cli::Command::Rerun(args) => client_cmd::rerun(&args),
        cli::Command::Artifacts(cmd) => artifacts_cmd::artifacts(cmd),
        cli::Command::Secrets(cmd) => client_cmd::secrets(cmd),
        cli::Command::Tokens(cmd) => client_cmd::tokens(cmd),
        cli::Command::Notify(cmd) => notify_cmd::notify(cmd),
        cli::Command::Users(cmd) => users_cmd::users(cmd),
        cli::Command::Monitors(args) => notify_cmd::monitors(&args.server, args.json),
        cli::Command::Token(cmd) => serve_cmd::token(cmd),
        cli::Command::Runner(args) => runner_cmd::run(&args),
        cli::Command::Runners(cmd) => runner_cmd::runners(cmd),
        cli::Command::Hook(cmd) => client_cmd::hook(cmd),
        cli::Command::Deploy(args) => deploy_cmd::deploy(&args),
        cli::Command::Rollback(args) => deploy_cmd::rollback(&args),
        cli::Command::Releases(args) => deploy_cmd::releases(&args),
        cli::Command::DeployLock(args) => deploy_cmd::deploy_lock(&args),
        cli::Command::DeployAgent => Ok(deploy_cmd::agent()),
        cli::Command::DeployHost(args) => host_cmd::run(&args),
        // Taken above, before the parser.
        cli::Command::JobExec => Ok(runner::job_exec(actions::registry())),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether `command` only reads and prints (a listing, a log, a validation): one whose
/// reader may go away at any line, as `| head` does. Commands that change something (a
/// token or password shown once, a run, a deploy, a server) or talk to other processes
/// through pipes (ssh, for `releases`) are not ended by a closed pipe.
fn prints_and_ends(command: &cli::Command) -> bool {
    use crate::artifacts_cmd::ArtifactsCommand;
    use crate::runner_cmd::RunnersCommand;
    use crate::users_cmd::UsersCommand;
    use cli::{Command as C, SecretsCommand, TokenCommand, TokensCommand};
    matches!(
        command,
        C::Validate(_)
            | C::Runs(_)
            | C::Logs(_)
            | C::Monitors(_)
            | C::Artifacts(ArtifactsCommand::List { .. } | ArtifactsCommand::Download { .. })
            | C::Secrets(SecretsCommand::List { .. })
            | C::Tokens(TokensCommand::List { .. })
            | C::Users(UsersCommand::List { .. })
            | C::Token(TokenCommand::Show { .. })
            | C::Runners(RunnersCommand::List { .. })
    )
}

/// A closed standard output ends the process quietly, as it does any Unix filter
/// (`pipewright runs list | head`), instead of Rust's panic on the failed print: the
/// default action of SIGPIPE, which Rust's runtime ignores.
fn quiet_on_closed_output() {
    #[allow(unsafe_code)]
    // SAFETY: signal() with SIG_DFL installs no handler (no code runs in signal context);
    // it is called before any thread starts, so nothing races the change.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
