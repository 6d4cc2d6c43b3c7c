//! The example's whole stack (examples/inner-architect/docker-compose.yml: web, PostgreSQL,
//! Nginx, Redis, a Celery worker and Flower) deployed with its own `.pipewright/deploy.yml`
//! over a real sshd to this machine's Docker engine, its images built from
//! `docker/base.sh`'s base: served through Nginx, a job run by the worker, a release that
//! fails its health check rolled back automatically, and a rollback by hand, the database's
//! rows kept throughout.

mod common;
mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deploy_support::compose::{Stack, docker_user};
use deploy_support::{App, get};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/inner-architect"
);

fn base_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if common::docker(&["image", "inspect", "inner-architect/base:2"]).0 {
            return;
        }
        let out = Command::new("sh")
            .arg(Path::new(EXAMPLE).join("docker/base.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker/base.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A copy of the example as release `version`, changed by `edit`.
fn release(app: &App, version: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = app.artifacts.path().join(version);
    let out = Command::new("cp")
        .args(["-a", EXAMPLE])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(out.success());
    std::fs::write(
        dir.join("inner_architect/__init__.py"),
        format!("__version__ = \"{version}\"\n"),
    )
    .unwrap();
    edit(&dir);
    dir
}

/// A statement run by `psql` in the stack's database container; its rows, unaligned.
fn sql(stack: &Stack, query: &str) -> String {
    stack.exec(
        "db",
        &["psql", "-U", "app", "-d", "app", "-A", "-t", "-c", query],
    )
}

fn health(app: &App) -> serde_json::Value {
    let (status, body) = get(app.port, "/health").expect("nginx answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_inner_architect_stack_deploys_fails_rolls_back_and_keeps_its_data() {
    base_image();
    let app = App::new("");
    docker_user();
    let project = format!("inner-architect-t{}", app.port);
    // The example's own deploy.yml, pointed at the test's host, path and port.
    let yml = std::fs::read_to_string(Path::new(EXAMPLE).join(".pipewright/deploy.yml"))
        .unwrap()
        .replace(
            "    hosts: [docker-host]\n",
            &format!("    hosts: [staging-1]\n    compose_project: {project}\n"),
        )
        .replace(
            "/var/www/innerarchitect/docker",
            &app.path().to_string_lossy(),
        )
        .replace(
            "HTTP_PORT: \"8080\"",
            &format!("HTTP_PORT: \"{}\"", app.port),
        );
    std::fs::write(app.repo.path().join(".pipewright/deploy.yml"), yml).unwrap();
    std::fs::write(
        app.repo.path().join("deploy/docker.env"),
        "POSTGRES_PASSWORD=stack-secret\nANTHROPIC_API_KEY=sk-test\n",
    )
    .unwrap();
    let stack = Stack::new(project);
    let deploy = |dir: &Path| app.run(&["deploy", "docker", "--artifact", dir.to_str().unwrap()]);

    let v1 = release(&app, "1.0.0", |_| {});
    let d = deploy(&v1);
    d.code(0);
    for role in ["web", "worker", "flower", "nginx"] {
        assert!(
            d.stderr.contains(&format!("built `{role}` as")),
            "{}",
            d.stderr
        );
    }
    assert!(
        d.stderr.contains("[migrate] applied 001_reflections.sql"),
        "{}",
        d.stderr
    );
    let h = health(&app);
    assert_eq!(h["version"], "1.0.0");
    assert_eq!(h["database"], "ok");
    assert_eq!(h["schema"], serde_json::json!(["001_reflections.sql"]));
    // The worker takes jobs from Redis; Flower answers behind Nginx; the secrets arrived.
    let words = stack.exec(
        "web",
        &[
            "python3",
            "-c",
            "from inner_architect.tasks import reflect; print(reflect.delay('know thy self').get(timeout=30))",
        ],
    );
    assert_eq!(words.trim(), "3");
    let (status, _) = get(app.port, "/flower/").expect("flower answers");
    assert_eq!(status, 200);
    assert_eq!(
        stack
            .exec("web", &["sh", "-c", "echo \"$ANTHROPIC_API_KEY\""])
            .trim(),
        "sk-test"
    );
    sql(
        &stack,
        "INSERT INTO reflections (id, body) VALUES (1, 'kept')",
    );
    let first = app.current().unwrap();

    // A release with a second migration.
    let v2 = release(&app, "2.0.0", |d| {
        std::fs::write(
            d.join("inner_architect/migrations/002_moods.sql"),
            "CREATE TABLE moods (id INTEGER PRIMARY KEY);\n",
        )
        .unwrap();
    });
    // Requests through Nginx all along the deploy: web is replaced without downtime.
    let stop = AtomicBool::new(false);
    let (answered, failed) = std::thread::scope(|sc| {
        let poller = sc.spawn(|| {
            let mut answered = 0;
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match get(app.port, "/") {
                    Some((200, _)) => answered += 1,
                    other => failed.push(other),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (answered, failed)
        });
        let d = deploy(&v2);
        stop.store(true, Ordering::Relaxed);
        d.code(0);
        assert!(
            d.stderr.contains("`web` replaced without downtime"),
            "{}",
            d.stderr
        );
        poller.join().unwrap()
    });
    assert!(
        failed.is_empty(),
        "{} answered, failed: {failed:?}",
        answered
    );
    assert!(answered > 20, "{answered}");
    let h = health(&app);
    assert_eq!(h["version"], "2.0.0");
    assert_eq!(
        h["schema"],
        serde_json::json!(["001_reflections.sql", "002_moods.sql"])
    );

    // A release whose web service never turns healthy: rolled back, database restored.
    let v3 = release(&app, "3.0.0", |d| {
        let p = d.join("inner_architect/app.py");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            text.replace("{\"status\": \"ok\"", "{\"status\": \"broken\""),
        )
        .unwrap();
        std::fs::write(
            d.join("inner_architect/migrations/003_broken.sql"),
            "CREATE TABLE broken (id INTEGER PRIMARY KEY);\n",
        )
        .unwrap();
    });
    let d = deploy(&v3);
    d.code(3);
    assert!(
        d.stderr.contains("service `web` is unhealthy"),
        "{}",
        d.stderr
    );
    assert!(d.stderr.contains("rolled back to"), "{}", d.stderr);
    let h = health(&app);
    assert_eq!(h["version"], "2.0.0");
    assert_eq!(
        h["schema"],
        serde_json::json!(["001_reflections.sql", "002_moods.sql"])
    );

    // By hand, back to the first release; the row written under it is still there.
    app.run(&["rollback", "docker", "--to", &first]).code(0);
    assert_eq!(health(&app)["version"], "1.0.0");
    let rows = sql(&stack, "SELECT body FROM reflections");
    assert_eq!(rows.trim(), "kept");
    let (_, volumes) = common::docker(&["volume", "ls", "-q", "--filter", &stack.label()]);
    let mut volumes: Vec<&str> = volumes.split_whitespace().collect();
    volumes.sort_unstable();
    assert_eq!(
        volumes,
        [
            format!("{}_pgdata", stack.project),
            format!("{}_redisdata", stack.project)
        ]
    );
}
