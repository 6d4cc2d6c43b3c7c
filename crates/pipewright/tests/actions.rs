//! Built-in actions against real tools: ssh-agent and ssh-add, a real HTTP endpoint for Slack,
//! the host's Python interpreters, coverage reports.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;

use common::Repo;

const PUSH: &str = "on: push\n";

fn repo_with(workflow: &str) -> Repo {
    let r = Repo::new();
    r.workflow("ci.yml", workflow);
    r.file("README.md", "hello\n");
    r.commit("init");
    r
}

#[test]
fn ssh_agent_loads_the_key_for_later_steps() {
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("ssh-keygen not installed");
        return;
    }
    let keydir = tempfile::tempdir().unwrap();
    let key = keydir.path().join("id");
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "pipewright-test",
            "-f",
        ])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let private = std::fs::read_to_string(&key).unwrap();
    let r = repo_with(&format!(
        "{PUSH}jobs:
  a:
    runs-on: x
    steps:
      - uses: webfactory/ssh-agent@v0.9.0
        with:
          ssh-private-key: ${{{{ secrets.SSH_PRIVATE_KEY }}}}
      - run: ssh-add -l | grep -c pipewright-test
      - run: echo \"pid $SSH_AGENT_PID\" && test -S \"$SSH_AUTH_SOCK\"
"
    ));
    let secrets = r.path().join(".git/secrets.env");
    std::fs::write(
        &secrets,
        format!("SSH_PRIVATE_KEY=\"{}\"\n", private.replace('\n', "\\n")),
    )
    .unwrap();
    let run = r.run(&["--secrets-file", secrets.to_str().unwrap()]);
    run.assert_code(0);
    assert!(run.lines_of("a").contains(&"1".to_owned()), "{}", run.all());
    assert!(!run.stdout.contains("PRIVATE KEY-----\n"), "{}", run.all());
    // The agent is stopped after the job.
    let pid: i32 = run
        .lines_of("a")
        .iter()
        .find_map(|l| l.strip_prefix("pid ").map(|p| p.parse().unwrap()))
        .expect("pid printed");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains("State:\tZ"),
        "agent {pid} still running"
    );
}

/// A one-request HTTP server that records the request body.
fn record_one_request() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        String::from_utf8(body).unwrap()
    });
    (url, handle)
}

