//! What a run's jobs are given, in two parts: the run's context ([`RunContext`]: what its
//! expressions see of the run, the same wherever a job runs, and serialisable so it can be
//! handed to another process) and the host it runs on ([`Host`]: this machine's
//! directories, environment, caches, tools and the actions its driver gives the engine).
//!
//! A server's runner builds the context from a job's lease and hands it, serialised, to the
//! job's confined process; that process's host is its own slot. Deserialising a context
//! registers each of its secrets with the new masker as it goes in
//! ([`Secrets`](crate::Secrets)), so a context that crossed a process boundary masks as
//! the one it was made from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use expr::{Map, map_from_json, map_to_json};
use serde::{Deserialize, Serialize};

use crate::mask::Masker;
use crate::secrets::Secrets;

/// What a run's expressions see of the run itself: the `github` context (without its
/// job-specific keys), `vars`, `inputs` and the secrets (the run's and its deployment
/// environments'). Nothing of the machine it runs on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "Wire", from = "Wire")]
pub struct RunContext {
    pub github: Map,
    /// The run's secrets and its environments', each masked as it went in.
    pub secrets: Secrets,
    pub vars: Map,
    pub inputs: Map,
}

/// A run's context as JSON: the expression values as JSON values, the secrets by name (the
/// masker is not sent; the receiving side makes its own from the values).
#[derive(Serialize, Deserialize)]
struct Wire {
    github: serde_json::Map<String, serde_json::Value>,
    vars: serde_json::Map<String, serde_json::Value>,
    inputs: serde_json::Map<String, serde_json::Value>,
    secrets: BTreeMap<String, String>,
    /// Deployment environments' secrets, by environment.
    environment_secrets: BTreeMap<String, BTreeMap<String, String>>,
}

fn strings(m: &Map) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.clone(), v.to_expr_string()))
        .collect()
}

impl From<RunContext> for Wire {
    fn from(c: RunContext) -> Wire {
        Wire {
            github: map_to_json(&c.github),
            vars: map_to_json(&c.vars),
            inputs: map_to_json(&c.inputs),
            secrets: strings(c.secrets.run()),
            environment_secrets: c
                .secrets
                .environments()
                .map(|(env, m)| (env.to_owned(), strings(m)))
                .collect(),
        }
    }
}

impl From<Wire> for RunContext {
    fn from(w: Wire) -> RunContext {
        let mut secrets = Secrets::new();
        for (name, value) in w.secrets {
            secrets.insert(name, &value);
        }
        for (env, m) in w.environment_secrets {
            for (name, value) in m {
                secrets.insert_for(&env, name, &value);
            }
        }
        RunContext {
            github: map_from_json(w.github),
            secrets,
            vars: map_from_json(w.vars),
            inputs: map_from_json(w.inputs),
        }
    }
}

/// What a job checks out.
#[derive(Debug, Clone)]
pub enum Source {
    /// The work tree as it is: tracked and untracked files, git-ignored ones left out.
    WorkingTree(PathBuf),
    /// One commit of the repository.
    Commit { repo: PathBuf, sha: String },
    /// One commit as a tar archive (`git archive`), as a remote runner receives it.
    Archive(PathBuf),
}

