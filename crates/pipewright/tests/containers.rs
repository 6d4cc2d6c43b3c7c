//! Jobs in containers, services in Docker and `docker://` steps, on the machine's Docker
//! engine. Nothing is pulled: the image is built here from Debian's busybox-static
//! (`docker import` of a root filesystem), as a user without a registry would.

mod common;

use std::process::Command;
use std::sync::OnceLock;

use common::Repo;

const PUSH_MAIN: &str = "on:\n  push:\n    branches: [main]\n";

fn image() -> &'static str {
    common::busybox_image()
}

use common::docker;

fn repo_with(workflow: &str) -> Repo {
    let r = Repo::new();
    r.workflow("ci.yml", workflow);
    r.file("README.md", "hello\n");
    r.commit("init");
    r
}

/// The names of the containers (and networks) a run's log says it made.
fn made(log: &str) -> Vec<String> {
    log.split_whitespace()
        .filter(|w| w.starts_with("pipewright-") && w.len() > "pipewright-".len() + 8)
        .map(|w| w.trim_end_matches(['.', ',', ')']).to_owned())
        .collect()
}

fn assert_all_removed(log: &str) {
    let names = made(log);
    assert!(!names.is_empty(), "the log names no container: {log}");
    for name in names {
        assert!(
            !docker(&["container", "inspect", &name]).0,
            "container {name} outlived its job"
        );
        assert!(
            !docker(&["network", "inspect", &name]).0,
            "network {name} outlived its job"
        );
    }
    // The job's named volumes are `pipewright-<job's 12 hex>-<name>`.
    let (_, volumes) = docker(&["volume", "ls", "-q"]);
    for name in made(log) {
        let prefix: String = name.chars().take("pipewright-".len() + 12).collect();
        let left: Vec<&str> = volumes
            .split_whitespace()
            .filter(|v| v.starts_with(&format!("{prefix}-")))
            .collect();
        assert!(left.is_empty(), "volumes {left:?} outlived their job");
    }
}

#[test]
fn a_container_job_runs_its_steps_in_the_image_and_reaches_its_services_by_name() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    container:
      image: {image}
      env:
        GREETING: hi from the container
      volumes: ['shared:/shared']
      options: --cpus 1
    services:
      web:
        image: {image}
        volumes: ['shared:/shared']
        options: >-
          --health-cmd \"wget -qO- http://127.0.0.1/ >/dev/null\" --health-interval 1s --health-retries 30
    outputs:
      word: ${{{{ steps.out.outputs.word }}}}
    steps:
      - uses: actions/checkout@v4
      - name: Inside
        run: |
          cat /marker
          echo \"greeting: $GREETING\"
          echo \"workspace: $GITHUB_WORKSPACE\"
          echo \"pwd: $(pwd)\"
          cat README.md
          echo made-inside > inside.txt
          echo \"FROM_ENV=carried\" >> \"$GITHUB_ENV\"
          echo \"$PWD/tools\" >> \"$GITHUB_PATH\"
      - name: Service by name
        run: wget -qO- http://web/
      - id: out
        shell: sh
        run: |
          echo \"from env: $FROM_ENV\"
          echo \"word=contained\" >> \"$GITHUB_OUTPUT\"
          case \"$PATH\" in */tools:*) echo path-added;; esac
          echo \"container id: ${{{{ job.container.id }}}}\" | cut -c1-30
          echo \"network: ${{{{ job.services.web.network }}}}\"
  after:
    needs: test
    runs-on: ubuntu-latest
    steps:
      - run: echo \"word is ${{{{ needs.test.outputs.word }}}}\"
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("test");
    for want in [
        "inside the container",
        "greeting: hi from the container",
        "hello",
        "hello from the web service",
        "from env: carried",
        "path-added",
    ] {
        assert!(lines.contains(&want.to_owned()), "{want}\n{}", run.all());
    }
    // Mounted where GitHub mounts it: /__w/<repo>/<repo>, the steps' working directory.
    let ws = lines
        .iter()
        .find_map(|l| l.strip_prefix("workspace: /__w/"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    let (a, b) = ws.split_once('/').unwrap();
    assert_eq!(a, b, "{ws}");
    let ws = format!("/__w/{ws}");
    assert!(lines.contains(&format!("pwd: {ws}")), "{}", run.all());
    assert!(
        lines.iter().any(|l| l.starts_with("network: pipewright-")),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("after")
            .contains(&"word is contained".to_owned()),
        "{}",
        run.all()
    );
    // The service's log is kept with the job's (folded, as the terminal shows a job that
    // passed).
    assert!(
        run.all().contains("▸ Service `web`: its log ("),
        "{}",
        run.all()
    );
    assert_all_removed(&run.all());
}

#[test]
fn a_host_job_reaches_a_docker_service_on_its_published_port() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    services:
      web:
        image: {image}
        ports: ['80']
        options: --health-cmd \"wget -qO- http://127.0.0.1/\" --health-interval 1s --health-retries 30
    steps:
      - run: |
          port=${{{{ job.services.web.ports['80'] }}}}
          test -n \"$port\"
          python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/').read().decode().strip())\"
          test ! -e /marker && echo on-the-host
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("test");
    assert!(
        lines.contains(&"hello from the web service".to_owned()),
        "{}",
        run.all()
    );
    assert!(lines.contains(&"on-the-host".to_owned()), "{}", run.all());
    assert_all_removed(&run.all());
}