#[test]
fn slack_action_posts_the_payload() {
    let (url, server) = record_one_request();
    let r = repo_with(&format!(
        "{PUSH}jobs:
  a:
    runs-on: x
    steps:
      - run: exit 1
      - if: failure()
        uses: slackapi/slack-github-action@v1
        with:
          payload: |
            {{\"text\": \"pipeline failed on ${{{{ github.ref_name }}}}\"}}
        env:
          SLACK_WEBHOOK_URL: ${{{{ secrets.SLACK_WEBHOOK_URL }}}}
"
    ));
    let run = r.run(&["--secret", &format!("SLACK_WEBHOOK_URL={url}")]);
    run.assert_code(1);
    let body = server.join().unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["text"], "pipeline failed on main");
    assert_eq!(run.steps("a")[1].0, "success", "{}", run.all());
}

#[test]
fn setup_python_uses_an_installed_interpreter_or_names_what_it_found() {
    let r = repo_with(&format!(
        "{PUSH}jobs:
  ok:
    runs-on: x
    steps:
      - id: py
        uses: actions/setup-python@v5
        with:
          python-version: '3.x'
      - run: python --version && pip --version | cut -c1-3 && echo \"v=${{{{ steps.py.outputs.python-version }}}}\"
  missing:
    runs-on: x
    steps:
      - uses: actions/setup-python@v5
        with:
          python-version: '2.5'
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    assert_eq!(run.conclusion("ok"), "success", "{}", run.all());
    let lines = run.lines_of("ok");
    assert!(
        lines.iter().any(|l| l.starts_with("Python 3.")),
        "{}",
        run.all()
    );
    assert!(lines.iter().any(|l| l.starts_with("v=3.")), "{}", run.all());
    assert_eq!(run.conclusion("missing"), "failure");
    assert!(
        run.stdout
            .contains("Python 2.5 is not installed on this machine; found: 3."),
        "{}",
        run.all()
    );
}

#[test]
fn codecov_records_coverage_from_lcov() {
    let r = repo_with(&format!(
        "{PUSH}jobs:
  a:
    runs-on: x
    steps:
      - run: printf 'SF:a.py\\nLF:8\\nLH:6\\nend_of_record\\n' > lcov.info
      - uses: codecov/codecov-action@v4
        with:
          files: lcov.info
      - uses: codecov/codecov-action@v4
        with:
          files: missing.xml
          fail_ci_if_error: true
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    assert_eq!(run.job("a")["coverage"], 75.0);
    assert_eq!(run.steps("a")[2].0, "failure");
}

#[test]
fn event_payload_and_vars_file() {
    let r = repo_with(
        "on:\n  pull_request:\n    types: [labeled]\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo \"${{ github.event.label.name }} ${{ github.event.action }} ${{ vars.TIER }} ${{ github.base_ref }}\"\n",
    );
    let event = r.path().join(".git/event.json");
    std::fs::write(
        &event,
        r#"{"action": "labeled", "label": {"name": "deploy"}, "pull_request": {"base": {"ref": "main"}, "head": {"ref": "feat"}}}"#,
    )
    .unwrap();
    let vars = r.path().join(".git/vars.env");
    std::fs::write(&vars, "# comment\nexport TIER='gold'\n").unwrap();
    let run = r.run(&[
        "pull_request",
        "--event-path",
        event.to_str().unwrap(),
        "--vars-file",
        vars.to_str().unwrap(),
    ]);
    run.assert_code(0);
    assert!(
        run.lines_of("a")
            .contains(&"deploy labeled gold main".to_owned()),
        "{}",
        run.all()
    );
    // Without the `labeled` action the workflow does not fire (default types are opened, ...).
    let run = r.run(&["pull_request"]);
    assert!(run.stdout.contains("fires no workflow"), "{}", run.all());
}

/// `owner/repo@ref` actions fetched with git from the configured host (here a directory of
/// repositories as `file://`), kept by commit, run offline from the cache, a pinned SHA
/// verified, a moved tag followed.
#[test]
fn actions_are_fetched_cached_by_commit_and_run_offline() {
    let hub = tempfile::tempdir().unwrap();
    let action = hub.path().join("acme/greet");
    std::fs::create_dir_all(&action).unwrap();
    let git = |args: &[&str]| common::git(&action, args);
    git(&["init", "-q", "-b", "main"]);
    let write = |text: &str| {
        std::fs::write(
            action.join("action.yml"),
            format!(
                "name: greet\ninputs:\n  who:\n    default: world\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      run: echo \"{text} ${{{{ inputs.who }}}}\"\n"
            ),
        )
        .unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", text]);
        git(&["rev-parse", "HEAD"])
    };
    let first = write("hello");
    git(&["tag", "v1"]);
    let r = Repo::new();
    r.workflow(
        "ci.yml",
        &format!(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: acme/greet@v1\n        with:\n          who: you\n      - uses: acme/greet@{first}\n"
        ),
    );
    r.commit("init");
    let url = format!("file://{}", hub.path().display());
    let run_with = |args: &[&str]| {
        let out = r
            .command()
            .env("PIPEWRIGHT_ACTIONS_URL", format!("file:///nowhere,{url}"))
            .arg("run")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run_with(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("hello you"), "{text}");
    assert!(text.contains("hello world"), "{text}");
    assert!(
        text.contains(&format!("acme/greet@v1: commit {first} (fetched)")),
        "{text}"
    );
    // Offline: from the cache.
    let (code, text) = run_with(&["--offline"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("acme/greet@v1: commit {first} (from the cache)")),
        "{text}"
    );
    // The tag moves: the next run follows it; the pinned SHA stays.
    let second = write("howdy");
    git(&["tag", "-f", "v1"]);
    let (code, text) = run_with(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("howdy you"), "{text}");
    assert!(text.contains("hello world"), "{text}");
    assert!(
        text.contains(&format!("commit {second} (fetched)")),
        "{text}"
    );
    // A pinned commit that the host does not have fails, naming what was tried.
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: acme/greet@0123456789abcdef0123456789abcdef01234567\n",
    );
    r.commit("pin");
    let (code, text) = run_with(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("could not be fetched; tried file:///nowhere/acme/greet ("),
        "{text}"
    );
    assert!(text.contains(&format!("{url}/acme/greet (")), "{text}");
    // Offline, an action never fetched is named as missing from the cache.
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: acme/other@v2\n",
    );
    r.commit("other");
    let (code, text) = run_with(&["--offline"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("`acme/other@v2` is not in the action cache"),
        "{text}"
    );
}

/// A Node action's `pre` and `post` run with `pre-if`/`post-if`, what `pre` and `main` save
/// with GITHUB_STATE reaching the later ones as STATE_*, post steps in reverse order.
#[test]
fn node_actions_run_pre_main_and_post_with_their_state() {
    let r = Repo::new();
    let js = |name: &str, body: &str| {
        r.file(&format!(".github/actions/n/{name}.js"), body);
    };
    r.file(
        ".github/actions/n/action.yml",
        "name: n\ninputs:\n  who:\n    required: true\nruns:\n  using: node20\n  pre: pre.js\n  main: main.js\n  post: post.js\n",
    );
    js(
        "pre",
        "const fs = require('fs');\nfs.appendFileSync(process.env.GITHUB_STATE, `token=t-${process.env.INPUT_WHO}\\n`);\nconsole.log(`pre ${process.env.INPUT_WHO}`);\n",
    );
    js(
        "main",
        "const fs = require('fs');\nconsole.log(`main ${process.env.INPUT_WHO} sees ${process.env.STATE_token}`);\nfs.appendFileSync(process.env.GITHUB_STATE, 'phase=main\\n');\n",
    );
    js(
        "post",
        "console.log(`post ${process.env.INPUT_WHO} sees ${process.env.STATE_token},${process.env.STATE_phase}`);\n",
    );
    r.file(
        ".github/actions/guarded/action.yml",
        "name: guarded\nruns:\n  using: node20\n  pre: ../n/pre.js\n  pre-if: runner.os == 'Windows'\n  main: ../n/main.js\n  post: ../n/post.js\n  post-if: failure()\n",
    );
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n      - uses: ./.github/actions/n\n        with:\n          who: first\n      - uses: ./.github/actions/n\n        with:\n          who: second\n      - uses: ./.github/actions/guarded\n",
    );
    r.commit("init");
    let run = r.run(&[]);
    run.assert_code(0);
    let lines: Vec<String> = run
        .lines_of("a")
        .into_iter()
        .filter(|l| l.starts_with("pre ") || l.starts_with("main ") || l.starts_with("post "))
        .collect();
    assert_eq!(
        lines,
        [
            "pre first",
            "main first sees t-first",
            "pre second",
            "main second sees t-second",
            "main undefined sees undefined",
            "post second sees t-second,main",
            "post first sees t-first,main",
        ],
        "{}",
        run.all()
    );
}

/// A reusable workflow of another repository (`owner/repo/.github/workflows/x.yml@ref`) is
/// fetched as actions are and runs with the inputs the caller gives.
#[test]
fn reusable_workflows_of_other_repositories_are_fetched() {
    let hub = tempfile::tempdir().unwrap();
    common::reusable_greet(hub.path());
    let r = Repo::new();
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  call:\n    uses: acme/shared/.github/workflows/greet.yml@v1\n    with:\n      who: the caller\n  after:\n    needs: call\n    runs-on: x\n    steps:\n      - run: echo \"said ${{ needs.call.outputs.said }}\"\n",
    );
    r.commit("init");
    let out = r
        .command()
        .env(
            "PIPEWRIGHT_ACTIONS_URL",
            format!("file://{}", hub.path().display()),
        )
        .arg("run")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("shared says hello to the caller"), "{text}");
    assert!(text.contains("said yes"), "{text}");
}

/// `--dry-run` and `validate` list each action a workflow uses and where it would come from.
#[test]
fn dry_run_and_validate_say_where_each_action_would_come_from() {
    let hub = tempfile::tempdir().unwrap();
    let commit = common::hub_repo(
        hub.path(),
        "acme/greet",
        &[(
            "action.yml",
            "name: greet\nruns:\n  using: composite\n  steps:\n    - shell: sh\n      run: echo hi\n",
        )],
        "v1",
    );
    let r = Repo::new();
    r.file(
        ".pipewright/actions/acme/vendored@v2/action.yml",
        "name: v\nruns:\n  using: composite\n  steps:\n    - shell: sh\n      run: echo v\n",
    );
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n      - uses: ./tools/local\n      - uses: acme/vendored@v2\n      - uses: acme/greet@v1\n  b:\n    runs-on: x\n    steps:\n      - uses: acme/greet@v1\n      - uses: docker://busybox:1\n",
    );
    r.commit("init");
    let url = format!("file://{}", hub.path().display());
    let out = |args: &[&str]| {
        let o = r
            .command()
            .env("PIPEWRIGHT_ACTIONS_URL", &url)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    let text = out(&["run", "--dry-run"]);
    let vendored = r.path().join(".pipewright/actions/acme/vendored@v2");
    for want in [
        "  uses actions/checkout@v4: built in".to_owned(),
        "  uses ./tools/local: in the repository".to_owned(),
        format!(
            "  uses acme/vendored@v2: vendored in {}",
            vendored.display()
        ),
        format!("  uses acme/greet@v1: fetched when the job runs, from {url}/acme/greet"),
        "  uses docker://busybox:1: the Docker image busybox:1".to_owned(),
    ] {
        assert!(text.contains(&want), "{want}\n{text}");
    }
    // Listed once, though two jobs use it.
    assert_eq!(text.matches("uses acme/greet@v1").count(), 1, "{text}");
    let text = out(&["run", "--dry-run", "--offline"]);
    assert!(
        text.contains("uses acme/greet@v1: MISSING: not vendored"),
        "{text}"
    );
    // Once fetched, it is in the cache.
    r.file(
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: acme/greet@v1\n",
    );
    r.commit("only greet");
    out(&["run"]);
    let text = out(&["run", "--dry-run", "--offline"]);
    assert!(
        text.contains(&format!("uses acme/greet@v1: cached (commit {commit})")),
        "{text}"
    );
    let text = out(&["validate"]);
    assert!(
        text.contains(".github/workflows/ci.yml:\n  uses acme/greet@v1: cached (commit"),
        "{text}"
    );
}

/// `actions/setup-node` takes an installed Node of the version asked for, puts its
/// programs first on the PATH and global installs in the job's own prefix; a version the
/// machine lacks fails the job naming those it has.
#[test]
fn setup_node_uses_an_installed_node_and_keeps_global_installs_in_the_job() {
    let r = Repo::new();
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - id: n\n        uses: actions/setup-node@v4\n        with:\n          node-version: 20.x\n          cache: npm\n      - run: |\n          echo \"node $(node --version) at $(command -v node)\"\n          echo \"prefix $(npm config get prefix)\"\n          echo \"output ${{ steps.n.outputs.node-version }}\"\n  b:\n    runs-on: x\n    steps:\n      - uses: actions/setup-node@v4\n        with:\n          node-version: '14'\n",
    );
    r.commit("init");
    let run = r.run(&[]);
    assert_eq!(run.conclusion("a"), "success", "{}", run.all());
    let lines = run.lines_of("a");
    let node = lines
        .iter()
        .find(|l| l.starts_with("node v20."))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(node.contains("/setup-node-20."), "{node}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("prefix ") && l.ends_with("/npm-global")),
        "{}",
        run.all()
    );
    assert!(
        lines.iter().any(|l| l.starts_with("output v20.")),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("b"), "failure", "{}", run.all());
    assert!(
        run.all()
            .contains("Node 14 is not installed on this machine; found: "),
        "{}",
        run.all()
    );
}

/// `actions/setup-java` and `actions/setup-go` take an installed JDK or Go of the version
/// asked for, and fail naming what the machine has when it lacks it.
#[test]
fn setup_java_and_go_use_installed_toolchains_or_say_what_there_is() {
    let r = Repo::new();
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  java:\n    runs-on: x\n    steps:\n      - id: j\n        uses: actions/setup-java@v4\n        with:\n          distribution: temurin\n          java-version: '17'\n          cache: maven\n      - run: |\n          echo \"output ${{ steps.j.outputs.version }}\"\n          echo \"home $JAVA_HOME\"\n          \"$JAVA_HOME/bin/java\" -version 2>&1 | head -1\n          java -version 2>&1 | head -1\n  nojava:\n    runs-on: x\n    steps:\n      - uses: actions/setup-java@v4\n        with:\n          distribution: temurin\n          java-version: '4'\n  go:\n    runs-on: x\n    steps:\n      - uses: actions/setup-go@v5\n        with:\n          go-version: '1.99'\n",
    );
    r.commit("init");
    let run = r.run(&[]);
    assert_eq!(run.conclusion("java"), "success", "{}", run.all());
    let lines = run.lines_of("java");
    assert!(
        lines.iter().any(|l| l.starts_with("output 17.")),
        "{}",
        run.all()
    );
    let home = lines
        .iter()
        .find_map(|l| l.strip_prefix("home "))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(
        std::path::Path::new(home).join("bin/java").is_file(),
        "{home}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("version \"17.")).count(),
        2,
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("nojava"), "failure", "{}", run.all());
    assert!(
        run.all()
            .contains("Java 4 is not installed on this machine; found: "),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("go"), "failure", "{}", run.all());
    assert!(
        run.all()
            .contains("Go 1.99 is not installed on this machine; found: "),
        "{}",
        run.all()
    );
}

