//! Actions: the built-in ones (no network needed), local actions (`uses: ./path`) and copies
//! of remote actions placed in an action directory for offline use.

pub(crate) mod artifact;
pub(crate) mod cache;
mod checkout;
mod codecov;
pub(crate) mod fetch;
pub(crate) mod local;
mod node;
mod python;
pub(crate) mod registry;
mod ssh_agent;
mod toolchain;
mod versions;

use std::path::PathBuf;

use expr::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::job::{FileCommands, JobState, PostCondition, PostStep};
use crate::process::Exit;

/// A `uses:` step to run.
pub(crate) struct Call<'a> {
    pub(crate) uses: String,
    pub(crate) with: Map,
    /// The step's env context (job env, `GITHUB_ENV`, step env).
    pub(crate) env: Map,
    pub(crate) files: &'a FileCommands,
    pub(crate) deadline: Option<tokio::time::Instant>,
    /// The job step it is (its index), for a `uses:` step of the job itself.
    pub(crate) step: Option<usize>,
}

impl Call<'_> {
    /// An input as a string (empty when absent), GitHub's coercion.
    pub(crate) fn input(&self, name: &str) -> String {
        expr::map_get(&self.with, name)
            .map(Value::to_expr_string)
            .unwrap_or_default()
    }

    pub(crate) fn input_or(&self, name: &str, default: &str) -> String {
        match expr::map_get(&self.with, name) {
            Some(v) => v.to_expr_string(),
            None => default.to_owned(),
        }
    }

    pub(crate) fn required(&self, name: &str) -> Result<String, ActionError> {
        let v = self.input(name);
        if v.is_empty() {
            return Err(ActionError::MissingInput {
                action: self.uses.clone(),
                input: name.to_owned(),
            });
        }
        Ok(v)
    }

    /// A boolean input as GitHub's toolkit reads it (`true`/`True`/`TRUE`).
    pub(crate) fn flag(&self, name: &str, default: bool) -> Result<bool, ActionError> {
        let v = self.input(name);
        match v.as_str() {
            "" => Ok(default),
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            _ => Err(ActionError::Failed(format!(
                "input `{name}` of `{}` must be `true` or `false`, got `{v}`",
                self.uses
            ))),
        }
    }

    pub(crate) fn set_output(&self, name: &str, value: &str) -> Result<(), ActionError> {
        append_kv(&self.files.output, name, value)
    }

    /// A tool's cache kept across runs: `dir` made, named by the variable `var`, and the
    /// `cache-hit` output saying whether it held anything yet.
    pub(crate) fn keep_cache(&self, dir: &std::path::Path, var: &str) -> Result<(), ActionError> {
        std::fs::create_dir_all(dir).map_err(|e| ActionError::io(dir.display().to_string(), e))?;
        self.set_env(var, &dir.display().to_string())?;
        let hit = dir.read_dir().is_ok_and(|mut d| d.next().is_some());
        self.set_output("cache-hit", if hit { "true" } else { "false" })
    }

    pub(crate) fn set_env(&self, name: &str, value: &str) -> Result<(), ActionError> {
        append_kv(&self.files.env, name, value)
    }

    pub(crate) fn add_path(&self, dir: &std::path::Path) -> Result<(), ActionError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.files.path)
            .map_err(|e| ActionError::io("GITHUB_PATH", e))?;
        writeln!(f, "{}", dir.display()).map_err(|e| ActionError::io("GITHUB_PATH", e))
    }
}