#[test]
fn a_service_that_never_gets_healthy_fails_the_job_with_its_last_lines() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    services:
      broken:
        image: {image}
        options: --health-cmd false --health-interval 1s --health-retries 2
    steps:
      - run: echo never
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    let all = run.all();
    assert!(
        all.contains("`services.broken`: its health check reports it unhealthy; its last lines:"),
        "{all}"
    );
    assert!(all.contains("web service starting"), "{all}");
    assert!(!all.contains("never\n"), "{all}");
    assert_all_removed(&all);
}

#[test]
fn docker_steps_run_the_image_with_inputs_args_and_the_workspace() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: d
        uses: docker://{image}
        with:
          greeting: hello docker
          args: sh -c \"cat README.md; echo \\\"$INPUT_GREETING in $(pwd)\\\"; echo made > made.txt; echo answer=42 >> $GITHUB_OUTPUT; test ! -e /var/run/docker.sock\"
      - run: |
          cat made.txt
          echo \"answer ${{{{ steps.d.outputs.answer }}}}\"
      - uses: docker://{image}
        with:
          entrypoint: /bin/false
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    let lines = run.lines_of("test");
    for want in [
        "hello",
        "hello docker in /github/workspace",
        "made",
        "answer 42",
    ] {
        assert!(lines.contains(&want.to_owned()), "{want}\n{}", run.all());
    }
    let steps = run.steps("test");
    assert_eq!(steps.last().unwrap().1, "failure", "{steps:?}");
    // A missing image is named, with how to get it without a registry.
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: docker://pipewright-test/absent:1
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    assert!(
        run.all().contains(
            "image `pipewright-test/absent:1` is not on this machine, and pulling it failed"
        ),
        "{}",
        run.all()
    );
    assert!(run.all().contains("docker load -i"), "{}", run.all());
}

#[test]
fn options_that_reach_the_host_are_refused_naming_the_key() {
    let image = image();
    for (options, key) in [
        (
            "container:\n      image: IMG\n      options: --privileged",
            "container.options",
        ),
        (
            "container:\n      image: IMG\n      volumes: ['/var/run/docker.sock:/var/run/docker.sock']",
            "container.volumes[0]",
        ),
        (
            "services:\n      db:\n        image: IMG\n        options: --network host",
            "services.db.options",
        ),
    ] {
        let r = repo_with(&format!(
            "{PUSH_MAIN}jobs:\n  test:\n    runs-on: ubuntu-latest\n    {}\n    steps:\n      - run: echo never\n",
            options.replace("IMG", image)
        ));
        let run = r.run(&[]);
        run.assert_code(1);
        assert!(run.all().contains(key), "{key}\n{}", run.all());
        assert!(
            !run.lines_of("test").contains(&"never".to_owned()),
            "{}",
            run.all()
        );
    }
}

