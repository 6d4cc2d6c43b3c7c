//! `pipewright notify test CHANNEL` and `pipewright monitors`: the alert channels and the
//! monitors of a server.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::Value;

use crate::cli::ServerArgs;
use crate::client_cmd::{Client, field, runtime};

#[derive(Debug, Subcommand)]
pub(crate) enum NotifyCommand {
    /// Sends a test message to a channel of the server's `[[notify]]` and waits (up to 60 s)
    /// to say whether it went (needs the admin token).
    Test {
        #[command(flatten)]
        server: ServerArgs,
        /// The channel's `name`.
        channel: String,
    },
}

pub(crate) fn notify(cmd: NotifyCommand) -> Result<u8> {
    let NotifyCommand::Test { server, channel } = cmd;
    runtime()?.block_on(async move {
        let c = Client::new(&server)?;
        let path = format!(
            "/api/v1/notify/{}/test",
            crate::client_cmd::urlencode(&channel)
        );
        let queued = c.json(reqwest::Method::POST, &path, None).await?;
        let Some(id) = queued["id"].as_i64() else {
            bail!("the server queued no message");
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = c
                .json(reqwest::Method::GET, "/api/v1/alerts?limit=200", None)
                .await?;
            let alert = v["alerts"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["id"].as_i64() == Some(id)))
                .cloned()
                .unwrap_or(Value::Null);
            match alert["status"].as_str() {
                Some("sent") => {
                    println!("sent a test message to `{channel}`");
                    return Ok(0);
                }
                Some(_) if !alert["last_error"].is_null() => {
                    eprintln!(
                        "sending to `{channel}` failed: {}",
                        field(&alert["last_error"], "")
                    );
                    return Ok(1);
                }
                _ if Instant::now() > deadline => {
                    eprintln!("the test message to `{channel}` was not sent within 60 s");
                    return Ok(1);
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// `pipewright monitors`: each monitor, up or down, its last response time and uptime.
pub(crate) fn monitors(server: &ServerArgs, json: bool) -> Result<u8> {
    runtime()?.block_on(async move {
        let c = Client::new(server)?;
        let v = c
            .json(reqwest::Method::GET, "/api/v1/monitors", None)
            .await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v["monitors"])?);
            return Ok(0);
        }
        println!(
            "{:<24}  {:<8}  {:>8}  {:>9}  URL",
            "MONITOR", "STATE", "LAST", "UPTIME"
        );
        for m in v["monitors"].as_array().into_iter().flatten() {
            let state = match m["up"].as_bool() {
                Some(true) => "up",
                Some(false) => "DOWN",
                None => "unknown",
            };
            let last = m["last_response_ms"]
                .as_i64()
                .map_or("-".to_owned(), |ms| format!("{ms} ms"));
            let uptime = m["uptime_24h_percent"]
                .as_f64()
                .map_or("-".to_owned(), |p| format!("{p:.2}%"));
            println!(
                "{:<24}  {state:<8}  {last:>8}  {uptime:>9}  {}",
                field(&m["name"], ""),
                field(&m["url"], "")
            );
        }
        Ok(0)
    })
}
