//! Containers through the Docker Engine API (the `bollard` crate): images looked up (and
//! pulled only when missing), networks, containers and volumes made for one job and labelled
//! with it, commands run in a container as a step's process, health checks waited for, and
//! what a crashed process left behind removed at the next start.
//!
//! Nothing here decides what a job may ask for: the options were read, and those that reach
//! the host refused, by [`workflow::container`]. No container gets the Docker socket.

mod agent;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HealthStatusEnum, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process::{Exit, KILL_GRACE, Piece, Stream};

pub use agent::{Agent, script as agent_script};

mod container;
pub use container::Container;

/// The label every container, network and volume made for a job carries: the process that
/// made it, as `PID:START` (its start time in clock ticks since boot, so a reused PID is
/// not taken for it). What a process that is gone left behind is removed.
pub const OWNER_LABEL: &str = "pipewright.owner";
/// The label naming the job (`workflow/job`) a container was made for.
pub const JOB_LABEL: &str = "pipewright.job";

/// Why a container could not be made or run.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker engine answers at {at}: {source}")]
    Unreachable {
        at: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "image `{image}` is not on this machine, and pulling it failed ({reason}); load it with `docker load -i FILE.tar`, or build it with `docker build -t {image} .`"
    )]
    MissingImage { image: String, reason: String },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let what = what.into();
    move |source| DockerError::Api { what, source }
}

/// A connection to the Docker engine (`DOCKER_HOST`, else the local socket).
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
}

/// A process to start in a running container.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    pub cmd: Vec<String>,
    /// `NAME=value`, over the container's own.
    pub env: Vec<String>,
    pub workdir: String,
}

/// How long the engine has to answer before it is taken as absent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What a job needs to know of an image.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// Its `ENV`, as `NAME=value`.
    pub env: Vec<String>,
}

impl Engine {
    /// Connects and agrees on an API version both sides speak.
    pub async fn connect() -> Result<Engine, DockerError> {
        let at = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        Engine::connect_at(&at).await
    }

    /// Connects to the engine `host` names, else as [`Engine::connect`] does.
    pub async fn connect_to(host: Option<&str>) -> Result<Engine, DockerError> {
        match host {
            Some(at) => Engine::connect_at(at).await,
            None => Engine::connect().await,
        }
    }

