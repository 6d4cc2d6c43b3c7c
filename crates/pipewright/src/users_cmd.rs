//! `pipewright users`: the dashboard's accounts on a server (admin token).

use std::io::Read;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;

use crate::cli::ServerArgs;
use crate::client_cmd::{Client, field, runtime, urlencode};

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Makes an account; prints its generated password once (or reads one from stdin with
    /// `--password-stdin`).
    Add {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
        /// admin, operator (runs, approves, deploys, rolls back) or viewer (reads only).
        #[arg(long, default_value = "viewer")]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Changes an account's role, and its password with `--password-stdin`; its sessions end.
    Set {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists the accounts and their roles.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn password(from_stdin: bool) -> Result<Option<String>> {
    if !from_stdin {
        return Ok(None);
    }
    let mut p = String::new();
    std::io::stdin()
        .read_to_string(&mut p)
        .context("reading the password from stdin")?;
    Ok(Some(p.trim_end_matches(['\n', '\r']).to_owned()))
}

pub(crate) fn users(cmd: UsersCommand) -> Result<u8> {
    runtime()?.block_on(async move {
        match cmd {
            UsersCommand::Add {
                server,
                name,
                role,
                password_stdin,
            } => {
                let body =
                    json!({ "name": name, "role": role, "password": password(password_stdin)? });
                let v = Client::new(&server)?
                    .json(reqwest::Method::POST, "/api/v1/users", Some(body))
                    .await?;
                match v["password"].as_str() {
                    Some(p) => println!(
                        "account `{}` ({}) made; its password (shown once): {p}",
                        field(&v["name"], ""),
                        field(&v["role"], "")
                    ),
                    None => println!(
                        "account `{}` ({}) made",
                        field(&v["name"], ""),
                        field(&v["role"], "")
                    ),
                }
            }
            UsersCommand::Set {
                server,
                name,
                role,
                password_stdin,
            } => {
                let body = json!({ "role": role, "password": password(password_stdin)? });
                let v = Client::new(&server)?
                    .json(
                        reqwest::Method::PUT,
                        &format!("/api/v1/users/{}", urlencode(&name)),
                        Some(body),
                    )
                    .await?;
                println!(
                    "account `{}` is {}; its sessions ended",
                    field(&v["name"], ""),
                    field(&v["role"], "")
                );
            }
            UsersCommand::List { server } => {
                let v = Client::new(&server)?
                    .json(reqwest::Method::GET, "/api/v1/users", None)
                    .await?;
                println!("{:<24}  ROLE", "NAME");
                for u in v["users"].as_array().into_iter().flatten() {
                    println!("{:<24}  {}", field(&u["name"], ""), field(&u["role"], ""));
                }
            }
        }
        Ok(0)
    })
}
