//! Compose releases on the host (`strategy: compose`): the images the release brought are
//! loaded and the stack checked (PREPARE), brought up from the release's files under the
//! environment's one project name (RESTART: only what changed is recreated, and named
//! volumes are never removed), waited for until every container runs and every health check
//! passes (HEALTHCHECK), and taken down without its volumes when a first release fails.
//! Images no kept release names are removed when releases are pruned.
//!
//! The Compose command is the host's: `docker compose` where the plugin is installed, else
//! `docker-compose`. Hooks see it as `$PIPEWRIGHT_COMPOSE`, with `COMPOSE_FILE` and
//! `COMPOSE_PROJECT_NAME` set to the release's, so `$PIPEWRIGHT_COMPOSE exec -T db pg_dump`
//! reaches the stack's database.

use std::io::{BufRead, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use workflow::yaml::{self, Node};

use super::Steps;
use crate::compose::{IMAGES_DIR, IMAGES_FILE, file_in, last_lines, release_images};
use crate::error::{Error, Result};

/// How long the stack may take to be up and healthy without a `health` section.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// One container of the stack as `docker inspect` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    id: String,
    service: String,
    status: String,
    health: String,
    exit_code: i64,
}

impl<R: BufRead, W: Write> Steps<'_, R, W> {
    /// The host's Compose command, found once.
    fn compose_command(&mut self) -> Result<String> {
        if let Some(c) = &self.compose_cmd {
            return Ok(c.clone());
        }
        let works = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let cmd = if works(&["docker", "compose", "version"]) {
            "docker compose"
        } else if works(&["docker-compose", "version"]) {
            "docker-compose"
        } else {
            return Err(Error::Refused(
                "this host has neither `docker compose` nor `docker-compose`: install Docker Compose to deploy with `strategy: compose`".into(),
            ));
        };
        self.compose_cmd = Some(cmd.to_owned());
        Ok(cmd.to_owned())
    }

    /// The variables that point Compose at a release: its compose file and the images
    /// file, the project, and the command. Empty for a release of files.
    pub(super) fn compose_env(&mut self, release: &str) -> Result<Vec<(String, String)>> {
        let Some(c) = self.s.compose.clone() else {
            return Ok(Vec::new());
        };
        // The live release through `current`: Compose keeps the paths it is given, and a
        // service's configuration (its build context's path among it) then stays the same
        // from one release to the next, so a service that did not change is not recreated.
        let dir = if self.layout.current_id().as_deref() == Some(release) {
            self.layout.current()
        } else {
            self.layout.release(release)
        };
        let mut files = dir
            .join(file_in(&self.layout.release(release), &c))
            .to_string_lossy()
            .into_owned();
        let images = dir.join(IMAGES_FILE);
        if images.is_file() {
            files.push(':');
            files.push_str(&images.to_string_lossy());
        }
        Ok(vec![
            ("COMPOSE_FILE".into(), files),
            ("COMPOSE_PROJECT_NAME".into(), c.project.clone()),
            ("PIPEWRIGHT_COMPOSE".into(), self.compose_command()?),
        ])
    }

    /// A Compose command in the release's directory, its output captured.
    fn compose_output(&mut self, release: &str, args: &[&str]) -> Result<Output> {
        let cmd = self.compose_command()?;
        let env = self.compose_env(release)?;
        let mut words = cmd.split(' ');
        let program = words.next().unwrap_or("docker-compose");
        Command::new(program)
            .args(words)
            .args(args)
            .current_dir(self.layout.release(release))
            .envs(&self.s.env)
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Refused(format!("cannot run `{cmd}`: {e}")))
    }

    /// PREPARE for a Compose release: loads the images it brought, checks its compose
    /// files, and that every image the stack names is on this host.
    pub(super) fn compose_prepare(&mut self, id: &str) -> Result<()> {
        let Some(c) = self.s.compose.clone() else {
            return Ok(());
        };
        let dir = self.layout.release(id);
        let file = file_in(&dir, &c);
        if !dir.join(&file).is_file() {
            return Err(Error::Refused(format!(
                "the release has no compose file `{file}`"
            )));
        }
        if dir.join(IMAGES_DIR).is_dir() {
            let load = format!("tar -C {IMAGES_DIR} -cf - . | docker load");
            self.hook("docker load", &load, id, None)
                .map_err(|e| Error::Refused(format!("loading the release's images failed: {e}")))?;
        }
        let cmd = self.compose_command()?;
        let out = self.compose_output(id, &["config"])?;
        if !out.status.success() {
            return Err(Error::Refused(format!(
                "`{cmd} config` finds the compose file `{file}` invalid: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let config = String::from_utf8_lossy(&out.stdout);
        let root = yaml::load(&config).map_err(|d| {
            Error::Refused(format!(
                "cannot read `{cmd} config`'s output: {}",
                d.message
            ))
        })?;
        let mut missing = Vec::new();
        for (name, service) in root
            .get("services")
            .and_then(Node::as_map)
            .unwrap_or_default()
        {
            let Some(image) = service.get("image").and_then(Node::as_str) else {
                if service.get("build").is_some() {
                    missing.push(format!(
                        "`{}` has a `build` but is not in `services_to_build`, so no image was shipped for it",
                        name.as_str().unwrap_or_default()
                    ));
                }
                continue;
            };
            let present = docker_lines(&["image", "inspect", "--format", "{{.Id}}", image])
                .iter()
                .any(|l| l.starts_with("sha256:"));
            if !present {
                missing.push(format!(
                    "`{}` needs the image {image}, which is not on this host (load it with `docker load -i FILE.tar`, or add the service to `services_to_build`)",
                    name.as_str().unwrap_or_default()
                ));
            }
        }
        if !missing.is_empty() {
            return Err(Error::Refused(missing.join("; ")));
        }
        Ok(())
    }

    /// RESTART for a Compose release: the services that can be replaced without downtime
    /// are (see [`Self::roll`]), then `up -d` with the release's files; only the services
    /// whose configuration or image changed are recreated.
    pub(super) fn compose_up(&mut self, id: &str) -> Result<()> {
        // Asked once: each Compose command costs a process start (most of a second for
        // docker-compose 1).
        let changed = self.changed_services(id)?;
        let rolling = self.rolling_services(id)?;
        let mut recreate = Vec::new();
        for service in changed {
            if rolling.contains(&service) && self.roll(id, &service)? {
                continue;
            }
            recreate.push(service);
        }
        // What is missing is started and what the release no longer has removed first, with
        // nothing recreated; then only what changed is recreated (Compose would also recreate
        // the services that depend on a recreated one, a front proxy with a fixed port, say).
        // In that order, a new container that exits at once stays exited for the health
        // check to see: the first command would start it again.
        let cmd = "$PIPEWRIGHT_COMPOSE up -d --no-build --no-recreate --remove-orphans";
        self.compose_hook(id, "up", cmd)?;
        if recreate.is_empty() {
            return Ok(());
        }
        let cmd = format!(
            "$PIPEWRIGHT_COMPOSE up -d --no-deps --no-build {}",
            recreate.join(" ")
        );
        self.compose_hook(id, "up", &cmd)
    }

    /// The services whose running containers have another configuration than the release
    /// gives them (their `config-hash` label), or none.
    fn changed_services(&mut self, id: &str) -> Result<Vec<String>> {
        let out = self.compose_output(id, &["config", "--hash=*"])?;
        if !out.status.success() {
            return Err(Error::Refused(format!(
                "the compose file is invalid: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let wanted: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, hash) = l.split_once(' ')?;
                Some((name.to_owned(), hash.trim().to_owned()))
            })
            .collect();
        let ps = self.compose_output(id, &["ps", "-q"])?;
        let ids: Vec<&str> = std::str::from_utf8(&ps.stdout)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let mut running: Vec<(String, String)> = Vec::new();
        if !ids.is_empty() {
            let format = "{{index .Config.Labels \"com.docker.compose.service\"}} {{index .Config.Labels \"com.docker.compose.config-hash\"}}";
            let mut args = vec!["inspect", "--format", format];
            args.extend(ids);
            running = docker_lines(&args)
                .iter()
                .filter_map(|l| {
                    let (name, hash) = l.split_once(' ')?;
                    Some((name.to_owned(), hash.to_owned()))
                })
                .collect();
        }
        Ok(wanted
            .into_iter()
            .filter(|(name, hash)| {
                let mine: Vec<&(String, String)> =
                    running.iter().filter(|(n, _)| n == name).collect();
                mine.is_empty() || mine.iter().any(|(_, h)| h != hash)
            })
            .map(|(name, _)| name)
            .collect())
    }

    /// A Compose command as a hook (its output in the release's log and the deployer's).
    fn compose_hook(&mut self, id: &str, what: &str, cmd: &str) -> Result<()> {
        self.hook(&format!("compose {what}"), cmd, id, None)
            .map_err(|e| match e {
                Error::Hook { status, .. } => {
                    let program = self.compose_cmd.clone().unwrap_or_default();
                    Error::Refused(format!("`{program} {what}` failed ({status})"))
                }
                e => e,
            })
    }

    /// The services two containers of which can run at once, so that a new one can start
    /// and turn healthy before the old one stops: with a health check, and with neither a
    /// `container_name` nor `ports`.
    fn rolling_services(&mut self, id: &str) -> Result<Vec<String>> {
        let out = self.compose_output(id, &["config"])?;
        if !out.status.success() {
            // `up` reports it.
            return Ok(Vec::new());
        }
        let Ok(root) = yaml::load(&String::from_utf8_lossy(&out.stdout)) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for (name, service) in root
            .get("services")
            .and_then(Node::as_map)
            .unwrap_or_default()
        {
            let checked = service.get("healthcheck").is_some_and(|h| {
                h.get("disable").and_then(Node::as_str) != Some("true")
                    && h.get("test")
                        .and_then(Node::as_seq)
                        .and_then(|t| t.first())
                        .and_then(Node::as_str)
                        != Some("NONE")
            });
            if checked
                && service.get("container_name").is_none()
                && service.get("ports").is_none()
                && let Some(n) = name.as_str()
            {
                names.push(n.to_owned());
            }
        }
        Ok(names)
    }

    /// The ids of a service's containers.
    fn service_containers(&mut self, id: &str, service: &str) -> Result<Vec<String>> {
        let out = self.compose_output(id, &["ps", "-q", service])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// Replaces a running service whose configuration changed without a moment when none of
    /// it serves: one more container is started with the release's configuration, and only
    /// when it is healthy are the old ones stopped. A new container that never turns
    /// healthy is removed, and the old ones go on serving. False when none of it runs
    /// (nothing to replace: it is simply started).
    fn roll(&mut self, id: &str, service: &str) -> Result<bool> {
        let old = self.service_containers(id, service)?;
        if old.is_empty() {
            return Ok(false);
        }
        let scale = format!("{service}={}", old.len() + 1);
        let cmd = format!(
            "$PIPEWRIGHT_COMPOSE up -d --no-deps --no-build --no-recreate --scale {scale} {service}"
        );
        self.compose_hook(id, "up", &cmd)?;
        let new: Vec<String> = self
            .service_containers(id, service)?
            .into_iter()
            .filter(|c| !old.contains(c))
            .collect();
        if let Err(e) = self.wait_healthy(id, Some(&new)) {
            let mut rm = vec!["rm", "-f"];
            rm.extend(new.iter().map(String::as_str));
            docker_lines(&rm);
            return Err(e);
        }
        let drain = self.s.compose.as_ref().map_or(0, |c| c.drain_ms);
        if drain > 0 {
            // Both serve while proxies' cached DNS answers expire and name the new ones.
            std::thread::sleep(Duration::from_millis(drain));
        }
        let mut stop = vec!["stop"];
        stop.extend(old.iter().map(String::as_str));
        docker_lines(&stop);
        let mut rm = vec!["rm"];
        rm.extend(old.iter().map(String::as_str));
        docker_lines(&rm);
        self.ch.message(format!(
            "`{service}` replaced without downtime: its new container turned healthy before the old one stopped"
        ));
        Ok(true)
    }

    /// Takes a failed first release's stack down; its volumes stay.
    pub(super) fn compose_down(&mut self, id: &str) {
        if self.s.compose.is_some() {
            let _ = self.hook(
                "compose down",
                "$PIPEWRIGHT_COMPOSE down --remove-orphans",
                id,
                None,
            );
        }
    }

    /// Waits until every container of the stack runs (or has exited with 0) and every one
    /// with a health check is healthy. A container that exits with an error, dies or turns
    /// unhealthy fails at once, naming its service and showing its last lines.
    pub(super) fn compose_healthy(&mut self, id: &str) -> Result<()> {
        if self.s.compose.is_none() {
            return Ok(());
        }
        self.wait_healthy(id, None)
    }

    /// Waits for the containers `only` names, or else all of the stack's.
    fn wait_healthy(&mut self, id: &str, only: Option<&[String]>) -> Result<()> {
        let deadline = self
            .s
            .health
            .as_ref()
            .map_or(DEFAULT_DEADLINE, |h| Duration::from_millis(h.deadline_ms));
        let start = Instant::now();
        loop {
            let ids: Vec<String> = match only {
                Some(ids) => ids.to_vec(),
                None => {
                    let out = self.compose_output(id, &["ps", "-q"])?;
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect()
                }
            };
            let states = inspect(&ids);
            if let Some(bad) = states.iter().find(|s| {
                s.health == "unhealthy"
                    || s.status == "dead"
                    || (s.status == "exited" && s.exit_code != 0)
            }) {
                let why = match bad.status.as_str() {
                    "exited" | "dead" => format!("exited with code {}", bad.exit_code),
                    _ => "is unhealthy".to_owned(),
                };
                return Err(Error::Refused(format!(
                    "service `{}` {why}; its last lines:\n{}",
                    bad.service,
                    logs(&bad.id)
                )));
            }
            let waiting: Vec<&State> = states
                .iter()
                .filter(|s| {
                    !(s.status == "running" && (s.health.is_empty() || s.health == "healthy")
                        || s.status == "exited")
                })
                .collect();
            if !ids.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= deadline {
                let names: Vec<String> = waiting
                    .iter()
                    .map(|s| format!("`{}` ({} {})", s.service, s.status, s.health))
                    .collect();
                let tail = waiting.first().map(|s| logs(&s.id)).unwrap_or_default();
                return Err(Error::Refused(format!(
                    "the stack was not up and healthy within {}: {}; last lines:\n{tail}",
                    workflow::duration::format_duration(deadline),
                    if names.is_empty() {
                        "no container runs".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The images only the releases in `removed` named; `docker rmi` each, once the
    /// releases are gone. Images still in use are left to Docker, which refuses.
    pub(super) fn compose_prune_images(&mut self, removed: &[String], kept: &[String]) {
        if self.s.compose.is_none() {
            return;
        }
        let keep: std::collections::HashSet<String> = kept
            .iter()
            .flat_map(|k| release_images(&self.layout.release(k)))
            .collect();
        let gone: std::collections::BTreeSet<String> = removed
            .iter()
            .flat_map(|r| release_images(&self.layout.release(r)))
            .filter(|t| !keep.contains(t))
            .collect();
        for tag in gone {
            docker_lines(&["rmi", &tag]);
        }
    }
}

/// The state of each container, by `docker inspect`.
fn inspect(ids: &[String]) -> Vec<State> {
    if ids.is_empty() {
        return Vec::new();
    }
    let format = "{{.Id}}|{{index .Config.Labels \"com.docker.compose.service\"}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}";
    let mut args = vec!["inspect", "--format", format];
    args.extend(ids.iter().map(String::as_str));
    docker_lines(&args)
        .iter()
        .filter_map(|l| {
            let mut f = l.split('|');
            Some(State {
                id: f.next()?.to_owned(),
                service: f.next()?.to_owned(),
                status: f.next()?.to_owned(),
                health: f.next()?.to_owned(),
                exit_code: f.next()?.trim().parse().unwrap_or(0),
            })
        })
        .collect()
}

/// `docker ARGS`'s output lines, whatever its exit status: `docker inspect` of several
/// containers, one of which has just gone, still describes the others.
fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A container's last 20 lines of output.
fn logs(id: &str) -> String {
    let Ok(out) = Command::new("docker")
        .args(["logs", "--tail", "20", id])
        .stdin(Stdio::null())
        .output()
    else {
        return String::new();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    last_lines(&text, 20)
}
