//! A job's containers: its `services` (in Docker when the engine has the image, else from
//! local server binaries), its own `container` (its steps then run inside it), and
//! `docker://` steps, all on a network of the job's, labelled with it, and removed when it
//! ends.
//!
//! Where GitHub mounts things, so do we: the workspace at `/__w/<repo>/<repo>`, the temp
//! dir (with the file-command files) at `/__w/_temp`, the event at
//! `/github/workflow/event.json`; a `docker://` step sees the workspace at
//! `/github/workspace`. Paths in a step's environment are rewritten to the container's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use expr::{Map, Status, Value};
use workflow::Node;
use workflow::container::{ContainerSpec, Volume};

use super::context::eval_ctx;
use super::{JobState, obj};
use crate::actions::{self, ActionError};
use crate::docker::{Container, DockerError, Engine, JOB_LABEL, OWNER_LABEL};
use crate::error::JobError;
use crate::sink::Line;
use crate::{confine, services};

/// The Docker resources of one job, removed when it ends.
pub(crate) struct JobDocker {
    pub(crate) engine: Engine,
    /// Names everything made for the job: `pipewright-<random>`.
    prefix: String,
    labels: HashMap<String, String>,
    network: Option<String>,
    /// Every container made, to remove.
    containers: Vec<String>,
    /// Service ids and their containers, whose logs the job's log keeps.
    services: Vec<(String, String)>,
    volumes: Vec<String>,
    /// How many `docker://` steps ran (names their containers).
    steps: usize,
}

/// The file in the job's temp directory, `0600`, that a job container's agent tries to read
/// and write as the container's user.
const PROBE: &str = "_private_probe";

/// The job's own container, where its steps run.
#[derive(Clone)]
pub(crate) struct InContainer {
    pub(crate) id: String,
    pub(crate) paths: PathMap,
    /// The container's `PATH` (what `GITHUB_PATH` additions go in front of).
    pub(crate) path: String,
    /// Its agent, which starts the steps' processes (`None`: an `exec` each).
    pub(crate) agent: Option<std::sync::Arc<crate::docker::Agent>>,
    /// Its user reads and writes files only the job's user may ([`crate::docker::Agent::private`]).
    pub(crate) private_files: bool,
}

impl InContainer {
    /// The permissions of the files its steps get from the job: the job's user's alone
    /// where the container's user can use them, else readable by all.
    pub(crate) fn file_mode(&self) -> u32 {
        if self.private_files { 0o600 } else { 0o644 }
    }
}

impl JobDocker {
    /// A copy for a background step: the same engine, labels and network; what its step
    /// makes is named apart (`-bgN`) and handed back to the job by [`JobDocker::absorb`], so
    /// the job removes it.
    pub(crate) fn fork(&self, n: usize) -> JobDocker {
        JobDocker {
            engine: self.engine.clone(),
            prefix: format!("{}-bg{n}", self.prefix),
            labels: self.labels.clone(),
            network: self.network.clone(),
            containers: Vec::new(),
            services: Vec::new(),
            volumes: Vec::new(),
            steps: 0,
        }
    }

    /// Takes in what a background step's copy made.
    pub(crate) fn absorb(&mut self, other: JobDocker) {
        self.containers.extend(other.containers);
        self.volumes.extend(other.volumes);
    }
}

/// Host paths and where a container sees them.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathMap(Vec<(String, String)>);

impl PathMap {
    /// The container's side of each path.
    pub(crate) fn containers(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .map(|(_, c)| c.as_str())
            .filter(|c| c.starts_with("/__w"))
    }

    /// `s` with a host path at its start replaced by the container's.
    pub(crate) fn map(&self, s: &str) -> String {
        for (host, inside) in &self.0 {
            if let Some(rest) = s.strip_prefix(host.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{inside}{rest}");
            }
        }
        s.to_owned()
    }
}

impl JobDocker {
    /// The job's Docker resources. The first job of this process to use Docker first
    /// removes what a process that died left (its containers outlived it).
    async fn new(engine: Engine, job: &str) -> Self {
        static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SWEPT
            .get_or_init(|| async {
                let n = engine.remove_orphans().await;
                if n > 0 {
                    tracing::info!("removed {n} containers of pipewright processes that are gone");
                }
            })
            .await;
        let labels = HashMap::from([
            (OWNER_LABEL.to_owned(), crate::docker::owner()),
            (JOB_LABEL.to_owned(), job.to_owned()),
        ]);
        JobDocker {
            engine,
            prefix: format!("pipewright-{}", crate::docker::random_hex()),
            labels,
            network: None,
            containers: Vec::new(),
            services: Vec::new(),
            volumes: Vec::new(),
            steps: 0,
        }
    }

