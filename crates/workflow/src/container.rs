//! A job's `container:` and `services:` as GitHub reads them, once their expressions are
//! evaluated (at the job's start: they may use `matrix`, `secrets`, `env`): the image, its
//! credentials, variables, ports, volumes and the `docker create` options, with the health
//! check (`--health-cmd` and friends) picked out of the options, since a job waits for its
//! services to be healthy whatever runs them (the Docker engine, or a local server binary
//! on a machine without one).
//!
//! Pure: the executor evaluates the node and calls [`container`] or [`services`]; errors
//! name the key and the value.

use std::time::Duration;

use expr::Value;

/// Why a `container` or a service cannot be run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ContainerError {
    /// Where: `container.ports[0]`, `services.db.options`.
    pub key: String,
    pub message: String,
}

fn error(key: impl Into<String>, message: impl Into<String>) -> ContainerError {
    ContainerError {
        key: key.into(),
        message: message.into(),
    }
}

/// A container as a job asks for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerSpec {
    /// `postgres:16`, `ghcr.io/owner/image@sha256:...`, or `docker://...` stripped.
    pub image: String,
    pub credentials: Option<Credentials>,
    /// In the order written.
    pub env: Vec<(String, String)>,
    pub ports: Vec<PortMapping>,
    /// `source:target[:mode]` or a bare target (an anonymous volume), as docker takes them.
    pub volumes: Vec<String>,
    pub options: Options,
}

/// A registry's user name and password (or token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// `8080:80/tcp`: a container port, published on a host port (given, or any free one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// None: the engine picks a free port (`ports: [5432]`).
    pub host: Option<u16>,
    pub container: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `options:`: the health check, and the rest as written (for `docker create`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    pub health: Option<HealthCheck>,
    /// The other options, split as a shell would.
    pub other: Vec<String>,
}

/// Docker's health check, with Docker's defaults for what is not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Run by the container's shell (`CMD-SHELL`).
    pub cmd: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl HealthCheck {
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    const DEFAULT_RETRIES: u32 = 3;
}

/// The job's `container` (a string is the image). None when there is none, or its image is
/// empty (as GitHub does: a matrix may leave one combination on the host).
pub fn container(v: &Value) -> Result<Option<ContainerSpec>, ContainerError> {
    let spec = spec(v, "container")?;
    Ok(spec.filter(|s| !s.image.is_empty()))
}

/// The job's `services`, by id, in the order written; a service whose image is empty is
/// left out (GitHub starts none).
pub fn services(v: &Value) -> Result<Vec<(String, ContainerSpec)>, ContainerError> {
    let map = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Object(m) => m,
        other => {
            return Err(error(
                "services",
                format!("must be a mapping of service ids, found {}", kind(other)),
            ));
        }
    };
    let mut out = Vec::new();
    for (id, s) in map {
        if let Some(spec) = spec(s, &format!("services.{id}"))?
            && !spec.image.is_empty()
        {
            out.push((id.clone(), spec));
        }
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

const KEYS: [&str; 6] = ["image", "credentials", "env", "ports", "volumes", "options"];

fn spec(v: &Value, key: &str) -> Result<Option<ContainerSpec>, ContainerError> {
    let map = match v {
        Value::Null => return Ok(None),
        Value::String(image) => {
            return Ok(Some(ContainerSpec {
                image: image_name(image),
                ..ContainerSpec::default()
            }));
        }
        Value::Object(m) => m,
        other => {
            return Err(error(
                key,
                format!("must be an image name or a mapping, found {}", kind(other)),
            ));
        }
    };
    let mut s = ContainerSpec::default();
    for (k, v) in map {
        let at = format!("{key}.{k}");
        match k.to_ascii_lowercase().as_str() {
            "image" => s.image = image_name(&text(v, &at)?),
            "credentials" => s.credentials = credentials(v, &at)?,
            "env" => s.env = env(v, &at)?,
            "ports" => {
                s.ports = list(v, &at)?
                    .iter()
                    .enumerate()
                    .map(|(i, p)| port(p, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?;
            }
            "volumes" => {
                s.volumes = list(v, &at)?
                    .iter()
                    .enumerate()
                    .map(|(i, p)| text(p, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?;
            }
            "options" => s.options = options(&text(v, &at)?, &at)?,
            _ => {
                return Err(error(
                    at,
                    format!("is not a key of a container (one of {})", KEYS.join(", ")),
                ));
            }
        }
    }
    if !map.keys().any(|k| k.eq_ignore_ascii_case("image")) {
        return Err(error(key, "has no `image`"));
    }
    Ok(Some(s))
}

fn image_name(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix("docker://").unwrap_or(s).to_owned()
}

/// A scalar as text (numbers and booleans as GitHub writes them).
fn text(v: &Value, key: &str) -> Result<String, ContainerError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_expr_string()),
        Value::Null => Ok(String::new()),
        other => Err(error(
            key,
            format!("must be a string, found {}", kind(other)),
        )),
    }
}

fn list<'v>(v: &'v Value, key: &str) -> Result<Vec<&'v Value>, ContainerError> {
    match v {
        Value::Array(items) => Ok(items.iter().collect()),
        Value::Null => Ok(Vec::new()),
        other => Err(error(
            key,
            format!("must be a sequence, found {}", kind(other)),
        )),
    }
}

