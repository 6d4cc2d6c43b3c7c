//! `strategy: compose`: a Compose stack deployed over a real sshd to this machine's Docker
//! engine, with its web image built by the deployer and shipped in the release (no
//! registry), a database whose named volume outlives every release, a release that fails its
//! health check and is rolled back automatically, and a rollback by hand.

mod common;
mod deploy_support;
mod serve_support;

use std::path::PathBuf;

use deploy_support::compose::{Stack, docker_user};
use deploy_support::{App, get};

fn project_of(app: &App) -> String {
    format!("pwtest-{}", app.port)
}

/// A deploy.yml for the stack: the web image built here, a database dump taken inside the
/// database's container before each migration.
fn compose_app() -> (App, Stack) {
    common::busybox_image();
    let sections = "    hooks:\n      migrate: $PIPEWRIGHT_COMPOSE run --rm -T db sh -c 'echo \"$PIPEWRIGHT_RELEASE\" >> /data/migrations'\n    backup:\n      database_dump: $PIPEWRIGHT_COMPOSE exec -T db cat /data/migrations > \"$PIPEWRIGHT_BACKUP_DIR/db.txt\" || true\n      database_restore: $PIPEWRIGHT_COMPOSE exec -T db sh -c 'cat > /data/migrations' < \"$PIPEWRIGHT_BACKUP_DIR/db.txt\"\n";
    // The host makes the user; then it may use Docker.
    let app = App::with_sections(sections, "");
    docker_user();
    let project = project_of(&app);
    let yml = app.repo.path().join(".pipewright/deploy.yml");
    let text = std::fs::read_to_string(&yml).unwrap().replace(
        "    keep_releases: 3\n",
        &format!(
            "    keep_releases: 3\n    strategy: compose\n    compose_project: {project}\n    services_to_build: [web]\n"
        ),
    );
    std::fs::write(&yml, text).unwrap();
    (app, Stack::new(project))
}

const COMPOSE: &str = r#"version: "3.8"
services:
  web:
    build: ./web
    ports: ["127.0.0.1:${PORT}:8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 1s
      timeout: 2s
      retries: 3
    depends_on: [db]
    stop_grace_period: 1s
  db:
    image: pipewright-test/busybox:1
    command: ["sh", "-c", "test -f /data/created || date > /data/created; exec sleep 100000"]
    volumes: ["dbdata:/data"]
    stop_grace_period: 1s
volumes:
  dbdata: {}
"#;

/// The stack's release: `web` serving `version` (and `cmd` as its command, if given).
fn artifact(app: &App, version: &str, cmd: Option<&str>) -> PathBuf {
    let dir = app.artifacts.path().join(version);
    let web = dir.join("web");
    std::fs::create_dir_all(web.join("www")).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), COMPOSE).unwrap();
    std::fs::write(
        web.join("www/health"),
        format!("{{\"status\": \"ok\", \"version\": \"{version}\"}}\n"),
    )
    .unwrap();
    // A layer that is the same in every release: a redeploy must not send it again.
    std::fs::write(web.join("big.bin"), vec![7u8; 2 << 20]).unwrap();
    let cmd = cmd.unwrap_or(r#"["httpd", "-f", "-p", "8080", "-h", "/www"]"#);
    std::fs::write(
        web.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY big.bin /big.bin\nCOPY www /www\nCMD {cmd}\n",
            common::busybox_image()
        ),
    )
    .unwrap();
    dir
}

fn db_file(stack: &Stack, file: &str) -> String {
    stack.exec("db", &["cat", &format!("/data/{file}")])
}

fn served(app: &App) -> Option<String> {
    let (status, body) = get(app.port, "/health")?;
    (status == 200).then_some(body)
}