    /// Connects to the engine at `at` (`unix:///path`, `tcp://host:port`): a confined
    /// job's is its runner's broker.
    pub async fn connect_at(at: &str) -> Result<Engine, DockerError> {
        let unreachable = |source| DockerError::Unreachable {
            at: at.to_owned(),
            source,
        };
        let docker = match at.strip_prefix("unix://") {
            Some(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION),
            // Other schemes as bollard reads `DOCKER_HOST`.
            None => Docker::connect_with_defaults(),
        }
        .map_err(unreachable)?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(bollard::errors::Error::RequestTimeoutError))?
            .map_err(unreachable)?;
        Ok(Engine { docker })
    }

    /// Whether the image is on this machine.
    pub async fn has_image(&self, image: &str) -> bool {
        self.docker.inspect_image(image).await.is_ok()
    }

    /// The image, pulled first if it is not on this machine (`pull: missing`).
    pub async fn image(
        &self,
        image: &str,
        credentials: Option<&workflow::container::Credentials>,
    ) -> Result<ImageInfo, DockerError> {
        let info = match self.docker.inspect_image(image).await {
            Ok(i) => i,
            Err(_) => {
                self.pull(image, credentials).await?;
                self.docker
                    .inspect_image(image)
                    .await
                    .map_err(api(format!("inspecting image `{image}`")))?
            }
        };
        Ok(ImageInfo {
            env: info.config.and_then(|c| c.env).unwrap_or_default(),
        })
    }

    async fn pull(
        &self,
        image: &str,
        credentials: Option<&workflow::container::Credentials>,
    ) -> Result<(), DockerError> {
        let (name, tag) = split_tag(image);
        let options = CreateImageOptionsBuilder::default()
            .from_image(name)
            .tag(tag)
            .build();
        let auth = credentials.map(|c| bollard::auth::DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(options), None, auth);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                return Err(DockerError::MissingImage {
                    image: image.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Builds `dockerfile` of the directory `context` as image `tag`, its output given to
    /// `on_line`; nothing is pulled (a `FROM` image must be on this machine). The machine's
    /// build cache is not used: any job's builds fill it.
    pub async fn build(
        &self,
        context: &std::path::Path,
        dockerfile: &str,
        tag: &str,
        on_line: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), DockerError> {
        let dir = context.to_path_buf();
        let tar = tokio::task::spawn_blocking(move || {
            let mut b = tar::Builder::new(Vec::new());
            b.follow_symlinks(false);
            b.append_dir_all(".", &dir)?;
            b.into_inner()
        })
        .await
        .map_err(|e| DockerError::Failed(format!("packing the build context: {e}")))?
        .map_err(|e| DockerError::Failed(format!("packing {}: {e}", context.display())))?;
        let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .dockerfile(dockerfile)
            .t(tag)
            .rm(true)
            .forcerm(true)
            .nocache(true)
            .build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(tar.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::Failed(format!("building `{tag}`: {e}")))?;
            if let Some(text) = info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    on_line(line.to_owned());
                }
            }
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Failed(format!("building `{tag}`: {detail}")));
            }
        }
        Ok(())
    }

    pub async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), DockerError> {
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(api(format!("creating network `{name}`")))?;
        Ok(())
    }

    pub async fn create_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), DockerError> {
        self.docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(name.to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(api(format!("creating volume `{name}`")))?;
        Ok(())
    }

    /// Runs `cmd` in a container, its output dropped; whether it exited 0.
    pub async fn exec_quiet(&self, container: &str, cmd: &[&str]) -> Result<bool, DockerError> {
        let cancel = CancellationToken::new();
        let exit = self
            .exec(
                container,
                Exec {
                    cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
                    env: Vec::new(),
                    workdir: "/".into(),
                },
                &mut |_| {},
                Some(Instant::now() + Duration::from_secs(30)),
                &cancel,
            )
            .await?;
        Ok(exit == Exit::Code(0))
    }

    /// Creates and starts a container; returns its id.
    pub async fn start(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(api(format!("creating container `{name}`")))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            self.remove_container(&created.id).await;
            return Err(api(format!("starting container `{name}`"))(e));
        }
        Ok(created.id)
    }

    /// Runs `cmd` in a running container as a step's process: its output line by line, its
    /// exit code; a deadline or cancellation stops it (SIGTERM, then SIGKILL).
    pub async fn exec(
        &self,
        container: &str,
        process: Exec,
        on_line: &mut (dyn FnMut(Piece) + Send),
        deadline: Option<Instant>,
        cancel: &CancellationToken,
    ) -> Result<Exit, DockerError> {
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    env: Some(process.env),
                    cmd: Some(process.cmd),
                    working_dir: Some(process.workdir),
                    ..Default::default()
                },
            )
            .await
            .map_err(api("starting a process in the job's container"))?;
        let started = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(api("starting a process in the job's container"))?;
        let StartExecResults::Attached { output, .. } = started else {
            return Err(DockerError::Failed(
                "the Docker engine did not attach to the process".into(),
            ));
        };
        let mut rx = pump(output);
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let mut stopping: Option<(Exit, Instant, bool)> = None;
        let mut ended_at: Option<Instant> = None;
        // Asked only of a process that outlives its first moments (most steps' output ends
        // first).
        let mut poll = tokio::time::interval_at(
            Instant::now() + Duration::from_millis(200),
            Duration::from_millis(200),
        );
        loop {
            let kill_at = stopping.as_ref().filter(|s| !s.2).map_or(far, |s| s.1);
            tokio::select! {
                piece = rx.recv() => match piece {
                    Some(p) => on_line(p),
                    None => break,
                },
                // A process that left children holding its output open has ended when the
                // engine says so; what they print later is not waited for.
                _ = poll.tick(), if ended_at.is_none() => {
                    if let Ok(i) = self.docker.inspect_exec(&created.id).await
                        && i.running == Some(false)
                    {
                        ended_at = Some(Instant::now() + Duration::from_millis(100));
                    }
                }
                () = tokio::time::sleep_until(ended_at.unwrap_or(far)), if ended_at.is_some() => break,
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && stopping.is_none() => {
                    self.signal_exec(&created.id, container, nix::sys::signal::Signal::SIGTERM).await;
                    stopping = Some((Exit::TimedOut, Instant::now() + KILL_GRACE, false));
                }
                () = cancel.cancelled(), if stopping.is_none() => {
                    self.signal_exec(&created.id, container, nix::sys::signal::Signal::SIGTERM).await;
                    stopping = Some((Exit::Cancelled, Instant::now() + KILL_GRACE, false));
                }
                () = tokio::time::sleep_until(kill_at), if stopping.as_ref().is_some_and(|s| !s.2) => {
                    self.signal_exec(&created.id, container, nix::sys::signal::Signal::SIGKILL).await;
                    if let Some(s) = stopping.as_mut() {
                        s.2 = true;
                    }
                }
            }
        }
        if let Some((reason, ..)) = stopping {
            return Ok(reason);
        }
        // The output can end a moment before the engine records the exit.
        let mut waited = Duration::ZERO;
        loop {
            let i = self.docker.inspect_exec(&created.id).await.map_err(api(
                "reading the exit code of a process in the job's container",
            ))?;
            if i.running != Some(true) || waited >= Duration::from_secs(10) {
                let code = i.exit_code.unwrap_or(1);
                return Ok(Exit::Code(i32::try_from(code).unwrap_or(1)));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += Duration::from_millis(10);
        }
    }

    /// Signals a process started by [`Engine::exec`] from the host (it has a host PID); if
    /// that is not allowed, the whole container is killed.
    async fn signal_exec(&self, exec: &str, container: &str, signal: nix::sys::signal::Signal) {
        let pid = self
            .docker
            .inspect_exec(exec)
            .await
            .ok()
            .filter(|i| i.running == Some(true))
            .and_then(|i| i.pid)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1);
        let Some(pid) = pid else { return };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_err() {
            let options = bollard::query_parameters::KillContainerOptionsBuilder::default()
                .signal(signal.as_str())
                .build();
            let _ = self.docker.kill_container(container, Some(options)).await;
        }
    }

    /// Follows a started container's output to its end (a `docker://` step); returns its
    /// exit code. A deadline or cancellation stops it.
    pub async fn follow(
        &self,
        id: &str,
        on_line: &mut (dyn FnMut(Piece) + Send),
        deadline: Option<Instant>,
        cancel: &CancellationToken,
    ) -> Result<Exit, DockerError> {
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut rx = pump(self.docker.logs(id, Some(options)));
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let mut stopped: Option<Exit> = None;
        loop {
            tokio::select! {
                piece = rx.recv() => match piece {
                    Some(p) => on_line(p),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && stopped.is_none() => {
                    stopped = Some(Exit::TimedOut);
                    let _ = self.docker.stop_container(id, Some(stop_options())).await;
                }
                () = cancel.cancelled(), if stopped.is_none() => {
                    stopped = Some(Exit::Cancelled);
                    let _ = self.docker.stop_container(id, Some(stop_options())).await;
                }
            }
        }
        if let Some(reason) = stopped {
            return Ok(reason);
        }
        let mut waits = self.docker.wait_container(id, None);
        let code = match waits.next().await {
            Some(Ok(r)) => r.status_code,
            // A non-zero exit arrives as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            _ => self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(api("reading the container's exit code"))?
                .state
                .and_then(|s| s.exit_code)
                .unwrap_or(1),
        };
        Ok(Exit::Code(i32::try_from(code).unwrap_or(1)))
    }

    /// Why a container is not running, as a sentence (`None` while it runs): the engine
    /// itself may be what is gone.
    pub async fn not_running(&self, id: &str) -> Option<String> {
        let state = match self.docker.inspect_container(id, None).await {
            Ok(c) => c.state.unwrap_or_default(),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Some("the job's container is not running: it is gone (removed)".into()),
            Err(e) => {
                tracing::debug!("inspecting container {id}: {e}");
                return Some(
                    "the Docker engine does not answer (it stopped or is restarting)".into(),
                );
            }
        };
        if state.running == Some(true) {
            return None;
        }
        let why = match (state.oom_killed, state.exit_code) {
            (Some(true), _) => "it ran out of memory and was killed".into(),
            (_, Some(code)) => format!("it exited with code {code}"),
            _ => "it stopped".into(),
        };
        Some(format!("the job's container is not running: {why}"))
    }

    /// Waits for a container's health check to pass. Fails, naming why, when it reports
    /// unhealthy, the container stops, or `timeout` passes.
    pub async fn wait_healthy(&self, id: &str, timeout: Duration) -> Result<(), DockerError> {
        let until = Instant::now() + timeout;
        loop {
            let c = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(api("inspecting a service's container"))?;
            let state = c.state.unwrap_or_default();
            if state.running == Some(false) {
                return Err(DockerError::Failed(format!(
                    "its container stopped (exit code {})",
                    state.exit_code.unwrap_or(-1)
                )));
            }
            match state.health.and_then(|h| h.status) {
                None | Some(HealthStatusEnum::HEALTHY | HealthStatusEnum::NONE) => return Ok(()),
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Err(DockerError::Failed(
                        "its health check reports it unhealthy".into(),
                    ));
                }
                _ => {}
            }
            if Instant::now() >= until {
                return Err(DockerError::Failed(format!(
                    "it was not healthy within {} s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The host port each published container port got (`80/tcp` → `32768`).
    pub async fn published_ports(&self, id: &str) -> Result<Vec<(String, String)>, DockerError> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(api("inspecting a service's container"))?;
        let mut out = Vec::new();
        for (port, bindings) in c.network_settings.and_then(|n| n.ports).unwrap_or_default() {
            let container_port = port.split('/').next().unwrap_or(&port).to_owned();
            if let Some(host) = bindings
                .unwrap_or_default()
                .into_iter()
                .find_map(|b| b.host_port)
            {
                out.push((container_port, host));
            }
        }
        Ok(out)
    }

    /// The last `max` lines a container printed.
    pub async fn log_tail(&self, id: &str, max: usize) -> Vec<String> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&max.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = Vec::new();
        while let Some(Ok(out)) = stream.next().await {
            text.extend_from_slice(&out.into_bytes());
        }
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Removes a container (and its anonymous volumes), running or not; one already gone is
    /// not an error.
    pub async fn remove_container(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = self.docker.remove_container(id, Some(options)).await;
    }

    pub async fn remove_network(&self, name: &str) {
        let _ = self.docker.remove_network(name).await;
    }

    pub async fn remove_volume(&self, name: &str) {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        let _ = self.docker.remove_volume(name, Some(options)).await;
    }

    /// The containers, networks and volumes labelled `label` (`KEY` or `KEY=VALUE`): each
    /// one's id (a volume's name) and labels.
    async fn labelled(&self, label: &str) -> Result<[Vec<Labelled>; 3], DockerError> {
        let filters: HashMap<String, Vec<String>> =
            HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
        let listing =
            |e: bollard::errors::Error| DockerError::Failed(format!("listing `{label}`: {e}"));
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(listing)?;
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(listing)?;
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let volumes = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(listing)?;
        Ok([
            containers
                .into_iter()
                .filter_map(|c| Some((c.id?, c.labels.unwrap_or_default())))
                .collect(),
            networks
                .into_iter()
                .filter_map(|n| Some((n.id?, n.labels.unwrap_or_default())))
                .collect(),
            volumes
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| (v.name, v.labels))
                .collect(),
        ])
    }

    /// Removes what `labelled` found and `take` picks: containers (with their anonymous
    /// volumes) first, then networks and volumes. Returns how many containers went.
    async fn remove_found(
        &self,
        [containers, networks, volumes]: [Vec<Labelled>; 3],
        take: impl Fn(&HashMap<String, String>) -> bool,
    ) -> usize {
        let mut removed = 0;
        for (id, _) in containers.iter().filter(|(_, l)| take(l)) {
            self.remove_container(id).await;
            removed += 1;
        }
        for (id, _) in networks.iter().filter(|(_, l)| take(l)) {
            self.remove_network(id).await;
        }
        for (name, _) in volumes.iter().filter(|(_, l)| take(l)) {
            self.remove_volume(name).await;
        }
        removed
    }

    /// Removes every container, network and volume labelled `label` (`KEY=VALUE`), then
    /// looks again: an error when the engine could not list them or some are left.
    pub async fn remove_labelled(&self, label: &str) -> Result<(), DockerError> {
        let found = self.labelled(label).await?;
        self.remove_found(found, |_| true).await;
        let left: usize = self.labelled(label).await?.iter().map(Vec::len).sum();
        if left == 0 {
            Ok(())
        } else {
            Err(DockerError::Failed(format!(
                "{left} of the objects labelled `{label}` are left"
            )))
        }
    }

    /// Removes the containers, networks and volumes whose owner process is gone (a run that
    /// was killed). Returns how many containers went.
    pub async fn remove_orphans(&self) -> usize {
        let Ok(found) = self.labelled(OWNER_LABEL).await else {
            return 0;
        };
        self.remove_found(found, |labels| {
            labels.get(OWNER_LABEL).is_some_and(|o| !owner_alive(o))
        })
        .await
    }
}

/// An object's id (a volume's name) and labels.
type Labelled = (String, HashMap<String, String>);

fn stop_options() -> bollard::query_parameters::StopContainerOptions {
    let grace = i32::try_from(KILL_GRACE.as_secs()).unwrap_or(5);
    bollard::query_parameters::StopContainerOptionsBuilder::default()
        .t(grace)
        .build()
}

/// `name:tag` (a registry's port is not a tag); no tag is `latest`.
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// This process as an owner label's value.
pub fn owner() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or(0))
}

fn owner_alive(owner: &str) -> bool {
    let Some((pid, start)) = owner.split_once(':') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    start_time(pid) == Some(start)
}

/// A process's start time (`/proc/PID/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Demultiplexes the engine's output frames into lines, as a host process's pipes are read.
/// Twelve hex digits that differ between processes, threads and moments: names a job's
/// Docker objects apart, and the agent's step marks.
pub fn random_hex() -> String {
    use sha2::Digest;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}:{}:{:?}",
        std::process::id(),
        now.as_nanos(),
        std::thread::current().id()
    );
    let digest = sha2::Sha256::digest(seed.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn pump(
    mut output: impl futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>>
    + Send
    + Unpin
    + 'static,
) -> mpsc::Receiver<Piece> {
    let (tx, rx) = mpsc::channel::<Piece>(256);
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        while let Some(item) = output.next().await {
            let frame = match item {
                Ok(f) => f,
                Err(e) => {
                    let note = format!("\n(the Docker engine's output stream failed: {e})\n");
                    let _ = err_w.write_all(note.as_bytes()).await;
                    break;
                }
            };
            let r = match frame {
                LogOutput::StdErr { message } => err_w.write_all(&message).await,
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    out_w.write_all(&message).await
                }
                LogOutput::StdIn { .. } => Ok(()),
            };
            if r.is_err() {
                break;
            }
        }
    });
    tokio::spawn(crate::process::read_lines(
        out_r,
        Stream::Stdout,
        tx.clone(),
    ));
    tokio::spawn(crate::process::read_lines(err_r, Stream::Stderr, tx));
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_split_at_their_tag() {
        assert_eq!(split_tag("postgres:15"), ("postgres", "15"));
        assert_eq!(split_tag("postgres"), ("postgres", "latest"));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/app:1.2"),
            ("localhost:5000/app", "1.2")
        );
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(owner_alive(&owner()));
        let (pid, _) = owner()
            .split_once(':')
            .map(|(p, s)| (p.to_owned(), s.to_owned()))
            .unwrap();
        assert!(!owner_alive(&format!("{pid}:1")));
        assert!(!owner_alive("4194304:1"));
        assert!(!owner_alive("garbage"));
    }
}
