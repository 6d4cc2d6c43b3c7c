//! The CLI's side of the server API: runs, logs, dispatch, cancel, and the git hook.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::Value;

use crate::cli::{
    CancelArgs, DecideArgs, DispatchArgs, HookCommand, LogsArgs, RerunArgs, RunsCommand,
    SecretsCommand, ServerArgs, TokensCommand,
};

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(args: &ServerArgs) -> Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder().build()?,
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub(crate) async fn send(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = r
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let msg = body["error"].as_str().unwrap_or("no details").to_owned();
            bail!("the server answered {status}: {msg}");
        }
        Ok(resp)
    }

    pub(crate) async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        Ok(self.send(r).await?.json().await?)
    }
}

/// A field of the API's answer as text for the terminal (control characters shown).
pub(crate) fn field<'a>(v: &'a Value, default: &'a str) -> std::borrow::Cow<'a, str> {
    engine::mask::neutralise(v.as_str().unwrap_or(default))
}

fn print_runs(runs: &[Value]) {
    println!(
        "{:>6}  {:<10}  {:<10}  {:<20}  {:<12}  {:<24}  WORKFLOW",
        "ID", "STATUS", "RESULT", "REPO", "EVENT", "REF"
    );
    for r in runs {
        println!(
            "{:>6}  {:<10}  {:<10}  {:<20}  {:<12}  {:<24}  {}",
            r["id"].as_i64().unwrap_or_default(),
            field(&r["status"], ""),
            field(&r["conclusion"], "-"),
            field(&r["repo"], ""),
            field(&r["event"], ""),
            field(&r["ref"], ""),
            field(&r["workflow"], ""),
        );
    }
}

pub(crate) fn runs(cmd: RunsCommand) -> Result<u8> {
    runtime()?.block_on(async move {
        match cmd {
            RunsCommand::List { server, repo, json } => {
                let c = Client::new(&server)?;
                let path = match &repo {
                    Some(r) => format!("/api/v1/runs?repo={}", urlencode(r)),
                    None => "/api/v1/runs".to_owned(),
                };
                let v = c.json(reqwest::Method::GET, &path, None).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_runs(v.as_array().map(Vec::as_slice).unwrap_or_default());
                }
            }
            RunsCommand::Show { server, id, json } => {
                let c = Client::new(&server)?;
                let v = c
                    .json(reqwest::Method::GET, &format!("/api/v1/runs/{id}"), None)
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_runs(std::slice::from_ref(&v));
                    if let Some(reason) = v["reason"].as_str() {
                        println!();
                        for line in reason.lines() {
                            println!("{}", engine::mask::neutralise(line));
                        }
                    }
                    println!();
                    for j in v["jobs"].as_array().into_iter().flatten() {
                        println!(
                            "  {:<10} {:<10} {}",
                            field(&j["status"], ""),
                            field(&j["conclusion"], "-"),
                            field(&j["name"], "")
                        );
                    }
                }
            }
        }
        Ok(0)
    })
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Follows a run's log (Server-Sent Events) to its end; returns the conclusion.
async fn follow(c: &Client, id: i64, job: Option<&str>, out: &mut impl Write) -> Result<String> {
    let mut path = format!("/api/v1/runs/{id}/logs?follow=true");
    if let Some(j) = job {
        path.push_str(&format!("&job={}", urlencode(j)));
    }
    let resp = c.send(c.request(reqwest::Method::GET, &path)).await?;
    until_done(resp, &mut |d| {
        // A log is the job's text: shown, never obeyed by the terminal.
        writeln!(out, "{}", engine::mask::neutralise(d))?;
        out.flush()?;
        Ok(())
    })
    .await
}

/// Reads the Server-Sent Events of `resp` until `done`: its data (the run's conclusion), or
/// nothing if the stream ended first. The data of every other event goes to `data`.
async fn until_done(
    resp: reqwest::Response,
    data: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<String> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut event = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                let d = d.strip_prefix(' ').unwrap_or(d);
                if event == "done" {
                    return Ok(d.to_owned());
                }
                data(d)?;
            }
        }
    }
    Ok(String::new())
}

/// Waits for run `id`'s end (`GET /api/v1/runs/{id}/wait`: no log lines read or sent); its
/// conclusion.
async fn wait_for(c: &Client, id: i64) -> Result<String> {
    let resp = c
        .send(c.request(reqwest::Method::GET, &format!("/api/v1/runs/{id}/wait")))
        .await?;
    until_done(resp, &mut |_| Ok(())).await
}

pub(crate) fn logs(args: &LogsArgs) -> Result<u8> {
    runtime()?.block_on(async move {
        let c = Client::new(&args.server)?;
        if args.follow {
            let conclusion =
                follow(&c, args.id, args.job.as_deref(), &mut std::io::stdout()).await?;
            return Ok(u8::from(!conclusion.is_empty() && conclusion != "success"));
        }
        let mut path = format!("/api/v1/runs/{}/logs", args.id);
        if let Some(j) = &args.job {
            path.push_str(&format!("?job={}", urlencode(j)));
        }
        let text = c
            .send(c.request(reqwest::Method::GET, &path))
            .await?
            .text()
            .await?;
        let mut out = std::io::stdout().lock();
        for line in text.lines() {
            writeln!(out, "{}", engine::mask::neutralise(line))?;
        }
        Ok(0)
    })
}

