//! `pipewright run`: picks the workflows an event fires in this repository and runs them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use engine::{Conclusion, Planned, RunEnv, Source};
use expr::{Map, Value};
use tokio_util::sync::CancellationToken;
use workflow::Workflow;

use crate::cli::RunArgs;
use crate::console::Console;
use crate::repo::{self, Repo};

/// Parses `NAME=VALUE`.
fn pair(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => bail!("{what} `{s}` must be NAME=VALUE"),
    }
}

/// `--image LABEL=IMAGE`, in the order given.
pub(crate) fn images(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            let (label, image) = pair(p, "--image")?;
            if image.trim().is_empty() {
                bail!("--image `{p}` names no image (LABEL=IMAGE, or LABEL=host)");
            }
            Ok((label, image.trim().to_owned()))
        })
        .collect()
}

fn collect(pairs: &[String], file: Option<&Path>, what: &str) -> Result<Map> {
    let mut m = Map::new();
    if let Some(f) = file {
        for (k, v) in deploy::dotenv::read(f)? {
            m.insert(k, Value::String(v));
        }
    }
    for p in pairs {
        let (k, v) = pair(p, what)?;
        m.insert(k, Value::String(v));
    }
    Ok(m)
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache"))
        .join("pipewright")
}

/// The event as seen by triggers and the `github` context.
struct EventInfo {
    trigger: plan::trigger::Event,
    payload: serde_json::Value,
    git_ref: String,
    head_ref: String,
    base_ref: String,
}

/// `need_paths`: whether any workflow filters on paths (computing changed files costs git calls).
fn event_info(args: &RunArgs, repo: &Repo, sha: &str, need_paths: bool) -> Result<EventInfo> {
    let payload: serde_json::Value = match &args.event_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the event payload {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("the event payload {} is not valid JSON", p.display()))?
        }
        None => serde_json::Value::Object(serde_json::Map::new()),
    };
    let branch = repo.branch().unwrap_or_else(|| repo.default_branch());
    let full = |r: &str| {
        if r.starts_with("refs/") {
            r.to_owned()
        } else {
            format!("refs/heads/{r}")
        }
    };
    let payload_str = |ptr: &str| {
        payload
            .pointer(ptr)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let name = args.event.clone();
    let is_pr = name == "pull_request" || name == "pull_request_target";
    let action = payload_str("/action").or_else(|| is_pr.then(|| "opened".to_owned()));
    let (git_ref, head_ref, base_ref) = if is_pr {
        let base = args
            .base_ref
            .clone()
            .or_else(|| payload_str("/pull_request/base/ref"))
            .unwrap_or_else(|| repo.default_branch());
        let head = payload_str("/pull_request/head/ref").unwrap_or_else(|| branch.clone());
        let number = payload
            .pointer("/number")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        let r = args
            .git_ref
            .clone()
            .map(|r| full(&r))
            .unwrap_or_else(|| format!("refs/pull/{number}/merge"));
        (r, head, base)
    } else {
        let r = args
            .git_ref
            .clone()
            .or_else(|| payload_str("/ref"))
            .unwrap_or_else(|| branch.clone());
        (full(&r), String::new(), String::new())
    };
    let changed = match (need_paths, is_pr) {
        (false, _) => None,
        (true, true) => repo.changed_paths(Some(&base_ref)),
        (true, false) => repo.changed_paths(None),
    };
    let mut payload = payload;
    // A payload of the event's shape, with the fields GitHub's have, when none was given.
    if payload.as_object().is_some_and(serde_json::Map::is_empty) {
        let full_name = repo.name();
        let default_branch = repo.default_branch();
        let commit = repo.commit_info(sha).unwrap_or_default();
        let base_sha = if is_pr {
            repo.resolve(&base_ref).unwrap_or_default()
        } else {
            String::new()
        };
        let actor = actor();
        payload = workflow::payload::payload(&workflow::payload::Facts {
            event: &name,
            full_name: &full_name,
            default_branch: &default_branch,
            actor: &actor,
            sha,
            git_ref: &git_ref,
            head_ref: &head_ref,
            base_ref: &base_ref,
            base_sha: &base_sha,
            action: action.as_deref(),
            commit: &commit,
        });
    }
    Ok(EventInfo {
        trigger: plan::trigger::Event {
            name,
            git_ref: Some(git_ref.clone()),
            base_branch: is_pr.then(|| base_ref.clone()),
            action,
            changed_paths: changed,
        },
        payload,
        git_ref,
        head_ref,
        base_ref,
    })
}

