//! The contexts of a job's expressions (step level and job level), the evaluated job keys
//! a driver needs before the job runs (`runs-on`, `environment`), and the process
//! environment of a step.

use std::path::{Path, PathBuf};

use expr::{Map, Status, Value};

use super::file_commands::FileCommands;
use super::{JobSpec, JobState, RunEnv, obj};
use crate::error::{DefinitionError, JobError};

impl JobState<'_> {
    /// The contexts for expressions at step level.
    /// The contexts for evaluating `nodes`: none when they hold no expression (each evaluates
    /// to itself), so a job's literal keys (`env: {A: b}`, `timeout-minutes: 5`, no
    /// `container:`) cost no copy of the event.
    pub(crate) fn contexts_for<'n>(
        &self,
        nodes: impl IntoIterator<Item = &'n workflow::Node>,
    ) -> Map {
        if nodes.into_iter().any(workflow::eval::has_expressions) {
            self.contexts(None)
        } else {
            Map::new()
        }
    }

    pub(crate) fn contexts(&self, extra_env: Option<&Map>) -> Map {
        let mut github = self.run.context.github.clone();
        github.insert("job".into(), Value::from(self.spec.job_id.as_str()));
        github.insert(
            "workspace".into(),
            Value::from(self.workspace.display().to_string()),
        );
        let mut env = self.env.clone();
        if let Some(extra) = extra_env {
            env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut c = Map::new();
        c.insert("github".into(), Value::Object(github));
        c.insert("env".into(), Value::Object(env));
        c.insert("vars".into(), Value::Object(self.run.context.vars.clone()));
        c.insert("secrets".into(), Value::Object(self.secrets.clone()));
        let inputs = self
            .inputs_override
            .as_ref()
            .unwrap_or(&self.run.context.inputs);
        c.insert("inputs".into(), Value::Object(inputs.clone()));
        c.insert(
            "matrix".into(),
            Value::Object(self.spec.matrix.clone().unwrap_or_default()),
        );
        c.insert("strategy".into(), Value::Object(self.spec.strategy.clone()));
        c.insert("needs".into(), Value::Object(self.spec.needs.clone()));
        c.insert("steps".into(), Value::Object(self.steps_ctx.clone()));
        c.insert("job".into(), Value::Object(self.job_ctx.clone()));
        c.insert(
            "runner".into(),
            runner_context(&self.temp, &self.run.host.cache_dir),
        );
        c
    }

    /// A condition (`pre-if`, `post-if`) evaluated now, with the job's status; `what` names
    /// it in the error.
    pub(crate) fn condition(&self, cond: &str, what: &str) -> Result<bool, JobError> {
        let ctxs = self.contexts(None);
        let host = crate::actions::HashFiles(self.workspace.clone());
        let c = expr::parse_condition(cond).map_err(|e| JobError::invalid(what, e.to_string()))?;
        c.evaluate(&eval_ctx(&ctxs, self.status, &host))
            .map_err(|e| JobError::invalid(what, e.to_string()))
    }

    /// The job's `HOME` (of its environment, not this process's).
    pub(crate) fn home(&self) -> Option<PathBuf> {
        self.run
            .host
            .base_env
            .iter()
            .rev()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| PathBuf::from(v))
    }
    /// The process environment of a step: host, GitHub's variables, the env context.
    pub(crate) fn process_env(
        &self,
        env_ctx: &Map,
        files: Option<&FileCommands>,
    ) -> Vec<(String, String)> {
        match &self.container {
            // In the job's container, the container's own environment is the base (a
            // process started there inherits it), not the host's.
            Some(c) => self.env_over(false, env_ctx, files, Some((&c.path, &c.paths))),
            None => self.env_over(true, env_ctx, files, None),
        }
    }

    /// The environment of a `docker://` step's container: GitHub's variables and the env
    /// context over the image's own, its paths the container's.
    pub(crate) fn container_step_env(
        &self,
        env_ctx: &Map,
        files: &FileCommands,
        paths: &super::containers::PathMap,
    ) -> Vec<(String, String)> {
        let mut env = self.env_over(false, env_ctx, Some(files), None);
        for (_, v) in &mut env {
            *v = paths.map(v);
        }
        env
    }

    /// `host`: over the host's environment; `container`: in a container, its `PATH` (what
    /// `GITHUB_PATH` additions go in front of) and where it sees the host's paths.
    fn env_over(
        &self,
        host: bool,
        env_ctx: &Map,
        files: Option<&FileCommands>,
        container: Option<(&String, &super::containers::PathMap)>,
    ) -> Vec<(String, String)> {
        let mut env: indexmap::IndexMap<String, String> = if host {
            self.run.host.base_env.iter().cloned().collect()
        } else {
            indexmap::IndexMap::new()
        };
        for (k, v) in env_ctx {
            env.insert(k.clone(), v.to_expr_string());
        }
        let gh = &self.run.context.github;
        let s = |k: &str| gh.get(k).map(Value::to_expr_string).unwrap_or_default();
        let defaults = [
            ("CI", "true".to_owned()),
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("GITHUB_ACTOR", s("actor")),
            ("GITHUB_API_URL", s("api_url")),
            ("GITHUB_BASE_REF", s("base_ref")),
            ("GITHUB_EVENT_NAME", s("event_name")),
            (
                "GITHUB_EVENT_PATH",
                self.run.host.event_path.display().to_string(),
            ),
            ("GITHUB_GRAPHQL_URL", s("graphql_url")),
            ("GITHUB_HEAD_REF", s("head_ref")),
            ("GITHUB_JOB", self.spec.job_id.clone()),
            ("GITHUB_REF", s("ref")),
            ("GITHUB_REF_NAME", s("ref_name")),
            ("GITHUB_REF_PROTECTED", "false".to_owned()),
            ("GITHUB_REF_TYPE", s("ref_type")),
            ("GITHUB_REPOSITORY", s("repository")),
            ("GITHUB_REPOSITORY_OWNER", s("repository_owner")),
            ("GITHUB_RETENTION_DAYS", s("retention_days")),
            ("GITHUB_RUN_ATTEMPT", s("run_attempt")),
            ("GITHUB_RUN_ID", s("run_id")),
            ("GITHUB_RUN_NUMBER", s("run_number")),
            ("GITHUB_SERVER_URL", s("server_url")),
            ("GITHUB_SHA", s("sha")),
            ("GITHUB_TRIGGERING_ACTOR", s("triggering_actor")),
            ("GITHUB_WORKFLOW", s("workflow")),
            ("GITHUB_WORKFLOW_REF", s("workflow_ref")),
            ("GITHUB_WORKSPACE", self.workspace.display().to_string()),
            ("RUNNER_ARCH", runner_arch().to_owned()),
            ("RUNNER_NAME", "pipewright".to_owned()),
            ("RUNNER_OS", "Linux".to_owned()),
            ("RUNNER_ENVIRONMENT", "self-hosted".to_owned()),
            ("RUNNER_TEMP", self.temp.display().to_string()),
            (
                "RUNNER_TOOL_CACHE",
                self.run.host.cache_dir.join("tools").display().to_string(),
            ),
        ];
        for (k, v) in defaults {
            env.insert(k.to_owned(), v);
        }
        if let Some(f) = files {
            env.insert("GITHUB_ENV".into(), f.env.display().to_string());
            env.insert("GITHUB_OUTPUT".into(), f.output.display().to_string());
            env.insert("GITHUB_PATH".into(), f.path.display().to_string());
            env.insert(
                "GITHUB_STEP_SUMMARY".into(),
                f.summary.display().to_string(),
            );
            env.insert("GITHUB_STATE".into(), f.state.display().to_string());
        }
        if !self.path_prefix.is_empty() && (host || container.is_some()) {
            let old = match container {
                Some((path, _)) => env.get("PATH").cloned().unwrap_or_else(|| path.clone()),
                None => env.get("PATH").cloned().unwrap_or_default(),
            };
            let mut parts: Vec<String> = self.path_prefix.iter().rev().cloned().collect();
            if !old.is_empty() {
                parts.push(old);
            }
            env.insert("PATH".into(), parts.join(":"));
        }
        match container {
            Some((_, paths)) => env.into_iter().map(|(k, v)| (k, paths.map(&v))).collect(),
            None => env.into_iter().collect(),
        }
    }
}