#[test]
fn a_compose_stack_deploys_keeps_its_volume_rolls_back_when_unhealthy_and_by_hand() {
    let (app, stack) = compose_app();
    let d = app.deploy(&artifact(&app, "1.0.0", None));
    d.code(0);
    assert!(d.stderr.contains("local: built `web` as"), "{}", d.stderr);
    assert!(d.stderr.contains("RESTART     ok"), "{}", d.stderr);
    assert!(d.stderr.contains("HEALTHCHECK ok"), "{}", d.stderr);
    assert!(served(&app).unwrap().contains("1.0.0"));
    let created = db_file(&stack, "created");
    assert!(!created.is_empty());
    let first = app.current().unwrap();
    let tag1 = deploy::compose::release_images(&app.path().join("releases").join(&first));
    assert_eq!(tag1.len(), 1, "{tag1:?}");
    assert!(tag1[0].starts_with(&format!("{}-web:", stack.project)));

    // The second release: a new web image; its unchanged layers are not sent again.
    let d = app.deploy(&artifact(&app, "2.0.0", None));
    d.code(0);
    // "sent N files (B bytes), ..."
    let sent: u64 = d
        .stderr
        .lines()
        .find_map(|l| l.split(" files (").nth(1))
        .and_then(|rest| rest.split(" bytes").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {}", d.stderr));
    assert!(sent < 1 << 20, "sent {sent} bytes:\n{}", d.stderr);
    assert!(served(&app).unwrap().contains("2.0.0"));
    // The database kept its volume, and the migration ran in its container each time.
    assert_eq!(db_file(&stack, "created"), created);
    let migrations = db_file(&stack, "migrations");
    assert_eq!(migrations.lines().count(), 2, "{migrations}");
    let second = app.current().unwrap();

    // A release whose web service dies: rolled back, the previous one serves again.
    let d = app.deploy(&artifact(
        &app,
        "3.0.0",
        Some(r#"["sh", "-c", "echo this release cannot start; exit 3"]"#),
    ));
    d.code(3);
    assert!(
        d.stderr.contains("HEALTHCHECK FAILED")
            && d.stderr.contains("service `web` exited with code 3"),
        "{}",
        d.stderr
    );
    assert!(
        d.stderr.contains("this release cannot start"),
        "{}",
        d.stderr
    );
    assert!(d.stderr.contains("rolled back to"), "{}", d.stderr);
    assert_eq!(app.current().unwrap(), second);
    assert!(served(&app).unwrap().contains("2.0.0"));
    assert_eq!(db_file(&stack, "created"), created);
    // The database as it was before the failed release's migration.
    assert_eq!(db_file(&stack, "migrations"), migrations);

    // By hand, back to the first release.
    let d = app.run(&["rollback", "staging", "--to", &first]);
    d.code(0);
    assert_eq!(app.current().unwrap(), first);
    assert!(served(&app).unwrap().contains("1.0.0"));
    let r = app.releases_json();
    let list = r[0]["releases"].as_array().unwrap();
    let status = |id: &str| {
        list.iter()
            .find(|x| x["id"] == id)
            .map(|x| x["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status(&first).as_deref(), Some("current"));
    assert_eq!(status(&second).as_deref(), Some("rolled_back"));
    // One volume, the database's, whatever happened.
    let (_, volumes) = common::docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.project),
    ]);
    assert_eq!(
        volumes.split_whitespace().collect::<Vec<_>>(),
        [format!("{}_dbdata", stack.project)]
    );
}

#[test]
fn a_compose_file_with_errors_or_a_missing_image_fails_before_anything_changes() {
    let (app, stack) = compose_app();
    let good = artifact(&app, "1.0.0", None);
    app.deploy(&good).code(0);
    let live = app.current().unwrap();
    let label = stack.label();
    let containers = || common::docker(&["ps", "-aq", "--filter", &label]).1;
    let before = containers();

    let broken = artifact(&app, "2.0.0", None);
    std::fs::write(
        broken.join("docker-compose.yml"),
        COMPOSE.replace(
            "    build: ./web\n",
            "    build: ./web\n    restart_when: sometimes\n",
        ),
    )
    .unwrap();
    let d = app.deploy(&broken);
    d.code(1);
    assert!(d.stderr.contains("PREPARE     FAILED"), "{}", d.stderr);
    assert!(
        d.stderr
            .contains("config` finds the compose file `docker-compose.yml` invalid"),
        "{}",
        d.stderr
    );

    let missing = artifact(&app, "3.0.0", None);
    std::fs::write(
        missing.join("docker-compose.yml"),
        COMPOSE.replace(
            "image: pipewright-test/busybox:1",
            "image: pipewright-test/nowhere:9",
        ),
    )
    .unwrap();
    let d = app.deploy(&missing);
    d.code(1);
    assert!(
        d.stderr
            .contains("`db` needs the image pipewright-test/nowhere:9, which is not on this host"),
        "{}",
        d.stderr
    );

    let unbuildable = artifact(&app, "4.0.0", None);
    std::fs::write(
        unbuildable.join("web/Dockerfile"),
        "FROM pipewright-test/nowhere:9\n",
    )
    .unwrap();
    let d = app.deploy(&unbuildable);
    d.code(1);
    assert!(
        d.stderr.contains("building the image of `web` failed"),
        "{}",
        d.stderr
    );

    // The images the failed releases brought went with them: the live release's remains.
    let (_, images) = common::docker(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("reference={}-web", stack.project),
    ]);
    let live_images = deploy::compose::release_images(&app.path().join("releases").join(&live));
    assert_eq!(
        images.split_whitespace().collect::<Vec<_>>(),
        live_images.iter().map(String::as_str).collect::<Vec<_>>()
    );
    // Nothing changed: the same release, the same containers, still serving.
    assert_eq!(app.current().unwrap(), live);
    assert_eq!(containers(), before);
    let h = app.history();
    assert!(h[1..].iter().all(|e| e["result"] == "failed"), "{h:?}");
    assert!(served(&app).unwrap().contains("1.0.0"));
}

/// A Compose deploy is recorded on a server like any other: its outcome, its release.
#[test]
fn a_compose_deploy_is_recorded_on_the_server_with_its_outcome() {
    let (app, _stack) = compose_app();
    let s = serve_support::Server::start();
    let deploy = |version: &str, cmd: Option<&str>| {
        let dir = artifact(&app, version, cmd);
        app.pipewright()
            .args(["deploy", "staging", "--artifact", dir.to_str().unwrap()])
            .args([
                "--version",
                version,
                "--server",
                &s.url,
                "--repo",
                "acme/app",
            ])
            .env("PIPEWRIGHT_TOKEN", serve_support::TOKEN)
            .output()
            .unwrap()
    };
    let out = deploy("v1", None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("recorded on"), "{err}");
    let out = deploy("v2", Some(r#"["sh", "-c", "exit 4"]"#));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, body) = serve_support::request_bytes(
        &s.url,
        "GET",
        "/api/v1/environments/acme%2Fapp/staging/deployments",
        &[("Authorization", format!("Bearer {}", serve_support::TOKEN))],
        b"",
    );
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let deployments = list["deployments"].as_array().unwrap();
    let by_version = |v: &str| {
        deployments
            .iter()
            .find(|d| d["version"] == v)
            .unwrap_or_else(|| panic!("{v} in {text}"))
    };
    assert_eq!(by_version("v1")["status"], "deployed", "{text}");
    assert_eq!(by_version("v2")["status"], "rolled_back", "{text}");
    assert!(served(&app).unwrap().contains("v1"));
}