/// Who runs it: the user, as GitHub's actor.
fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "pipewright".into())
}

fn github_context(repo: &Repo, ev: &EventInfo, sha: &str, run_id: &str) -> Map {
    let name = repo.name();
    let owner = name.split('/').next().unwrap_or_default().to_owned();
    let (ref_name, ref_type) = match ev.git_ref.strip_prefix("refs/tags/") {
        Some(t) => (t.to_owned(), "tag"),
        None => (
            ev.git_ref
                .strip_prefix("refs/heads/")
                .unwrap_or(&ev.git_ref)
                .to_owned(),
            "branch",
        ),
    };
    let actor = actor();
    let s = |v: &str| Value::String(v.to_owned());
    let mut g = Map::new();
    for (k, v) in [
        ("event_name", s(&ev.trigger.name)),
        ("ref", s(&ev.git_ref)),
        ("ref_name", s(&ref_name)),
        ("ref_type", s(ref_type)),
        ("ref_protected", Value::Bool(false)),
        ("sha", s(sha)),
        ("repository", s(&name)),
        ("repository_owner", s(&owner)),
        ("actor", s(&actor)),
        ("triggering_actor", s(&actor)),
        ("head_ref", s(&ev.head_ref)),
        ("base_ref", s(&ev.base_ref)),
        ("run_id", s(run_id)),
        ("run_number", s("1")),
        ("run_attempt", s("1")),
        ("retention_days", s("90")),
        ("server_url", s("https://github.com")),
        ("api_url", s("https://api.github.com")),
        ("graphql_url", s("https://api.github.com/graphql")),
        ("token", s("")),
        ("action", s("")),
        ("event", Value::from_json(ev.payload.clone())),
    ] {
        g.insert(k.to_owned(), v);
    }
    g
}

pub(crate) fn run(args: RunArgs) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let dir = args.directory.clone().unwrap_or_else(|| cwd.clone());
    let repo = Repo::discover(&dir)?;
    // An event payload made here tells of HEAD's commit: git is asked while the workflows
    // are read.
    if args.event_path.is_none() && args.sha.is_none() && !args.dry_run {
        repo.prefetch_head();
    }
    // The workflows.
    let files = if args.workflow.is_empty() {
        repo::workflow_files(&repo.root)?
    } else {
        let mut v = Vec::new();
        for w in &args.workflow {
            let candidates = [dir.join(w), repo.root.join(".github/workflows").join(w)];
            match candidates.iter().find(|c| c.is_file()) {
                Some(c) => v.push(c.clone()),
                None => bail!("workflow file `{}` not found", w.display()),
            }
        }
        v
    };
    if files.is_empty() {
        bail!(
            "no workflow files in {}",
            repo.root.join(".github/workflows").display()
        );
    }
    // An invalid file is reported and skipped; the others run, and the exit code is 2.
    let mut parsed: Vec<(String, Workflow)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for f in &files {
        let shown = repo::display_path(f, &repo.root);
        let (errors, _, p) = crate::validate_cmd::check_file(f, &shown)?;
        if errors > 0 {
            skipped.push(shown);
        } else if let Some(wf) = p.workflow {
            parsed.push((shown, wf));
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "error: {} not valid, not run: {}",
            if skipped.len() == 1 {
                "a workflow file is"
            } else {
                "workflow files are"
            },
            skipped.join(", ")
        );
    }
    let code = run_parsed(&args, &repo, parsed, &mut skipped)?;
    // Bad input is said last, whatever ran: 2 unless the run was cancelled.
    Ok(if skipped.is_empty() || code == 130 {
        code
    } else {
        code.max(2)
    })
}