/// Where a run's jobs run: this machine's side of a run, which a job's expressions never
/// see as such (they see what the `runner` context and the steps' environment show of it).
#[derive(Debug, Clone)]
pub struct Host {
    /// Scratch space of the run: each job's workspace and temp dir, the artifact store.
    pub run_dir: PathBuf,
    /// The job's own directory (its `workspace` and `temp`), when the caller gives one: a
    /// remote runner reuses one per slot, emptied between jobs, instead of making and
    /// deleting a tree per job. `None`: `run_dir/jobs/<key>`.
    pub job_dir: Option<PathBuf>,
    pub source: Source,
    /// The environment every step starts from (the host's), before GitHub's variables.
    pub base_env: Vec<(String, String)>,
    /// Where copies of remote actions are looked up, in order.
    pub action_dirs: Vec<PathBuf>,
    /// Shared caches (`actions/cache`, pip) that outlive the run.
    pub cache_dir: PathBuf,
    /// Where `actions/cache` keeps entries (a remote runner's is the server's store);
    /// `None`: under `cache_dir`.
    pub cache_store: Option<Arc<dyn crate::CacheStore>>,
    pub event_path: PathBuf,
    /// Actions given to the engine by its driver (`pipewright/deploy`, Slack), by name.
    pub actions: crate::Actions,
    /// Every job runs on this machine, whatever its `runs-on` (`pipewright run`): a job for
    /// Windows or macOS fails instead of running here. A runner's jobs were matched to its
    /// labels by the server: false.
    pub this_machine_only: bool,
    /// `runs-on` labels whose jobs run in a container of an image (`ubuntu-latest` → a
    /// local image), unless the job names its own `container`: the first of the job's
    /// labels with an image decides; `host` runs it on this machine.
    pub images: Vec<(String, String)>,
    /// Where `owner/repo@ref` actions are fetched from and kept; `None`: only the copies in
    /// `action_dirs` (a server's confined jobs must not write a cache others run from).
    pub action_source: Option<crate::ActionSource>,
    /// Where the job's containers are made (`DOCKER_HOST`): a confined job's is its
    /// runner's broker; `None`: this process's `DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
}

/// What every job of a run shares: the run's context and the host it runs on.
#[derive(Debug, Clone)]
pub struct RunEnv {
    pub context: RunContext,
    pub host: Host,
}

impl RunEnv {
    /// The masker that hides the run's secrets (and what its steps mask).
    pub fn masker(&self) -> &Masker {
        self.context.secrets.masker()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expr::Value;

    #[test]
    fn a_context_sent_to_another_process_masks_its_secrets_and_keeps_environments_apart() {
        let mut secrets = Secrets::new();
        secrets.insert("API_KEY", "k3y-of-the-run");
        secrets.insert_for("production", "SSH_KEY", "pr0d-ssh-key");
        secrets.insert_for("staging", "SSH_KEY", "st4ging-ssh-key");
        let mut github = Map::new();
        github.insert("ref".into(), Value::from("refs/heads/main"));
        github.insert(
            "event".into(),
            Value::from_json(serde_json::json!({"pull_request": {"number": 7}})),
        );
        let mut inputs = Map::new();
        inputs.insert("debug".into(), Value::Bool(true));
        let sent = RunContext {
            github,
            secrets,
            vars: Map::new(),
            inputs,
        };
        let json = serde_json::to_string(&sent).expect("a context serialises");
        let got: RunContext = serde_json::from_str(&json).expect("and reads back");

        assert_eq!(got.github, sent.github);
        assert_eq!(got.inputs, sent.inputs);
        assert_eq!(got.secrets.run(), sent.secrets.run());
        assert_eq!(
            got.secrets.environment("production"),
            sent.secrets.environment("production")
        );
        assert_eq!(
            got.secrets
                .environment("staging")
                .and_then(|m| m.get("SSH_KEY"))
                .map(Value::to_expr_string)
                .as_deref(),
            Some("st4ging-ssh-key")
        );
        assert!(got.secrets.environment("development").is_none());
        // The receiving side's masker was made from the values: every one is hidden there.
        let line = "k3y-of-the-run pr0d-ssh-key st4ging-ssh-key refs/heads/main";
        assert_eq!(
            got.secrets.masker().mask(line),
            "*** *** *** refs/heads/main"
        );
    }

    #[test]
    fn a_context_that_is_no_object_is_an_error_not_an_empty_run() {
        let err = serde_json::from_str::<RunContext>(r#"{"github": [], "vars": {}}"#)
            .expect_err("a github context that is a list is refused");
        assert!(err.to_string().contains("map"), "{err}");
    }
}
