//! The broker's rules, request by request.

use serde_json::json;

use super::*;

const C1: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
const NET: &str = "4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e";

fn rules() -> Rules {
    Rules {
        root: PathBuf::from("/work/slot-0/job"),
        label: "job-7".into(),
        runner: "r1".into(),
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

fn refusal(v: &Result<Verdict, Refusal>) -> Option<String> {
    v.as_ref().err().map(Refusal::to_string)
}

fn forward(v: Result<Verdict, Refusal>) -> Forward {
    match v {
        Ok(Verdict::Forward(f)) => f,
        other => panic!("not sent on: {other:?}"),
    }
}

fn create(body: Value) -> Result<Verdict, Refusal> {
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
    let Payload::Json(body) = f.body else {
        panic!("{:?}", f.body);
    };
    assert_eq!(body["Labels"][BROKER_LABEL], "job-7");
    assert_eq!(body["Labels"][RUNNER_LABEL], "r1");
    assert_eq!(body["Labels"]["pipewright.job"], "j");
    let host = &body["HostConfig"];
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]));
    // A container's root makes no device node and gives no file capabilities.
    assert_eq!(host["CapDrop"], json!(["MKNOD", "SETFCAP", "NET_RAW"]));
    // An empty list of masked paths would unmask /proc's: left out, the engine's stand.
    assert!(host.get("MaskedPaths").is_none(), "{host}");
    assert_eq!(host["PortBindings"]["5432/tcp"][0]["HostIp"], "127.0.0.1");
    // The job's network by its id, not by a name another could take.
    assert_eq!(host["NetworkMode"], NET);
    assert_eq!(
        body["NetworkingConfig"]["EndpointsConfig"][NET]["Aliases"],
        json!(["db"])
    );
    // The image is looked up before the create is sent on (another job's pull is refused).
    assert_eq!(f.image.as_deref(), Some("busybox"));
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
        // A read-only bind made writable again by a tmpfs's `remount` at the same place.
        (
            json!({"Image": "x", "HostConfig": {"Binds": ["/work/slot-0/job:/job:ro"], "Tmpfs": {"/job/": "remount"}}}),
            "tmpfs at `/job/`",
        ),
        (
            json!({"Image": "x", "HostConfig": {"Tmpfs": {"/cache": "size=64m,bind"}}}),
            "tmpfs option `bind`",
        ),
        (
            json!({"Image": "x", "HostConfig": {"LogConfig": {"Config": {"syslog-address": "tcp://10.0.0.1:514"}}}}),
            "syslog-address",
        ),
        (
            json!({"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"bridge": {"MacAddress": "02:42:ac:11:00:02"}}}}),
            "MacAddress` on Docker's shared bridge",
        ),
        (
            json!({"Image": "x", "Labels": {"traefik.http.routers.app.rule": "Host(`example.com`)"}}),
            "traefik.http",
        ),
        (
            json!({"Image": "x", "Labels": {"pipewright.broker.runner": "another"}}),
            "pipewright.broker.runner",
        ),
        (
            json!({"Image": "x", "HostConfig": {"Ulimits": [{"Name": "rtprio", "Soft": 99, "Hard": 99}]}}),
            "rtprio",
        ),
        (
            json!({"Image": "x", "HostConfig": {"Ulimits": [{"Name": "nofile", "name": "rtprio"}]}}),
            "Ulimits.name",
        ),
        (
            json!({"Image": "x", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "22"}]}}}),
            "port 22",
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
        format!("/containers/{C1}?v=1")
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
    assert_eq!(j("GET", "/images/json"), Ok(Verdict::Answer(json!([]))));
    let removal = forward(judge(
        "DELETE",
        "/containers/pipewright-abc",
        "force=1",
        None,
        &o,
        &r,
    ));
    assert_eq!(removal.uri, format!("/containers/{C1}?force=1&v=1"));
    assert_eq!(removal.makes, Makes::Removes(Kind::Container, C1.into()));
    let mut gone = owned();
    gone.forget(Kind::Container, C1);
    assert_eq!(gone.container("pipewright-abc"), None);
    for (m, p, q) in [
        ("POST", "/containers/pipewright-abc/start", "checkpoint=x"),
        ("GET", "/containers/pipewright-abc/top", "ps_args=aux"),
    ] {
        let v = judge(m, p, q, None, &o, &r);
        assert!(refusal(&v).is_some(), "{m} {p}?{q} was let through");
    }
    assert_eq!(
        j("GET", "/v1.41/containers/json"),
        Ok(Verdict::Answer(json!([])))
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
    // What a container mounts is checked again as it starts: Docker resolves it again then.
    let mut with_mounts = owned();
    let workspace = Bind {
        path: "/work/slot-0/job/workspace".into(),
        writable: true,
    };
    with_mounts
        .mounts
        .insert(C1.into(), vec![workspace.clone()]);
    for action in ["start", "restart"] {
        let f = forward(judge(
            "POST",
            &format!("/containers/pipewright-abc/{action}"),
            "",
            None,
            &with_mounts,
            &r,
        ));
        assert_eq!(f.binds, std::slice::from_ref(&workspace), "{action}");
    }
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
    assert_eq!(f.body, Payload::Json(json!({"Cmd": ["sh"]})));
    // A process's start: only what the engine reads of it, never the job's bytes.
    let start = forward(judge(
        "POST",
        "/exec/e1/start",
        "",
        Some(&json!({"Detach": false, "Tty": false})),
        &o,
        &r,
    ));
    assert_eq!(
        start.body,
        Payload::Json(json!({"Detach": false, "Tty": false}))
    );
    assert!(
        refusal(&judge(
            "POST",
            "/exec/e1/start",
            "",
            Some(&json!({"Privileged": true})),
            &o,
            &r
        ))
        .is_some()
    );
    assert!(reads_body("POST", "/exec/e1/start"));
    // What is not read is not sent: the engine would read a form-encoded body as parameters.
    assert_eq!(
        forward(j("POST", "/containers/pipewright-abc/kill")).body,
        Payload::Empty
    );
    assert_eq!(
        forward(judge(
            "POST",
            "/images/create",
            "fromImage=x&tag=1",
            None,
            &o,
            &r
        ))
        .body,
        Payload::Empty
    );
    // What bollard sends to remove a container.
    let removal = forward(judge(
        "DELETE",
        "/containers/pipewright-abc",
        "v=true&force=true&link=false",
        None,
        &o,
        &r,
    ));
    assert_eq!(removal.uri, format!("/containers/{C1}?force=true&v=1"));
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
    // What `docker network create` sends, and addresses of the job's choosing.
    assert!(
        refusal(&net(
            json!({"Name": "n", "IPAM": {"Driver": "default", "Options": {}, "Config": []}})
        ))
        .is_none()
    );
    assert!(
        refusal(&net(
            json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0/8"}]}})
        ))
        .is_some()
    );
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
    let Payload::Json(body) = connect.body else {
        panic!("{:?}", connect.body);
    };
    assert_eq!(body["Container"], C1);
}

