//! What a confined job may ask of the Docker engine, decided request by request without IO:
//! the calls the engine makes for a job's containers, services, Docker actions and
//! `docker://` steps, on the containers, execs, networks and volumes made through this
//! broker for this job, and nothing that reaches the host (a privileged container, a bind
//! mount outside the job's directory, the host's network or process namespaces, a volume
//! driver's options, another job's containers).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

/// The label every object made through the broker carries.
pub(crate) const BROKER_LABEL: &str = "pipewright.broker";

/// What the broker lets a job's containers mount and how it labels what they make.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Host directories a job's container may mount read-write (its own directory).
    pub(crate) writable: Vec<PathBuf>,
    /// Host directories it may mount read-only (its slot: the event file, the source).
    pub(crate) readable: Vec<PathBuf>,
    /// The value of [`BROKER_LABEL`] on what this job makes.
    pub(crate) label: String,
}

/// What was made through the broker for the job, by exact id or name.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    pub(crate) containers: HashSet<String>,
    pub(crate) execs: HashSet<String>,
    pub(crate) networks: HashSet<String>,
    pub(crate) volumes: HashSet<String>,
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

/// The broker's decision on a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Sent on to the engine (with this body instead of the job's, when `Some`).
    Forward { body: Option<Value>, makes: Makes },
    /// Answered by the broker: what the job may see of the engine's lists is nothing.
    Answer(Value),
    /// Refused with this message (403).
    Refuse(String),
}

fn refuse(msg: impl Into<String>) -> Verdict {
    Verdict::Refuse(format!("pipewright: {}", msg.into()))
}

fn forward() -> Verdict {
    Verdict::Forward {
        body: None,
        makes: Makes::Nothing,
    }
}

/// The path without the API version (`/v1.41/containers/json` → `/containers/json`).
pub(crate) fn unversioned(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(slash) = rest.find('/')
        && rest[..slash]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
    {
        return &rest[slash..];
    }
    path
}

/// Whether the broker reads the request's body (JSON) to decide.
pub(crate) fn reads_body(method: &str, path: &str) -> bool {
    let segs: Vec<&str> = unversioned(path).trim_matches('/').split('/').collect();
    method == "POST"
        && matches!(
            segs.as_slice(),
            ["containers", "create"]
                | ["containers", _, "exec"]
                | ["networks", "create"]
                | ["networks", _, "connect" | "disconnect"]
                | ["volumes", "create"]
        )
}