/// Plans and runs the valid workflows the event fires; a dispatched one whose inputs are
/// missing joins `skipped`.
fn run_parsed(
    args: &RunArgs,
    repo: &Repo,
    parsed: Vec<(String, Workflow)>,
    skipped: &mut Vec<String>,
) -> Result<u8> {
    let (sha, source) = match &args.sha {
        Some(s) => {
            let full = repo.resolve(s)?;
            (
                full.clone(),
                Source::Commit {
                    repo: repo.root.clone(),
                    sha: full,
                },
            )
        }
        None => (
            repo.head().unwrap_or_else(|| "0".repeat(40)),
            Source::WorkingTree(repo.root.clone()),
        ),
    };
    let need_paths = parsed.iter().any(|(_, wf)| {
        wf.on
            .events
            .get(&args.event)
            .is_some_and(|t| t.paths.is_some() || t.paths_ignore.is_some())
    });
    let ev = event_info(args, repo, &sha, need_paths)?;
    let given_inputs = collect(&args.inputs, None, "--input")?;
    let mut planned = Vec::new();
    for (file, wf) in parsed {
        let fires = wf
            .fires(&ev.trigger)
            .with_context(|| format!("{file}: `on` filters"))?;
        if !fires {
            continue;
        }
        let inputs = if ev.trigger.name == "workflow_dispatch" {
            match workflow::inputs::dispatch_inputs(&wf, &given_inputs) {
                Ok(i) => i,
                Err(e) => {
                    // That workflow is not run; the others are.
                    eprintln!(
                        "error: {file}: {e}: not run (give it with `--input NAME=VALUE`, or run other workflows only with `-W FILE`)"
                    );
                    skipped.push(file);
                    continue;
                }
            }
        } else {
            Map::new()
        };
        planned.push((
            Planned {
                file,
                workflow: Arc::new(wf),
                text: None,
            },
            inputs,
        ));
    }
    if let Some(job) = &args.job
        && !planned
            .iter()
            .any(|(p, _)| p.workflow.jobs.contains_key(job))
    {
        bail!(
            "no workflow fired by `{}` has a job `{job}`",
            ev.trigger.name
        );
    }
    if let Some(job) = &args.job {
        planned.retain(|(p, _)| p.workflow.jobs.contains_key(job));
    }
    if planned.is_empty() {
        println!(
            "event `{}` on `{}` fires no workflow",
            ev.trigger.name, ev.git_ref
        );
        return Ok(0);
    }
    if args.dry_run {
        print_plan(&planned, &repo.root, args.offline);
        return Ok(0);
    }
    let secrets = {
        let mut s = collect(&args.secrets, args.secrets_file.as_deref(), "--secret")?;
        if expr::map_get(&s, "GITHUB_TOKEN").is_none() {
            s.insert("GITHUB_TOKEN".into(), Value::String(String::new()));
        }
        s
    };
    let vars = collect(&args.vars, args.vars_file.as_deref(), "--var")?;
    let secrets = {
        let mut masked = engine::Secrets::new();
        for (k, v) in secrets {
            masked.insert(k, &v.to_expr_string());
        }
        masked
    };
    let run_id = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    // A directory kept from run to run unless the user asked to keep this run's or gave one.
    let kept = (args.work_dir.is_none() && !args.keep)
        .then(|| {
            let uid = rustix::process::geteuid().as_raw();
            crate::run_dir::RunDir::take(&std::env::temp_dir().join(format!("pipewright-{uid}")))
        })
        .flatten();
    let (run_dir, temporary) = match (&args.work_dir, &kept) {
        (Some(d), _) => (d.clone(), false),
        (None, Some(k)) => (k.path.clone(), false),
        (None, None) => (
            std::env::temp_dir().join(format!("pipewright-run-{run_id}-{}", std::process::id())),
            !args.keep,
        ),
    };
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    let event_path = run_dir.join("event.json");
    engine::files::write_reusing(&event_path, &serde_json::to_vec_pretty(&ev.payload)?)
        .with_context(|| format!("cannot write {}", event_path.display()))?;
    let action_dirs = action_dirs(&repo.root);
    let repo_key = engine::files::safe_name(&repo.name());
    let github = github_context(repo, &ev, &sha, &run_id);
    let base = RunEnv {
        context: engine::RunContext {
            github,
            secrets,
            vars,
            inputs: Map::new(),
        },
        host: engine::Host {
            run_dir: run_dir.clone(),
            job_dir: None,
            source,
            base_env: engine::job_environment(std::env::vars(), &args.pass_env),
            action_dirs,
            cache_dir: cache_root().join(repo_key),
            cache_store: None,
            event_path,
            actions: actions::registry(),
            this_machine_only: true,
            images: images(&args.images)?,
            docker_host: None,
            action_source: Some(action_source(args.offline)),
        },
    };
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    let console = Arc::new(Console::new(color));
    // Asked once (it reads the cgroup's files): tokio would ask again.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let parallel = args.jobs.unwrap_or(cores);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    let cancel = CancellationToken::new();
    let report = runtime.block_on(async {
        let cancel = cancel.clone();
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\ncancelling: running steps are being stopped (Ctrl-C again to quit at once)"
                );
                c.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let planned: Vec<(Planned, Arc<RunEnv>)> = planned
            .into_iter()
            .map(|(p, inputs)| {
                let mut env = base.clone();
                env.context
                    .github
                    .insert("workflow".into(), Value::String(p.name()));
                env.context.github.insert(
                    "workflow_ref".into(),
                    Value::String(format!("{}/{}@{}", repo.name(), p.file, ev.git_ref)),
                );
                env.context.inputs = inputs.clone();
                env.context.github.insert(
                    "event".into(),
                    merge_inputs(
                        env.context.github.get("event").cloned().unwrap_or_default(),
                        &inputs,
                    ),
                );
                (p, Arc::new(env))
            })
            .collect();
        let options = engine::Options {
            parallel,
            only_job: args.job.clone(),
            groups: None,
        };
        engine::run(planned, console.clone(), cancel, options).await
    });
    console.summary(&report);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    if let Some(k) = kept {
        k.finish();
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    if cancel.is_cancelled() {
        return Ok(130);
    }
    Ok(match report.conclusion {
        Conclusion::Success | Conclusion::Skipped => 0,
        Conclusion::Failure => 1,
        Conclusion::Cancelled => 130,
    })
}