/// With toolchains in the tool cache (`RUNNER_TOOL_CACHE`, as GitHub's images have them):
/// `actions/setup-go` takes the newest Go of the version asked for (or `go.mod`'s), and
/// `actions/setup-java` the JDK of that version whose vendor is the `distribution`'s, or
/// another with a warning when there is none; an unknown distribution fails.
#[test]
fn setup_go_and_java_pick_the_version_and_the_distribution_from_the_tool_cache() {
    let r = Repo::new();
    let cache = tempfile::tempdir().unwrap();
    let tool = |rel: &str, program: &str, says: &str, release: Option<&str>| {
        let home = cache.path().join(rel);
        std::fs::create_dir_all(home.join("bin")).unwrap();
        let bin = home.join("bin").join(program);
        std::fs::write(&bin, format!("#!/bin/sh\necho '{says}' >&2\n")).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        if let Some(vendor) = release {
            std::fs::write(
                home.join("release"),
                format!("JAVA_VERSION=\"21\"\nIMPLEMENTOR=\"{vendor}\"\n"),
            )
            .unwrap();
        }
    };
    tool(
        "go/1.22.3/x64",
        "go",
        "go version go1.22.3 linux/amd64",
        None,
    );
    tool(
        "go/1.22.1/x64",
        "go",
        "go version go1.22.1 linux/amd64",
        None,
    );
    tool(
        "go/1.21.9/x64",
        "go",
        "go version go1.21.9 linux/amd64",
        None,
    );
    tool(
        "Java/zulu-21",
        "java",
        "openjdk version \"21.0.4\" 2024-07-16 LTS",
        Some("Azul Systems, Inc."),
    );
    tool(
        "Java/temurin-21",
        "java",
        "openjdk version \"21.0.2\" 2024-01-16 LTS",
        Some("Eclipse Adoptium"),
    );
    r.file("go.mod", "module example.com/m\n\ngo 1.21\n");
    r.workflow(
        "ci.yml",
        "on: push
jobs:
  go:
    runs-on: x
    steps:
      - id: g
        uses: actions/setup-go@v5
        with:
          go-version: '1.22'
      - run: |
          echo \"output ${{ steps.g.outputs.go-version }}\"
          go version 2>&1
          echo \"root $GOROOT\"
          test -d \"$GOPATH\" && test -d \"$GOCACHE\" && echo caches ready
      - uses: actions/checkout@v4
      - uses: actions/setup-go@v5
        with:
          go-version-file: go.mod
      - run: go version 2>&1
  java:
    runs-on: x
    steps:
      - id: zulu
        uses: actions/setup-java@v4
        with:
          distribution: zulu
          java-version: '21'
      - id: temurin
        uses: actions/setup-java@v4
        with:
          distribution: temurin
          java-version: '21'
      - run: |
          echo \"zulu ${{ steps.zulu.outputs.version }} ${{ steps.zulu.outputs.distribution }}\"
          echo \"temurin ${{ steps.temurin.outputs.version }} ${{ steps.temurin.outputs.distribution }}\"
          echo \"home $JAVA_HOME\"
      - id: corretto
        uses: actions/setup-java@v4
        with:
          distribution: corretto
          java-version: '21'
      - run: |
          echo \"corretto gave ${{ steps.corretto.outputs.distribution }}\"
  unknown:
    runs-on: x
    steps:
      - uses: actions/setup-java@v4
        with:
          distribution: openjdk
          java-version: '21'
  nofile:
    runs-on: x
    steps:
      - uses: actions/setup-go@v5
        with:
          go-version-file: go.mod
",
    );
    r.commit("init");
    let pass = format!("RUNNER_TOOL_CACHE={}", cache.path().display());
    let run = r.run(&["--pass-env", &pass]);
    assert_eq!(run.conclusion("go"), "success", "{}", run.all());
    let go = run.lines_of("go");
    let has = |lines: &[String], s: &str| lines.iter().any(|l| l.contains(s));
    assert!(has(&go, "output 1.22.3"), "{}", run.all());
    assert!(has(&go, "go version go1.22.3 linux/amd64"), "{}", run.all());
    assert!(
        has(
            &go,
            &format!("root {}/go/1.22.3/x64", cache.path().display())
        ),
        "{}",
        run.all()
    );
    assert!(has(&go, "caches ready"), "{}", run.all());
    assert!(
        has(&go, "go version go1.21.9 linux/amd64"),
        "go.mod's version: {}",
        run.all()
    );
    assert_eq!(run.conclusion("java"), "success", "{}", run.all());
    let java = run.lines_of("java");
    assert!(has(&java, "zulu 21.0.4 zulu"), "{}", run.all());
    assert!(has(&java, "temurin 21.0.2 temurin"), "{}", run.all());
    assert!(
        has(
            &java,
            &format!("home {}/Java/temurin-21", cache.path().display())
        ),
        "{}",
        run.all()
    );
    assert!(has(&java, "corretto gave zulu"), "{}", run.all());
    assert!(
        has(
            &java,
            "distribution `corretto` asked for, and this machine has no such JDK of Java 21: using Java 21.0.4 built by Azul Systems, Inc."
        ),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("unknown"), "failure", "{}", run.all());
    assert!(
        run.all()
            .contains("distribution `openjdk` is not one setup-java knows; use one of: temurin,"),
        "{}",
        run.all()
    );
    // A version file that is not there (no checkout) fails, as setup-go does.
    assert_eq!(run.conclusion("nofile"), "failure", "{}", run.all());
    assert!(
        run.all().contains("`go-version-file`: cannot read "),
        "{}",
        run.all()
    );
}