#[test]
fn containers_left_by_a_killed_run_are_removed_by_the_next() {
    let image = image();
    // What a run killed with SIGKILL leaves: a labelled container whose owner is gone.
    let name = format!("pipewright-orphan{}", std::process::id());
    let (ok, out) = docker(&[
        "create",
        "--name",
        &name,
        "--label",
        "pipewright.owner=4194304:1",
        image,
    ]);
    assert!(ok, "{out}");
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    container: {image}
    steps:
      - run: cat /marker
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    assert!(
        !docker(&["container", "inspect", &name]).0,
        "the orphan is still there"
    );
}

#[test]
fn docker_actions_build_their_dockerfile_once_and_run_with_inputs() {
    let image = image();
    let r = Repo::new();
    r.file(
        ".github/actions/greet/action.yml",
        "name: greet
inputs:
  who:
    default: nobody
runs:
  using: docker
  image: Dockerfile
  args: ['hello, ${{ inputs.who }}']
  env:
    SHOUT: ${{ inputs.who }}!
",
    );
    r.file(
        ".github/actions/greet/Dockerfile",
        // Unique content: this test builds the image afresh.
        &format!(
            "# {:?}\nFROM {image}\nCOPY entry.sh /entry.sh\nENTRYPOINT [\"/entry.sh\"]\n",
            std::time::SystemTime::now()
        ),
    );
    r.file(
        ".github/actions/greet/entry.sh",
        "#!/bin/sh\necho \"$1 ($INPUT_WHO, $SHOUT)\"\necho \"said=$1\" >> \"$GITHUB_OUTPUT\"\n",
    );
    std::fs::set_permissions(
        r.path().join(".github/actions/greet/entry.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    r.file(
        ".github/actions/image/action.yml",
        &format!(
            "name: image\nruns:\n  using: docker\n  image: docker://{image}\n  entrypoint: cat\n  args: [/marker]\n"
        ),
    );
    r.workflow(
        "ci.yml",
        &format!(
            "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: g
        uses: ./.github/actions/greet
        with:
          who: world
      - run: echo \"output ${{{{ steps.g.outputs.said }}}}\"
      - uses: ./.github/actions/image
"
        ),
    );
    r.commit("init");
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("test");
    for want in [
        "hello, world (world, world!)",
        "output hello, world",
        "inside the container",
    ] {
        assert!(lines.contains(&want.to_owned()), "{want}\n{}", run.all());
    }
    let built = run
        .all()
        .split_whitespace()
        .find(|w| w.starts_with("pipewright-action:"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no build in the log\n{}", run.all()));
    // Built once per content: the second run reuses the image.
    let again = r.run(&[]);
    again.assert_code(0);
    assert!(
        !again.all().contains("Building Dockerfile of"),
        "{}",
        again.all()
    );
    assert!(docker(&["rmi", &built]).0);
}

const POSTGRES: &str = "pipewright-test/postgres:15";

/// A PostgreSQL image made of this machine's server binaries (tests/data/images).
fn postgres_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if docker(&["image", "inspect", POSTGRES]).0 {
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/images/postgres.sh");
        let out = Command::new(script).arg(POSTGRES).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    POSTGRES
}

/// The seed's test job: a PostgreSQL service with its health options, a step that connects
/// and migrates; once on the host (the port published), once in a container (by name).
#[test]
fn the_seed_s_test_job_gets_its_postgres_service_in_docker() {
    let pg = postgres_image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    services:
      postgres:
        image: {pg}
        env:
          POSTGRES_USER: app
          POSTGRES_PASSWORD: s3cret
          POSTGRES_DB: app_test
        ports: ['5432']
        options: >-
          --health-cmd pg_isready --health-interval 1s --health-timeout 5s --health-retries 30
    steps:
      - name: Migrate
        env:
          PGPASSWORD: s3cret
          DATABASE_URL: postgresql://app:s3cret@127.0.0.1:${{{{ job.services.postgres.ports['5432'] }}}}/app_test
        run: |
          psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -c 'create table users (id serial primary key, name text)'
          psql \"$DATABASE_URL\" -tAc \"insert into users (name) values ('ada') returning id\"
  in-container:
    runs-on: ubuntu-latest
    container: {pg}
    services:
      db:
        image: {pg}
        env:
          POSTGRES_PASSWORD: s3cret
        options: --health-cmd pg_isready --health-interval 1s --health-retries 30
    steps:
      - env:
          PGPASSWORD: s3cret
        run: psql -h db -U postgres -tAc 'select 40 + 2'
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    assert!(
        run.lines_of("test").contains(&"1".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("in-container").contains(&"42".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        run.all()
            .contains("Starting service `postgres` (pipewright-test/postgres:15) in Docker"),
        "{}",
        run.all()
    );
    assert_all_removed(&run.all());
}

/// A job's container killed under a running step: the step fails saying so, the job's
/// later steps fail, and nothing the job made is left.
#[test]
fn a_container_killed_during_a_step_fails_the_job_and_leaves_nothing() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}name: faults
jobs:
  victim:
    runs-on: ubuntu-latest
    container: {image}
    steps:
      - run: echo started; sleep 60
      - if: always()
        run: echo after
  killer:
    runs-on: ubuntu-latest
    steps:
      - run: |
          for i in $(seq 100); do
            id=$(docker ps -q --filter label=pipewright.job=faults/victim)
            if [ -n \"$id\" ]; then sleep 1; docker kill $id; exit 0; fi
            sleep 0.2
          done
          exit 1
"
    ));
    let started = std::time::Instant::now();
    let run = r.run(&[]);
    run.assert_code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "the killed step was waited for"
    );
    assert_eq!(run.conclusion("killer"), "success", "{}", run.all());
    assert_eq!(run.conclusion("victim"), "failure", "{}", run.all());
    let steps = run.steps("victim");
    assert_eq!(steps[0].1, "failure", "{}", run.all());
    assert_eq!(steps[1].1, "failure", "{}", run.all());
    assert!(
        run.all()
            .contains("the job's container is not running: it exited with code 137"),
        "{}",
        run.all()
    );
    assert_all_removed(&run.all());
}

/// `--image LABEL=IMAGE` (act's `-P`): jobs of that label run in a container of the image,
/// unless they name their own; other labels, and `host`, run on this machine.
#[test]
fn runs_on_labels_map_to_images() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  mapped:
    runs-on: ubuntu-latest
    steps:
      - run: cat /marker
  own:
    runs-on: ubuntu-latest
    container: {POSTGRES}
    steps:
      - run: test -x /docker-entrypoint.sh && echo own-container
  elsewhere:
    runs-on: [self-hosted, linux]
    steps:
      - run: test ! -e /marker && echo on-the-host
  windows:
    runs-on: windows-latest
    steps:
      - run: cat /marker
"
    ));
    postgres_image();
    let arg = format!("ubuntu-latest={image}");
    let win = format!("windows-latest={image}");
    let run = r.run(&["--image", &arg, "-P", &win]);
    run.assert_code(0);
    assert!(
        run.lines_of("mapped")
            .contains(&"inside the container".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("own").contains(&"own-container".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("elsewhere")
            .contains(&"on-the-host".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("windows")
            .contains(&"inside the container".to_owned()),
        "{}",
        run.all()
    );
    // `host` keeps a label on this machine; a pair without an image is an error.
    let host = r.run(&["-P", "ubuntu-latest=host", "--job", "mapped"]);
    host.assert_code(1);
    assert!(host.all().contains("No such file"), "{}", host.all());
    let bad = r.run(&["-P", "ubuntu-latest="]);
    bad.assert_code(2);
    assert!(
        bad.all()
            .contains("--image `ubuntu-latest=` names no image"),
        "{}",
        bad.all()
    );
}

/// Ctrl-C during a step in a container: the step stops, the run ends cancelled, and nothing
/// the job made is left.
#[test]
fn a_cancelled_container_job_leaves_nothing() {
    use std::io::BufRead;
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  slow:
    runs-on: ubuntu-latest
    container: {image}
    services:
      web:
        image: {image}
    steps:
      - run: echo sleeping; sleep 60
"
    ));
    let mut child = r
        .command()
        .arg("run")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut seen = String::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.ends_with("sleeping") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "{seen}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the cancelled step was waited for\n{seen}"
    );
    assert!(seen.contains("cancelled"), "{seen}");
    assert_all_removed(&seen);
}