pub(crate) fn dispatch(args: &DispatchArgs) -> Result<u8> {
    let mut inputs = serde_json::Map::new();
    for i in &args.inputs {
        let Some((k, v)) = i.split_once('=') else {
            bail!("--input `{i}` must be NAME=VALUE");
        };
        inputs.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    runtime()?.block_on(async move {
        let c = Client::new(&args.server)?;
        let body =
            serde_json::json!({"workflow": args.workflow, "ref": args.git_ref, "inputs": inputs});
        let v = c
            .json(
                reqwest::Method::POST,
                &format!("/api/v1/repos/{}/dispatch", urlencode(&args.repo)),
                Some(body),
            )
            .await?;
        let ids: Vec<i64> = v["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .collect();
        if !args.wait {
            for id in &ids {
                println!("{id}");
            }
            return Ok(0);
        }
        let mut ok = true;
        for id in ids {
            let conclusion = wait_for(&c, id).await?;
            println!("{id} {conclusion}");
            ok &= conclusion == "success";
        }
        Ok(u8::from(!ok))
    })
}

pub(crate) fn cancel(args: &CancelArgs) -> Result<u8> {
    runtime()?.block_on(async move {
        let c = Client::new(&args.server)?;
        let v = c
            .json(
                reqwest::Method::POST,
                &format!("/api/v1/runs/{}/cancel", args.id),
                None,
            )
            .await?;
        println!(
            "run {}: {}",
            args.id,
            v["status"].as_str().unwrap_or_default()
        );
        Ok(0)
    })
}

/// `pipewright approve RUN` / `pipewright reject RUN`.
pub(crate) fn decide(args: &DecideArgs, what: &str) -> Result<u8> {
    runtime()?.block_on(async move {
        let c = Client::new(&args.server)?;
        let query = args
            .job
            .as_deref()
            .map(|j| format!("?job={}", urlencode(j)))
            .unwrap_or_default();
        let v = c
            .json(
                reqwest::Method::POST,
                &format!("/api/v1/runs/{}/{what}{query}", args.id),
                None,
            )
            .await?;
        match v["jobs"].as_array() {
            Some(jobs) => {
                for j in jobs {
                    println!(
                        "run {}, job {}: {}",
                        args.id,
                        field(j, ""),
                        field(&v["decision"], "")
                    );
                }
            }
            None => println!("run {}: {}", args.id, field(&v["status"], "")),
        }
        Ok(0)
    })
}

/// `pipewright rollback ENV --server URL`: asks the server to roll the environment back
/// (to release `to`, else the one before the current), then follows the run it queued: 0
/// when it rolled back, 1 when not.
pub(crate) fn rollback_on_server(
    server: &ServerArgs,
    environment: &str,
    repo: Option<&str>,
    to: Option<&str>,
) -> Result<u8> {
    runtime()?.block_on(async move {
        let c = Client::new(server)?;
        let repo = match repo {
            Some(r) => r.to_owned(),
            None => {
                let v = c
                    .json(reqwest::Method::GET, "/api/v1/environments", None)
                    .await?;
                let repos: Vec<String> = v["environments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["environment"] == environment)
                    .filter_map(|e| e["repo"].as_str().map(str::to_owned))
                    .collect();
                match repos.as_slice() {
                    [one] => one.clone(),
                    [] => bail!("the server knows no deployment to `{environment}`"),
                    many => bail!(
                        "repositories {} all deploy to `{environment}`: say which with --repo",
                        many.join(", ")
                    ),
                }
            }
        };
        let v = c
            .json(
                reqwest::Method::POST,
                &format!(
                    "/api/v1/environments/{}/{}/rollback",
                    urlencode(&repo),
                    urlencode(environment)
                ),
                Some(serde_json::json!({ "to": to })),
            )
            .await?;
        let run = v["run"].as_i64().unwrap_or_default();
        eprintln!(
            "rolling {environment} of {repo} back to release {} ({}): run {run}, {}",
            field(&v["release"], "?"),
            field(&v["version"], "?"),
            field(&v["url"], "")
        );
        loop {
            let r = c
                .json(reqwest::Method::GET, &format!("/api/v1/runs/{run}"), None)
                .await?;
            if r["status"] == "completed" {
                let conclusion = field(&r["conclusion"], "unknown").into_owned();
                println!("run {run}: {conclusion}");
                return Ok(if conclusion == "success" { 0 } else { 1 });
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
}

pub(crate) fn rerun(args: &RerunArgs) -> Result<u8> {
    runtime()?.block_on(async move {
        let c = Client::new(&args.server)?;
        let v = c
            .json(
                reqwest::Method::POST,
                &format!("/api/v1/runs/{}/rerun?failed={}", args.id, args.failed),
                None,
            )
            .await?;
        for id in v["runs"].as_array().into_iter().flatten() {
            println!("{id}");
        }
        Ok(0)
    })
}

pub(crate) fn hook(cmd: HookCommand) -> Result<u8> {
    let HookCommand::PostReceive {
        server,
        repo,
        token_file,
    } = cmd;
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read the hook token {}", token_file.display()))?;
    let lines: Vec<String> = std::io::stdin().lock().lines().collect::<Result<_, _>>()?;
    runtime()?.block_on(async move {
        let c = Client {
            http: reqwest::Client::new(),
            base: server.trim_end_matches('/').to_owned(),
            token: Some(token.trim().to_owned()),
        };
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [before, after, git_ref] = parts[..] else {
                continue;
            };
            let body =
                serde_json::json!({"repo": repo, "ref": git_ref, "before": before, "after": after});
            match c
                .json(reqwest::Method::POST, "/api/v1/internal/push", Some(body))
                .await
            {
                Ok(v) => {
                    let n = v["runs"].as_array().map_or(0, Vec::len);
                    eprintln!("pipewright: {git_ref}: {n} run(s) queued");
                }
                // A push must not fail because the server is down: say so and go on.
                Err(e) => eprintln!("pipewright: {git_ref}: not reported to the server: {e:#}"),
            }
        }
        Ok(0)
    })
}

fn scope_query(repo: Option<&str>, environment: Option<&str>) -> String {
    let mut q = Vec::new();
    if let Some(r) = repo {
        q.push(format!("repo={}", urlencode(r)));
    }
    if let Some(e) = environment {
        q.push(format!("environment={}", urlencode(e)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub(crate) fn secrets(cmd: SecretsCommand) -> Result<u8> {
    match cmd {
        SecretsCommand::Set {
            server,
            name,
            repo,
            environment,
        } => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .context("reading the value from stdin")?;
            let value = value.strip_suffix('\n').unwrap_or(&value).to_owned();
            runtime()?.block_on(async move {
                let c = Client::new(&server)?;
                let path = format!(
                    "/api/v1/secrets/{}{}",
                    urlencode(&name),
                    scope_query(repo.as_deref(), environment.as_deref())
                );
                c.send(c.request(reqwest::Method::PUT, &path).body(value))
                    .await?;
                println!("secret {name} set");
                Ok(0)
            })
        }
        SecretsCommand::List { server } => runtime()?.block_on(async move {
            let c = Client::new(&server)?;
            let v = c
                .json(reqwest::Method::GET, "/api/v1/secrets", None)
                .await?;
            println!("{:<32}  {:<24}  ENVIRONMENT", "NAME", "REPOSITORY");
            for s in v.as_array().into_iter().flatten() {
                let or_all = |k: &str| match s[k].as_str() {
                    Some("") | None => "(all)".to_owned(),
                    Some(x) => x.to_owned(),
                };
                println!(
                    "{:<32}  {:<24}  {}",
                    s["name"].as_str().unwrap_or_default(),
                    or_all("repo"),
                    or_all("environment")
                );
            }
            Ok(0)
        }),
        SecretsCommand::Delete {
            server,
            name,
            repo,
            environment,
        } => runtime()?.block_on(async move {
            let c = Client::new(&server)?;
            let path = format!(
                "/api/v1/secrets/{}{}",
                urlencode(&name),
                scope_query(repo.as_deref(), environment.as_deref())
            );
            c.send(c.request(reqwest::Method::DELETE, &path)).await?;
            println!("secret {name} deleted");
            Ok(0)
        }),
    }
}

pub(crate) fn tokens(cmd: TokensCommand) -> Result<u8> {
    runtime()?.block_on(async move {
        match cmd {
            TokensCommand::Create { server, name } => {
                let c = Client::new(&server)?;
                let v = c
                    .json(
                        reqwest::Method::POST,
                        "/api/v1/tokens",
                        Some(serde_json::json!({ "name": name })),
                    )
                    .await?;
                println!("{}", v["token"].as_str().unwrap_or_default());
            }
            TokensCommand::List { server } => {
                let c = Client::new(&server)?;
                let v = c.json(reqwest::Method::GET, "/api/v1/tokens", None).await?;
                println!("{:>6}  {:<32}  CREATED", "ID", "NAME");
                for t in v.as_array().into_iter().flatten() {
                    println!(
                        "{:>6}  {:<32}  {}",
                        t["id"].as_i64().unwrap_or_default(),
                        field(&t["name"], ""),
                        t["created_at"].as_i64().unwrap_or_default()
                    );
                }
            }
            TokensCommand::Revoke { server, id } => {
                let c = Client::new(&server)?;
                c.send(c.request(reqwest::Method::DELETE, &format!("/api/v1/tokens/{id}")))
                    .await?;
                println!("token {id} revoked");
            }
        }
        Ok(0)
    })
}