fn env(v: &Value, key: &str) -> Result<Vec<(String, String)>, ContainerError> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), text(v, &format!("{key}.{k}"))?)))
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(error(
            key,
            format!("must be a mapping, found {}", kind(other)),
        )),
    }
}

fn credentials(v: &Value, key: &str) -> Result<Option<Credentials>, ContainerError> {
    let m = match v {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        other => {
            return Err(error(
                key,
                format!(
                    "must be a mapping of `username` and `password`, found {}",
                    kind(other)
                ),
            ));
        }
    };
    let field = |name: &str| -> Result<String, ContainerError> {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or(Ok(String::new()), |(_, v)| {
                text(v, &format!("{key}.{name}"))
            })
    };
    for k in m.keys() {
        if !["username", "password"].contains(&k.to_ascii_lowercase().as_str()) {
            return Err(error(
                format!("{key}.{k}"),
                "is not a key of credentials (username, password)",
            ));
        }
    }
    let (username, password) = (field("username")?, field("password")?);
    if username.is_empty() != password.is_empty() {
        return Err(error(key, "needs both `username` and `password`"));
    }
    Ok((!username.is_empty()).then_some(Credentials { username, password }))
}

/// `80`, `8080:80`, `127.0.0.1:8080:80`, `8080:80/udp`.
fn port(v: &Value, key: &str) -> Result<PortMapping, ContainerError> {
    let written = text(v, key)?;
    let bad = || {
        error(
            key,
            format!(
                "`{written}` is not a port mapping (CONTAINER, HOST:CONTAINER, or either with /tcp or /udp)"
            ),
        )
    };
    let (ports, protocol) = match written.trim().rsplit_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some(_) => return Err(bad()),
        None => (written.trim(), Protocol::Tcp),
    };
    let number = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0);
    let parts: Vec<&str> = ports.split(':').collect();
    let (host, container) = match parts.as_slice() {
        [c] => (None, number(c).ok_or_else(bad)?),
        [h, c] | [_, h, c] => (Some(number(h).ok_or_else(bad)?), number(c).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(PortMapping {
        host,
        container,
        protocol,
    })
}

/// `--health-cmd "pg_isready" --health-interval 10s ...`: split as a shell would, the health
/// options taken out (`--opt value` or `--opt=value`).
fn options(written: &str, key: &str) -> Result<Options, ContainerError> {
    let words = shell_words::split(written).map_err(|e| {
        error(
            key,
            format!("cannot split `{written}` as a shell would: {e}"),
        )
    })?;
    let mut out = Options::default();
    let mut cmd: Option<String> = None;
    let (mut interval, mut timeout, mut retries, mut start) = (None, None, None, None);
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let (name, inline) = match w.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (w.clone(), None),
        };
        if !name.starts_with("--health-") && name != "--no-healthcheck" {
            out.other.push(w);
            continue;
        }
        if name == "--no-healthcheck" {
            cmd = None;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => words
                .next()
                .ok_or_else(|| error(key, format!("`{name}` has no value")))?,
        };
        let duration = |v: &str| {
            crate::duration::parse_duration(v).ok_or_else(|| {
                error(
                    key,
                    format!("`{name} {v}` is not a duration (such as 10s, 1m30s)"),
                )
            })
        };
        match name.as_str() {
            "--health-cmd" => cmd = Some(value),
            "--health-interval" => interval = Some(duration(&value)?),
            "--health-timeout" => timeout = Some(duration(&value)?),
            "--health-start-period" => start = Some(duration(&value)?),
            "--health-retries" => {
                retries =
                    Some(value.parse::<u32>().map_err(|_| {
                        error(key, format!("`{name} {value}` is not a whole number"))
                    })?);
            }
            _ => {
                return Err(error(
                    key,
                    format!(
                        "`{name}` is not a health option (--health-cmd, --health-interval, --health-timeout, --health-retries, --health-start-period)"
                    ),
                ));
            }
        }
    }
    out.health = cmd.map(|cmd| HealthCheck {
        cmd,
        interval: interval.unwrap_or(HealthCheck::DEFAULT_INTERVAL),
        timeout: timeout.unwrap_or(HealthCheck::DEFAULT_TIMEOUT),
        retries: retries.unwrap_or(HealthCheck::DEFAULT_RETRIES),
        start_period: start.unwrap_or_default(),
    });
    Ok(out)
}

