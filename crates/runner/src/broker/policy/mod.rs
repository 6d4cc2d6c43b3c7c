//! What a confined job may ask of the Docker engine, decided request by request without IO:
//! the calls the engine makes for a job's containers, services, Docker actions and
//! `docker://` steps, on the containers, execs, networks and volumes made through this
//! broker for this job, and nothing that reaches the host (a privileged container, a bind
//! mount outside the job's directory, the host's network or process namespaces, a volume
//! driver's options, another job's containers, an image's tag).
//!
//! What the engine gets is what the broker wrote, never the job's bytes where they matter:
//! every object it reads is rebuilt from the keys it knows, spelt exactly (Go's decoder
//! matches keys in any case and takes the last of repeated ones, so a `privileged` beside a
//! checked `Privileged` would otherwise reach it); a key it does not know is dropped when it
//! sets nothing and refused when it does. Query parameters are decoded and written again,
//! and objects are named to the engine by the full id the engine gave them.

mod bodies;
mod container;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde_json::Value;

use bodies::{connect_body, exec_body, network_body, unset, volume_body};
pub(crate) use bodies::{made_for, refuse_routed_labels};
use container::container_body;

/// The label every object made through the broker carries: the job's.
pub(crate) const BROKER_LABEL: &str = "pipewright.broker";

/// The label naming the runner whose broker made an object: what a runner that stopped
/// during a job left is removed when it starts again.
pub(crate) const RUNNER_LABEL: &str = "pipewright.broker.runner";

/// The oldest Docker API version the broker passes on (older ones read a container's host
/// configuration from its `start`, among other things the rules below do not look at).
const MIN_API: (u32, u32) = (1, 40);

/// The most processes a job may start with `exec` (each is remembered while the job runs).
const MAX_EXECS: usize = 65_536;

/// Why the broker refused a request: its message, for the job's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipewright: {0}")]
pub(crate) struct Refusal(String);

impl Refusal {
    pub(crate) fn new(msg: impl Into<String>) -> Refusal {
        Refusal(msg.into())
    }
}

/// What the broker lets a job's containers mount and how it labels what they make.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// The job's directory: all its containers may mount, read-only; read-write only what
    /// the job's user owns (checked on the files, [`Bind`]).
    pub(crate) root: PathBuf,
    /// The value of [`BROKER_LABEL`] on what this job makes.
    pub(crate) label: String,
    /// The value of [`RUNNER_LABEL`] on what this job makes.
    pub(crate) runner: String,
}

/// What was made through the broker for the job: by the full id the engine gave, and the
/// names it was asked for (a name outlives its object: it is never sent on as the name).
#[derive(Debug, Default)]
pub(crate) struct Owned {
    pub(crate) containers: HashSet<String>,
    pub(crate) container_names: HashMap<String, String>,
    /// What each container mounts of the host: checked again at each start (Docker resolves
    /// the paths again then).
    pub(crate) mounts: HashMap<String, Vec<Bind>>,
    pub(crate) execs: HashSet<String>,
    pub(crate) networks: HashSet<String>,
    pub(crate) network_names: HashMap<String, String>,
    /// By the name the engine knows them by ([`bodies::scoped`]).
    pub(crate) volumes: HashSet<String>,
    /// The name the job gave a volume → the engine's.
    pub(crate) volume_names: HashMap<String, String>,
}

impl Owned {
    /// Forgets a removed object and the names that stood for it.
    pub(crate) fn forget(&mut self, kind: Kind, id: &str) {
        match kind {
            Kind::Container => {
                self.containers.remove(id);
                self.container_names.retain(|_, v| v != id);
                self.mounts.remove(id);
            }
            Kind::Network => {
                self.networks.remove(id);
                self.network_names.retain(|_, v| v != id);
            }
            Kind::Volume => {
                self.volumes.remove(id);
                self.volume_names.retain(|_, v| v != id);
            }
        }
    }

