//! What the built-in workflow action `uses: pipewright/deploy@v1` calls: a deploy of one
//! environment of a repository's `.pipewright/deploy.yml`, as `pipewright deploy` does it.

use std::path::{Path, PathBuf};

use crate::config::{self, Environment, Settings};
use crate::deployer::{DeployOptions, Report, Summary, Target, artifact_dir};
use crate::dotenv;
use crate::error::{Error, Result};

/// The action's inputs.
pub struct DeployInputs<'a> {
    /// The repository root (the workspace).
    pub root: &'a Path,
    /// `with.environment`.
    pub environment: &'a str,
    /// `with.artifact`: a directory or a tarball, relative to `root` or absolute.
    pub artifact: &'a Path,
    /// `with.version` (default: the artifact's file name).
    pub version: Option<&'a str>,
    /// The pipewright binary to run on the hosts (`std::env::current_exe()`).
    pub agent_binary: PathBuf,
    /// Who deploys (e.g. `github.actor`).
    pub who: String,
    /// Variables for the local `ssh`: the step's environment (`SSH_AUTH_SOCK` of
    /// `webfactory/ssh-agent`, ...).
    pub ssh_env: Vec<(String, String)>,
}

impl DeployInputs<'_> {
    /// The deployer for environment `env` of these inputs.
    fn target<'e>(&'e self, env: &'e Environment, settings: Settings) -> Target<'e> {
        Target {
            env,
            root: self.root,
            who: self.who.clone(),
            agent_binary: self.agent_binary.clone(),
            settings,
            ssh_env: self.ssh_env.clone(),
        }
    }
}

/// Reads `.pipewright/deploy.yml` under `root` and returns one environment with its
/// `env_file` merged. Diagnostics are rendered (`file:line:col`) into the error.
pub fn load_environment(root: &Path, environment: &str) -> Result<(Environment, Settings)> {
    let file = root.join(".pipewright/deploy.yml");
    let src = std::fs::read_to_string(&file).map_err(Error::io("cannot read", &file))?;
    let parsed = config::parse(&src);
    let shown = ".pipewright/deploy.yml";
    let rendered: String = parsed
        .diagnostics
        .iter()
        .map(|d| workflow::render(d, shown, &src, false))
        .collect();
    let Some(cfg) = parsed.config else {
        return Err(Error::Refused(format!("{shown} is not valid:\n{rendered}")));
    };
    let Some(env) = cfg.environments.get(environment).cloned() else {
        return Err(Error::Refused(format!(
            "no environment `{environment}` in {shown}"
        )));
    };
    let mut settings = env.settings.clone();
    if let Some(f) = &env.env_file {
        for (k, v) in dotenv::read(&root.join(f))? {
            settings.env.entry(k).or_insert(v);
        }
    }
    Ok((env, settings))
}

/// Deploys as `pipewright deploy ENV --artifact ARTIFACT` would; the summary's outcome has
/// the command's exit code (`Outcome::exit_code`).
pub fn deploy(inputs: &DeployInputs<'_>, report: Report<'_>) -> Result<Summary> {
    let (env, settings) = load_environment(inputs.root, inputs.environment)?;
    let artifact = inputs.root.join(inputs.artifact);
    let (dir, _guard) = artifact_dir(&artifact)?;
    let target = inputs.target(&env, settings);
    let version = inputs.version.map_or_else(
        || {
            artifact
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        },
        str::to_owned,
    );
    target.deploy(
        &dir,
        &DeployOptions {
            version,
            lock_wait_ms: 0,
            fault: None,
        },
        report,
    )
}

/// Rolls the environment back to release `to` on every host, as `pipewright rollback ENV
/// --to RELEASE` would (the inputs' artifact and version are not used).
pub fn rollback(inputs: &DeployInputs<'_>, to: &str, report: Report<'_>) -> Result<Summary> {
    let (env, settings) = load_environment(inputs.root, inputs.environment)?;
    let target = inputs.target(&env, settings);
    target.rollback(Some(to), false, 0, report)
}