    async fn network(&mut self) -> Result<String, DockerError> {
        if let Some(n) = &self.network {
            return Ok(n.clone());
        }
        let name = self.prefix.clone();
        self.engine.create_network(&name, &self.labels).await?;
        self.network = Some(name.clone());
        Ok(name)
    }

    /// Binds and anonymous volumes for `volumes:`; named ones are the job's own.
    async fn volumes(
        &mut self,
        written: &[String],
        key: &str,
    ) -> Result<(Vec<String>, Vec<String>), JobError> {
        let (mut binds, mut anonymous) = (Vec::new(), Vec::new());
        for (i, w) in written.iter().enumerate() {
            let v: Volume = workflow::container::volume(w, &format!("{key}.volumes[{i}]"))
                .map_err(|e| JobError::invalid(format!("`{key}`"), e.to_string()))?;
            match v.name {
                None => anonymous.push(v.target),
                Some(name) => {
                    let full = format!("{}-{name}", self.prefix);
                    if !self.volumes.contains(&full) {
                        self.engine
                            .create_volume(&full, &self.labels)
                            .await
                            .map_err(|e| JobError::invalid(format!("`{key}`"), e.to_string()))?;
                        self.volumes.push(full.clone());
                    }
                    let ro = if v.read_only { ":ro" } else { "" };
                    binds.push(format!("{full}:{}{ro}", v.target));
                }
            }
        }
        Ok((binds, anonymous))
    }

    /// Removes everything, after keeping the services' last lines in the job's log.
    pub(crate) async fn remove(self, state: &JobState<'_>) {
        for (id, container) in &self.services {
            let lines = self
                .engine
                .log_tail(container, super::SERVICE_LOG_LINES)
                .await;
            state.log(Line::GroupStart(format!("Service `{id}`: its log")));
            for line in lines {
                state.log(Line::Output(line));
            }
            state.log(Line::GroupEnd);
        }
        for c in &self.containers {
            self.engine.remove_container(c).await;
        }
        if let Some(n) = &self.network {
            self.engine.remove_network(n).await;
        }
        for v in &self.volumes {
            self.engine.remove_volume(v).await;
        }
    }
}

/// Starts the job's `services` and `container`, and fills in `job.services` and
/// `job.container`. Runs before the job's `env` is evaluated, as on GitHub.
pub(super) async fn start(
    state: &mut JobState<'_>,
    container_node: Option<&Node>,
    runs_on_image: Option<String>,
    services_node: Option<&Node>,
    host: &actions::HashFiles,
) -> Result<(), JobError> {
    // Most jobs have neither key: no contexts made for them.
    let ctxs = state.contexts_for(container_node.into_iter().chain(services_node));
    let ectx = eval_ctx(&ctxs, Status::Success, host);
    let container = match container_node {
        Some(n) => {
            let v =
                workflow::eval::evaluate(n, &ectx).map_err(|e| JobError::expr("`container`", e))?;
            workflow::container::container(&v)
                .map_err(|e| JobError::invalid("`container`", e.to_string()))?
        }
        None => None,
    };
    // A job without its own container runs in the image its `runs-on` label maps to.
    let container = container.or_else(|| {
        runs_on_image.map(|image| ContainerSpec {
            image,
            ..ContainerSpec::default()
        })
    });
    let services = match services_node {
        Some(n) => {
            let v =
                workflow::eval::evaluate(n, &ectx).map_err(|e| JobError::expr("`services`", e))?;
            workflow::container::services(&v)
                .map_err(|e| JobError::invalid("`services`", e.to_string()))?
        }
        None => Vec::new(),
    };
    if container.is_none() && services.is_empty() {
        return Ok(());
    }
    let engine = Engine::connect_to(state.run.host.docker_host.as_deref()).await;
    let mut docker = match &engine {
        Ok(e) => Some(JobDocker::new(e.clone(), &job_label(state)).await),
        Err(_) => None,
    };
    let result = start_all(state, &mut docker, engine.err(), container, services).await;
    state.docker = docker;
    result
}