/// The default shell in a container is bash where the image has it, else sh (GitHub's
/// rule), asked when the step runs.
#[test]
fn the_default_shell_in_a_container_is_bash_where_the_image_has_it() {
    let image = image();
    let with_bash = "pipewright-test/with-bash:1";
    let dockerfile = format!(
        "FROM {image}\nRUN printf '#!/bin/sh\\necho via-bash\\nexec sh \"$@\"\\n' > /bin/bash && chmod 755 /bin/bash\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let (ok, out) = docker(&[
        "build",
        "-q",
        "-t",
        with_bash,
        &dir.path().display().to_string(),
    ]);
    assert!(ok, "{out}");
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  bash:
    runs-on: ubuntu-latest
    container: {with_bash}
    steps:
      - run: echo step ran
  sh:
    runs-on: ubuntu-latest
    container: {image}
    steps:
      - run: echo step ran
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    assert_eq!(
        run.lines_of("bash")
            .iter()
            .filter(|l| *l == "via-bash" || *l == "step ran")
            .collect::<Vec<_>>(),
        ["via-bash", "step ran"],
        "{}",
        run.all()
    );
    assert!(
        !run.lines_of("sh").contains(&"via-bash".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("sh").contains(&"step ran".to_owned()),
        "{}",
        run.all()
    );
}

