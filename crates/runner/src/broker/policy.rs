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

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

/// The label every object made through the broker carries.
pub(crate) const BROKER_LABEL: &str = "pipewright.broker";

/// The oldest Docker API version the broker passes on (older ones read a container's host
/// configuration from its `start`, among other things the rules below do not look at).
const MIN_API: (u32, u32) = (1, 40);

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
}

/// What was made through the broker for the job: by the full id the engine gave, and the
/// names it was asked for (a name outlives its object: it is never sent on as the name).
#[derive(Debug, Default)]
pub(crate) struct Owned {
    pub(crate) containers: HashSet<String>,
    pub(crate) container_names: HashMap<String, String>,
    pub(crate) execs: HashSet<String>,
    pub(crate) networks: HashSet<String>,
    pub(crate) network_names: HashMap<String, String>,
    pub(crate) volumes: HashSet<String>,
}

impl Owned {
    /// The full id of the job's container `r` (its id or the name it was made with).
    fn container(&self, r: &str) -> Option<String> {
        let r = r.trim_start_matches('/');
        if self.containers.contains(r) {
            return Some(r.to_owned());
        }
        self.container_names.get(r).cloned()
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
    /// The body instead of the job's, when `Some`.
    pub(crate) body: Option<Value>,
    pub(crate) makes: Makes,
    pub(crate) binds: Vec<Bind>,
    /// An image that must not be on the machine yet (a pull: a job may fetch what the
    /// machine lacks, not replace a tag it has, which other jobs run).
    pub(crate) absent: Option<String>,
}

/// The broker's decision on a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Forward(Forward),
    /// Answered by the broker: what the job may see of the engine's lists is nothing.
    Answer(Value),
    /// Refused (403).
    Refuse(Refusal),
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

/// The parameters of a build the broker passes on. `t` (a tag) is not among them: a tag is
/// the machine's, and other jobs run what it names.
const BUILD_PARAMS: &[&str] = &[
    "dockerfile",
    "q",
    "nocache",
    "cachefrom",
    "pull",
    "rm",
    "forcerm",
    "memory",
    "memswap",
    "cpushares",
    "cpusetcpus",
    "cpuperiod",
    "cpuquota",
    "buildargs",
    "shmsize",
    "labels",
    "networkmode",
    "platform",
    "target",
    "extrahosts",
    "version",
];

fn build_params(params: Vec<(String, String)>) -> Result<Vec<(String, String)>, Refusal> {
    if let Some((_, tag)) = params.iter().find(|(k, v)| k == "t" && !v.is_empty()) {
        return Err(Refusal::new(format!(
            "tagging an image (`{tag}`) is not allowed to a job: a tag is the machine's and \
             other jobs run what it names; use the image's id (`docker build -q`)"
        )));
    }
    let params = known_params(params, BUILD_PARAMS, "a build")?;
    match param(&params, "networkmode") {
        None | Some("" | "default" | "bridge" | "none") => {}
        Some(other) => {
            return Err(Refusal::new(format!(
                "a build on the network `{other}` is not allowed to a job"
            )));
        }
    }
    match param(&params, "version") {
        None | Some("" | "1") => Ok(params),
        Some(v) => Err(Refusal::new(format!(
            "the builder `version={v}` is not allowed to a job (only the classic builder)"
        ))),
    }
}

/// Decides on one request. `body` is the request's JSON where [`reads_body`] says so.
pub(crate) fn judge(
    method: &str,
    path: &str,
    query: &str,
    body: Option<&Value>,
    owned: &Owned,
    rules: &Rules,
) -> Verdict {
    match decide(method, path, query, body, owned, rules) {
        Ok(v) => v,
        Err(r) => Verdict::Refuse(r),
    }
}

fn decide(
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
        body: None,
        makes: Makes::Nothing,
        binds: Vec::new(),
        absent: None,
    };
    let verdict = match (method, r.segs.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) | ("GET", ["version"]) => Verdict::Forward(as_is(&[])),
        ("GET", ["containers", "json"]) => Verdict::Answer(Value::Array(Vec::new())),
        ("GET", ["networks"]) => Verdict::Answer(Value::Array(Vec::new())),
        ("GET", ["volumes"]) => Verdict::Answer(serde_json::json!({"Volumes": [], "Warnings": []})),
        ("GET", ["images", .., "json"]) => Verdict::Forward(as_is(&[])),
        ("POST", ["images", "create"]) => {
            if param(&params, "fromSrc").is_some_and(|v| !v.is_empty()) {
                return Err(Refusal::new(
                    "importing an image is not allowed to a job; only pulling",
                ));
            }
            let params = known_params(params, &["fromImage", "tag", "platform"], "a pull")?;
            let image = param(&params, "fromImage").unwrap_or_default();
            let reference = match param(&params, "tag").filter(|t| !t.is_empty()) {
                Some(tag) if tag.starts_with("sha256:") => format!("{image}@{tag}"),
                Some(tag) => format!("{image}:{tag}"),
                None => image.to_owned(),
            };
            Verdict::Forward(Forward {
                absent: Some(reference),
                ..as_is(&params)
            })
        }
        ("POST", ["build"]) => Verdict::Forward(as_is(&build_params(params)?)),
        ("POST", ["containers", "create"]) => {
            let params = known_params(params, &["name", "platform"], "a container's creation")?;
            let name = param(&params, "name").map(str::to_owned);
            let (body, binds) = container_body(body, owned, rules)?;
            Verdict::Forward(Forward {
                body: Some(body),
                makes: Makes::Container(name),
                binds,
                ..as_is(&params)
            })
        }
        ("POST", ["containers", id, "exec"]) => {
            let full = owned
                .container(id)
                .ok_or_else(|| not_its("container", id))?;
            Verdict::Forward(Forward {
                uri: r.path(&["containers", &full, "exec"]),
                body: Some(exec_body(body)?),
                makes: Makes::Exec,
                binds: Vec::new(),
                absent: None,
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
            Verdict::Forward(Forward {
                uri: with_query(r.path(&["containers", &full, "start"]), &params),
                body: Some(Value::Null),
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
            Verdict::Forward(as_is_at(&r, &["containers", &full, action], &params))
        }
        ("DELETE", ["containers", id]) => {
            let full = owned
                .container(id)
                .ok_or_else(|| not_its("container", id))?;
            Verdict::Forward(as_is_at(&r, &["containers", &full], &params))
        }
        ("POST", ["exec", id, "start" | "resize"]) | ("GET", ["exec", id, "json"]) => {
            if !owned.execs.contains(*id) {
                return Err(not_its("process", id));
            }
            Verdict::Forward(as_is(&params))
        }
        ("POST", ["networks", "create"]) => {
            let (body, name) = network_body(body, rules)?;
            Verdict::Forward(Forward {
                body: Some(body),
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
                body: Some(connect_body(body, owned)?),
                makes: Makes::Nothing,
                binds: Vec::new(),
                absent: None,
            })
        }
        ("GET", ["networks", id]) | ("DELETE", ["networks", id]) => {
            let net = owned
                .network(id)
                .filter(|n| owned.networks.contains(n))
                .ok_or_else(|| not_its("network", id))?;
            Verdict::Forward(as_is_at(&r, &["networks", &net], &params))
        }
        ("POST", ["volumes", "create"]) => Verdict::Forward(Forward {
            body: Some(volume_body(body, rules)?),
            makes: Makes::Volume,
            ..as_is(&[])
        }),
        ("GET", ["volumes", name]) | ("DELETE", ["volumes", name]) => {
            if !owned.volumes.contains(*name) {
                return Err(not_its("volume", name));
            }
            Verdict::Forward(as_is(&params))
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
        body: None,
        makes: Makes::Nothing,
        binds: Vec::new(),
        absent: None,
    }
}

/// A value that sets nothing: absent, null, false, zero, empty.
fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// `value` as an object (`what` names it in the refusal); null is an empty one.
fn object<'v>(
    value: Option<&'v Value>,
    what: &str,
) -> Result<Option<&'v Map<String, Value>>, Refusal> {
    match value {
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(Refusal::new(format!("{what} must be a JSON object"))),
    }
}

/// `obj` rebuilt from the keys in `known`, spelt exactly: any other key is dropped when it
/// sets nothing (as the engine would read it: absent and zero are alike to Go, and an empty
/// list left out keeps the engine's defaults) and refused when it sets something.
fn pick(
    obj: &Map<String, Value>,
    known: &[&str],
    what: &str,
) -> Result<Map<String, Value>, Refusal> {
    let mut out = Map::new();
    for (k, v) in obj {
        if known.contains(&k.as_str()) {
            if !v.is_null() {
                out.insert(k.clone(), v.clone());
            }
        } else if !unset(v) {
            return Err(Refusal::new(format!("`{what}{k}` is not allowed to a job")));
        }
    }
    Ok(out)
}

/// A container's keys a job may set as it likes.
const CONFIG_KEYS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "OnBuild",
    "StopSignal",
    "StopTimeout",
    "Shell",
];

/// `HostConfig` keys a job may set as it likes: limits and settings inside the container.
const HOST_KEYS: &[&str] = &[
    "AutoRemove",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "Init",
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "PidsLimit",
    "Ulimits",
    "ShmSize",
    "Tmpfs",
    "ReadonlyRootfs",
    "GroupAdd",
    "CapDrop",
    "ConsoleSize",
];

/// `HostConfig` keys read one by one below.
const HOST_CHECKED: &[&str] = &[
    "Binds",
    "Mounts",
    "PortBindings",
    "NetworkMode",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
    "VolumesFrom",
    "SecurityOpt",
    "RestartPolicy",
    "LogConfig",
    "OomScoreAdj",
];

fn str_of<'v>(v: &'v Value, what: &str) -> Result<&'v str, Refusal> {
    v.as_str()
        .ok_or_else(|| Refusal::new(format!("`{what}` must be a string")))
}