/// The variables of this machine's environment a job starts from (besides those it is
/// given: `--pass-env`, a runner's configuration): what programs need to find themselves,
/// the user's locale and proxies, not the rest of the host's (a host's `NO_COLOR`, `CC` or
/// `PYTHONPATH` would change what a job does). GitHub's runner gives a job a defined
/// environment likewise.
pub const HOST_VARIABLES: [&str; 17] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "SSH_AUTH_SOCK",
    "DOCKER_HOST",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// The environment a job starts from: of `host`'s variables, [`HOST_VARIABLES`], the
/// locale's `LC_*`, and `pass` (names, or `NAME=VALUE` to set one).
pub fn job_environment(
    host: impl IntoIterator<Item = (String, String)>,
    pass: &[String],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = host
        .into_iter()
        .filter(|(k, _)| {
            HOST_VARIABLES.contains(&k.as_str())
                || k.starts_with("LC_")
                || pass.iter().any(|p| p == k)
        })
        .collect();
    for p in pass {
        if let Some((k, v)) = p.split_once('=') {
            out.retain(|(name, _)| name != k);
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

pub(crate) fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        other => other,
    }
}

fn runner_context(temp: &Path, cache: &Path) -> Value {
    obj([
        ("name", Value::from("pipewright")),
        ("os", Value::from("Linux")),
        ("arch", Value::from(runner_arch())),
        ("temp", Value::from(temp.display().to_string())),
        (
            "tool_cache",
            Value::from(cache.join("tools").display().to_string()),
        ),
        ("environment", Value::from("self-hosted")),
        ("debug", Value::from("")),
    ])
}

pub(super) fn status_value(s: Status) -> Value {
    Value::from(match s {
        Status::Success => "success",
        Status::Failure => "failure",
        Status::Cancelled => "cancelled",
    })
}

pub(super) fn eval_ctx<'c>(
    contexts: &'c Map,
    status: Status,
    host: &'c dyn expr::Host,
) -> expr::Context<'c> {
    expr::Context {
        contexts,
        status,
        host: Some(host),
    }
}