/// What the Docker engine is told beyond the image: the `options` other than the health
/// check, read into the few settings a job may change about its own container. Those that
/// would reach the host (`--privileged`, `--cap-add`, `--device`, `--network`, `--pid`,
/// `--volume` of a host path, `--security-opt`, …) are refused: job code is untrusted, and
/// such a container is the host's root.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateOptions {
    pub user: Option<String>,
    pub entrypoint: Option<String>,
    pub hostname: Option<String>,
    pub workdir: Option<String>,
    pub env: Vec<(String, String)>,
    /// More names on the job's network (`--network-alias`).
    pub aliases: Vec<String>,
    pub labels: Vec<(String, String)>,
    /// Bytes.
    pub memory: Option<i64>,
    pub shm_size: Option<i64>,
    /// Billionths of a CPU.
    pub nano_cpus: Option<i64>,
    pub init: bool,
    pub read_only: bool,
    pub tmpfs: Vec<String>,
    pub stop_signal: Option<String>,
}

/// Options that would give a job's container the host (or another's container).
const REFUSED: [&str; 17] = [
    "--privileged",
    "--cap-add",
    "--device",
    "--device-cgroup-rule",
    "--network",
    "--net",
    "--pid",
    "--ipc",
    "--uts",
    "--userns",
    "--cgroupns",
    "--cgroup-parent",
    "--security-opt",
    "--volumes-from",
    "--volume",
    "--mount",
    "--group-add",
];