fn append_kv(path: &std::path::Path, name: &str, value: &str) -> Result<(), ActionError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| ActionError::io("file command", e))?;
    let delim = format!("ghadelimiter_{}", std::process::id());
    writeln!(f, "{name}<<{delim}\n{value}\n{delim}").map_err(|e| ActionError::io("file command", e))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ActionError {
    #[error(
        "action `{uses}` is not built into pipewright and fetching actions is off here; place a copy of it in one of: {dirs} (as <owner>/<repo>@<ref>/ with its action.yml)"
    )]
    NotFound { uses: String, dirs: String },
    #[error("`{action}`: input `{input}` is required")]
    MissingInput { action: String, input: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Search(#[from] crate::files::SearchError),
}

impl ActionError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ActionError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Work an action left for after the job.
pub(crate) enum Post {
    CacheSave(cache::Save),
    KillAgent(i32),
    /// A Node action's `post` script, with the environment its `main` had and what it saved.
    Node {
        script: PathBuf,
        env: expr::Map,
    },
}

pub(crate) async fn run_post(state: &mut JobState<'_>, post: Post) -> Result<(), ActionError> {
    match post {
        Post::CacheSave(save) => cache::save(state, save).await,
        Post::KillAgent(pid) => {
            crate::process::kill_group(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            Ok(())
        }
        Post::Node { script, env } => {
            state.step_counter += 1;
            let mode = state.step_file_mode();
            let files = crate::job::FileCommands::create(&state.temp, state.step_counter, mode)
                .map_err(|e| ActionError::io("file commands", e))?;
            let spawn = crate::process::Spawn {
                program: "node".into(),
                args: vec![script.display().to_string()],
                cwd: state.workspace.clone(),
                env: state.process_env(&env, Some(&files)),
            };
            let cancel = tokio_util::sync::CancellationToken::new();
            let exit = state
                .run_process(&spawn, None, &cancel)
                .await
                .map_err(|e| ActionError::io("node", e))?;
            if exit.success() {
                Ok(())
            } else {
                Err(ActionError::Failed(format!(
                    "{} ended with {exit:?}",
                    script.display()
                )))
            }
        }
    }
}

pub(crate) fn register_post(
    state: &mut JobState<'_>,
    name: String,
    action: Post,
    condition: PostCondition,
) {
    state.posts.push(PostStep {
        name,
        action,
        condition,
    });
}

/// `env` with an action's inputs as GitHub passes them to its process (`INPUT_<NAME>`,
/// spaces as underscores, upper case).
pub(crate) fn input_env(env: &expr::Map, inputs: &expr::Map) -> expr::Map {
    let mut out = env.clone();
    for (k, v) in inputs {
        out.insert(
            format!("INPUT_{}", k.replace(' ', "_").to_ascii_uppercase()),
            v.clone(),
        );
    }
    out
}

/// Whether the engine runs `owner/repo` (lowercase) itself: the names `run` matches below.
pub fn is_builtin(name: &str) -> bool {
    matches!(
        name,
        "actions/checkout"
            | "actions/setup-python"
            | "actions/setup-node"
            | "actions/setup-java"
            | "actions/setup-go"
            | "actions/upload-artifact"
            | "actions/download-artifact"
            | "actions/cache"
            | "actions/cache/restore"
            | "actions/cache/save"
            | "codecov/codecov-action"
            | "webfactory/ssh-agent"
    )
}

/// `owner/repo` of a `uses:` value, lowercased, and its ref.
fn split_uses(uses: &str) -> (String, String) {
    let (name, r) = uses.split_once('@').unwrap_or((uses, ""));
    (name.to_ascii_lowercase(), r.to_owned())
}

/// Runs a `uses:` step.
pub(crate) async fn run(
    state: &mut JobState<'_>,
    call: Call<'_>,
    cancel: &CancellationToken,
) -> Result<Exit, ActionError> {
    let uses = call.uses.clone();
    if let Some(rel) = uses.strip_prefix("./") {
        let dir = state.workspace.join(rel);
        return local::run(state, &call, &dir, cancel).await;
    }
    // `$/path`: an action of the workflow's own repository at the run's commit, read from
    // the repository itself (no checkout needed), once per job.
    if let Some(rel) = uses.strip_prefix("$/") {
        let root = state.temp.join(".same-repository");
        if !root.exists() {
            let part = state.temp.join(".same-repository.part");
            let _ = std::fs::remove_dir_all(&part);
            checkout::materialize(&state.run.host.source, &part)?;
            std::fs::rename(&part, &root)
                .map_err(|e| ActionError::io(root.display().to_string(), e))?;
        }
        if rel.split('/').any(|c| c == "..") {
            return Err(ActionError::Failed(format!(
                "`{uses}`: a same-repository path stays inside the repository"
            )));
        }
        let dir = root.join(rel);
        return local::run(state, &call, &dir, cancel).await;
    }
    if let Some(image) = uses.strip_prefix("docker://") {
        // As GitHub: `args` split as a shell would, `entrypoint` instead of the image's.
        let text = |k: &str| call.with.get(k).map(expr::Value::to_expr_string);
        let args = match text("args") {
            Some(a) => shell_words::split(&a)
                .map_err(|e| ActionError::Failed(format!("`with.args`: {e}")))?,
            None => Vec::new(),
        };
        let entrypoint = text("entrypoint").filter(|e| !e.is_empty());
        let inputs: expr::Map = call
            .with
            .iter()
            .filter(|(k, _)| *k != "args" && *k != "entrypoint")
            .map(|(k, v)| (k.clone(), expr::Value::from(v.to_expr_string())))
            .collect();
        let env = input_env(&call.env, &inputs);
        let step = crate::job::ImageStep {
            image: image.to_owned(),
            entrypoint,
            args,
        };
        return crate::job::run_image(state, step, &env, call.files, call.deadline, cancel).await;
    }
    let (name, version) = split_uses(&uses);
    let ok = |()| Exit::Code(0);
    match name.as_str() {
        "actions/checkout" => checkout::run(state, &call).map(ok),
        "actions/setup-python" => python::run(state, &call).await.map(ok),
        "actions/setup-node" => node::run(state, &call).await.map(ok),
        "actions/setup-java" => toolchain::java(state, &call).await.map(ok),
        "actions/setup-go" => toolchain::go(state, &call).await.map(ok),
        "actions/upload-artifact" => artifact::upload(state, &call, &version).map(ok),
        "actions/download-artifact" => artifact::download(state, &call, &version).map(ok),
        "actions/cache" | "actions/cache/restore" => {
            cache::restore(state, &call, name == "actions/cache")
                .await
                .map(ok)
        }
        "actions/cache/save" => cache::save_now(state, &call).await.map(ok),
        "codecov/codecov-action" => codecov::run(state, &call).map(ok),
        "webfactory/ssh-agent" => ssh_agent::run(state, &call).await.map(ok),
        _ => {
            if let Some(action) = state.run.host.actions.get(&name) {
                return registered(state, &call, action).await.map(ok);
            }
            match remote_dir(state, &uses).await? {
                Some(dir) => local::run(state, &call, &dir, cancel).await,
                None => Err(ActionError::NotFound {
                    uses,
                    dirs: state
                        .run
                        .host
                        .action_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
    }
}

/// The directory of a remote action (`owner/repo[/path]@ref`): a copy placed for offline
/// use (`<dir>/<owner>/<repo>@<ref>/[path]`), else fetched from the run's source (the commit
/// said in the log); `None` when there is neither.
pub(crate) async fn remote_dir(
    state: &mut JobState<'_>,
    uses: &str,
) -> Result<Option<PathBuf>, ActionError> {
    if let Some(dir) = state.resolved.get(uses) {
        return Ok(Some(dir.clone()));
    }
    let (repo_path, r) = uses.split_once('@').unwrap_or((uses, ""));
    let mut parts = repo_path.splitn(3, '/');
    let (owner, repo, sub) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let candidates: Vec<PathBuf> = state
        .run
        .host
        .action_dirs
        .iter()
        .map(|d| d.join(owner).join(format!("{repo}@{r}")).join(sub))
        .collect();
    if let Some(dir) = candidates
        .iter()
        .find(|d| d.join("action.yml").is_file() || d.join("action.yaml").is_file())
    {
        state.resolved.insert(uses.to_owned(), dir.clone());
        return Ok(Some(dir.clone()));
    }
    let Some(source) = state.run.host.action_source.clone() else {
        return Ok(None);
    };
    let (o, rp, rf) = (owner.to_owned(), repo.to_owned(), r.to_owned());
    let dirs = state
        .run
        .host
        .action_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let (root, fetched) = tokio::task::spawn_blocking(move || fetch::fetch(&source, &o, &rp, &rf))
        .await
        .map_err(|e| ActionError::Failed(e.to_string()))?
        .map_err(|e| {
            ActionError::Failed(format!(
                "{e}; nor is there a copy in {dirs} (as <owner>/<repo>@<ref>/ with its action.yml)"
            ))
        })?;
    let commit = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let how = if fetched { "fetched" } else { "from the cache" };
    state.log(crate::sink::Line::Output(format!(
        "{owner}/{repo}@{r}: commit {commit} ({how})"
    )));
    let dir = root.join(sub);
    if !dir.join("action.yml").is_file() && !dir.join("action.yaml").is_file() {
        return Err(ActionError::Failed(format!(
            "`{uses}`: {owner}/{repo} has no action.yml{}",
            if sub.is_empty() {
                String::new()
            } else {
                format!(" in {sub}")
            }
        )));
    }
    state.resolved.insert(uses.to_owned(), dir.clone());
    Ok(Some(dir))
}

/// Runs an action given to the engine ([`registry::Actions`]): its log lines go to the job's
/// log as they come, its outputs become the step's.
async fn registered(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    action: std::sync::Arc<dyn registry::Action>,
) -> Result<(), ActionError> {
    let (log, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let step = registry::ActionStep {
        uses: call.uses.clone(),
        inputs: call.with.clone(),
        env: state.process_env(&call.env, None),
        workspace: state.workspace.clone(),
        github: state.run.context.github.clone(),
        log,
    };
    let mut running = action.run(step);
    let result = loop {
        tokio::select! {
            r = &mut running => break r,
            Some(line) = lines.recv() => state.log(crate::sink::Line::Output(line)),
        }
    };
    while let Ok(line) = lines.try_recv() {
        state.log(crate::sink::Line::Output(line));
    }
    let outputs = result.map_err(|e| ActionError::Failed(state.run.masker().mask(&e.0)))?;
    for (name, value) in outputs {
        call.set_output(&name, &value)?;
    }
    Ok(())
}

/// `hashFiles()`: SHA-256 over the SHA-256 of each matched file in the workspace, in path
/// order; empty when nothing matches.
pub(crate) struct HashFiles(pub(crate) PathBuf);

impl expr::Host for HashFiles {
    fn hash_files(&self, patterns: &[String]) -> Result<String, expr::EvalError> {
        use sha2::{Digest, Sha256};
        let found = crate::files::search(&self.0, None, &patterns.join("\n")).map_err(|e| {
            expr::EvalError::HashFiles {
                message: e.to_string(),
            }
        })?;
        let mut total = Sha256::new();
        let mut any = false;
        for f in found.files.iter().filter(|f| f.starts_with(&self.0)) {
            let bytes = std::fs::read(f).map_err(|e| expr::EvalError::HashFiles {
                message: format!("{}: {e}", f.display()),
            })?;
            total.update(Sha256::digest(&bytes));
            any = true;
        }
        if !any {
            return Ok(String::new());
        }
        Ok(total
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}
