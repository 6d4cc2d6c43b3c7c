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
use crate::compose::{IMAGES_DIR, IMAGES_FILE, last_lines, release_images};
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
        let dir = self.layout.release(release);
        let mut files = dir.join(&c.file).to_string_lossy().into_owned();
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
        if !dir.join(&c.file).is_file() {
            return Err(Error::Refused(format!(
                "the release has no compose file `{}`",
                c.file
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
                "`{cmd} config` finds the compose file `{}` invalid: {}",
                c.file,
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
            let present = Command::new("docker")
                .args(["image", "inspect", "--format", "{{.Id}}", image])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
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

    /// RESTART for a Compose release: `up -d` with the release's files; only the services
    /// whose configuration or image changed are recreated.
    pub(super) fn compose_up(&mut self, id: &str) -> Result<()> {
        let cmd = "$PIPEWRIGHT_COMPOSE up -d --no-build --remove-orphans";
        self.hook("compose up", cmd, id, None).map_err(|e| match e {
            Error::Hook { status, .. } => {
                let program = self.compose_cmd.clone().unwrap_or_default();
                Error::Refused(format!("`{program} up` failed ({status})"))
            }
            e => e,
        })
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
        let deadline = self
            .s
            .health
            .as_ref()
            .map_or(DEFAULT_DEADLINE, |h| Duration::from_millis(h.deadline_ms));
        let start = Instant::now();
        loop {
            let out = self.compose_output(id, &["ps", "-q"])?;
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
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
            let _ = Command::new("docker")
                .args(["rmi", &tag])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The state of each container, by `docker inspect`.
fn inspect(ids: &[String]) -> Vec<State> {
    if ids.is_empty() {
        return Vec::new();
    }
    let format = "{{.Id}}|{{index .Config.Labels \"com.docker.compose.service\"}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}";
    let Ok(out) = Command::new("docker")
        .args(["inspect", "--format", format])
        .args(ids)
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
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