async fn start_all(
    state: &mut JobState<'_>,
    docker: &mut Option<JobDocker>,
    no_engine: Option<DockerError>,
    container: Option<ContainerSpec>,
    services: Vec<(String, ContainerSpec)>,
) -> Result<(), JobError> {
    // A container job's services must be on its network: Docker runs them, or none.
    let mut ctx = Map::new();
    for (id, spec) in services {
        let in_docker = match docker.as_ref() {
            Some(d) => {
                container.is_some()
                    || !services::supported(&spec.image)
                    || d.engine.has_image(&spec.image).await
            }
            None => false,
        };
        if let (true, Some(d)) = (in_docker, docker.as_mut()) {
            let what = format!("`services.{id}`");
            let fail = |e: DockerError| JobError::invalid(what.clone(), e.to_string());
            let name = format!("{}-{id}", d.prefix);
            state.log(Line::Output(format!(
                "Starting service `{id}` ({}) in Docker: container {name}",
                spec.image
            )));
            d.engine
                .image(&spec.image, spec.credentials.as_ref())
                .await
                .map_err(fail)?;
            let options = workflow::container::create_options(
                &spec.options.other,
                &format!("services.{id}.options"),
            )
            .map_err(|e| JobError::invalid(what.clone(), e.to_string()))?;
            let network = d.network().await.map_err(fail)?;
            let (binds, anonymous) = d.volumes(&spec.volumes, &format!("services.{id}")).await?;
            let body = Container {
                image: spec.image.clone(),
                env: spec.env.clone(),
                binds,
                volumes: anonymous,
                publish: published(&spec),
                network: Some(network.clone()),
                aliases: vec![id.clone()],
                labels: d.labels.clone(),
                health: spec.options.health.clone(),
                options,
                ..Container::default()
            }
            .body();
            let cid = d.engine.start(&name, body).await.map_err(fail)?;
            d.containers.push(cid.clone());
            d.services.push((id.clone(), cid.clone()));
            if let Some(h) = &spec.options.health {
                let timeout = (h.start_period + (h.interval + h.timeout) * h.retries.max(1))
                    .max(Duration::from_secs(30));
                if let Err(e) = d.engine.wait_healthy(&cid, timeout).await {
                    let tail = d.engine.log_tail(&cid, 20).await;
                    let mut message = format!("{e}");
                    if !tail.is_empty() {
                        message.push_str("; its last lines:\n");
                        message.push_str(&tail.join("\n"));
                    }
                    return Err(JobError::invalid(what, message));
                }
            }
            let ports: Map = d
                .engine
                .published_ports(&cid)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|(c, h)| (c, Value::from(h)))
                .collect();
            state.log(Line::Output(format!(
                "Service `{id}`: container {name} on network {network}"
            )));
            ctx.insert(
                id.clone(),
                obj([
                    ("id", Value::from(cid)),
                    ("network", Value::from(network)),
                    ("ports", Value::Object(ports)),
                ]),
            );
            continue;
        }
        if !services::supported(&spec.image) {
            let why = match &no_engine {
                Some(e) => e.to_string(),
                None => "no Docker engine".into(),
            };
            return Err(JobError::invalid(
                "`services`",
                format!(
                    "service `{id}` ({}): this image needs a Docker engine ({why}); without one only postgres and redis services run, from the server binaries installed here",
                    spec.image
                ),
            ));
        }
        let why = if docker.is_some() {
            "the Docker engine does not have this image"
        } else {
            "there is no Docker engine"
        };
        state.log(Line::Output(format!(
            "Starting service `{id}` ({}) from the server binaries installed here: {why}",
            spec.image
        )));
        let started = start_local(&id, spec, &state.temp).await?;
        state.log(Line::Output(format!(
            "Service `{}`: {}",
            started.id, started.description
        )));
        let ports: Map = started
            .ports
            .iter()
            .map(|(c, h)| (c.to_string(), Value::from(h.to_string())))
            .collect();
        ctx.insert(
            started.id.clone(),
            obj([
                ("id", Value::from("")),
                ("network", Value::from("")),
                ("ports", Value::Object(ports)),
            ]),
        );
        state.services.push(started);
    }
    state.job_ctx.insert("services".into(), Value::Object(ctx));
    let Some(spec) = container else {
        return Ok(());
    };
    let what = "`container`";
    let Some(d) = docker.as_mut() else {
        let why = no_engine.map_or_else(|| "no Docker engine".to_owned(), |e| e.to_string());
        return Err(JobError::invalid(
            what,
            format!("this job runs in container `{}`, and {why}", spec.image),
        ));
    };
    let fail = |e: DockerError| JobError::invalid(what, e.to_string());
    let image = d
        .engine
        .image(&spec.image, spec.credentials.as_ref())
        .await
        .map_err(fail)?;
    let options = workflow::container::create_options(&spec.options.other, "container.options")
        .map_err(|e| JobError::invalid(what, e.to_string()))?;
    // The job's network, when its services made one; else Docker's default bridge.
    let network = d.network.clone();
    let (mut binds, anonymous) = d.volumes(&spec.volumes, "container").await?;
    let repo = state
        .run
        .context
        .github
        .get("repository")
        .map(Value::to_expr_string)
        .unwrap_or_default();
    let name = repo
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("workspace");
    let workspace = format!("/__w/{name}/{name}");
    let (mounted, paths) = mounts(
        state,
        &[
            (&state.workspace, workspace.as_str()),
            (&state.temp, "/__w/_temp"),
        ],
    );
    binds.extend(mounted);
    let mut env = spec.env.clone();
    env.extend(options.env.iter().cloned());
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            image
                .env
                .iter()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_owned))
        })
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let body = Container {
        image: spec.image.clone(),
        env: spec.env.clone(),
        // As GitHub does: the container idles, and each step is a process started in it.
        entrypoint: Some(vec!["tail".into()]),
        cmd: Some(vec!["-f".into(), "/dev/null".into()]),
        workdir: Some(workspace),
        binds,
        volumes: anonymous,
        publish: published(&spec),
        network: network.clone(),
        labels: d.labels.clone(),
        options,
        ..Container::default()
    }
    .body();
    let cname = format!("{}-job", d.prefix);
    let on = network
        .as_ref()
        .map(|n| format!(" on network {n}"))
        .unwrap_or_default();
    state.log(Line::Output(format!(
        "Starting the job's container {cname} ({}){on}",
        spec.image
    )));
    let cid = d.engine.start(&cname, body).await.map_err(fail)?;
    d.containers.push(cid.clone());
    state.job_ctx.insert(
        "container".into(),
        obj([
            ("id", Value::from(cid.clone())),
            ("network", Value::from(network.unwrap_or_default())),
        ]),
    );
    // Steps start through an agent in the container where it can run one (a shell):
    // an `exec` of the engine each costs tens of milliseconds. It tells whether the
    // container's user can use a file only the job's user may, as the steps' files are.
    let probe = state.temp.join(PROBE);
    let inside = crate::files::write_reusing_mode(&probe, b"", 0o600)
        .ok()
        .map(|()| paths.map(&probe.to_string_lossy()));
    let agent = d
        .engine
        .start_agent(&cid, inside.as_deref())
        .await
        .ok()
        .map(std::sync::Arc::new);
    let _ = std::fs::remove_file(&probe);
    let private_files = agent.as_ref().is_some_and(|a| a.private());
    state.container = Some(InContainer {
        id: cid,
        paths,
        path,
        agent,
        private_files,
    });
    Ok(())
}