fn list_of<'v>(v: &'v Value, what: &str) -> Result<&'v [Value], Refusal> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(Refusal::new(format!("`{what}` must be a list"))),
    }
}

/// A container's body, rebuilt and labelled, with `no-new-privileges` whatever it asked,
/// and the host paths it would mount.
fn container_body(
    body: Option<&Value>,
    owned: &Owned,
    rules: &Rules,
) -> Result<(Value, Vec<Bind>), Refusal> {
    let Some(config) = object(body, "a container's configuration")? else {
        return Err(Refusal::new(
            "a container's configuration must be a JSON object",
        ));
    };
    let mut known = CONFIG_KEYS.to_vec();
    known.extend(["Labels", "HostConfig", "NetworkingConfig"]);
    let mut config = pick(config, &known, "")?;
    label(&mut config, rules)?;
    let host = object(config.get("HostConfig"), "`HostConfig`")?
        .cloned()
        .unwrap_or_default();
    let mut known = HOST_KEYS.to_vec();
    known.extend(HOST_CHECKED);
    let mut host = pick(&host, &known, "HostConfig.")?;
    let mut binds = Vec::new();
    for key in HOST_CHECKED {
        let Some(value) = host.remove(*key) else {
            continue;
        };
        let what = format!("HostConfig.{key}");
        let checked = match *key {
            "Binds" => {
                let mut out = Vec::new();
                for b in list_of(&value, &what)? {
                    out.push(Value::String(check_bind(
                        str_of(b, &what)?,
                        owned,
                        rules,
                        &mut binds,
                    )?));
                }
                Value::Array(out)
            }
            "Mounts" => {
                let mut out = Vec::new();
                for m in list_of(&value, &what)? {
                    out.push(check_mount(m, owned, rules, &mut binds)?);
                }
                Value::Array(out)
            }
            "PortBindings" => local_ports(&value)?,
            "NetworkMode" => {
                let mode = str_of(&value, &what)?;
                Value::String(network_mode(mode, owned)?)
            }
            "PidMode" | "IpcMode" | "UTSMode" | "UsernsMode" | "CgroupnsMode" => {
                let mode = str_of(&value, &what)?;
                match mode.strip_prefix("container:") {
                    Some(id) => match owned.container(id) {
                        Some(full) => Value::String(format!("container:{full}")),
                        None => {
                            return Err(Refusal::new(format!(
                                "`{what}: {mode}` names a container this job did not make"
                            )));
                        }
                    },
                    None if matches!(mode, "" | "private" | "shareable") => value.clone(),
                    None => {
                        return Err(Refusal::new(format!(
                            "`{what}: {mode}` is not allowed to a job"
                        )));
                    }
                }
            }
            "VolumesFrom" => {
                let mut out = Vec::new();
                for item in list_of(&value, &what)? {
                    let s = str_of(item, &what)?;
                    let (id, mode) = s.split_once(':').unwrap_or((s, ""));
                    let full = owned.container(id).ok_or_else(|| {
                        Refusal::new(format!(
                            "`{what}` names `{id}`, a container this job did not make"
                        ))
                    })?;
                    if !matches!(mode, "" | "ro" | "rw") {
                        return Err(Refusal::new(format!(
                            "`{what}`: the mode `{mode}` is not allowed to a job"
                        )));
                    }
                    out.push(Value::String(if mode.is_empty() {
                        full
                    } else {
                        format!("{full}:{mode}")
                    }));
                }
                Value::Array(out)
            }
            "SecurityOpt" => {
                for opt in list_of(&value, &what)? {
                    let o = str_of(opt, &what)?;
                    if !matches!(
                        o,
                        "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
                    ) {
                        return Err(Refusal::new(format!(
                            "the security option `{o}` is not allowed to a job"
                        )));
                    }
                }
                continue;
            }
            "RestartPolicy" => {
                let Some(policy) = object(Some(&value), &what)? else {
                    continue;
                };
                let policy = pick(
                    policy,
                    &["Name", "MaximumRetryCount"],
                    "HostConfig.RestartPolicy.",
                )?;
                let name = policy
                    .get("Name")
                    .map(|n| str_of(n, &what))
                    .transpose()?
                    .unwrap_or_default();
                if !matches!(name, "" | "no") {
                    return Err(Refusal::new(format!(
                        "the restart policy `{name}` is not allowed to a job (its containers end with it)"
                    )));
                }
                Value::Object(policy)
            }
            "LogConfig" => {
                let Some(log) = object(Some(&value), &what)? else {
                    continue;
                };
                let log = pick(log, &["Type", "Config"], "HostConfig.LogConfig.")?;
                let driver = log
                    .get("Type")
                    .map(|n| str_of(n, &what))
                    .transpose()?
                    .unwrap_or_default();
                if !matches!(driver, "" | "json-file" | "local" | "none") {
                    return Err(Refusal::new(format!(
                        "the log driver `{driver}` is not allowed to a job"
                    )));
                }
                Value::Object(log)
            }
            "OomScoreAdj" => {
                if value.as_i64().is_none_or(|n| n < 0) {
                    return Err(Refusal::new(format!(
                        "`{what}: {value}` is not allowed to a job (only 0 and above: a container \
                         may not make the machine's other processes the first the kernel ends)"
                    )));
                }
                value
            }
            _ => continue,
        };
        host.insert((*key).to_owned(), checked);
    }
    host.insert(
        "SecurityOpt".into(),
        Value::Array(vec![Value::String("no-new-privileges".into())]),
    );
    config.insert("HostConfig".into(), Value::Object(host));
    if let Some(net) = object(config.get("NetworkingConfig"), "`NetworkingConfig`")? {
        let net = pick(net, &["EndpointsConfig"], "NetworkingConfig.")?;
        let mut endpoints = Map::new();
        if let Some(given) = object(
            net.get("EndpointsConfig"),
            "`NetworkingConfig.EndpointsConfig`",
        )? {
            for (name, endpoint) in given {
                let id = owned.network(name).ok_or_else(|| {
                    Refusal::new(format!("the network `{name}` was not made by this job"))
                })?;
                endpoints.insert(id, Value::Object(endpoint_config(endpoint)?));
            }
        }
        config.insert(
            "NetworkingConfig".into(),
            serde_json::json!({ "EndpointsConfig": endpoints }),
        );
    }
    Ok((Value::Object(config), binds))
}

