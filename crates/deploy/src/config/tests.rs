use super::*;

#[test]
fn hosts_may_have_their_own_path_and_variables() {
    let p = parse(
        "app: a\nenvironments:\n  prod:\n    hosts:\n      - web-1\n      - {host: web-2, path: /srv/b, env: {PORT: '8001'}}\n    path: /srv/a\n    env: {PORT: '8000'}\n",
    );
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let env = &p.config.unwrap().environments["prod"];
    assert_eq!(env.hosts, ["web-1", "web-2"]);
    assert_eq!(env.host_path["web-2"], "/srv/b");
    assert_eq!(env.host_env["web-2"]["PORT"], "8001");
    assert_eq!(env.settings.env["PORT"], "8000");
    assert_eq!(env.batch, 2);
    assert_eq!(env.settings.restore_database, RestoreDatabase::OnMigration);
}

#[test]
fn a_server_watches_each_host_at_its_health_url_seen_from_outside() {
    let env = |health: &str| {
        let p = parse(&format!(
            "app: a\nenvironments:\n  prod:\n    hosts:\n      - deploy@web-1.example.com\n      - {{host: 'ssh://deploy@10.0.0.2:2222', env: {{PORT: '8001'}}}}\n      - alias-3\n    path: /srv/a\n    env: {{PORT: '8000'}}\n{health}"
        ));
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        p.config.unwrap().environments["prod"].clone()
    };
    // Loopback becomes the host's name; the host's own variables fill the URL in.
    let e = env("    health: {url: 'http://127.0.0.1:${PORT}/health'}\n");
    let vars = e.settings.env.clone();
    // What ssh would say of the alias.
    let ssh = |h: &str| (h == "alias-3").then(|| "10.0.0.3".to_owned());
    let urls = |e: &Environment| e.monitor_urls(&e.settings.env, &ssh);
    assert_eq!(
        e.monitor_urls(&vars, &ssh),
        [
            (
                "deploy@web-1.example.com".to_owned(),
                "http://web-1.example.com:8000/health".to_owned()
            ),
            (
                "ssh://deploy@10.0.0.2:2222".to_owned(),
                "http://10.0.0.2:8001/health".to_owned()
            ),
            (
                "alias-3".to_owned(),
                "http://10.0.0.3:8000/health".to_owned()
            ),
        ]
    );
    assert_eq!(
        e.settings.health.as_ref().unwrap().monitor.interval_ms,
        60_000
    );
    // A URL that is not loopback is watched as it is, once.
    let e = env("    health: {url: 'http://app.internal/health'}\n");
    assert_eq!(urls(&e).len(), 1);
    assert_eq!(urls(&e)[0].1, "http://app.internal/health");
    // Its own URL and interval, or none.
    let e = env(
        "    health:\n      url: http://127.0.0.1:8000/\n      monitor: {url: 'https://app.example.com/health', interval: 30s}\n",
    );
    assert_eq!(
        urls(&e),
        [(String::new(), "https://app.example.com/health".to_owned())]
    );
    assert_eq!(
        e.settings.health.as_ref().unwrap().monitor.interval_ms,
        30_000
    );
    let e = env("    health:\n      url: http://127.0.0.1:8000/\n      monitor: false\n");
    assert!(urls(&e).is_empty());
    assert!(urls(&env("")).is_empty());
}

#[test]
fn a_bad_monitor_is_reported_where_it_is() {
    for (monitor, says) in [
        (
            "ftp://x/",
            "`health.monitor.url` `ftp://x/` is not an http:// or https:// URL",
        ),
        (
            "{interval: 10ms}",
            "`health.monitor.interval` is under a second",
        ),
        ("{every: 1m}", "unknown key `every` in `health.monitor`"),
        ("[1]", "`health.monitor` must be `false`, a URL"),
    ] {
        let p = parse(&format!(
            "app: a\nenvironments:\n  prod:\n    hosts: [h]\n    path: /srv/a\n    health:\n      url: http://127.0.0.1/\n      monitor: {monitor}\n"
        ));
        assert!(
            p.diagnostics.iter().any(|d| d.message.starts_with(says)),
            "{monitor}: {:?}",
            p.diagnostics
        );
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let p =
        parse("app: a\nenvironments:\n  s:\n    hosts: []\n    path: x\n    keep_releases: 0\n");
    assert!(p.config.is_none());
    let lines: Vec<u32> = p.diagnostics.iter().map(|d| d.span.start.line).collect();
    assert_eq!(lines, [4, 5, 6], "{:?}", p.diagnostics);
}

#[test]
fn hooks_have_a_timeout_of_their_own_or_thirty_minutes() {
    let env = |hooks: &str| {
        parse(&format!(
            "app: a\nenvironments:\n  s:\n    hosts: [h]\n    path: /srv/a\n    hooks: {hooks}\n"
        ))
    };
    let p = env("{migrate: m, timeout: 90s}");
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let hooks = &p.config.unwrap().environments["s"].settings.hooks;
    assert_eq!(hooks.timeout(), Duration::from_secs(90));
    let p = env("{migrate: m}");
    let hooks = &p.config.unwrap().environments["s"].settings.hooks;
    assert_eq!(hooks.timeout(), Duration::from_secs(30 * 60));
    for bad in ["{timeout: 0s}", "{timeout: soon}"] {
        let p = env(bad);
        assert!(p.config.is_none(), "{bad}");
        assert_eq!(p.diagnostics.len(), 1, "{bad}: {:?}", p.diagnostics);
        assert!(
            p.diagnostics[0].message.contains("`hooks.timeout`"),
            "{:?}",
            p.diagnostics
        );
        assert_eq!(p.diagnostics[0].span.start.line, 6, "{:?}", p.diagnostics);
    }
}

#[test]
fn a_compose_environment_names_its_file_project_and_images_to_build() {
    let p = parse(
        "app: Inner.Architect\nenvironments:\n  prod:\n    hosts: [web-1]\n    path: /srv/a\n    strategy: compose\n    services_to_build: [web, worker]\n    compose_drain: 6s\n",
    );
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let c = p.config.unwrap().environments["prod"]
        .settings
        .compose
        .clone()
        .unwrap();
    assert_eq!(c.file, "", "found in the release");
    assert_eq!(c.project, "innerarchitect-prod");
    assert_eq!(c.build, ["web", "worker"]);
    assert_eq!(c.drain_ms, 6000);
}

#[test]
fn compose_keys_without_the_strategy_and_bad_values_are_errors_where_they_stand() {
    let p = parse(
        "app: a\nenvironments:\n  prod:\n    hosts: [web-1]\n    path: /srv/a\n    compose_file: stack.yml\n  next:\n    hosts: [web-1]\n    path: /srv/b\n    strategy: kubernetes\n  last:\n    hosts: [web-1]\n    path: /srv/c\n    strategy: compose\n    compose_file: ../stack.yml\n    compose_project: Not Valid\n    services_to_build: ['web app']\n",
    );
    let text: Vec<String> = p
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}", d.span.start.line, d.message))
        .collect();
    assert_eq!(
        text,
        [
            "6:`compose_file` needs `strategy: compose`",
            "10:`strategy` `kubernetes` is not a deploy strategy",
            "15:`compose_file` must be relative paths inside the directory",
            "16:`compose_project` `Not Valid` is not a Compose project name",
            "17:`services_to_build` names `web app`, which is not a service name",
        ]
    );
    assert!(p.config.is_none());
}
