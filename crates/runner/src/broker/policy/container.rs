//! A container's configuration, rebuilt: what only sets things inside the container passes,
//! what reaches the host is refused naming it, the job's objects are named by their ids.

use std::path::{Component, Path};

use serde_json::{Map, Value};

use super::bodies::{label, list_of, object, pick, str_of, unset};
use super::{Bind, Owned, Refusal, Rules};

/// A container's keys a job may set as it likes.
pub(super) const CONFIG_KEYS: &[&str] = &[
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
pub(super) const HOST_KEYS: &[&str] = &[
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
    "ShmSize",
    "ReadonlyRootfs",
    "GroupAdd",
    "ConsoleSize",
];

/// `HostConfig` keys read one by one below.
pub(super) const HOST_CHECKED: &[&str] = &[
    "Tmpfs",
    "Ulimits",
    "CapDrop",
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

/// What a container's mounts use of the host (paths) and of the job (its volumes).
#[derive(Default)]
pub(super) struct Uses {
    binds: Vec<Bind>,
    volumes: Vec<String>,
}

/// A container's body, rebuilt and labelled, with `no-new-privileges` whatever it asked,
/// and the host paths it would mount.
pub(super) fn container_body(
    body: Option<&Value>,
    owned: &Owned,
    rules: &Rules,
) -> Result<(Value, Vec<Bind>, Vec<String>), Refusal> {
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
    let mut uses = Uses::default();
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
                        &mut uses,
                    )?));
                }
                Value::Array(out)
            }
            "Mounts" => {
                let mut out = Vec::new();
                for m in list_of(&value, &what)? {
                    out.push(check_mount(m, owned, rules, &mut uses)?);
                }
                Value::Array(out)
            }
            "PortBindings" => local_ports(&value)?,
            "Tmpfs" => tmpfs(&value)?,
            "Ulimits" => {
                let mut out = Vec::new();
                for u in list_of(&value, &what)? {
                    let Some(u) = object(Some(u), "a limit")? else {
                        continue;
                    };
                    let u = pick(u, &["Name", "Soft", "Hard"], "HostConfig.Ulimits.")?;
                    let name = u.get("Name").and_then(Value::as_str).unwrap_or_default();
                    if !matches!(name, "nofile" | "nproc" | "core" | "stack") {
                        return Err(Refusal::new(format!(
                            "the limit `{name}` is not allowed to a job (only nofile, nproc, core and stack)"
                        )));
                    }
                    out.push(Value::Object(u));
                }
                Value::Array(out)
            }
            // Dropped whatever else is: a container's root could make device nodes in the
            // job's directories (the host's disks, for the job to open) or give files
            // capabilities.
            "CapDrop" => continue,
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
                // Options go to the named driver, or to the engine's default one (which may
                // send logs to an address the options name): only a file's size and count.
                let options = object(log.get("Config"), "`HostConfig.LogConfig.Config`")?;
                if let Some(o) = options {
                    pick(
                        o,
                        &["max-size", "max-file", "compress"],
                        "HostConfig.LogConfig.Config.",
                    )?;
                }
                match driver {
                    "json-file" | "local" | "none" => {}
                    "" if options.is_none_or(Map::is_empty) => continue,
                    "" => {
                        return Err(Refusal::new(
                            "log options without a log driver (`json-file` or `local`) are not allowed to a job",
                        ));
                    }
                    other => {
                        return Err(Refusal::new(format!(
                            "the log driver `{other}` is not allowed to a job"
                        )));
                    }
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
    let mut drop: Vec<Value> = ["MKNOD", "SETFCAP", "NET_RAW"]
        .into_iter()
        .map(|c| Value::String(c.into()))
        .collect();
    if let Some(given) = config
        .get("HostConfig")
        .and_then(|h| h.get("CapDrop"))
        .and_then(Value::as_array)
    {
        for c in given {
            str_of(c, "HostConfig.CapDrop")?;
            if !drop.contains(c) {
                drop.push(c.clone());
            }
        }
    }
    host.insert("CapDrop".into(), Value::Array(drop));
    config.insert("HostConfig".into(), Value::Object(host));
    if let Some(net) = object(config.get("NetworkingConfig"), "`NetworkingConfig`")? {
        let net = pick(net, &["EndpointsConfig"], "NetworkingConfig.")?;
        let mut endpoints = Map::new();
        if let Some(given) = object(
            net.get("EndpointsConfig"),
            "`NetworkingConfig.EndpointsConfig`",
        )? {
            for (name, endpoint) in given {
                let shared = matches!(name.as_str(), "bridge" | "default");
                let id = owned.network(name).ok_or_else(|| {
                    Refusal::new(format!("the network `{name}` was not made by this job"))
                })?;
                let endpoint = endpoint_config(endpoint)?;
                // On Docker's shared bridge an address or a MAC of the job's choosing could be
                // another job's container's.
                if shared
                    && let Some(k) = ["IPAMConfig", "MacAddress"]
                        .iter()
                        .find(|k| endpoint.get(**k).is_some_and(|v| !unset(v)))
                {
                    return Err(Refusal::new(format!(
                        "`{k}` on Docker's shared bridge is not allowed to a job"
                    )));
                }
                endpoints.insert(id, Value::Object(endpoint));
            }
        }
        config.insert(
            "NetworkingConfig".into(),
            serde_json::json!({ "EndpointsConfig": endpoints }),
        );
    }
    Ok((Value::Object(config), uses.binds, uses.volumes))
}