    /// The full id of the job's container `r` (its id or the name it was made with).
    fn container(&self, r: &str) -> Option<String> {
        let r = r.trim_start_matches('/');
        if self.containers.contains(r) {
            return Some(r.to_owned());
        }
        self.container_names.get(r).cloned()
    }

    /// The engine's name of the job's volume `r` (the engine's name or the job's).
    pub(crate) fn volume(&self, r: &str) -> Option<String> {
        if self.volumes.contains(r) {
            return Some(r.to_owned());
        }
        self.volume_names.get(r).cloned()
    }

    /// The full id of the job's network `r`; Docker's own `bridge`, `default` and `none`
    /// as they are.
    fn network(&self, r: &str) -> Option<String> {
        if matches!(r, "bridge" | "default" | "none") || self.networks.contains(r) {
            return Some(r.to_owned());
        }
        self.network_names.get(r).cloned()
    }
}

/// What an answer makes, to be remembered as the job's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Makes {
    Nothing,
    /// A container, with the name it was asked for.
    Container(Option<String>),
    Exec,
    Network(String),
    /// A volume, with the name the job asked for.
    Volume(String),
    /// The job's container (full id), network (full id) or volume (name) is removed: its
    /// name is no longer the job's (another job may make one of that name).
    Removes(Kind, String),
}

/// What kind of object a removal removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Container,
    Network,
    Volume,
}

/// A host path a container would mount: the broker checks on the files that the job's user
/// cannot change what it names, and, when `writable`, that it is that user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bind {
    pub(crate) path: PathBuf,
    pub(crate) writable: bool,
}

/// A request to send on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forward {
    /// The path and query the engine gets (the job's objects named by their ids, the query
    /// decoded and encoded again).
    pub(crate) uri: String,
    /// What the engine gets as the body: never the job's bytes but for a build's context.
    pub(crate) body: Payload,
    pub(crate) makes: Makes,
    pub(crate) binds: Vec<Bind>,
    /// The job's volumes it uses, to be found still the job's on the engine (a volume
    /// removed behind the broker's back may have been made again by another job).
    pub(crate) volumes: Vec<String>,
    /// A pull: of what the machine lacks (a job may not replace a tag it has, which other
    /// jobs run), or of another running job's pull (the registry checks this job's
    /// credentials again).
    pub(crate) pull: Option<Pull>,
    /// An image the job uses (creates a container of, inspects): it must be on the machine
    /// and not all its names another running job's pulls ([`super::images`]).
    pub(crate) image: Option<String>,
}

/// A forwarded request's body: never the job's bytes. Nor is its `Content-Type` sent on: the
/// engine reads a form-encoded body as parameters that win over the query's (Go's `r.Form`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    /// None at all.
    Empty,
    /// This JSON, the broker's.
    Json(Value),
}

/// The broker's decision on a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Forward(Forward),
    /// Answered by the broker: what the job may see of the engine's lists is nothing.
    Answer(Value),
}

/// A request's path: its API version, if any, and its segments.
struct Route<'p> {
    version: Option<&'p str>,
    segs: Vec<&'p str>,
}

impl Route<'_> {
    /// The path with `segs` instead of the request's, under the same version.
    fn path(&self, segs: &[&str]) -> String {
        let version = self.version.map(|v| format!("/v{v}")).unwrap_or_default();
        format!("{version}/{}", segs.join("/"))
    }
}

/// Reads a path: `/v1.41/containers/x/start` → version `1.41`, segments. A version older
/// than [`MIN_API`], and a segment that is empty, `.`, `..` or percent-encoded (the engine
/// could read it otherwise than the broker), are refused.
fn route(path: &str) -> Result<Route<'_>, Refusal> {
    let mut rest = path
        .strip_prefix('/')
        .ok_or_else(|| Refusal::new(format!("the path `{path}` is not absolute")))?;
    let mut version = None;
    if let Some(v) = rest.strip_prefix('v')
        && let Some((number, after)) = v.split_once('/')
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        let parsed = number
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        match parsed {
            Some(n) if n >= MIN_API => {}
            _ => {
                return Err(Refusal::new(format!(
                    "the Docker API version {number} is not spoken here (the oldest is {}.{})",
                    MIN_API.0, MIN_API.1
                )));
            }
        }
        version = Some(number);
        rest = after;
    }
    let segs: Vec<&str> = rest.split('/').collect();
    if segs
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('%'))
    {
        return Err(Refusal::new(format!("the path `{path}` is not plain")));
    }
    Ok(Route { version, segs })
}