/// A `docker://` step, or a Docker action's image: a container of the image with the
/// workspace at `/github/workspace` (its working directory), the file-command files and
/// the temp dir under `/github/runner_temp`, the event at `/github/workflow/event.json`, on
/// the job's network when it has one; `args` its command, `entrypoint` instead of the
/// image's. Removed when the step ends.
pub(crate) async fn run_image(
    state: &mut JobState<'_>,
    step: ImageStep,
    env_ctx: &Map,
    files: &super::FileCommands,
    deadline: Option<tokio::time::Instant>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<crate::process::Exit, ActionError> {
    let ImageStep {
        image,
        entrypoint,
        args,
    } = step;
    let image = image.as_str();
    let failed = |e: DockerError| ActionError::Failed(e.to_string());
    if state.docker.is_none() {
        let engine = Engine::connect_to(state.run.host.docker_host.as_deref())
            .await
            .map_err(|e| {
                ActionError::Failed(format!("`docker://{image}` needs a Docker engine: {e}"))
            })?;
        state.docker = Some(JobDocker::new(engine, &job_label(state)).await);
    }
    // Beside the workspace (`JOB/github_home`), not in the temp directory: a confined job's
    // runner makes it where the job cannot swap it for a link before Docker mounts it.
    let home = state.workspace.with_file_name("github_home");
    std::fs::create_dir_all(&home).map_err(|e| ActionError::io(home.display().to_string(), e))?;
    let (binds, paths) = mounts(
        state,
        &[
            (&state.workspace, "/github/workspace"),
            (&home, "/github/home"),
            (&state.temp, "/github/runner_temp"),
        ],
    );
    let mut env = state.container_step_env(env_ctx, files, &paths);
    env.push(("HOME".into(), "/github/home".into()));
    let Some(d) = state.docker.as_mut() else {
        return Err(ActionError::Failed("no Docker engine".into()));
    };
    d.engine.image(image, None).await.map_err(failed)?;
    let body = Container {
        image: image.to_owned(),
        env,
        entrypoint: entrypoint.map(|e| vec![e]),
        cmd: (!args.is_empty()).then_some(args),
        workdir: Some("/github/workspace".into()),
        binds,
        network: d.network.clone(),
        labels: d.labels.clone(),
        ..Container::default()
    }
    .body();
    d.steps += 1;
    let name = format!("{}-step{}", d.prefix, d.steps);
    let engine = d.engine.clone();
    let id = engine.start(&name, body).await.map_err(failed)?;
    let mut on_line = state.output_handler();
    let exit = engine.follow(&id, &mut on_line, deadline, cancel).await;
    engine.remove_container(&id).await;
    exit.map_err(failed)
}

/// What a `docker://` step or Docker action runs.
pub(crate) struct ImageStep {
    pub(crate) image: String,
    /// Instead of the image's.
    pub(crate) entrypoint: Option<String>,
    /// The command (the image's when empty).
    pub(crate) args: Vec<String>,
}

/// The job as its containers' label names it: `workflow/job`.
fn job_label(state: &JobState<'_>) -> String {
    format!("{}/{}", state.label.workflow, state.label.display)
}

/// A container's ports to publish, as `PORT/PROTOCOL` and the host port (0: any).
fn published(spec: &ContainerSpec) -> Vec<(String, u16)> {
    spec.ports
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p.container, p.protocol.as_str()),
                p.host.unwrap_or(0),
            )
        })
        .collect()
}