/// `github.event.inputs` of a dispatch (strings, as GitHub sends them).
fn merge_inputs(event: Value, inputs: &Map) -> Value {
    if inputs.is_empty() {
        return event;
    }
    let mut e = match event {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    e.insert(
        "inputs".into(),
        Value::Object(
            inputs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.to_expr_string())))
                .collect(),
        ),
    );
    Value::Object(e)
}

/// Whether a value written in a workflow holds a `${{ }}` anywhere.
fn has_expression(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("${{"),
        Value::Array(a) => a.iter().any(has_expression),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| k.contains("${{") || has_expression(v)),
        _ => false,
    }
}

/// Where `pipewright run` looks for vendored actions: the repository's
/// `.pipewright/actions`, `PIPEWRIGHT_ACTIONS_DIR`, the user's.
pub(crate) fn action_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join(".pipewright/actions")];
    if let Some(d) = std::env::var_os("PIPEWRIGHT_ACTIONS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(home().join(".local/share/pipewright/actions"));
    dirs
}

/// Where `pipewright run` fetches remote actions, and its cache.
pub(crate) fn action_source(offline: bool) -> engine::ActionSource {
    let mut s = engine::ActionSource::from_env(cache_root().join("actions"));
    s.offline |= offline;
    s
}

/// Each action a workflow's jobs use, once, with where it would come from.
pub(crate) fn print_actions(wf: &workflow::Workflow, root: &Path, offline: bool, indent: &str) {
    let registry = actions::registry();
    let known = |n: &str| engine::is_builtin(n) || registry.names().any(|r| r == n);
    let (dirs, source) = (action_dirs(root), action_source(offline));
    let mut seen = std::collections::BTreeSet::new();
    for job in wf.jobs.values() {
        for step in &job.steps {
            if let Some(u) = &step.uses
                && seen.insert(u.value.clone())
            {
                let how = engine::availability(&u.value, &known, &dirs, Some(&source));
                println!("{indent}uses {}: {how}", u.value);
            }
        }
    }
}

fn print_plan(planned: &[(Planned, Map)], root: &Path, offline: bool) {
    for (p, _) in planned {
        println!("{} ({})", p.name(), p.file);
        for (id, job) in &p.workflow.jobs {
            let needs: Vec<&str> = job.needs.iter().map(|n| n.value.as_str()).collect();
            let matrix = match job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
                None => String::new(),
                Some(m) if m.as_map().is_none() => " matrix: computed when the job runs".to_owned(),
                // A key or an `include` given by an expression (`${{ fromJSON(needs...) }}`)
                // is only known when the job runs.
                Some(m) if has_expression(&m.to_value()) => {
                    " matrix: computed when the job runs".to_owned()
                }
                Some(m) => match plan::matrix::Matrix::from_value(&m.to_value())
                    .and_then(|m| plan::matrix::expand(&m))
                {
                    Ok(c) => format!(" matrix: {} combination(s)", c.len()),
                    Err(e) => format!(" matrix: {e}"),
                },
            };
            // One line a job: a condition written on several lines is shown on one.
            let cond = job
                .if_
                .as_ref()
                .map(|c| {
                    let one_line: Vec<&str> = c.value.split_whitespace().collect();
                    format!(" if: {}", one_line.join(" "))
                })
                .unwrap_or_default();
            println!(
                "  {id}{}{matrix}{cond}",
                if needs.is_empty() {
                    String::new()
                } else {
                    format!(" (needs: {})", needs.join(", "))
                }
            );
        }
        print_actions(&p.workflow, root, offline, "  ");
    }
}