/// A remote (here vendored) Node action's `pre` runs as the job starts, before the first
/// step, in the steps' order, as GitHub runs it; one its `pre-if` skips does not run later.
#[test]
fn a_remote_node_action_s_pre_runs_as_the_job_starts() {
    let r = Repo::new();
    let pre = "const fs = require('fs');\nfs.appendFileSync(process.env.GITHUB_STATE, `token=t-${process.env.INPUT_WHO}\\n`);\nfs.appendFileSync(process.env.GITHUB_ENV, `FROM_PRE_${process.env.INPUT_WHO}=yes\\n`);\nconsole.log(`pre ${process.env.INPUT_WHO}`);\n";
    let main = "console.log(`main ${process.env.INPUT_WHO} sees ${process.env.STATE_token}`);\n";
    let post = "console.log(`post ${process.env.INPUT_WHO} sees ${process.env.STATE_token}`);\n";
    for (dir, pre_if) in [
        ("n@v1", ""),
        ("guarded@v1", "  pre-if: runner.os == 'Windows'\n"),
    ] {
        let d = format!(".pipewright/actions/acme/{dir}");
        r.file(
            &format!("{d}/action.yml"),
            &format!("name: n\ninputs:\n  who:\n    default: nobody\nruns:\n  using: node20\n  pre: pre.js\n{pre_if}  main: main.js\n  post: post.js\n"),
        );
        r.file(&format!("{d}/pre.js"), pre);
        r.file(&format!("{d}/main.js"), main);
        r.file(&format!("{d}/post.js"), post);
    }
    r.workflow(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo \"first step sees $FROM_PRE_first\"\n      - uses: acme/n@v1\n        with:\n          who: first\n      - uses: acme/n@v1\n        with:\n          who: second\n      - uses: acme/guarded@v1\n",
    );
    r.commit("init");
    let run = r.run(&[]);
    run.assert_code(0);
    let lines: Vec<String> = run
        .lines_of("a")
        .into_iter()
        .filter(|l| {
            ["pre ", "main ", "post ", "first step"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert_eq!(
        lines,
        [
            "pre first",
            "pre second",
            "first step sees yes",
            "main first sees t-first",
            "main second sees t-second",
            "main nobody sees undefined",
            "post nobody sees undefined",
            "post second sees t-second",
            "post first sees t-first",
        ],
        "{}",
        run.all()
    );
}
