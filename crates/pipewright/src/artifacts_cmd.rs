//! `pipewright artifacts`: a run's artifacts on a server (the list, one downloaded as a tar
//! archive) and a collection of expired artifacts and unused blobs now.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::Value;

use crate::cli::ServerArgs;
use crate::client_cmd::{Client, runtime};

#[derive(Debug, Subcommand)]
pub(crate) enum ArtifactsCommand {
    /// The artifacts of a run: name, files, bytes.
    List {
        #[command(flatten)]
        server: ServerArgs,
        run: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download an artifact of a run as a tar archive.
    Download {
        #[command(flatten)]
        server: ServerArgs,
        run: i64,
        name: String,
        /// Where to write it (default: NAME.tar; `-`: standard output).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Delete the artifacts past their retention, caches unused that long, and the blobs
    /// nothing names any more, now (needs the admin token).
    Gc {
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(crate) fn artifacts(cmd: ArtifactsCommand) -> Result<u8> {
    runtime()?.block_on(async {
        match cmd {
            ArtifactsCommand::List { server, run, json } => {
                let c = Client::new(&server)?;
                let v = c
                    .json(
                        reqwest::Method::GET,
                        &format!("/api/v1/runs/{run}/artifacts"),
                        None,
                    )
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v["details"])?);
                } else {
                    for a in v["details"].as_array().map_or(&[][..], Vec::as_slice) {
                        println!(
                            "{:<30} {:>6} files {:>12} bytes",
                            a["name"].as_str().unwrap_or(""),
                            a["files"],
                            a["size"]
                        );
                    }
                }
                Ok(0)
            }
            ArtifactsCommand::Download {
                server,
                run,
                name,
                output,
            } => {
                let c = Client::new(&server)?;
                let mut resp = c
                    .send(c.request(
                        reqwest::Method::GET,
                        &format!("/api/v1/runs/{run}/artifacts/{name}"),
                    ))
                    .await?;
                let output = output.unwrap_or_else(|| PathBuf::from(format!("{name}.tar")));
                let mut out: Box<dyn Write> = if output.as_os_str() == "-" {
                    Box::new(std::io::stdout().lock())
                } else {
                    Box::new(
                        std::fs::File::create(&output)
                            .with_context(|| format!("cannot create {}", output.display()))?,
                    )
                };
                while let Some(chunk) =
                    resp.chunk().await.context("the download was interrupted")?
                {
                    out.write_all(&chunk)?;
                }
                out.flush()?;
                Ok(0)
            }
            ArtifactsCommand::Gc { server } => {
                let c = Client::new(&server)?;
                let v: Value = c
                    .json(reqwest::Method::POST, "/api/v1/admin/gc", None)
                    .await?;
                println!(
                    "deleted {} artifacts, {} caches, {} blobs ({} bytes)",
                    v["artifacts"], v["caches"], v["blobs"], v["bytes"]
                );
                Ok(0)
            }
        }
    })
}