/// A container job's step files (its scripts, the agent's with the step's environment, its
/// file-command files) are the job's user's alone where the container's user can use them
/// (root in the container): a secret in them is no other local user's to read. In a
/// container of another user they stay readable by all, and its steps still run.
#[test]
fn a_container_job_s_step_files_are_its_user_s_alone_where_the_container_s_user_can_use_them() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  root:
    runs-on: ubuntu-latest
    container: {image}
    steps:
      - id: s
        run: |
          echo \"modes: $(stat -c %a \"$0\" \"$GITHUB_OUTPUT\" \"$GITHUB_ENV\" \"$RUNNER_TEMP\"/agent-*.sh | sort -u | tr '\\n' ' ')\"
          echo answer=42 >> \"$GITHUB_OUTPUT\"
      - run: echo \"output=${{{{ steps.s.outputs.answer }}}}\"
  other:
    runs-on: ubuntu-latest
    container:
      image: {image}
      options: --user 4321:4321
    steps:
      - run: |
          echo \"modes: $(stat -c %a \"$0\" \"$RUNNER_TEMP\"/agent-*.sh | sort -u | tr '\\n' ' ')\"
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    let has = |job: &str, line: &str| run.lines_of(job).iter().any(|l| l.trim() == line);
    assert!(has("root", "modes: 600"), "{}", run.all());
    assert!(has("root", "output=42"), "{}", run.all());
    assert!(has("other", "modes: 644"), "{}", run.all());
}

/// A container job's steps are started by its agent (a shell kept running in the container,
/// not an `exec` of the engine each): exit codes, output without a final newline, a step
/// past its timeout stopped and the next one still started, and a background step beside a
/// foreground one (one of them gets an `exec` of its own).
#[test]
fn a_container_job_s_steps_are_started_by_its_agent_and_stopped_by_their_timeout() {
    let image = image();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  j:
    runs-on: ubuntu-latest
    container: {image}
    steps:
      - run: |
          echo \"parent: $(tr '\\0' ' ' < /proc/$PPID/cmdline)\"
          printf 'no newline at the end'
      - id: three
        continue-on-error: true
        run: exit 3
      - timeout-minutes: 0.02
        run: sleep 30
      - if: always()
        run: echo \"after the timeout=${{{{ steps.three.outcome }}}}\"
      - id: side
        if: always()
        background: true
        run: sleep 0.5; echo beside
      - if: always()
        run: echo in front
      - if: always()
        wait: side
"
    ));
    let started = std::time::Instant::now();
    let run = r.run(&[]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("j"), "failure", "{}", run.all());
    let lines = run.lines_of("j");
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(has("parent: sh -c"), "{}", run.all());
    assert!(has("pipewright-agent"), "{}", run.all());
    assert!(has("no newline at the end"), "{}", run.all());
    assert!(has("The step has timed out."), "{}", run.all());
    assert!(has("after the timeout=failure"), "{}", run.all());
    assert!(has("in front") && has("beside"), "{}", run.all());
    let steps = run.steps("j");
    assert_eq!(steps[1], ("failure".into(), "success".into()), "{steps:?}");
    assert_eq!(steps[2].1, "failure", "{steps:?}");
    assert_all_removed(&run.all());
}