/// Whether the broker reads the request's body (JSON) to decide.
pub(crate) fn reads_body(method: &str, path: &str) -> bool {
    let Ok(r) = route(path) else {
        return false;
    };
    method == "POST"
        && matches!(
            r.segs.as_slice(),
            ["containers", "create"]
                | ["containers", _, "exec" | "start"]
                | ["exec", _, "start"]
                | ["networks", "create"]
                | ["networks", _, "connect" | "disconnect"]
                | ["volumes", "create"]
        )
}

/// A query's parameters, decoded.
fn params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `key` (the engine's reading of a repeated parameter).
fn param<'q>(params: &'q [(String, String)], key: &str) -> Option<&'q str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn encode(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A parameter's value that asks for nothing (what the docker CLI sends for what it was not
/// told).
fn unset_param(v: &str) -> bool {
    matches!(v, "" | "0" | "false" | "null" | "[]" | "{}")
}

/// Only the parameters in `known` (values checked by the caller); any other that asks for
/// something is refused.
fn known_params(
    params: Vec<(String, String)>,
    known: &[&str],
    what: &str,
) -> Result<Vec<(String, String)>, Refusal> {
    let mut kept = Vec::new();
    for (k, v) in params {
        if known.contains(&k.as_str()) {
            kept.push((k, v));
        } else if !unset_param(&v) {
            return Err(Refusal::new(format!(
                "{what}'s parameter `{k}` is not allowed to a job"
            )));
        }
    }
    Ok(kept)
}

/// A path component of an image's name, as Docker reads one: lowercase letters and digits,
/// separated by `.`, `_`, `__` or dashes.
fn path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if !b.first().is_some_and(|&x| alnum(x)) || !b.last().is_some_and(|&x| alnum(x)) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// The host of a registry's name (`ghcr.io`, `reg:5000`, `[::1]:5000`), as Docker reads
/// one; `None` when it is not one.
fn registry_host(domain: &str) -> Option<&str> {
    let (host, port) = match domain.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']')?;
            h.parse::<std::net::Ipv6Addr>().ok()?;
            (h, after.strip_prefix(':').map(Some).unwrap_or(None))
        }
        None => match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        },
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if domain.starts_with('[') {
        return Some(host);
    }
    let ok = host.split('.').all(|c| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    });
    ok.then_some(host)
}

/// An image to pull, as the engine names it (Docker's "familiar" form: `alpine:3`,
/// `me/app@sha256:…`, `ghcr.io/me/app:1`), which is how it lists the image's names after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pull {
    /// The repository (`alpine`, `ghcr.io/me/app`).
    pub(crate) name: String,
    /// A tag, or a digest (`sha256:…`).
    pub(crate) tag: String,
}

impl Pull {
    /// `name:tag` or `name@digest`.
    pub(crate) fn reference(&self) -> String {
        if self.tag.starts_with("sha256:") {
            format!("{}@{}", self.name, self.tag)
        } else {
            format!("{}:{}", self.name, self.tag)
        }
    }
}