#[test]
fn query_parameters_are_read_decoded_and_written_again() {
    let (o, r) = (owned(), rules());
    let q = |m: &str, p: &str, query: &str| judge(m, p, query, None, &o, &r);
    // A build reads its Dockerfile on the machine's side: its pulls, its downloads.
    for query in ["", "t=x", "networkmode=none"] {
        let v = q("POST", "/build", query);
        assert!(
            refusal(&v).is_some_and(|m| m.contains("building an image")),
            "{query}: {v:?}"
        );
    }
    for query in [
        "fromImage=alpine",
        "fromImage=alpine&platform=linux%2Fs390x",
        "fromImage=localhost%3A5000%2Fapp&tag=1",
        "fromImage=127.0.0.1%3A5000%2Fapp&tag=1",
        "fromImage=%5B%3A%3A1%5D%3A5000%2Fapp&tag=1",
        "fromImage=registry.localhost%2Fapp&tag=1",
    ] {
        let v = q("POST", "/images/create", query);
        assert!(refusal(&v).is_some(), "{query}: {v:?}");
    }
    // Named as the engine lists what it pulled; the engine gets that name.
    for (query, reference) in [
        ("fromImage=ghcr.io%2Fo%2Fx%3A2", "ghcr.io/o/x:2"),
        ("fromImage=docker.io%2Flibrary%2Falpine&tag=3", "alpine:3"),
        (
            "fromImage=index.docker.io%2Flibrary%2Falpine%3A3",
            "alpine:3",
        ),
        ("fromImage=library%2Falpine&tag=3", "alpine:3"),
        ("fromImage=docker.io%2Fme%2Fapp&tag=1", "me/app:1"),
        ("fromImage=library%2Fme%2Fapp&tag=1", "library/me/app:1"),
        ("fromImage=a__b.c-d--e&tag=1", "a__b.c-d--e:1"),
        (
            "fromImage=Reg.example%3A5000%2Fa%2Fb&tag=1",
            "Reg.example:5000/a/b:1",
        ),
        (
            "fromImage=registry-1.docker.io%2Flibrary%2Falpine&tag=3",
            "registry-1.docker.io/library/alpine:3",
        ),
        (
            "fromImage=x&tag=sha256%3A0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
    ] {
        let f = forward(q("POST", "/images/create", query));
        let pull = f.pull.unwrap();
        assert_eq!(pull.reference(), reference, "{query}");
        assert_eq!(
            f.uri,
            format!(
                "/images/create?{}",
                encode(&[("fromImage".into(), pull.name), ("tag".into(), pull.tag)])
            ),
            "{query}"
        );
    }
    for query in [
        "fromImage=x%3A1&tag=sha256%3A0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "fromImage=x%3A1&tag=2",
        "fromImage=x&tag=a%20b",
        "fromImage=x%0Ay&tag=1",
        "fromImage=x%20y&tag=1",
        "fromImage=X&tag=1",
        "fromImage=x&tag=sha256%3A12",
        "fromImage=alpine%3A",
        "fromImage=alpine%40",
        "fromImage=a..b&tag=1",
        "fromImage=a._b&tag=1",
        "fromImage=-x.com%2Fa&tag=1",
        "fromImage=x.com%3A%2Fa&tag=1",
        "fromImage=LOCALHOST%3A5000%2Fa&tag=1",
        "fromImage=localhost.localdomain%3A5000%2Fa&tag=1",
    ] {
        let v = q("POST", "/images/create", query);
        assert!(refusal(&v).is_some(), "{query}: {v:?}");
    }
    assert!(refusal(&q("POST", "/images/create", "fromSrc=-")).is_some());
    assert!(refusal(&q("POST", "/images/create", "from%53rc=-")).is_some());
    let pull = forward(q("POST", "/images/create", "fromImage=busybox&tag=1"));
    assert_eq!(pull.pull.unwrap().reference(), "busybox:1");
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

#[test]
fn a_job_s_compose_project_volumes_and_networks_are_its_own_and_images_are_looked_up() {
    // The machine's Compose finds a project's containers, networks and volumes by this label:
    // a job's are under a name no deployed project can have.
    let project = json!({"com.docker.compose.project": "innerarchitect", "com.docker.compose.service": "web"});
    let f = forward(create(json!({"Image": "busybox", "Labels": project})));
    let Payload::Json(body) = f.body else {
        panic!("{:?}", f.body);
    };
    assert_eq!(
        body["Labels"]["com.docker.compose.project"],
        "job-7/innerarchitect"
    );
    assert_eq!(body["Labels"]["com.docker.compose.service"], "web");
    for (path, body) in [
        (
            "/v1.41/networks/create",
            json!({"Name": "innerarchitect_default", "Labels": project}),
        ),
        (
            "/v1.41/volumes/create",
            json!({"Name": "innerarchitect_db", "Labels": project}),
        ),
    ] {
        let f = forward(judge("POST", path, "", Some(&body), &owned(), &rules()));
        let Payload::Json(body) = f.body else {
            panic!("{:?}", f.body);
        };
        assert_eq!(
            body["Labels"]["com.docker.compose.project"], "job-7/innerarchitect",
            "{path}"
        );
    }
    // Set whatever was asked: a container gets its image's labels where it sets none.
    let f = forward(create(json!({"Image": "busybox"})));
    let Payload::Json(body) = f.body else {
        panic!("{:?}", f.body);
    };
    assert_eq!(body["Labels"]["com.docker.compose.project"], "job-7/");
    // Networks and volumes are made under the job's label (a project's `prod_data` could
    // otherwise be made by a job before the project is, for the project to use), and named
    // as the job named them.
    let f = forward(judge(
        "POST",
        "/volumes/create",
        "",
        Some(&json!({"Name": "prod_data"})),
        &owned(),
        &rules(),
    ));
    assert_eq!(f.makes, Makes::Volume("prod_data".into()));
    let Payload::Json(body) = f.body else {
        panic!("{:?}", f.body);
    };
    assert_eq!(body["Name"], "job-7.prod_data");
    let f = forward(judge(
        "POST",
        "/networks/create",
        "",
        Some(&json!({"Name": "prod_default"})),
        &owned(),
        &rules(),
    ));
    assert_eq!(f.makes, Makes::Network("prod_default".into()));
    let Payload::Json(body) = f.body else {
        panic!("{:?}", f.body);
    };
    assert_eq!(body["Name"], "job-7.prod_default");
    let mut o = owned();
    o.volumes.insert("job-7.prod_data".into());
    o.volume_names
        .insert("prod_data".into(), "job-7.prod_data".into());
    let f = forward(judge(
        "POST",
        "/containers/create",
        "",
        Some(&json!({"Image": "busybox", "HostConfig": {
            "Binds": ["prod_data:/data:ro"],
            "Mounts": [{"Type": "volume", "Source": "prod_data", "Target": "/m"},
                       {"Type": "volume", "Target": "/anon", "VolumeOptions": {"Labels": {"com.docker.compose.project": "prod"}}}]
        }})),
        &o,
        &rules(),
    ));
    let Payload::Json(body) = f.body else {
        panic!("{:?}", f.body);
    };
    assert_eq!(
        body["HostConfig"]["Binds"],
        json!(["job-7.prod_data:/data:ro"])
    );
    assert_eq!(body["HostConfig"]["Mounts"][0]["Source"], "job-7.prod_data");
    let anonymous = &body["HostConfig"]["Mounts"][1]["VolumeOptions"]["Labels"];
    assert_eq!(anonymous["com.docker.compose.project"], "job-7/prod");
    assert_eq!(anonymous[BROKER_LABEL], "job-7");
    assert_eq!(f.volumes, ["job-7.prod_data", "job-7.prod_data"]);
    assert_eq!(
        forward(judge(
            "DELETE",
            "/volumes/prod_data",
            "",
            None,
            &o,
            &rules()
        ))
        .uri,
        "/volumes/job-7.prod_data"
    );
    let v = create(json!({"Image": "busybox", "Labels": {"com.docker.compose.project": 1}}));
    assert!(
        refusal(&v).is_some_and(|m| m.contains("must be a string")),
        "{v:?}"
    );
    // An image's inspection is looked up as a create's image is.
    let f = forward(judge(
        "GET",
        "/v1.41/images/ghcr.io/me/app:1/json",
        "",
        None,
        &owned(),
        &rules(),
    ));
    assert_eq!(f.image.as_deref(), Some("ghcr.io/me/app:1"));
}

#[test]
fn a_job_s_execs_are_bounded() {
    let mut o = owned();
    let exec = |o: &Owned| {
        judge(
            "POST",
            &format!("/v1.41/containers/{C1}/exec"),
            "",
            Some(&json!({"Cmd": ["true"]})),
            o,
            &rules(),
        )
    };
    assert!(refusal(&exec(&o)).is_none(), "{:?}", exec(&o));
    o.execs.extend((0..MAX_EXECS).map(|n| format!("e{n}x")));
    let v = exec(&o);
    assert!(
        refusal(&v).is_some_and(|m| m.contains("at most 65536")),
        "{v:?}"
    );
}