/// The labels of the job's `runs-on`, evaluated (a string, a list, or `{group, labels}`):
/// what a runner must offer to take the job. Empty when the job has no `runs-on`.
pub fn runs_on(spec: &JobSpec, run: &RunEnv) -> Result<Vec<String>, DefinitionError> {
    let Some(node) = spec.job().and_then(|j| j.runs_on.as_ref()) else {
        return Ok(Vec::new());
    };
    // Most `runs-on` are plain labels: no contexts made for them.
    let c = job_level_contexts_for(spec, run, node);
    let ectx = expr::Context {
        contexts: &c,
        status: Status::Success,
        host: None,
    };
    let v = workflow::eval::evaluate(node, &ectx).map_err(|e| JobError::expr("`runs-on`", e))?;
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Null => {}
            other => out.push(other.to_expr_string()),
        }
    }
    let mut out = Vec::new();
    match &v {
        Value::Object(m) => {
            if let Some(l) = expr::map_get(m, "labels") {
                strings(l, &mut out);
            }
        }
        other => strings(other, &mut out),
    }
    out.retain(|l| !l.trim().is_empty());
    Ok(out)
}

/// The name of the deployment environment the job's `environment:` names, evaluated as
/// GitHub does (with the job-level contexts: github, needs, strategy, matrix, vars,
/// inputs); `None` when the job has none. A server gives a job the secrets of this
/// environment only.
pub fn environment_of(spec: &JobSpec, run: &RunEnv) -> Result<Option<String>, DefinitionError> {
    let Some(env) = spec.job().and_then(|j| j.environment.as_ref()) else {
        return Ok(None);
    };
    let c = job_level_contexts_for(spec, run, &env.name);
    let ectx = expr::Context {
        contexts: &c,
        status: Status::Success,
        host: None,
    };
    let name = workflow::eval::evaluate_string(&env.name, &ectx)
        .map_err(|e| JobError::expr("`environment`", e))?;
    Ok(Some(name))
}

/// The job-level contexts for evaluating `node`: none when it holds no expression (it
/// evaluates to itself), so a literal key costs no copy of the event.
fn job_level_contexts_for(spec: &JobSpec, run: &RunEnv, node: &workflow::Node) -> Map {
    if workflow::eval::has_expressions(node) {
        job_level_contexts(spec, run)
    } else {
        Map::new()
    }
}

/// The contexts available at the level of a job's keys (`runs-on`, `environment`).
fn job_level_contexts(spec: &JobSpec, run: &RunEnv) -> Map {
    let mut c = Map::new();
    c.insert("github".into(), Value::Object(run.context.github.clone()));
    c.insert("vars".into(), Value::Object(run.context.vars.clone()));
    c.insert("inputs".into(), Value::Object(run.context.inputs.clone()));
    c.insert("needs".into(), Value::Object(spec.needs.clone()));
    c.insert(
        "matrix".into(),
        Value::Object(spec.matrix.clone().unwrap_or_default()),
    );
    c.insert("strategy".into(), Value::Object(spec.strategy.clone()));
    c
}

pub(super) fn merge_env(env: &mut Map, v: Value) {
    if let Value::Object(m) = v {
        for (k, v) in m {
            env.insert(k, Value::String(v.to_expr_string()));
        }
    }
}
