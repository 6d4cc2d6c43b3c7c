//! The other bodies the broker reads (a process's, a network's, a volume's, a connection's),
//! rebuilt from the keys it knows, and the helpers that rebuild objects.

use serde_json::{Map, Value};

use super::container::endpoint_config;
use super::{BROKER_LABEL, Owned, RUNNER_LABEL, Refusal, Rules};

/// A value that sets nothing: absent, null, false, zero, empty.
pub(super) fn unset(v: &Value) -> bool {
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
pub(super) fn object<'v>(
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
pub(super) fn pick(
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

pub(super) fn str_of<'v>(v: &'v Value, what: &str) -> Result<&'v str, Refusal> {
    v.as_str()
        .ok_or_else(|| Refusal::new(format!("`{what}` must be a string")))
}

pub(super) fn list_of<'v>(v: &'v Value, what: &str) -> Result<&'v [Value], Refusal> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(Refusal::new(format!("`{what}` must be a list"))),
    }
}

/// A process started in a container, rebuilt: never privileged.
pub(super) fn exec_body(body: Option<&Value>) -> Result<Value, Refusal> {
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
pub(super) fn connect_body(body: Option<&Value>, owned: &Owned) -> Result<Value, Refusal> {
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
pub(super) fn network_body(
    body: Option<&Value>,
    rules: &Rules,
) -> Result<(Value, String), Refusal> {
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
            "IPAM",
        ],
        "a network's ",
    )?;
    // Addresses are the engine's to choose: a job's could cover the machine's own networks.
    if let Some(ipam) = object(net.get("IPAM"), "a network's `IPAM`")? {
        let ipam = pick(ipam, &["Driver"], "a network's IPAM.")?;
        match ipam.get("Driver").and_then(Value::as_str) {
            None | Some("" | "default") => {}
            Some(d) => {
                return Err(Refusal::new(format!(
                    "a network's address driver `{d}` is not allowed to a job"
                )));
            }
        }
        net.insert("IPAM".into(), Value::Object(ipam));
    }
    only_driver(&net, "bridge", "a network's")?;
    let name = net
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    net.insert("Name".into(), Value::String(scoped(&name, rules)));
    label(&mut net, rules)?;
    Ok((Value::Object(net), name))
}

/// A volume: the local driver, without options (which can bind any host path), rebuilt and
/// labelled.
pub(super) fn volume_body(body: Option<&Value>, rules: &Rules) -> Result<(Value, String), Refusal> {
    let v = object(body, "a volume's configuration")?
        .cloned()
        .unwrap_or_default();
    let mut v = pick(&v, &["Name", "Labels", "Driver"], "a volume's ")?;
    only_driver(&v, "local", "a volume's")?;
    let name = match v.get("Name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(Refusal::new("a volume's `Name` must be a string")),
    };
    if !name.is_empty() {
        v.insert("Name".into(), Value::String(scoped(&name, rules)));
    }
    label(&mut v, rules)?;
    Ok((Value::Object(v), name))
}

/// The name the engine gets for a job's network or volume named `name`: under the job's
/// label, so that no name a Compose project on the machine would use (`PROJECT_data`) is
/// made by a job, for the project to find and use (a project's name has no `.`).
pub(super) fn scoped(name: &str, rules: &Rules) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("{}.{name}", rules.label)
    }
}

/// Refuses an object's `Driver` other than `allowed` (absent is the engine's default).
fn only_driver(object: &Map<String, Value>, allowed: &str, what: &str) -> Result<(), Refusal> {
    match object.get("Driver") {
        None => Ok(()),
        Some(Value::String(d)) if d == allowed => Ok(()),
        Some(d) => Err(Refusal::new(format!(
            "{what} driver {d} is not allowed to a job"
        ))),
    }
}

/// Sets the job's label on an object's `Labels` (which must be strings).
pub(super) fn label(object: &mut Map<String, Value>, rules: &Rules) -> Result<(), Refusal> {
    let mut labels = match object.remove("Labels") {
        Some(Value::Object(l)) => l,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(Refusal::new("`Labels` must be a JSON object")),
    };
    refuse_routed_labels(&labels)?;
    // A Compose project is found by this label: a job's is its own, under a name no
    // project deployed on the machine can have (a project's name has no `/`), so the
    // machine's Compose never takes a job's container for one of its services. Set whatever
    // was asked: a container gets its image's labels where it sets none.
    let project = match labels.get(COMPOSE_PROJECT) {
        None => String::new(),
        Some(Value::String(name)) => name.clone(),
        Some(_) => {
            return Err(Refusal::new(format!(
                "the label `{COMPOSE_PROJECT}` must be a string"
            )));
        }
    };
    labels.insert(
        COMPOSE_PROJECT.into(),
        Value::String(format!("{}/{project}", rules.label)),
    );
    labels.insert(BROKER_LABEL.into(), Value::String(rules.label.clone()));
    labels.insert(RUNNER_LABEL.into(), Value::String(rules.runner.clone()));
    object.insert("Labels".into(), Value::Object(labels));
    Ok(())
}

/// The label by which Compose finds a project's containers, networks and volumes.
pub(super) const COMPOSE_PROJECT: &str = "com.docker.compose.project";

/// Refuses labels others act on: a proxy's routes (Traefik's, Caddy's), the broker's own.
pub(crate) fn refuse_routed_labels(labels: &Map<String, Value>) -> Result<(), Refusal> {
    match labels.keys().find(|k| {
        let k = k.to_ascii_lowercase();
        ["traefik.", "caddy", "pipewright.broker"]
            .iter()
            .any(|p| k.starts_with(p))
    }) {
        Some(k) => Err(Refusal::new(format!(
            "the label `{k}` is not allowed to a job (something on the machine may act on it)"
        ))),
        None => Ok(()),
    }
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