/// A container's place on a network: its aliases and addresses there, nothing of the
/// network's driver.
pub(super) fn endpoint_config(v: &Value) -> Result<Map<String, Value>, Refusal> {
    let Some(e) = object(Some(v), "an endpoint's configuration")? else {
        return Ok(Map::new());
    };
    pick(
        e,
        &["Aliases", "IPAMConfig", "MacAddress", "DNSNames"],
        "EndpointsConfig.",
    )
}

/// `HostConfig.Tmpfs` (`path` → options), rebuilt: a clean path, and only the options that
/// size and shape a new file system (others, such as `remount` or `bind`, would reach the
/// container's other mounts).
fn tmpfs(value: &Value) -> Result<Value, Refusal> {
    let Some(mounts) = object(Some(value), "`HostConfig.Tmpfs`")? else {
        return Ok(Value::Object(Map::new()));
    };
    let mut out = Map::new();
    for (path, options) in mounts {
        let clean = path.starts_with('/')
            && (path == "/" || !path.ends_with('/'))
            && Path::new(path)
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && !path.contains("//");
        if !clean {
            return Err(Refusal::new(format!(
                "the tmpfs at `{path}` is not allowed to a job: a plain absolute path"
            )));
        }
        let options = str_of(options, "HostConfig.Tmpfs")?;
        for o in options.split(',').filter(|o| !o.is_empty()) {
            let name = o.split_once('=').map_or(o, |(k, _)| k);
            if !matches!(
                name,
                "size"
                    | "mode"
                    | "uid"
                    | "gid"
                    | "nr_inodes"
                    | "nr_blocks"
                    | "ro"
                    | "rw"
                    | "noexec"
                    | "exec"
                    | "nosuid"
                    | "nodev"
            ) {
                return Err(Refusal::new(format!(
                    "the tmpfs option `{o}` is not allowed to a job"
                )));
            }
        }
        out.insert(path.clone(), Value::String(options.to_owned()));
    }
    Ok(Value::Object(out))
}

/// Published ports, on 127.0.0.1 only whatever address was asked: a job's containers are not
/// served to the network.
pub(super) fn local_ports(value: &Value) -> Result<Value, Refusal> {
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
            let host_port = b
                .get("HostPort")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let low = host_port
                .split('-')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| p != 0 && p < 1024);
            if low {
                return Err(Refusal::new(format!(
                    "publishing on the host's port {host_port} is not allowed to a job (below \
                     1024: the engine binds it as root)"
                )));
            }
            b.insert("HostIp".into(), Value::String("127.0.0.1".into()));
            list.push(Value::Object(b));
        }
        out.insert(port.clone(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

/// `HostConfig.Binds` entry: `SOURCE:TARGET[:OPTIONS]`, options only `ro` or `rw`.
pub(super) fn check_bind(
    bind: &str,
    owned: &Owned,
    rules: &Rules,
    uses: &mut Uses,
) -> Result<String, Refusal> {
    let (source, rest) = bind.split_once(':').unwrap_or((bind, ""));
    let options = rest.split_once(':').map_or("", |(_, o)| o);
    if let Some(o) = options.split(',').find(|o| !matches!(*o, "" | "ro" | "rw")) {
        return Err(Refusal::new(format!(
            "the bind option `{o}` of `{bind}` is not allowed to a job"
        )));
    }
    let read_only = options.split(',').any(|o| o == "ro");
    let source = check_source(source, read_only, owned, rules, uses)?;
    Ok(format!("{source}:{rest}"))
}

/// A mount's source: a path in the job's directory, or one of the job's volumes (by the
/// name the engine knows it by, which is returned).
pub(super) fn check_source(
    source: &str,
    read_only: bool,
    owned: &Owned,
    rules: &Rules,
    uses: &mut Uses,
) -> Result<String, Refusal> {
    if !source.starts_with('/') {
        return if let Some(volume) = owned.volume(source) {
            uses.volumes.push(volume.clone());
            Ok(volume)
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
        uses.binds.push(Bind {
            path: path.to_path_buf(),
            writable: !read_only,
        });
        Ok(source.to_owned())
    } else {
        Err(Refusal::new(format!(
            "mounting `{source}`{} is not allowed to a job: only its own directory",
            if read_only { " read-only" } else { "" }
        )))
    }
}

/// A `HostConfig.Mounts` entry, rebuilt.
pub(super) fn check_mount(
    mount: &Value,
    owned: &Owned,
    rules: &Rules,
    uses: &mut Uses,
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
        let mut o = pick(o, &["NoCopy", "Labels"], "HostConfig.Mounts.VolumeOptions.")?;
        // The volume it makes is labelled as the job's other volumes.
        label(&mut o, rules)?;
        m.insert("VolumeOptions".into(), Value::Object(o));
    }
    if let Some(o) = object(m.get("TmpfsOptions"), "`TmpfsOptions`")? {
        let o = pick(o, &["SizeBytes", "Mode"], "HostConfig.Mounts.TmpfsOptions.")?;
        m.insert("TmpfsOptions".into(), Value::Object(o));
    }
    match kind.as_str() {
        "bind" => {
            check_source(&source, read_only, owned, rules, uses)?;
        }
        "volume" if !source.is_empty() => {
            let volume = owned.volume(&source).ok_or_else(|| {
                Refusal::new(format!("the volume `{source}` was not made by this job"))
            })?;
            m.insert("Source".into(), Value::String(volume.clone()));
            uses.volumes.push(volume);
        }
        "volume" => {}
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
pub(super) fn network_mode(mode: &str, owned: &Owned) -> Result<String, Refusal> {
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