/// Reads [`Options::other`] (the options of `key`).
pub fn create_options(other: &[String], key: &str) -> Result<CreateOptions, ContainerError> {
    let mut out = CreateOptions::default();
    let mut words = other.iter();
    while let Some(w) = words.next() {
        let (name, inline) = match w.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (w.clone(), None),
        };
        let name = match name.as_str() {
            "-u" => "--user".to_owned(),
            "-h" => "--hostname".to_owned(),
            "-w" => "--workdir".to_owned(),
            "-e" => "--env".to_owned(),
            "-m" => "--memory".to_owned(),
            "-l" => "--label".to_owned(),
            "-v" => "--volume".to_owned(),
            _ => name,
        };
        if REFUSED.contains(&name.as_str()) {
            let hint = if name == "--volume" || name == "--mount" {
                " (use `volumes:`: named volumes live as long as the job)"
            } else {
                ""
            };
            return Err(error(
                key,
                format!(
                    "`{name}` would reach beyond the job's own container, and is refused{hint}"
                ),
            ));
        }
        // Flags without a value.
        match name.as_str() {
            "--init" => {
                out.init = inline.is_none_or(|v| v != "false");
                continue;
            }
            "--read-only" => {
                out.read_only = inline.is_none_or(|v| v != "false");
                continue;
            }
            "--rm" | "-t" | "--tty" | "-i" | "--interactive" | "-d" | "--detach" => continue,
            _ => {}
        }
        if !name.starts_with('-') {
            return Err(error(
                key,
                format!("`{name}` is not an option (options start with `-`)"),
            ));
        }
        let value = match inline {
            Some(v) => v,
            None => words
                .next()
                .cloned()
                .ok_or_else(|| error(key, format!("`{name}` has no value")))?,
        };
        let size = |v: &str| {
            bytes(v).ok_or_else(|| {
                error(
                    key,
                    format!("`{name} {v}` is not a size (such as 512m, 2g)"),
                )
            })
        };
        match name.as_str() {
            "--user" => out.user = Some(value),
            "--entrypoint" => out.entrypoint = Some(value),
            "--hostname" => out.hostname = Some(value),
            "--workdir" => out.workdir = Some(value),
            "--network-alias" | "--net-alias" => out.aliases.push(value),
            "--env" => {
                let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                out.env.push((k.to_owned(), v.to_owned()));
            }
            "--label" => {
                let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                out.labels.push((k.to_owned(), v.to_owned()));
            }
            "--memory" => out.memory = Some(size(&value)?),
            "--shm-size" => out.shm_size = Some(size(&value)?),
            "--cpus" => {
                let n = value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0 && *n < 1e6)
                    .ok_or_else(|| {
                        error(key, format!("`--cpus {value}` is not a number of CPUs"))
                    })?;
                #[allow(clippy::cast_possible_truncation)]
                let nano = (n * 1e9).round() as i64;
                out.nano_cpus = Some(nano);
            }
            "--tmpfs" => out.tmpfs.push(value),
            "--stop-signal" => out.stop_signal = Some(value),
            "--name" => {}
            _ => {
                return Err(error(
                    key,
                    format!(
                        "`{name}` is not an option pipewright passes to Docker (--user, --entrypoint, --hostname, --workdir, --env, --network-alias, --label, --memory, --shm-size, --cpus, --init, --read-only, --tmpfs, --stop-signal)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// `512m`, `2g`, `1024`, `64k` (Docker's units, powers of 1024).
fn bytes(v: &str) -> Option<i64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (digits, unit) = match v
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => v.split_at(i),
        None => (v, ""),
    };
    let n: f64 = digits.parse().ok()?;
    let scale = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let b = n * scale;
    #[allow(clippy::cast_possible_truncation)]
    (1.0..9e18).contains(&b).then_some(b as i64)
}

/// A volume as written: `name:/path[:ro]` (a named volume), `/path` (an anonymous one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// None: anonymous.
    pub name: Option<String>,
    pub target: String,
    pub read_only: bool,
}

/// Reads `volumes[i]`; a host path (`/srv:/data`, `./x:/data`) is refused: job code is
/// untrusted and would read or change the host's files.
pub fn volume(written: &str, key: &str) -> Result<Volume, ContainerError> {
    let parts: Vec<&str> = written.trim().split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] if t.starts_with('/') => (Some(*s), *t, None),
        [t, m] => (None, *t, Some(*m)),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => (None, "", None),
    };
    if !target.starts_with('/') {
        return Err(error(
            key,
            format!("`{written}` is not a volume (NAME:/PATH, /PATH, either with :ro)"),
        ));
    }
    if let Some(s) = source
        && (s.starts_with('/') || s.starts_with('.') || s.starts_with('~') || s.is_empty())
    {
        return Err(error(
            key,
            format!(
                "`{written}` mounts a path of the host, which job code must not reach; use a named volume (NAME:{target})"
            ),
        ));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => {
            return Err(error(
                key,
                format!("`{m}` in `{written}` is not a volume mode (ro, rw)"),
            ));
        }
    };
    Ok(Volume {
        name: source.map(str::to_owned),
        target: target.to_owned(),
        read_only,
    })
}

#[cfg(test)]
mod tests;