/// A Docker engine of the test's own, in a network namespace of its own (`unshare -n`): it
/// can be stopped and started again without touching the machine's engine or its network.
/// Stopped, and its files removed, when dropped.
struct PrivateEngine {
    dir: tempfile::TempDir,
    daemon: Option<std::process::Child>,
    host: String,
}

impl PrivateEngine {
    fn start() -> PrivateEngine {
        let dir = tempfile::tempdir().unwrap();
        // The machine's storage driver (this machine's kernel may lack overlayfs).
        let (_, driver) = docker(&["info", "--format", "{{.Driver}}"]);
        std::fs::write(
            dir.path().join("daemon.json"),
            serde_json::json!({ "storage-driver": driver.trim() }).to_string(),
        )
        .unwrap();
        let host = format!("unix://{}", dir.path().join("docker.sock").display());
        let mut e = PrivateEngine {
            dir,
            daemon: None,
            host,
        };
        e.start_daemon();
        e
    }

    fn start_daemon(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(d.join("log"))
            .unwrap();
        let child = Command::new("unshare")
            .arg("-n")
            .arg("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .args(["--host", &self.host])
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .args(["--shutdown-timeout", "2"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        self.daemon = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.docker(&["info"]).0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the private Docker engine did not start:\n{}",
                std::fs::read_to_string(d.join("log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Stops the engine as a restart does (SIGTERM: it stops its containers and exits).
    fn stop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn docker(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .output()
            .expect("the docker client runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Its containers, networks and volumes by name, sorted (a restart gives Docker's own
    /// `bridge` network a new id).
    fn objects(&self) -> Vec<String> {
        let mut all = Vec::new();
        for args in [
            &["ps", "-a", "--format", "container {{.Names}}"][..],
            &["network", "ls", "--format", "network {{.Name}}"],
            &["volume", "ls", "--format", "volume {{.Name}}"],
        ] {
            let (ok, out) = self.docker(args);
            assert!(ok, "docker {args:?}");
            all.extend(out.lines().map(str::to_owned));
        }
        all.sort();
        all
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Docker engine restarted while a container job's step runs: the job fails saying what
/// happened, nothing panics, and once the engine is back nothing of the job is left (the
/// next run removes what the failed one could not).
#[test]
fn the_docker_engine_restarted_mid_job_fails_the_job_clearly_and_leaves_nothing() {
    let image = image();
    let mut engine = PrivateEngine::start();
    let mut save = Command::new("docker")
        .args(["save", image])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let loaded = Command::new("docker")
        .args(["-H", &engine.host, "load", "-q"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success() && loaded.status.success());
    let before = engine.objects();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  victim:
    runs-on: ubuntu-latest
    container: {image}
    services:
      web:
        image: {image}
    steps:
      - run: echo started; sleep 60
      - if: always()
        run: echo after
"
    ));
    let report = r.path().join(".git/report.json");
    let child = r
        .command()
        .env("DOCKER_HOST", &engine.host)
        .args(["run", "--report"])
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, running) = engine.docker(&["ps", "-q", "--filter", "label=pipewright.job"]);
        if running.lines().count() >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job's containers never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    engine.stop();
    engine.start_daemon();
    let out = child.wait_with_output().unwrap();
    let run = common::Run::new(out, &report);
    run.assert_code(1);
    assert!(!run.all().contains("panicked"), "{}", run.all());
    assert_eq!(run.conclusion("victim"), "failure", "{}", run.all());
    let said = run.all();
    assert!(
        said.contains("the Docker engine does not answer")
            || said.contains("the job's container is not running")
            || said.contains("is gone"),
        "the failure does not say the engine went away:\n{said}"
    );
    // What the failed run could not remove while the engine was away, the next run does.
    let next = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  next:
    runs-on: ubuntu-latest
    container: {image}
    steps:
      - run: echo next
"
    ));
    let out = next
        .command()
        .env("DOCKER_HOST", &engine.host)
        .arg("run")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(engine.objects(), before, "{}", run.all());
}