/// Binds of the job's directories at `at` (host directory, where the container sees it),
/// and of the run's event at `/github/workflow/event.json`, read-only; and how paths map.
fn mounts(state: &JobState<'_>, at: &[(&PathBuf, &str)]) -> (Vec<String>, PathMap) {
    let mut pairs: Vec<(String, String)> = at
        .iter()
        .map(|(host, inside)| (host_path(host), (*inside).to_owned()))
        .collect();
    let mut binds: Vec<String> = pairs.iter().map(|(h, c)| format!("{h}:{c}")).collect();
    if state.run.host.event_path.is_file() {
        let event = host_path(&state.run.host.event_path);
        binds.push(format!("{event}:/github/workflow/event.json:ro"));
        pairs.push((event, "/github/workflow/event.json".to_owned()));
    }
    (binds, PathMap(pairs))
}

fn host_path(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

async fn start_local(
    id: &str,
    spec: ContainerSpec,
    temp: &Path,
) -> Result<services::Local, JobError> {
    // PostgreSQL refuses to run as root: a job run as root runs its services as the job
    // user, else as nobody.
    let run_as = nix::unistd::geteuid().is_root().then(|| {
        ["pipewright-job", "nobody"]
            .iter()
            .find_map(|u| confine::JobUser::lookup(u).ok())
            .map(|u| services::RunAs {
                uid: u.uid,
                gid: u.gid,
            })
    });
    let (id, temp) = (id.to_owned(), temp.to_path_buf());
    tokio::task::spawn_blocking(move || services::start(&id, &spec, &temp, run_as.flatten()))
        .await
        .map_err(|e| JobError::invalid("`services`", e.to_string()))?
        .map_err(|e| JobError::invalid("`services`", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_rewritten_at_their_start_only() {
        let m = PathMap(vec![
            ("/run/jobs/a/workspace".into(), "/__w/r/r".into()),
            ("/run/jobs/a/temp".into(), "/__w/_temp".into()),
        ]);
        assert_eq!(m.map("/run/jobs/a/workspace"), "/__w/r/r");
        assert_eq!(m.map("/run/jobs/a/workspace/src/x.py"), "/__w/r/r/src/x.py");
        assert_eq!(
            m.map("/run/jobs/a/temp/_runner_file_commands/env"),
            "/__w/_temp/_runner_file_commands/env"
        );
        assert_eq!(m.map("/run/jobs/a/workspace2"), "/run/jobs/a/workspace2");
        assert_eq!(m.map("x /run/jobs/a/workspace"), "x /run/jobs/a/workspace");
    }
}