/// The image a pull names (`fromImage` and `tag`), in the engine's own form (the same
/// image named `docker.io/library/alpine` or `alpine` is one name to the broker, as to the
/// engine). Refused: every tag of a name, a tag and a digest at once, what is not a
/// reference, and a registry on this machine (a job can serve one there: the first to pull
/// a name decides what every later job runs under it).
fn pull_reference(image: &str, tag: Option<&str>) -> Result<Pull, Refusal> {
    let bad = |why: &str| Refusal::new(format!("pulling `{image}`: {why}"));
    let tag = tag.filter(|t| !t.is_empty());
    let (repo, own_tag) = match image.split_once('@') {
        Some((repo, digest)) => (repo, Some(digest)),
        None => match image.rsplit_once(':') {
            Some((repo, t)) if !t.contains('/') => (repo, Some(t)),
            _ => (image, None),
        },
    };
    let tag = match (own_tag, tag) {
        (Some(_), Some(_)) => return Err(bad("a tag and a digest at once")),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => {
            return Err(Refusal::new(format!(
                "pulling every tag of `{image}` is not allowed to a job: name a tag"
            )));
        }
    };
    let valid_tag = if let Some(hex) = tag.strip_prefix("sha256:") {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    } else {
        !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().enumerate().all(|(n, b)| {
                b.is_ascii_alphanumeric() || b == b'_' || (n > 0 && (b == b'.' || b == b'-'))
            })
    };
    if !valid_tag {
        return Err(bad(&format!("`{tag}` is not a tag or a digest")));
    }
    // The registry, as Docker tells it: a first part with a `.` or `:`, `localhost`, or
    // capitals; else Docker Hub (`docker.io`, where a name alone is under `library/`).
    let (domain, path) = match repo.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => ("docker.io", repo),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let Some(host) = registry_host(domain) else {
        return Err(bad("not an image reference"));
    };
    if !path.split('/').all(path_component) {
        return Err(bad("not an image reference"));
    }
    if domain != "docker.io" {
        // Not a boundary (a job's pull is its own), but what a job serves on this machine
        // is not pulled from: the engine's registry client is not exposed to it.
        let host = host.to_ascii_lowercase();
        let local = matches!(
            host.as_str(),
            "localhost" | "localhost.localdomain" | "ip6-localhost" | "ip6-loopback"
        ) || host.ends_with(".localhost")
            || host.parse::<std::net::IpAddr>().is_ok();
        if local {
            return Err(Refusal::new(format!(
                "pulling from `{domain}` is not allowed to a job: only from a registry by name"
            )));
        }
    }
    let name = match (domain, path.strip_prefix("library/")) {
        ("docker.io", Some(alone)) if !alone.contains('/') => alone.to_owned(),
        ("docker.io", _) => path.to_owned(),
        _ => format!("{domain}/{path}"),
    };
    Ok(Pull {
        name,
        tag: tag.to_owned(),
    })
}

