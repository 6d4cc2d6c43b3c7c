//! `pipewright deploy-host --path PATH status|releases|rollback`: an environment's commands
//! on the host itself, run by the `deploy.sh` each healthy deploy leaves in the deploy path
//! (the seed's `cd /var/www/innerarchitect/production && ./deploy.sh rollback`). They go
//! through the agent as a deployer's would, with the settings the last healthy deploy or
//! rollback left, so the lock, journal and history are the same ones.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use deploy::protocol::Request;
use deploy::{Event, Outcome};

use crate::deploy_cmd;

#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    /// The environment's deploy path on this host.
    #[arg(long)]
    path: PathBuf,
    #[command(subcommand)]
    command: HostCommand,
}

#[derive(Debug, Subcommand)]
enum HostCommand {
    /// The live release, the lock and the last command.
    Status,
    /// Every release, newest first.
    Releases {
        #[arg(long)]
        json: bool,
    },
    /// Back to the newest healthy release before the live one (or `--to`), here.
    Rollback {
        #[arg(long)]
        to: Option<String>,
        /// Also restore the database from the backup taken when the next release deployed.
        #[arg(long)]
        with_db: bool,
        #[arg(long, value_name = "DURATION")]
        lock_wait: Option<String>,
    },
}

/// Turns the agent's JSON lines back into events as they come.
struct Events<F: FnMut(Event)> {
    buf: Vec<u8>,
    each: F,
}

impl<F: FnMut(Event)> Write for Events<F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let ev = serde_json::from_slice(&line).map_err(std::io::Error::other)?;
            (self.each)(ev);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs one request through the agent here; its events go to `each`. Returns the exit code.
fn ask(req: &Request, each: impl FnMut(Event)) -> Result<u8> {
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    let mut out = Events {
        buf: Vec::new(),
        each,
    };
    Ok(deploy::agent::serve(Cursor::new(line), &mut out))
}

fn hostname() -> String {
    whoami::hostname()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".into())
}

pub(crate) fn run(args: &HostArgs) -> Result<u8> {
    let path = std::path::absolute(&args.path)
        .with_context(|| format!("cannot resolve {}", args.path.display()))?;
    let settings = deploy::agent::entry::read(&path).with_context(|| {
        format!(
            "{} has no settings from a healthy deploy: deploy it (or roll it back) once with pipewright first",
            path.display()
        )
    })?;
    let host = hostname();
    match &args.command {
        HostCommand::Releases { json } => {
            let releases = releases(&settings)?;
            if *json {
                let v = serde_json::json!([{"host": host, "releases": releases}]);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                deploy_cmd::print_releases(&host, &releases);
            }
            Ok(0)
        }
        HostCommand::Status => status(&settings, &host, &path),
        HostCommand::Rollback {
            to,
            with_db,
            lock_wait,
        } => {
            let req = Request::Rollback {
                settings,
                who: format!("{} (on the host)", deploy_cmd::who()),
                to: to.clone(),
                with_db: *with_db,
                lock_wait_ms: deploy_cmd::lock_wait(lock_wait.as_deref())?,
            };
            ask(&req, |ev| match &ev {
                Event::Result {
                    outcome, message, ..
                } => eprintln!("{}: {message}", deploy_cmd::outcome_word(*outcome)),
                _ => {
                    if let Some(line) = deploy::protocol::describe(&host, &ev) {
                        eprintln!("{line}");
                    }
                }
            })
        }
    }
}

fn releases(settings: &deploy::Settings) -> Result<Vec<deploy::ReleaseInfo>> {
    let mut found = Vec::new();
    let mut failed = None;
    ask(
        &Request::Releases {
            settings: settings.clone(),
        },
        |ev| match ev {
            Event::Releases { releases } => found = releases,
            Event::Result {
                outcome: Outcome::Failed,
                message,
                ..
            } => failed = Some(message),
            _ => {}
        },
    )?;
    match failed {
        Some(m) => anyhow::bail!("cannot list the releases: {m}"),
        None => Ok(found),
    }
}

/// The live release, who holds the lock, and the last line of the history.
fn status(settings: &deploy::Settings, host: &str, path: &std::path::Path) -> Result<u8> {
    let releases = releases(settings)?;
    let mut holder = None;
    ask(
        &Request::LockStatus {
            settings: settings.clone(),
        },
        |ev| {
            if let Event::Lock { holder: h, .. } = ev {
                holder = h;
            }
        },
    )?;
    println!(
        "{host}: {} {} in {}",
        settings.app,
        settings.environment,
        path.display()
    );
    match releases.iter().find(|r| r.status == "current") {
        Some(r) => println!(
            "  live:  {} ({}), deployed {} by {}",
            r.version, r.id, r.created, r.deployed_by
        ),
        None => println!("  live:  nothing"),
    }
    match holder {
        Some(h) => println!("  lock:  held: {h}"),
        None => println!("  lock:  free"),
    }
    let history = deploy::release::Layout::new(path)
        .meta()
        .join("history.jsonl");
    let last = std::fs::read_to_string(&history).ok().and_then(|h| {
        h.lines()
            .last()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    });
    if let Some(e) = last {
        let field = |k: &str| e[k].as_str().unwrap_or("").to_owned();
        println!(
            "  last:  {} of {} at {} by {}: {} ({})",
            field("operation"),
            field("version"),
            field("at"),
            field("who"),
            field("result"),
            field("message"),
        );
    }
    Ok(0)
}