/// A container's place on a network: its aliases and addresses there, nothing of the
/// network's driver.
fn endpoint_config(v: &Value) -> Result<Map<String, Value>, Refusal> {
    let Some(e) = object(Some(v), "an endpoint's configuration")? else {
        return Ok(Map::new());
    };
    pick(
        e,
        &["Aliases", "IPAMConfig", "MacAddress", "DNSNames"],
        "EndpointsConfig.",
    )
}

/// Published ports, on 127.0.0.1 only whatever address was asked: a job's containers are not
/// served to the network.
fn local_ports(value: &Value) -> Result<Value, Refusal> {
    let Some(ports) = object(Some(value), "`HostConfig.PortBindings`")? else {
        return Ok(Value::Object(Map::new()));
    };
    let mut out = Map::new();
    for (port, bindings) in ports {
        let mut list = Vec::new();
        for b in list_of(bindings, "HostConfig.PortBindings")? {
            let Some(b) = object(Some(b), "a port binding")? else {
                continue;
            };
            let mut b = pick(b, &["HostIp", "HostPort"], "HostConfig.PortBindings.")?;
            b.insert("HostIp".into(), Value::String("127.0.0.1".into()));
            list.push(Value::Object(b));
        }
        out.insert(port.clone(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

/// `HostConfig.Binds` entry: `SOURCE:TARGET[:OPTIONS]`, options only `ro` or `rw`.
fn check_bind(
    bind: &str,
    owned: &Owned,
    rules: &Rules,
    binds: &mut Vec<Bind>,
) -> Result<String, Refusal> {
    let mut parts = bind.splitn(3, ':');
    let source = parts.next().unwrap_or_default();
    let _target = parts.next();
    let options = parts.next().unwrap_or_default();
    if let Some(o) = options.split(',').find(|o| !matches!(*o, "" | "ro" | "rw")) {
        return Err(Refusal::new(format!(
            "the bind option `{o}` of `{bind}` is not allowed to a job"
        )));
    }
    let read_only = options.split(',').any(|o| o == "ro");
    check_source(source, read_only, owned, rules, binds)?;
    Ok(bind.to_owned())
}

fn check_source(
    source: &str,
    read_only: bool,
    owned: &Owned,
    rules: &Rules,
    binds: &mut Vec<Bind>,
) -> Result<(), Refusal> {
    if !source.starts_with('/') {
        return if owned.volumes.contains(source) {
            Ok(())
        } else {
            Err(Refusal::new(format!(
                "the volume `{source}` was not made by this job"
            )))
        };
    }
    let path = Path::new(source);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if plain && path.starts_with(&rules.root) {
        binds.push(Bind {
            path: path.to_path_buf(),
            writable: !read_only,
        });
        Ok(())
    } else {
        Err(Refusal::new(format!(
            "mounting `{source}`{} is not allowed to a job: only its own directory",
            if read_only { " read-only" } else { "" }
        )))
    }
}

/// A `HostConfig.Mounts` entry, rebuilt.
fn check_mount(
    mount: &Value,
    owned: &Owned,
    rules: &Rules,
    binds: &mut Vec<Bind>,
) -> Result<Value, Refusal> {
    let Some(m) = object(Some(mount), "a mount")? else {
        return Err(Refusal::new("a mount must be a JSON object"));
    };
    let mut m = pick(
        m,
        &[
            "Type",
            "Source",
            "Target",
            "ReadOnly",
            "Consistency",
            "VolumeOptions",
            "TmpfsOptions",
        ],
        "HostConfig.Mounts.",
    )?;
    let kind = m
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let source = m
        .get("Source")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let read_only = m.get("ReadOnly").and_then(Value::as_bool) == Some(true);
    if let Some(o) = object(m.get("VolumeOptions"), "`VolumeOptions`")? {
        let o = pick(o, &["NoCopy", "Labels"], "HostConfig.Mounts.VolumeOptions.")?;
        m.insert("VolumeOptions".into(), Value::Object(o));
    }
    if let Some(o) = object(m.get("TmpfsOptions"), "`TmpfsOptions`")? {
        let o = pick(o, &["SizeBytes", "Mode"], "HostConfig.Mounts.TmpfsOptions.")?;
        m.insert("TmpfsOptions".into(), Value::Object(o));
    }
    match kind.as_str() {
        "bind" => check_source(&source, read_only, owned, rules, binds)?,
        "volume" => {
            if !source.is_empty() && !owned.volumes.contains(&source) {
                return Err(Refusal::new(format!(
                    "the volume `{source}` was not made by this job"
                )));
            }
        }
        "tmpfs" => {}
        other => {
            return Err(Refusal::new(format!(
                "a `{other}` mount is not allowed to a job"
            )));
        }
    }
    Ok(Value::Object(m))
}

/// A container's network mode, its network named by id.
fn network_mode(mode: &str, owned: &Owned) -> Result<String, Refusal> {
    if mode.is_empty() {
        return Ok(String::new());
    }
    if let Some(id) = owned.network(mode) {
        return Ok(id);
    }
    match mode
        .strip_prefix("container:")
        .and_then(|id| owned.container(id))
    {
        Some(full) => Ok(format!("container:{full}")),
        None => Err(Refusal::new(format!(
            "the network mode `{mode}` is not allowed to a job"
        ))),
    }
}

/// A process started in a container, rebuilt: never privileged.
fn exec_body(body: Option<&Value>) -> Result<Value, Refusal> {
    let e = object(body, "a process's configuration")?
        .cloned()
        .unwrap_or_default();
    let e = pick(
        &e,
        &[
            "AttachStdin",
            "AttachStdout",
            "AttachStderr",
            "DetachKeys",
            "Tty",
            "ConsoleSize",
            "Env",
            "Cmd",
            "User",
            "WorkingDir",
        ],
        "",
    )
    .map_err(|r| Refusal::new(format!("{} (a process in a container)", r.0)))?;
    Ok(Value::Object(e))
}

/// A container joining or leaving one of the job's networks, rebuilt.
fn connect_body(body: Option<&Value>, owned: &Owned) -> Result<Value, Refusal> {
    let c = object(body, "a network connection")?
        .cloned()
        .unwrap_or_default();
    let mut c = pick(&c, &["Container", "EndpointConfig", "Force"], "")?;
    let target = c
        .get("Container")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let full = owned.container(target).ok_or_else(|| {
        Refusal::new(format!("the container `{target}` was not made by this job"))
    })?;
    c.insert("Container".into(), Value::String(full));
    if let Some(e) = c.get("EndpointConfig") {
        let e = endpoint_config(e)?;
        c.insert("EndpointConfig".into(), Value::Object(e));
    }
    Ok(Value::Object(c))
}

/// A network: a plain bridge, rebuilt and labelled.
fn network_body(body: Option<&Value>, rules: &Rules) -> Result<(Value, String), Refusal> {
    let Some(net) = object(body, "a network's configuration")? else {
        return Err(Refusal::new(
            "a network's configuration must be a JSON object",
        ));
    };
    let mut net = pick(
        net,
        &[
            "Name",
            "CheckDuplicate",
            "Internal",
            "Attachable",
            "EnableIPv6",
            "EnableIPv4",
            "Labels",
            "Driver",
        ],
        "a network's ",
    )?;
    match net.get("Driver") {
        None => {}
        Some(Value::String(d)) if d == "bridge" => {}
        Some(d) => {
            return Err(Refusal::new(format!(
                "a network's driver {d} is not allowed to a job"
            )));
        }
    }
    let name = net
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    label(&mut net, rules)?;
    Ok((Value::Object(net), name))
}

/// A volume: the local driver, without options (which can bind any host path), rebuilt and
/// labelled.
fn volume_body(body: Option<&Value>, rules: &Rules) -> Result<Value, Refusal> {
    let v = object(body, "a volume's configuration")?
        .cloned()
        .unwrap_or_default();
    let mut v = pick(&v, &["Name", "Labels", "Driver"], "a volume's ")?;
    match v.get("Driver") {
        None => {}
        Some(Value::String(d)) if d == "local" => {}
        Some(d) => {
            return Err(Refusal::new(format!(
                "a volume's driver {d} is not allowed to a job"
            )));
        }
    }
    label(&mut v, rules)?;
    Ok(Value::Object(v))
}

/// Sets the job's label on an object's `Labels` (which must be strings).
fn label(object: &mut Map<String, Value>, rules: &Rules) -> Result<(), Refusal> {
    let mut labels = match object.remove("Labels") {
        Some(Value::Object(l)) => l,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(Refusal::new("`Labels` must be a JSON object")),
    };
    labels.insert(BROKER_LABEL.into(), Value::String(rules.label.clone()));
    object.insert("Labels".into(), Value::Object(labels));
    Ok(())
}

/// Whether a volume the engine answered for was made for this job: creating a volume that
/// exists answers with that volume, which would otherwise become the job's.
pub(crate) fn made_for(answer: &Value, rules: &Rules) -> bool {
    answer
        .get("Labels")
        .and_then(|l| l.get(BROKER_LABEL))
        .and_then(Value::as_str)
        == Some(rules.label.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const C1: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
    const NET: &str = "4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e";

    fn rules() -> Rules {
        Rules {
            root: PathBuf::from("/work/slot-0/job"),
            label: "job-7".into(),
        }
    }

    fn owned() -> Owned {
        let mut o = Owned::default();
        o.containers.insert(C1.into());
        o.container_names.insert("pipewright-abc".into(), C1.into());
        o.execs.insert("e1".into());
        o.networks.insert(NET.into());
        o.network_names.insert("pipewright-net".into(), NET.into());
        o.volumes.insert("pipewright-vol".into());
        o
    }

    fn refusal(v: &Verdict) -> Option<String> {
        match v {
            Verdict::Refuse(r) => Some(r.to_string()),
            _ => None,
        }
    }

    fn forward(v: Verdict) -> Forward {
        match v {
            Verdict::Forward(f) => f,
            other => panic!("not sent on: {other:?}"),
        }
    }

    fn create(body: Value) -> Verdict {
        judge(
            "POST",
            "/v1.41/containers/create",
            "name=pipewright-x",
            Some(&body),
            &owned(),
            &rules(),
        )
    }

    #[test]
    fn what_the_engine_makes_for_a_job_passes_rebuilt_labelled_without_new_privileges() {
        let f = forward(create(json!({
            "Image": "busybox",
            "Env": ["A=1"],
            "Labels": {"pipewright.job": "j"},
            "HostConfig": {
                "Binds": ["/work/slot-0/job/workspace:/__w/r/r", "/work/slot-0/job/event.json:/github/workflow/event.json:ro", "pipewright-vol:/data"],
                "PortBindings": {"5432/tcp": [{"HostIp": "0.0.0.0", "HostPort": ""}]},
                "NetworkMode": "pipewright-net",
                "Memory": 0,
                "MaskedPaths": [],
                "SecurityOpt": ["no-new-privileges"]
            },
            "NetworkingConfig": {"EndpointsConfig": {"pipewright-net": {"Aliases": ["db"], "DriverOpts": null}}}
        })));
        assert_eq!(f.makes, Makes::Container(Some("pipewright-x".into())));
        assert_eq!(f.uri, "/v1.41/containers/create?name=pipewright-x");
        let body = f.body.unwrap();
        assert_eq!(body["Labels"][BROKER_LABEL], "job-7");
        assert_eq!(body["Labels"]["pipewright.job"], "j");
        let host = &body["HostConfig"];
        assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]));
        // An empty list of masked paths would unmask /proc's: left out, the engine's stand.
        assert!(host.get("MaskedPaths").is_none(), "{host}");
        assert_eq!(host["PortBindings"]["5432/tcp"][0]["HostIp"], "127.0.0.1");
        // The job's network by its id, not by a name another could take.
        assert_eq!(host["NetworkMode"], NET);
        assert_eq!(
            body["NetworkingConfig"]["EndpointsConfig"][NET]["Aliases"],
            json!(["db"])
        );
        assert_eq!(
            f.binds,
            [
                Bind {
                    path: "/work/slot-0/job/workspace".into(),
                    writable: true
                },
                Bind {
                    path: "/work/slot-0/job/event.json".into(),
                    writable: false
                }
            ]
        );
    }

    #[test]
    fn what_reaches_the_host_is_refused_naming_it() {
        for (body, says) in [
            (
                json!({"Image": "x", "HostConfig": {"Privileged": true}}),
                "HostConfig.Privileged",
            ),
            // Go's decoder would take these for `Privileged`, the last of them.
            (
                json!({"Image": "x", "HostConfig": {"Privileged": false, "privileged": true}}),
                "HostConfig.privileged",
            ),
            (
                json!({"Image": "x", "hostconfig": {"Privileged": true}}),
                "`hostconfig`",
            ),
            (
                json!({"Image": "x", "HostConfig": {"LogConfig": {"type": "syslog"}}}),
                "LogConfig.type",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Mounts": [{"type": "bind", "Source": "/etc", "Target": "/e"}]}}),
                "Mounts.type",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/:/host"]}}),
                "mounting `/`",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/work/slot-0/job/../../etc:/e"]}}),
                "mounting",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/work/slot-0/docker.sock:/s:ro"]}}),
                "mounting",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/work/slot-0/job/workspace:/w:rshared"]}}),
                "bind option `rshared`",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["other-volume:/v"]}}),
                "volume `other-volume`",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/e"}]}}),
                "mounting `/etc`",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/work/slot-0/job/w", "Target": "/e", "BindOptions": {"Propagation": "rshared"}}]}}),
                "BindOptions",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "volume", "Source": "", "Target": "/e", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"device": "/"}}}}]}}),
                "DriverConfig",
            ),
            (
                json!({"Image": "x", "HostConfig": {"NetworkMode": "host"}}),
                "network mode `host`",
            ),
            (
                json!({"Image": "x", "HostConfig": {"PidMode": "host"}}),
                "PidMode",
            ),
            (
                json!({"Image": "x", "HostConfig": {"CapAdd": ["SYS_ADMIN"]}}),
                "CapAdd",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Devices": [{"PathOnHost": "/dev/sda"}]}}),
                "Devices",
            ),
            (
                json!({"Image": "x", "HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}}),
                "seccomp",
            ),
            (
                json!({"Image": "x", "HostConfig": {"MaskedPaths": ["/proc/x"]}}),
                "MaskedPaths",
            ),
            (
                json!({"Image": "x", "HostConfig": {"CgroupParent": "/"}}),
                "CgroupParent",
            ),
            (
                json!({"Image": "x", "HostConfig": {"VolumesFrom": ["someone-else"]}}),
                "someone-else",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Links": ["pipewright-abc:db"]}}),
                "Links",
            ),
            (
                json!({"Image": "x", "HostConfig": {"PublishAllPorts": true}}),
                "PublishAllPorts",
            ),
            (
                json!({"Image": "x", "HostConfig": {"OomScoreAdj": -500}}),
                "OomScoreAdj",
            ),
            (
                json!({"Image": "x", "HostConfig": {"RestartPolicy": {"Name": "always"}}}),
                "restart",
            ),
            (
                json!({"Image": "x", "HostConfig": {"LogConfig": {"Type": "syslog"}}}),
                "syslog",
            ),
            (
                json!({"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"host": {}}}}),
                "network `host`",
            ),
            (
                json!({"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"pipewright-net": {"DriverOpts": {"a": "b"}}}}}),
                "DriverOpts",
            ),
        ] {
            let v = create(body.clone());
            match refusal(&v) {
                Some(msg) => assert!(msg.contains(says), "{body}: {msg}"),
                None => panic!("{body} was let through: {v:?}"),
            }
        }
    }

    #[test]
    fn only_the_job_s_own_objects_are_reachable_and_by_their_ids() {
        let (o, r) = (owned(), rules());
        let j = |m: &str, p: &str| judge(m, p, "", None, &o, &r);
        assert_eq!(
            forward(j("POST", "/v1.41/containers/pipewright-abc/start")).uri,
            format!("/v1.41/containers/{C1}/start")
        );
        assert_eq!(
            forward(j("DELETE", &format!("/containers/{C1}"))).uri,
            format!("/containers/{C1}")
        );
        assert!(refusal(&j("GET", "/v1.41/exec/e1/json")).is_none());
        for (m, p) in [
            ("POST", "/containers/other/kill"),
            // An id prefix is not the container.
            ("GET", "/containers/c1c1/json"),
            ("POST", "/exec/e2/start"),
            ("DELETE", "/networks/bridge"),
            ("DELETE", "/volumes/other"),
            ("POST", "/containers/prune"),
            ("POST", "/images/x/push"),
            ("GET", "/secrets"),
            // Paths the engine could read otherwise than the broker.
            ("POST", "/containers/pipewright-abc/../prune"),
            ("POST", "/containers/pipewright-%61bc/start"),
            ("POST", "/containers//pipewright-abc/start"),
            // Older API versions read more than the rules look at.
            ("POST", "/v1.23/containers/pipewright-abc/start"),
        ] {
            assert!(refusal(&j(m, p)).is_some(), "{m} {p} was let through");
        }
        assert_eq!(
            j("GET", "/v1.41/containers/json"),
            Verdict::Answer(json!([]))
        );
        let start = |body: Value| {
            judge(
                "POST",
                "/containers/pipewright-abc/start",
                "",
                Some(&body),
                &o,
                &r,
            )
        };
        assert!(refusal(&start(Value::Null)).is_none());
        assert!(
            refusal(&start(json!({"Privileged": true})))
                .unwrap()
                .contains("`start`")
        );
        let exec = |body: Value| {
            judge(
                "POST",
                "/containers/pipewright-abc/exec",
                "",
                Some(&body),
                &o,
                &r,
            )
        };
        let f = forward(exec(json!({"Cmd": ["sh"], "Privileged": false})));
        assert_eq!(f.uri, format!("/containers/{C1}/exec"));
        assert_eq!(f.body, Some(json!({"Cmd": ["sh"]})));
        assert!(refusal(&exec(json!({"Cmd": ["sh"], "Privileged": true}))).is_some());
        assert!(refusal(&exec(json!({"Cmd": ["sh"], "privileged": true}))).is_some());
        assert!(
            refusal(&judge(
                "POST",
                "/containers/other/exec",
                "",
                Some(&json!({})),
                &o,
                &r
            ))
            .is_some()
        );
        let vol = |body: Value| judge("POST", "/volumes/create", "", Some(&body), &o, &r);
        assert!(refusal(&vol(json!({"Name": "v", "Driver": "local"}))).is_none());
        assert!(
            refusal(&vol(
                json!({"Name": "v", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}})
            ))
            .is_some()
        );
        assert!(refusal(&vol(json!({"Name": "v", "driveropts": {"device": "/etc"}}))).is_some());
        let net = |body: Value| judge("POST", "/networks/create", "", Some(&body), &o, &r);
        assert!(refusal(&net(json!({"Name": "n", "Driver": "bridge"}))).is_none());
        assert!(refusal(&net(json!({"Name": "n", "Driver": "macvlan"}))).is_some());
        assert!(
            refusal(&net(
                json!({"Name": "n", "Options": {"com.docker.network.bridge.name": "docker0"}})
            ))
            .is_some()
        );
        let connect = forward(judge(
            "POST",
            "/networks/pipewright-net/connect",
            "",
            Some(&json!({"Container": "pipewright-abc", "EndpointConfig": {"Aliases": ["x"]}})),
            &o,
            &r,
        ));
        assert_eq!(connect.uri, format!("/networks/{NET}/connect"));
        assert_eq!(connect.body.unwrap()["Container"], C1);
    }

    #[test]
    fn query_parameters_are_read_decoded_and_written_again() {
        let (o, r) = (owned(), rules());
        let q = |m: &str, p: &str, query: &str| judge(m, p, query, None, &o, &r);
        // A tag is the machine's: other jobs would run what this one built under it.
        for query in ["t=x", "%74=ubuntu-latest", "rm=1&t=pipewright-action%3Aabc"] {
            let v = q("POST", "/build", query);
            assert!(
                refusal(&v).is_some_and(|m| m.contains("tagging")),
                "{query}: {v:?}"
            );
        }
        assert!(refusal(&q("POST", "/build", "networkmode=host")).is_some());
        assert!(refusal(&q("POST", "/build", "network%6Dode=host")).is_some());
        assert!(refusal(&q("POST", "/build", "cgroupparent=%2F")).is_some());
        assert!(refusal(&q("POST", "/build", "version=2")).is_some());
        assert_eq!(
            forward(q("POST", "/build", "rm=1&cgroupparent=&q=1")).uri,
            "/build?rm=1&q=1"
        );
        assert!(refusal(&q("POST", "/images/create", "fromSrc=-")).is_some());
        assert!(refusal(&q("POST", "/images/create", "from%53rc=-")).is_some());
        let pull = forward(q("POST", "/images/create", "fromImage=busybox&tag=1"));
        assert_eq!(pull.absent.as_deref(), Some("busybox:1"));
        let f = forward(judge(
            "POST",
            "/containers/create",
            "na%6De=pipewright-y",
            Some(&json!({"Image": "x"})),
            &o,
            &r,
        ));
        assert_eq!(f.makes, Makes::Container(Some("pipewright-y".into())));
        assert_eq!(f.uri, "/containers/create?name=pipewright-y");
        assert!(reads_body("POST", "/v1.41/containers/create"));
        assert!(reads_body("POST", "/v1.41/containers/x/start"));
        assert!(!reads_body("POST", "/v1.41/build"));
    }

    #[test]
    fn a_volume_that_existed_is_not_taken_over() {
        let r = rules();
        assert!(made_for(
            &json!({"Name": "v", "Labels": {BROKER_LABEL: "job-7"}}),
            &r
        ));
        assert!(!made_for(
            &json!({"Name": "v", "Labels": {BROKER_LABEL: "job-6"}}),
            &r
        ));
        assert!(!made_for(&json!({"Name": "v", "Labels": null}), &r));
    }
}
