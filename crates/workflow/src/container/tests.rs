use super::*;

fn json(s: &str) -> Value {
    Value::from_json(serde_json::from_str(s).unwrap())
}

#[test]
fn the_seed_s_postgres_service() {
    let v = json(
        r#"{"postgres": {"image": "postgres:13", "env": {"POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": "postgres", "POSTGRES_DB": "test_db"},
            "ports": ["5432:5432"],
            "options": "--health-cmd pg_isready --health-interval 10s --health-timeout 5s --health-retries 5"},
          "redis": {"image": "redis", "ports": [6379], "options": "--health-cmd \"redis-cli ping\" --entrypoint redis-server"},
          "off": {"image": ""}}"#,
    );
    let s = services(&v).unwrap();
    assert_eq!(s.len(), 2, "the empty image is not started");
    let (id, pg) = &s[0];
    assert_eq!(
        (id.as_str(), pg.image.as_str()),
        ("postgres", "postgres:13")
    );
    assert_eq!(pg.env[2], ("POSTGRES_DB".to_owned(), "test_db".to_owned()));
    assert_eq!(
        pg.ports,
        [PortMapping {
            host: Some(5432),
            container: 5432,
            protocol: Protocol::Tcp
        }]
    );
    assert_eq!(
        pg.options.health,
        Some(HealthCheck {
            cmd: "pg_isready".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            retries: 5,
            start_period: Duration::ZERO,
        })
    );
    let redis = &s[1].1;
    assert_eq!(redis.ports[0].host, None);
    assert_eq!(redis.options.health.as_ref().unwrap().cmd, "redis-cli ping");
    assert_eq!(redis.options.health.as_ref().unwrap().retries, 3);
    assert_eq!(redis.options.other, ["--entrypoint", "redis-server"]);
}

#[test]
fn a_container_is_an_image_or_a_mapping() {
    assert_eq!(
        container(&json(r#""docker://node:20""#))
            .unwrap()
            .unwrap()
            .image,
        "node:20"
    );
    assert!(container(&json(r#""""#)).unwrap().is_none());
    assert!(container(&Value::Null).unwrap().is_none());
    let c = container(&json(
        r#"{"image": "ghcr.io/o/i:1", "credentials": {"username": "u", "password": "p"},
            "volumes": ["/data", "cache:/cache:ro"], "ports": ["127.0.0.1:8080:80/udp"],
            "options": "--cpus 1 --health-cmd=true"}"#,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(c.credentials.as_ref().unwrap().username, "u");
    assert!(
        !format!("{c:?}").contains("\"p\""),
        "the password is not shown"
    );
    assert_eq!(c.volumes, ["/data", "cache:/cache:ro"]);
    assert_eq!(
        c.ports[0],
        PortMapping {
            host: Some(8080),
            container: 80,
            protocol: Protocol::Udp
        }
    );
    assert_eq!(c.options.other, ["--cpus", "1"]);
    assert_eq!(c.options.health.unwrap().interval, Duration::from_secs(30));
}

#[test]
fn what_cannot_run_is_named_with_its_key() {
    for (v, says) in [
        (r#"{"db": {"env": {}}}"#, "services.db: has no `image`"),
        (
            r#"{"db": {"image": "p", "ports": ["x:1"]}}"#,
            "services.db.ports[0]: `x:1` is not a port mapping",
        ),
        (
            r#"{"db": {"image": "p", "ports": ["70000"]}}"#,
            "services.db.ports[0]: `70000` is not a port mapping",
        ),
        (
            r#"{"db": {"image": "p", "ports": "5432"}}"#,
            "services.db.ports: must be a sequence, found a string",
        ),
        (
            r#"{"db": {"image": "p", "options": "--health-interval soon"}}"#,
            "services.db.options: `--health-interval soon` is not a duration",
        ),
        (
            r#"{"db": {"image": "p", "options": "--health-retries"}}"#,
            "services.db.options: `--health-retries` has no value",
        ),
        (
            r#"{"db": {"image": "p", "options": "--health-cmd 'unclosed"}}"#,
            "services.db.options: cannot split",
        ),
        (
            r#"{"db": {"image": "p", "credentials": {"username": "u"}}}"#,
            "services.db.credentials: needs both",
        ),
        (
            r#"{"db": {"image": "p", "network": "host"}}"#,
            "services.db.network: is not a key of a container",
        ),
        (
            r#"["postgres"]"#,
            "services: must be a mapping of service ids, found a sequence",
        ),
    ] {
        let e = services(&json(v)).unwrap_err().to_string();
        assert!(e.starts_with(says), "{v}: {e}");
    }
}

#[test]
fn docker_options_are_read_and_those_reaching_the_host_refused() {
    let words = |s: &str| shell_words::split(s).unwrap();
    let o = create_options(
        &words("--user 1001 -e A=b --cpus 1.5 -m 512m --init --network-alias db2 --shm-size=1g --name x --rm"),
        "container.options",
    )
    .unwrap();
    assert_eq!(o.user.as_deref(), Some("1001"));
    assert_eq!(o.env, [("A".to_owned(), "b".to_owned())]);
    assert_eq!(o.nano_cpus, Some(1_500_000_000));
    assert_eq!(o.memory, Some(512 * 1024 * 1024));
    assert_eq!(o.shm_size, Some(1024 * 1024 * 1024));
    assert!(o.init);
    assert_eq!(o.aliases, ["db2"]);
    for bad in [
        "--privileged",
        "--cap-add SYS_ADMIN",
        "--network=host",
        "--pid host",
        "-v /:/host",
        "--security-opt seccomp=unconfined",
        "--device /dev/kmsg",
    ] {
        let e = create_options(&words(bad), "services.db.options").unwrap_err();
        assert_eq!(e.key, "services.db.options");
        assert!(e.message.contains("refused"), "{bad}: {e}");
    }
    let e = create_options(&words("--frobnicate 1"), "container.options").unwrap_err();
    assert!(e.message.contains("`--frobnicate` is not an option"), "{e}");
    let e = create_options(&words("-m lots"), "container.options").unwrap_err();
    assert!(e.message.contains("is not a size"), "{e}");
    let e = create_options(&words("--user"), "container.options").unwrap_err();
    assert!(e.message.contains("has no value"), "{e}");
}

#[test]
fn volumes_are_named_or_anonymous_never_host_paths() {
    assert_eq!(
        volume("data:/var/lib/data:ro", "v").unwrap(),
        Volume {
            name: Some("data".into()),
            target: "/var/lib/data".into(),
            read_only: true
        }
    );
    assert_eq!(volume("/cache", "v").unwrap().name, None);
    for bad in [
        "/srv:/data",
        "./x:/data",
        "~/x:/data",
        "data:relative",
        "a:/b:xx",
    ] {
        assert!(volume(bad, "container.volumes[0]").is_err(), "{bad}");
    }
    let e = volume(
        "/var/run/docker.sock:/var/run/docker.sock",
        "container.volumes[0]",
    )
    .unwrap_err();
    assert!(e.message.contains("mounts a path of the host"), "{e}");
}