/// Decides on one request (refused: `Err`). `body` is the request's JSON where
/// [`reads_body`] says so.
pub(crate) fn judge(
    method: &str,
    path: &str,
    query: &str,
    body: Option<&Value>,
    owned: &Owned,
    rules: &Rules,
) -> Result<Verdict, Refusal> {
    let r = route(path)?;
    let what = format!("{method} /{}", r.segs.join("/"));
    let params = params(query);
    let not_its = |kind: &str, id: &str| {
        Refusal::new(format!(
            "the {kind} `{id}` was not made by this job ({what})"
        ))
    };
    let as_is = |params: &[(String, String)]| Forward {
        uri: with_query(r.path(&r.segs), params),
        body: Payload::Empty,
        makes: Makes::Nothing,
        binds: Vec::new(),
        volumes: Vec::new(),
        pull: None,
        image: None,
    };
    let verdict = match (method, r.segs.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) | ("GET", ["version"]) => Verdict::Forward(as_is(&[])),
        ("GET", ["containers", "json"]) => Verdict::Answer(Value::Array(Vec::new())),
        ("GET", ["networks"]) => Verdict::Answer(Value::Array(Vec::new())),
        ("GET", ["volumes"]) => Verdict::Answer(serde_json::json!({"Volumes": [], "Warnings": []})),
        ("GET", ["images", "json"]) => Verdict::Answer(Value::Array(Vec::new())),
        ("GET", ["images", name @ .., "json"]) => Verdict::Forward(Forward {
            image: Some(name.join("/")),
            ..as_is(&[])
        }),
        ("POST", ["images", "create"]) => {
            if param(&params, "fromSrc").is_some_and(|v| !v.is_empty()) {
                return Err(Refusal::new(
                    "importing an image is not allowed to a job; only pulling",
                ));
            }
            let params = known_params(params, &["fromImage", "tag"], "a pull")?;
            let image = param(&params, "fromImage").unwrap_or_default();
            let pull = pull_reference(image, param(&params, "tag"))?;
            // The engine gets the name as it will list it.
            let params = [
                ("fromImage".to_owned(), pull.name.clone()),
                ("tag".to_owned(), pull.tag.clone()),
            ];
            Verdict::Forward(Forward {
                pull: Some(pull),
                ..as_is(&params)
            })
        }
        ("POST", ["build"]) => {
            return Err(Refusal::new(
                "building an image is not allowed to a job: the engine would read its \
                 Dockerfile on the machine's side (its pulls, its downloads from the machine's \
                 network); build where the job is trusted, or use an image on the machine",
            ));
        }
        ("POST", ["containers", "create"]) => {
            let params = known_params(params, &["name", "platform"], "a container's creation")?;
            let name = param(&params, "name").map(str::to_owned);
            let (body, binds, volumes) = container_body(body, owned, rules)?;
            let image = body.get("Image").and_then(Value::as_str).map(str::to_owned);
            Verdict::Forward(Forward {
                image,
                body: Payload::Json(body),
                makes: Makes::Container(name),
                binds,
                volumes,
                ..as_is(&params)
            })
        }
        ("POST", ["containers", id, "exec"]) => {
            let full = owned
                .container(id)
                .ok_or_else(|| not_its("container", id))?;
            if owned.execs.len() >= MAX_EXECS {
                return Err(Refusal::new(format!(
                    "a job may start at most {MAX_EXECS} processes in its containers with `exec`"
                )));
            }
            Verdict::Forward(Forward {
                uri: r.path(&["containers", &full, "exec"]),
                body: Payload::Json(exec_body(body)?),
                makes: Makes::Exec,
                binds: Vec::new(),
                volumes: Vec::new(),
                pull: None,
                image: None,
            })
        }
        ("POST", ["containers", id, "start"]) => {
            if body.is_some_and(|b| !unset(b)) {
                return Err(Refusal::new(
                    "a container's configuration given to `start` is not allowed to a job",
                ));
            }
            let full = owned
                .container(id)
                .ok_or_else(|| not_its("container", id))?;
            let params = known_params(params, &["detachKeys"], "a container's start")?;
            Verdict::Forward(Forward {
                uri: with_query(r.path(&["containers", &full, "start"]), &params),
                body: Payload::Empty,
                binds: owned.mounts.get(&full).cloned().unwrap_or_default(),
                ..as_is(&[])
            })
        }
        (
            "POST",
            [
                "containers",
                id,
                action @ ("stop" | "kill" | "wait" | "restart" | "attach" | "resize"),
            ],
        )
        | (
            "GET",
            [
                "containers",
                id,
                action @ ("json" | "logs" | "top" | "stats"),
            ],
        ) => {
            let full = owned
                .container(id)
                .ok_or_else(|| not_its("container", id))?;
            let known: &[&str] = match *action {
                "stop" | "restart" => &["t", "signal"],
                "kill" => &["signal"],
                "wait" => &["condition"],
                "attach" => &["stream", "stdin", "stdout", "stderr", "logs", "detachKeys"],
                "resize" => &["h", "w"],
                "json" => &["size"],
                "logs" => &[
                    "follow",
                    "stdout",
                    "stderr",
                    "since",
                    "until",
                    "timestamps",
                    "tail",
                ],
                "stats" => &["stream", "one-shot"],
                _ => &[],
            };
            let params = known_params(params, known, &format!("`{action}`"))?;
            let binds = if *action == "restart" {
                owned.mounts.get(&full).cloned().unwrap_or_default()
            } else {
                Vec::new()
            };
            Verdict::Forward(Forward {
                binds,
                ..as_is_at(&r, &["containers", &full, action], &params)
            })
        }
        ("DELETE", ["containers", id]) => {
            let full = owned
                .container(id)
                .ok_or_else(|| not_its("container", id))?;
            // Its anonymous volumes go with it, whatever was asked.
            let mut params = known_params(params, &["force", "v"], "a container's removal")?;
            params.retain(|(k, _)| k != "v");
            params.push(("v".into(), "1".into()));
            Verdict::Forward(Forward {
                makes: Makes::Removes(Kind::Container, full.clone()),
                ..as_is_at(&r, &["containers", &full], &params)
            })
        }
        ("POST", ["exec", id, "start"]) => {
            if !owned.execs.contains(*id) {
                return Err(not_its("process", id));
            }
            let start = bodies::object(body, "a process's start")?
                .cloned()
                .unwrap_or_default();
            let start = bodies::pick(&start, &["Detach", "Tty", "ConsoleSize"], "")?;
            Verdict::Forward(Forward {
                body: Payload::Json(Value::Object(start)),
                ..as_is(&[])
            })
        }
        ("POST", ["exec", id, "resize"]) | ("GET", ["exec", id, "json"]) => {
            if !owned.execs.contains(*id) {
                return Err(not_its("process", id));
            }
            let params = known_params(params, &["h", "w"], "a process's")?;
            Verdict::Forward(as_is(&params))
        }
        ("POST", ["networks", "create"]) => {
            let (body, name) = network_body(body, rules)?;
            Verdict::Forward(Forward {
                body: Payload::Json(body),
                makes: Makes::Network(name),
                ..as_is(&[])
            })
        }
        ("POST", ["networks", id, action @ ("connect" | "disconnect")]) => {
            let net = owned
                .network(id)
                .filter(|n| owned.networks.contains(n))
                .ok_or_else(|| not_its("network", id))?;
            Verdict::Forward(Forward {
                uri: r.path(&["networks", &net, action]),
                body: Payload::Json(connect_body(body, owned)?),
                makes: Makes::Nothing,
                binds: Vec::new(),
                volumes: Vec::new(),
                pull: None,
                image: None,
            })
        }
        ("GET" | "DELETE", ["networks", id]) => {
            let net = owned
                .network(id)
                .filter(|n| owned.networks.contains(n))
                .ok_or_else(|| not_its("network", id))?;
            let params = known_params(params, &["verbose", "scope"], "a network's")?;
            let makes = if method == "DELETE" {
                Makes::Removes(Kind::Network, net.clone())
            } else {
                Makes::Nothing
            };
            Verdict::Forward(Forward {
                makes,
                ..as_is_at(&r, &["networks", &net], &params)
            })
        }
        ("POST", ["volumes", "create"]) => {
            let (body, name) = volume_body(body, rules)?;
            Verdict::Forward(Forward {
                body: Payload::Json(body),
                makes: Makes::Volume(name),
                ..as_is(&[])
            })
        }
        ("GET" | "DELETE", ["volumes", name]) => {
            let volume = owned.volume(name).ok_or_else(|| not_its("volume", name))?;
            let params = known_params(params, &["force"], "a volume's")?;
            let makes = if method == "DELETE" {
                Makes::Removes(Kind::Volume, volume.clone())
            } else {
                Makes::Nothing
            };
            Verdict::Forward(Forward {
                makes,
                volumes: vec![volume.clone()],
                ..as_is_at(&r, &["volumes", &volume], &params)
            })
        }
        _ => {
            return Err(Refusal::new(format!(
                "{what} is not among what a job may ask of Docker"
            )));
        }
    };
    Ok(verdict)
}

fn with_query(path: String, params: &[(String, String)]) -> String {
    if params.is_empty() {
        path
    } else {
        format!("{path}?{}", encode(params))
    }
}

fn as_is_at(r: &Route<'_>, segs: &[&str], params: &[(String, String)]) -> Forward {
    Forward {
        uri: with_query(r.path(segs), params),
        body: Payload::Empty,
        makes: Makes::Nothing,
        binds: Vec::new(),
        volumes: Vec::new(),
        pull: None,
        image: None,
    }
}