/// The value of `key` in a query string (`a=1&name=x`), percent-decoding left aside: the
/// names the engine gives are plain.
fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
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
    let segs: Vec<&str> = unversioned(path).trim_matches('/').split('/').collect();
    let what = format!("{method} {}", unversioned(path));
    let container = |id: &str| owned.containers.contains(id.trim_start_matches('/'));
    let not_its = |kind: &str, id: &str| {
        refuse(format!(
            "the {kind} `{id}` was not made by this job ({what})"
        ))
    };
    match (method, segs.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) | ("GET", ["version"]) => forward(),
        ("GET", ["containers", "json"]) => Verdict::Answer(Value::Array(Vec::new())),
        ("GET", ["networks"]) => Verdict::Answer(Value::Array(Vec::new())),
        ("GET", ["volumes"]) => Verdict::Answer(serde_json::json!({"Volumes": [], "Warnings": []})),
        ("GET", ["images", .., "json"]) => forward(),
        ("POST", ["images", "create"]) => {
            if query_value(query, "fromSrc").is_some() {
                refuse("importing an image is not allowed to a job; only pulling")
            } else {
                forward()
            }
        }
        ("POST", ["build"]) => match query_value(query, "networkmode") {
            None | Some("" | "default" | "bridge" | "none") => forward(),
            Some(other) => refuse(format!(
                "a build on the network `{other}` is not allowed to a job"
            )),
        },
        ("POST", ["containers", "create"]) => {
            let name = query_value(query, "name").map(str::to_owned);
            match container_body(body, owned, rules) {
                Ok(body) => Verdict::Forward {
                    body: Some(body),
                    makes: Makes::Container(name),
                },
                Err(msg) => refuse(msg),
            }
        }
        ("POST", ["containers", id, "exec"]) => {
            if !container(id) {
                return not_its("container", id);
            }
            match exec_body(body) {
                Ok(()) => Verdict::Forward {
                    body: None,
                    makes: Makes::Exec,
                },
                Err(msg) => refuse(msg),
            }
        }
        (
            "POST",
            [
                "containers",
                id,
                "start" | "stop" | "kill" | "wait" | "restart" | "attach" | "resize",
            ],
        )
        | ("GET", ["containers", id, "json" | "logs" | "top" | "stats"])
        | ("DELETE", ["containers", id]) => {
            if container(id) {
                forward()
            } else {
                not_its("container", id)
            }
        }
        ("POST", ["exec", id, "start" | "resize"]) | ("GET", ["exec", id, "json"]) => {
            if owned.execs.contains(*id) {
                forward()
            } else {
                not_its("process", id)
            }
        }
        ("POST", ["networks", "create"]) => match network_body(body, rules) {
            Ok((body, name)) => Verdict::Forward {
                body: Some(body),
                makes: Makes::Network(name),
            },
            Err(msg) => refuse(msg),
        },
        ("POST", ["networks", id, "connect" | "disconnect"]) => {
            let target = body
                .and_then(|b| b.get("Container"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !owned.networks.contains(*id) {
                not_its("network", id)
            } else if !container(target) {
                not_its("container", target)
            } else {
                forward()
            }
        }
        ("GET", ["networks", id]) | ("DELETE", ["networks", id]) => {
            if owned.networks.contains(*id) {
                forward()
            } else {
                not_its("network", id)
            }
        }
        ("POST", ["volumes", "create"]) => match volume_body(body, rules) {
            Ok(body) => Verdict::Forward {
                body: Some(body),
                makes: Makes::Volume,
            },
            Err(msg) => refuse(msg),
        },
        ("GET", ["volumes", name]) | ("DELETE", ["volumes", name]) => {
            if owned.volumes.contains(*name) {
                forward()
            } else {
                not_its("volume", name)
            }
        }
        _ => refuse(format!("{what} is not among what a job may ask of Docker")),
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
    "PortBindings",
    "PublishAllPorts",
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
    "OomScoreAdj",
];

/// A container's body, checked and labelled, with `no-new-privileges` whatever it asked.
fn container_body(body: Option<&Value>, owned: &Owned, rules: &Rules) -> Result<Value, String> {
    let Some(Value::Object(config)) = body else {
        return Err("a container's configuration must be a JSON object".into());
    };
    let mut config = config.clone();
    for (key, value) in &config {
        match key.as_str() {
            k if CONFIG_KEYS.contains(&k) => {}
            "Labels" | "HostConfig" | "NetworkingConfig" => {}
            _ if unset(value) => {}
            other => return Err(format!("a container's `{other}` is not allowed to a job")),
        }
    }
    let mut labels = match config.remove("Labels") {
        Some(Value::Object(l)) => l,
        _ => Map::new(),
    };
    labels.insert(BROKER_LABEL.into(), Value::String(rules.label.clone()));
    config.insert("Labels".into(), Value::Object(labels));
    let mut host = match config.remove("HostConfig") {
        Some(Value::Object(h)) => h,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err("`HostConfig` must be an object".into()),
    };
    for (key, value) in &host {
        let k = key.as_str();
        if HOST_KEYS.contains(&k) || unset(value) {
            continue;
        }
        match k {
            "Binds" => {
                for bind in value.as_array().into_iter().flatten() {
                    check_bind(bind.as_str().unwrap_or_default(), owned, rules)?;
                }
            }
            "Mounts" => {
                for mount in value.as_array().into_iter().flatten() {
                    check_mount(mount, owned, rules)?;
                }
            }
            "NetworkMode" => check_network_mode(value.as_str().unwrap_or_default(), owned)?,
            "PidMode" | "IpcMode" | "UTSMode" | "UsernsMode" | "CgroupnsMode" => {
                let mode = value.as_str().unwrap_or_default();
                match mode.strip_prefix("container:") {
                    Some(id) if owned.containers.contains(id) => {}
                    None if matches!(mode, "private" | "shareable") => {}
                    _ => return Err(format!("`{k}: {mode}` is not allowed to a job")),
                }
            }
            "Links" | "VolumesFrom" => {
                for item in value.as_array().into_iter().flatten() {
                    let s = item.as_str().unwrap_or_default();
                    let id = s
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .trim_start_matches('/');
                    if !owned.containers.contains(id) {
                        return Err(format!(
                            "`{k}` names `{id}`, a container this job did not make"
                        ));
                    }
                }
            }
            "SecurityOpt" => {
                for opt in value.as_array().into_iter().flatten() {
                    let o = opt.as_str().unwrap_or_default();
                    if !matches!(
                        o,
                        "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
                    ) {
                        return Err(format!("the security option `{o}` is not allowed to a job"));
                    }
                }
            }
            "RestartPolicy" => {
                let name = value
                    .get("Name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !matches!(name, "" | "no") {
                    return Err(format!(
                        "the restart policy `{name}` is not allowed to a job (its containers end with it)"
                    ));
                }
            }
            "LogConfig" => {
                let driver = value
                    .get("Type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !matches!(driver, "" | "json-file" | "local" | "none") {
                    return Err(format!("the log driver `{driver}` is not allowed to a job"));
                }
            }
            other => return Err(format!("`HostConfig.{other}` is not allowed to a job")),
        }
    }
    host.insert(
        "SecurityOpt".into(),
        Value::Array(vec![Value::String("no-new-privileges".into())]),
    );
    config.insert("HostConfig".into(), Value::Object(host));
    if let Some(endpoints) = config
        .get("NetworkingConfig")
        .and_then(|n| n.get("EndpointsConfig"))
        .and_then(Value::as_object)
    {
        for name in endpoints.keys() {
            if !matches!(name.as_str(), "bridge" | "default") && !owned.networks.contains(name) {
                return Err(format!("the network `{name}` was not made by this job"));
            }
        }
    }
    Ok(Value::Object(config))
}

/// `HostConfig.Binds` entry: `SOURCE:TARGET[:OPTIONS]`.
fn check_bind(bind: &str, owned: &Owned, rules: &Rules) -> Result<(), String> {
    let mut parts = bind.splitn(3, ':');
    let source = parts.next().unwrap_or_default();
    let _target = parts.next();
    let options = parts.next().unwrap_or_default();
    let read_only = options.split(',').any(|o| o == "ro");
    check_source(source, read_only, owned, rules)
}

fn check_source(source: &str, read_only: bool, owned: &Owned, rules: &Rules) -> Result<(), String> {
    if !source.starts_with('/') {
        return if owned.volumes.contains(source) {
            Ok(())
        } else {
            Err(format!("the volume `{source}` was not made by this job"))
        };
    }
    let path = Path::new(source);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let beneath = |roots: &[PathBuf]| roots.iter().any(|r| path.starts_with(r));
    if plain && (beneath(&rules.writable) || (read_only && beneath(&rules.readable))) {
        Ok(())
    } else {
        Err(format!(
            "mounting `{source}`{} is not allowed to a job: only its own directory",
            if read_only { " read-only" } else { "" }
        ))
    }
}

fn check_mount(mount: &Value, owned: &Owned, rules: &Rules) -> Result<(), String> {
    let kind = mount
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let source = mount
        .get("Source")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let read_only = mount.get("ReadOnly").and_then(Value::as_bool) == Some(true);
    match kind {
        "bind" => check_source(source, read_only, owned, rules),
        "volume" => {
            if mount
                .get("VolumeOptions")
                .and_then(|o| o.get("DriverConfig"))
                .is_some_and(|d| !unset(d))
            {
                return Err("a volume driver's configuration is not allowed to a job".into());
            }
            if source.is_empty() || owned.volumes.contains(source) {
                Ok(())
            } else {
                Err(format!("the volume `{source}` was not made by this job"))
            }
        }
        "tmpfs" => Ok(()),
        other => Err(format!("a `{other}` mount is not allowed to a job")),
    }
}

fn check_network_mode(mode: &str, owned: &Owned) -> Result<(), String> {
    if matches!(mode, "" | "default" | "bridge" | "none") || owned.networks.contains(mode) {
        return Ok(());
    }
    match mode.strip_prefix("container:") {
        Some(id) if owned.containers.contains(id) => Ok(()),
        _ => Err(format!("the network mode `{mode}` is not allowed to a job")),
    }
}

/// A process started in a container: never privileged.
fn exec_body(body: Option<&Value>) -> Result<(), String> {
    match body.and_then(|b| b.get("Privileged")) {
        Some(v) if !unset(v) => Err("a privileged process is not allowed to a job".into()),
        _ => Ok(()),
    }
}

/// A network: a plain bridge, labelled.
fn network_body(body: Option<&Value>, rules: &Rules) -> Result<(Value, String), String> {
    let Some(Value::Object(net)) = body else {
        return Err("a network's configuration must be a JSON object".into());
    };
    let mut net = net.clone();
    let name = net
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    for (key, value) in &net {
        match key.as_str() {
            "Name" | "CheckDuplicate" | "Internal" | "Attachable" | "EnableIPv6" | "Labels" => {}
            "Driver" if matches!(value.as_str(), Some("bridge")) => {}
            _ if unset(value) => {}
            other => return Err(format!("a network's `{other}` is not allowed to a job")),
        }
    }
    label(&mut net, rules);
    Ok((Value::Object(net), name))
}

/// A volume: the local driver, without options (which can bind any host path).
fn volume_body(body: Option<&Value>, rules: &Rules) -> Result<Value, String> {
    let mut vol = match body {
        Some(Value::Object(v)) => v.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err("a volume's configuration must be a JSON object".into()),
    };
    for (key, value) in &vol {
        match key.as_str() {
            "Name" | "Labels" => {}
            "Driver" if matches!(value.as_str(), Some("local")) => {}
            _ if unset(value) => {}
            other => return Err(format!("a volume's `{other}` is not allowed to a job")),
        }
    }
    label(&mut vol, rules);
    Ok(Value::Object(vol))
}

fn label(object: &mut Map<String, Value>, rules: &Rules) {
    let mut labels = match object.remove("Labels") {
        Some(Value::Object(l)) => l,
        _ => Map::new(),
    };
    labels.insert(BROKER_LABEL.into(), Value::String(rules.label.clone()));
    object.insert("Labels".into(), Value::Object(labels));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules() -> Rules {
        Rules {
            writable: vec![PathBuf::from("/work/slot-0/job")],
            readable: vec![PathBuf::from("/work/slot-0")],
            label: "slot-0".into(),
        }
    }

    fn owned() -> Owned {
        let mut o = Owned::default();
        o.containers.insert("c1".into());
        o.containers.insert("pipewright-abc".into());
        o.execs.insert("e1".into());
        o.networks.insert("pipewright-net".into());
        o.volumes.insert("pipewright-vol".into());
        o
    }

    fn refused(v: &Verdict) -> bool {
        matches!(v, Verdict::Refuse(_))
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
    fn what_the_engine_makes_for_a_job_passes_labelled_without_new_privileges() {
        let v = create(json!({
            "Image": "busybox",
            "Env": ["A=1"],
            "Labels": {"pipewright.job": "j"},
            "HostConfig": {
                "Binds": ["/work/slot-0/job/workspace:/__w/r/r", "/work/slot-0/event.json:/github/workflow/event.json:ro", "pipewright-vol:/data"],
                "PortBindings": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "NetworkMode": "pipewright-net",
                "Memory": 0,
                "SecurityOpt": ["no-new-privileges"]
            },
            "NetworkingConfig": {"EndpointsConfig": {"pipewright-net": {"Aliases": ["db"]}}}
        }));
        let Verdict::Forward {
            body: Some(body),
            makes,
        } = v
        else {
            panic!("{v:?}");
        };
        assert_eq!(makes, Makes::Container(Some("pipewright-x".into())));
        assert_eq!(body["Labels"][BROKER_LABEL], "slot-0");
        assert_eq!(body["Labels"]["pipewright.job"], "j");
        assert_eq!(
            body["HostConfig"]["SecurityOpt"],
            json!(["no-new-privileges"])
        );
    }

    #[test]
    fn what_reaches_the_host_is_refused_naming_it() {
        for (body, says) in [
            (
                json!({"Image": "x", "HostConfig": {"Privileged": true}}),
                "Privileged",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/:/host"]}}),
                "mounting `/`",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/work/slot-0/../../etc:/e"]}}),
                "mounting",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/work/slot-0/event.json:/e"]}}),
                "mounting",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Binds": ["/var/run/docker.sock:/s"]}}),
                "mounting",
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
                json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "volume", "Source": "", "Target": "/e", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"device": "/"}}}}]}}),
                "driver",
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
                json!({"Image": "x", "HostConfig": {"CgroupParent": "/"}}),
                "CgroupParent",
            ),
            (
                json!({"Image": "x", "HostConfig": {"VolumesFrom": ["someone-else"]}}),
                "someone-else",
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
        ] {
            let v = create(body.clone());
            match &v {
                Verdict::Refuse(msg) => assert!(msg.contains(says), "{body}: {msg}"),
                other => panic!("{body} was let through: {other:?}"),
            }
        }
    }

    #[test]
    fn only_the_job_s_own_objects_are_reachable() {
        let (o, r) = (owned(), rules());
        let j = |m: &str, p: &str| judge(m, p, "", None, &o, &r);
        assert!(!refused(&j("POST", "/v1.41/containers/c1/start")));
        assert!(!refused(&j("DELETE", "/containers/pipewright-abc")));
        assert!(!refused(&j("GET", "/v1.41/exec/e1/json")));
        assert!(refused(&j("POST", "/containers/other/kill")));
        assert!(
            refused(&j("GET", "/containers/c/json")),
            "an id prefix is not the container"
        );
        assert!(refused(&j("POST", "/exec/e2/start")));
        assert!(refused(&j("DELETE", "/networks/bridge")));
        assert!(refused(&j("DELETE", "/volumes/other")));
        assert!(refused(&j("POST", "/containers/prune")));
        assert!(refused(&j("POST", "/images/x/push")));
        assert!(refused(&j("GET", "/secrets")));
        assert_eq!(
            j("GET", "/v1.41/containers/json"),
            Verdict::Answer(json!([]))
        );
        let exec = |body: Value| judge("POST", "/containers/c1/exec", "", Some(&body), &o, &r);
        assert!(!refused(&exec(json!({"Cmd": ["sh"]}))));
        assert!(refused(&exec(json!({"Cmd": ["sh"], "Privileged": true}))));
        assert!(refused(&judge(
            "POST",
            "/containers/other/exec",
            "",
            Some(&json!({})),
            &o,
            &r
        )));
        let vol = |body: Value| judge("POST", "/volumes/create", "", Some(&body), &o, &r);
        assert!(!refused(&vol(json!({"Name": "v", "Driver": "local"}))));
        assert!(refused(&vol(
            json!({"Name": "v", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}})
        )));
        let net = |body: Value| judge("POST", "/networks/create", "", Some(&body), &o, &r);
        assert!(!refused(&net(json!({"Name": "n", "Driver": "bridge"}))));
        assert!(refused(&net(json!({"Name": "n", "Driver": "macvlan"}))));
        assert!(refused(&net(
            json!({"Name": "n", "Options": {"com.docker.network.bridge.name": "docker0"}})
        )));
        assert!(refused(&judge(
            "POST",
            "/build",
            "networkmode=host",
            None,
            &o,
            &r
        )));
        assert!(!refused(&judge("POST", "/build", "t=x&rm=1", None, &o, &r)));
        assert!(refused(&judge(
            "POST",
            "/images/create",
            "fromSrc=-",
            None,
            &o,
            &r
        )));
        assert!(reads_body("POST", "/v1.41/containers/create"));
        assert!(!reads_body("POST", "/v1.41/build"));
    }
}
