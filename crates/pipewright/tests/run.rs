//! `pipewright run` end to end: the real binary on real workflows in a real git repository.

mod common;

use common::Repo;

const PUSH_MAIN: &str = "on:\n  push:\n    branches: [main]\n";

fn repo_with(workflow: &str) -> Repo {
    let r = Repo::new();
    r.workflow("ci.yml", workflow);
    r.file("README.md", "hello\n");
    r.commit("init");
    r
}

#[test]
fn needs_run_in_order_and_pass_outputs() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    outputs:
      v: ${{{{ steps.s.outputs.v }}}}
      multi: ${{{{ steps.s.outputs.multi }}}}
    steps:
      - id: s
        run: |
          echo v=42 >> $GITHUB_OUTPUT
          {{ echo 'multi<<EOF'; echo line1; echo line2; echo EOF; }} >> $GITHUB_OUTPUT
  b:
    needs: a
    runs-on: ubuntu-latest
    steps:
      - run: echo \"got ${{{{ needs.a.outputs.v }}}} ${{{{ needs.a.result }}}}\"
      - run: test \"${{{{ needs.a.outputs.multi }}}}\" = \"$(printf 'line1\\nline2')\"
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    assert_eq!(run.output("a", "v"), "42");
    assert_eq!(run.output("a", "multi"), "line1\nline2");
    assert!(
        run.lines_of("b").contains(&"got 42 success".to_owned()),
        "{}",
        run.all()
    );
    // b started after a finished.
    let a_done = run.stdout.find("[a] ✓ job success").expect("a finished");
    let b_start = run.stdout.find("[b] job started").expect("b started");
    assert!(a_done < b_start, "{}", run.all());
}

#[test]
fn failed_need_skips_dependents_unless_status_function() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: exit 1
  b:
    needs: a
    runs-on: ubuntu-latest
    steps:
      - run: echo should not run
  c:
    needs: b
    if: always()
    runs-on: ubuntu-latest
    steps:
      - run: echo \"b was ${{{{ needs.b.result }}}}\"
  d:
    needs: a
    if: failure()
    runs-on: ubuntu-latest
    steps:
      - run: echo cleanup
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    assert_eq!(run.conclusion("a"), "failure");
    assert_eq!(run.conclusion("b"), "skipped");
    assert_eq!(run.conclusion("c"), "success");
    assert_eq!(run.conclusion("d"), "success");
    assert!(
        run.lines_of("c").contains(&"b was skipped".to_owned()),
        "{}",
        run.all()
    );
    assert_eq!(run.report["conclusion"], "failure");
}

#[test]
fn independent_jobs_run_in_parallel() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: sleep 1
  b:
    runs-on: ubuntu-latest
    steps:
      - run: sleep 1
"
    ));
    let started = std::time::Instant::now();
    r.run(&["--jobs", "2"]).assert_code(0);
    let parallel = started.elapsed();
    let started = std::time::Instant::now();
    r.run(&["--jobs", "1"]).assert_code(0);
    let serial = started.elapsed();
    // Relative, not absolute: two 1 s jobs side by side take clearly less than one after the other.
    assert!(
        parallel.as_secs_f64() < serial.as_secs_f64() - 0.5,
        "parallel {parallel:?} serial {serial:?}"
    );
}

#[test]
fn matrix_include_exclude_and_strategy_context() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  t:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [linux, mac]
        py: ['3.10', '3.11']
        exclude:
          - os: mac
            py: '3.10'
        include:
          - os: linux
            extra: yes
          - os: windows
            py: '3.12'
    steps:
      - run: echo \"${{{{ matrix.os }}}}/${{{{ matrix.py }}}}/${{{{ matrix.extra }}}} ${{{{ strategy.job-index }}}}/${{{{ strategy.job-total }}}}\"
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    let jobs = run.jobs("t");
    let names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "t (linux, 3.10)",
            "t (linux, 3.11)",
            "t (mac, 3.11)",
            "t (windows, 3.12)"
        ]
    );
    assert_eq!(
        jobs[0]["matrix"],
        serde_json::json!({"os": "linux", "py": "3.10", "extra": "yes"})
    );
    assert!(
        run.lines_of("t (linux, 3.11)")
            .contains(&"linux/3.11/yes 1/4".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("t (mac, 3.11)")
            .contains(&"mac/3.11/ 2/4".to_owned()),
        "{}",
        run.all()
    );
}

#[test]
fn fail_fast_cancels_siblings_and_max_parallel_limits() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  t:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 1
      matrix:
        n: [1, 2, 3]
    steps:
      - run: test ${{{{ matrix.n }}}} -ne 1
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    let c: Vec<&str> = run
        .jobs("t")
        .iter()
        .map(|j| j["conclusion"].as_str().unwrap())
        .collect();
    assert_eq!(c, ["failure", "cancelled", "cancelled"], "{}", run.all());

    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  t:
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      max-parallel: 1
      matrix:
        n: [1, 2, 3]
    steps:
      - run: test ${{{{ matrix.n }}}} -ne 1
"
    ));
    let run = r.run(&[]);
    let c: Vec<&str> = run
        .jobs("t")
        .iter()
        .map(|j| j["conclusion"].as_str().unwrap())
        .collect();
    assert_eq!(c, ["failure", "success", "success"], "{}", run.all());
}

#[test]
fn continue_on_error_for_steps_and_jobs() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - id: bad
        run: exit 2
        continue-on-error: true
      - run: echo \"outcome=${{{{ steps.bad.outcome }}}} conclusion=${{{{ steps.bad.conclusion }}}}\"
  b:
    runs-on: ubuntu-latest
    continue-on-error: true
    steps:
      - run: exit 1
  c:
    needs: b
    runs-on: ubuntu-latest
    steps:
      - run: echo ran
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    assert_eq!(run.steps("a")[0], ("failure".into(), "success".into()));
    assert!(
        run.lines_of("a")
            .contains(&"outcome=failure conclusion=success".to_owned()),
        "{}",
        run.all()
    );
    assert_eq!(run.job("b")["outcome"], "failure");
    assert_eq!(run.conclusion("b"), "success");
    assert_eq!(run.conclusion("c"), "success");
}

#[test]
fn step_if_and_status_functions() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo one
      - if: github.ref == 'refs/heads/nope'
        run: echo skipped
      - run: exit 1
      - run: echo not reached
      - if: failure()
        run: echo on failure
      - if: always()
        run: echo always
      - if: success()
        run: echo never
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    let s: Vec<String> = run.steps("a").into_iter().map(|(o, _)| o).collect();
    assert_eq!(
        s,
        [
            "success", "skipped", "failure", "skipped", "success", "success", "skipped"
        ]
    );
    let lines = run.lines_of("a");
    assert!(lines.contains(&"on failure".to_owned()) && lines.contains(&"always".to_owned()));
    assert!(!lines.contains(&"never".to_owned()) && !lines.contains(&"not reached".to_owned()));
}

#[test]
fn shells_and_working_directory() {
    let r = Repo::new();
    r.file("sub/dir/marker", "x");
    r.workflow(
        "ci.yml",
        &format!(
            "{PUSH_MAIN}defaults:
  run:
    working-directory: sub
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo \"default-shell $0 $-\" && pwd | sed 's|.*/||'
      - shell: bash
        run: false | true
      - shell: sh
        run: echo \"sh ok\"
      - shell: python
        run: |
          import os
          print('python', os.path.basename(os.getcwd()))
      - shell: perl {{0}}
        working-directory: sub/dir
        run: |
          print \"perl here\\n\"; print -e 'marker' ? \"found\\n\" : \"missing\\n\";
"
        ),
    );
    r.commit("init");
    let run = r.run(&[]);
    // `bash --noprofile --norc -eo pipefail` fails on `false | true`.
    run.assert_code(1);
    let lines = run.lines_of("a");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("default-shell") && l.contains('e')),
        "{}",
        run.all()
    );
    assert!(lines.contains(&"sub".to_owned()), "{}", run.all());
    assert_eq!(run.steps("a")[2].0, "failure");

    let r2 = Repo::new();
    r2.file("sub/dir/marker", "x");
    r2.workflow(
        "ci.yml",
        &format!(
            "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    defaults:
      run:
        working-directory: sub
    steps:
      - uses: actions/checkout@v4
      - shell: sh
        run: echo \"sh ok\"
      - shell: python
        run: |
          import os
          print('python', os.path.basename(os.getcwd()))
      - shell: perl {{0}}
        working-directory: sub/dir
        run: |
          print \"perl here\\n\"; print -e 'marker' ? \"found\\n\" : \"missing\\n\";
"
        ),
    );
    r2.commit("init");
    let run = r2.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("a");
    for want in ["sh ok", "python sub", "perl here", "found"] {
        assert!(
            lines.contains(&want.to_owned()),
            "missing {want}\n{}",
            run.all()
        );
    }
}

/// GitHub's rule for a `run:` step without `shell:`: bash if it is on the step's `PATH`
/// (with what `GITHUB_PATH` added), else sh; the bash found there is the one that runs.
#[test]
fn the_default_shell_is_the_bash_on_the_step_s_path() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p \"$RUNNER_TEMP/wrapped\"
          printf '#!/bin/sh\\necho \"wrapped bash $*\" >&2\\nexec /bin/bash \"$@\"\\n' > \"$RUNNER_TEMP/wrapped/bash\"
          chmod +x \"$RUNNER_TEMP/wrapped/bash\"
          echo \"$RUNNER_TEMP/wrapped\" >> \"$GITHUB_PATH\"
      - run: echo \"default shell $BASH_VERSION\"
  b:
    runs-on: ubuntu-latest
    steps:
      - run: mkdir -p \"$RUNNER_TEMP/only-sh\" && ln -sf /bin/sh \"$RUNNER_TEMP/only-sh/sh\"
      - env:
          PATH: ${{{{ runner.temp }}}}/only-sh
        run: echo \"no bash here, shell ${{BASH_VERSION:-sh}}\"
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    // Without bash on the step's own PATH, sh (whatever the runner's PATH has).
    assert!(
        run.lines_of("b")
            .contains(&"no bash here, shell sh".to_owned()),
        "{}",
        run.all()
    );
    let lines = run.lines_of("a");
    // The second step's shell was the wrapper GITHUB_PATH put first, started as `bash -e`.
    assert!(
        lines.iter().any(|l| l.starts_with("wrapped bash -e ")),
        "{}",
        run.all()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("default shell ") && l.len() > "default shell ".len()),
        "{}",
        run.all()
    );
}

#[test]
fn env_precedence_and_default_variables() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}env:
  LEVEL: workflow
  W: w
jobs:
  a:
    runs-on: ubuntu-latest
    env:
      LEVEL: job
      J: j
    steps:
      - run: echo \"$LEVEL $W $J\"
      - run: echo \"$LEVEL\"
        env:
          LEVEL: step
      - run: echo \"FROM_ENV=set-by-file\" >> $GITHUB_ENV
      - run: echo \"$FROM_ENV ${{{{ env.FROM_ENV }}}}\"
      - run: |
          echo \"CI=$CI GA=$GITHUB_ACTIONS ref=$GITHUB_REF name=$GITHUB_REF_NAME ev=$GITHUB_EVENT_NAME job=$GITHUB_JOB os=$RUNNER_OS\"
          test -d \"$GITHUB_WORKSPACE\" && test -d \"$RUNNER_TEMP\" && test -f \"$GITHUB_EVENT_PATH\"
          test \"$GITHUB_SHA\" = \"$(git -C {} rev-parse HEAD)\"
          test -n \"$GITHUB_RUN_ID\" && test -n \"$GITHUB_RUN_NUMBER\"
          echo \"event ref $(python3 -c 'import json,os; print(json.load(open(os.environ[\"GITHUB_EVENT_PATH\"]))[\"ref\"])')\"
",
        "__REPO__"
    ));
    // The repository path is only known now; rewrite it into the workflow.
    let wf = std::fs::read_to_string(r.path().join(".github/workflows/ci.yml")).unwrap();
    r.workflow(
        "ci.yml",
        &wf.replace("__REPO__", &r.path().display().to_string()),
    );
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("a");
    for want in [
        "job w j",
        "step",
        "set-by-file set-by-file",
        "CI=true GA=true ref=refs/heads/main name=main ev=push job=a os=Linux",
        "event ref refs/heads/main",
    ] {
        assert!(
            lines.contains(&want.to_owned()),
            "missing `{want}`\n{}",
            run.all()
        );
    }
}

#[test]
fn github_path_and_step_summary() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p \"$RUNNER_TEMP/bin\"
          printf '#!/bin/sh\\necho tool ran\\n' > \"$RUNNER_TEMP/bin/mytool\"
          chmod +x \"$RUNNER_TEMP/bin/mytool\"
          echo \"$RUNNER_TEMP/bin\" >> \"$GITHUB_PATH\"
          echo '### Summary' >> \"$GITHUB_STEP_SUMMARY\"
      - run: mytool
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    assert!(
        run.lines_of("a").contains(&"tool ran".to_owned()),
        "{}",
        run.all()
    );
}

#[test]
fn workflow_commands_and_masking() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo \"secret: ${{{{ secrets.API_KEY }}}}\"
          printf 'split: sup'; sleep 0.2; printf 'ersecret-value\\n'
          echo \"::add-mask::dynamic-value\"
          echo \"dyn: dynamic-value\"
          echo \"multi: ${{{{ secrets.MULTI }}}}\"
          echo \"::error file=app.py,line=3::something broke\"
          echo \"::warning::careful\"
          echo \"::group::Details\"
          echo hidden detail
          echo \"::endgroup::\"
          echo \"::stop-commands::pause\"
          echo \"::error::not a command\"
          echo \"::pause::\"
          echo \"::notice::back on\"
"
    ));
    let secrets = r.path().join(".git/secrets.env");
    std::fs::write(&secrets, "MULTI=\"first-line\\nsecond-line\"\n").unwrap();
    let run = r.run(&[
        "--secret",
        "API_KEY=supersecret-value",
        "--secrets-file",
        secrets.to_str().unwrap(),
    ]);
    run.assert_code(0);
    for leaked in [
        "supersecret-value",
        "dynamic-value",
        "first-line",
        "second-line",
    ] {
        assert!(
            !run.stdout.contains(leaked),
            "`{leaked}` leaked\n{}",
            run.all()
        );
        assert!(
            !run.stderr.contains(leaked),
            "`{leaked}` leaked\n{}",
            run.all()
        );
    }
    let lines = run.lines_of("a");
    for want in [
        "secret: ***",
        "split: ***",
        "dyn: ***",
        "error app.py:3: something broke",
        "warning careful",
        "▸ Details (1 lines folded)",
        "::error::not a command",
        "notice back on",
    ] {
        assert!(
            lines.contains(&want.to_owned()),
            "missing `{want}`\n{}",
            run.all()
        );
    }
    assert!(!lines.contains(&"hidden detail".to_owned()));
    let report = std::fs::read_to_string(r.path().join(".git/report.json")).unwrap();
    assert!(!report.contains("supersecret"));
}

#[test]
fn timeouts_kill_the_process_group() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - timeout-minutes: 0.02
        run: |
          sleep 300 &
          echo $! > \"$RUNNER_TEMP/child.pid\"
          sleep 300
      - if: always()
        run: |
          sleep 0.2
          # A zombie (no init reaping in a container) counts as gone.
          state=$(awk '/^State/{{print $2}}' /proc/$(cat \"$RUNNER_TEMP/child.pid\")/status 2>/dev/null || true)
          if [ -n \"$state\" ] && [ \"$state\" != Z ]; then echo child alive; else echo child gone; fi
  b:
    runs-on: ubuntu-latest
    timeout-minutes: 0.02
    steps:
      - run: sleep 300
      - run: echo never
"
    ));
    let started = std::time::Instant::now();
    let run = r.run(&[]);
    let took = started.elapsed();
    run.assert_code(1);
    assert!(took.as_secs() < 60, "took {took:?}");
    assert_eq!(run.steps("a")[0].0, "failure");
    assert!(
        run.lines_of("a").contains(&"child gone".to_owned()),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("b"), "failure");
    assert!(
        run.stdout.contains("exceeded its maximum execution time"),
        "{}",
        run.all()
    );
}

#[test]
fn checkout_copies_the_work_tree_or_a_commit() {
    let r = Repo::new();
    r.file(".gitignore", "ignored.txt\n");
    r.file("tracked.txt", "v1\n");
    r.workflow(
        "ci.yml",
        &format!(
            "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: cat tracked.txt; cat new.txt 2>/dev/null || echo no-new; test -e ignored.txt && echo has-ignored || echo no-ignored
"
        ),
    );
    let first = r.commit("v1");
    r.file("tracked.txt", "v2-uncommitted\n");
    r.file("new.txt", "untracked\n");
    r.file("ignored.txt", "x\n");
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("a");
    for want in ["v2-uncommitted", "untracked", "no-ignored"] {
        assert!(
            lines.contains(&want.to_owned()),
            "missing {want}\n{}",
            run.all()
        );
    }
    let run = r.run(&["--sha", &first]);
    run.assert_code(0);
    let lines = run.lines_of("a");
    for want in ["v1", "no-new", "no-ignored"] {
        assert!(
            lines.contains(&want.to_owned()),
            "missing {want}\n{}",
            run.all()
        );
    }
}

#[test]
fn artifacts_pass_between_jobs() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: mkdir -p dist/sub && echo wheel > dist/app.whl && echo tmp > dist/x.tmp && echo deep > dist/sub/deep.txt
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: |
            dist/
            !dist/**/*.tmp
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: dist/
      - uses: actions/upload-artifact@v4
        with:
          name: empty
          path: nothing/*
          if-no-files-found: error
  deploy:
    needs: build
    if: always()
    runs-on: ubuntu-latest
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: dist
          path: got
      - run: cat got/app.whl got/sub/deep.txt; test ! -e got/x.tmp && echo no-tmp
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    let steps = run.steps("build");
    assert_eq!(steps[1].0, "success");
    // v4: a second upload under the same name fails; no files with `error` fails.
    assert_eq!(steps[2].0, "failure", "{}", run.all());
    assert!(run.stdout.contains("already uploaded"), "{}", run.all());
    let lines = run.lines_of("deploy");
    for want in ["wheel", "deep", "no-tmp"] {
        assert!(
            lines.contains(&want.to_owned()),
            "missing {want}\n{}",
            run.all()
        );
    }
}

#[test]
fn cache_saves_after_success_and_restores_next_run() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/cache@v4
        id: c
        with:
          path: deps
          key: deps-${{{{ hashFiles('README.md') }}}}
          restore-keys: deps-
      - run: echo \"hit=${{{{ steps.c.outputs.cache-hit }}}}\"; cat deps/file 2>/dev/null || (mkdir -p deps && echo cached > deps/file)
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    assert!(
        run.lines_of("a").contains(&"hit=false".to_owned()),
        "{}",
        run.all()
    );
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("a");
    assert!(
        lines.contains(&"hit=true".to_owned()) && lines.contains(&"cached".to_owned()),
        "{}",
        run.all()
    );
    // A new key restores from the prefix, and is not an exact hit.
    r.file("README.md", "changed\n");
    let run = r.run(&[]);
    let lines = run.lines_of("a");
    assert!(
        lines.contains(&"hit=false".to_owned()) && lines.contains(&"cached".to_owned()),
        "{}",
        run.all()
    );
}

#[test]
fn triggers_choose_workflows() {
    let r = Repo::new();
    r.workflow("main.yml", "on:\n  push:\n    branches: [main]\njobs:\n  m:\n    runs-on: x\n    steps:\n      - run: echo main\n");
    r.workflow(
        "pr.yml",
        "on:\n  pull_request:\n    branches: [main, development]\njobs:\n  p:\n    runs-on: x\n    steps:\n      - run: echo \"pr ${{ github.base_ref }} ${{ github.event_name }}\"\n",
    );
    r.workflow(
        "docs.yml",
        "on:\n  push:\n    paths: ['docs/**']\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: echo docs\n",
    );
    r.file("app.py", "print(1)\n");
    r.commit("one");
    r.file("app.py", "print(2)\n");
    r.commit("two");
    let run = r.run(&["push"]);
    run.assert_code(0);
    assert_eq!(run.jobs("m").len(), 1);
    assert!(
        run.jobs("p").is_empty() && run.jobs("d").is_empty(),
        "{}",
        run.all()
    );
    let run = r.run(&["pull_request", "--base-ref", "development"]);
    run.assert_code(0);
    assert!(
        run.lines_of("p")
            .contains(&"pr development pull_request".to_owned()),
        "{}",
        run.all()
    );
    let run = r.run(&["pull_request", "--base-ref", "feature"]);
    run.assert_code(0);
    assert!(run.stdout.contains("fires no workflow"), "{}", run.all());
    let run = r.run(&["push", "--ref", "other"]);
    assert!(run.stdout.contains("fires no workflow"), "{}", run.all());
}

#[test]
fn dispatch_inputs_are_typed() {
    let r = repo_with(
        "on:
  workflow_dispatch:
    inputs:
      env:
        type: choice
        options: [staging, production]
        default: staging
      dry:
        type: boolean
        default: false
      n:
        type: number
        required: true
jobs:
  a:
    runs-on: x
    steps:
      - run: echo \"${{ inputs.env }} ${{ inputs.dry }} ${{ inputs.n }} ${{ inputs.dry == false }} ${{ github.event.inputs.n }}\"
",
    );
    let run = r.run(&["workflow_dispatch", "--input", "n=3"]);
    run.assert_code(0);
    assert!(
        run.lines_of("a")
            .contains(&"staging false 3 true 3".to_owned()),
        "{}",
        run.all()
    );
    let run = r.run(&["workflow_dispatch", "--input", "n=3", "--input", "env=qa"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("must be one of staging, production"),
        "{}",
        run.all()
    );
    r.run(&["workflow_dispatch"]).assert_code(2);
}

#[test]
fn invalid_workflow_exits_2_with_diagnostic() {
    let r = repo_with(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ nope( }}\n",
    );
    let run = r.run(&[]);
    run.assert_code(2);
    assert!(run.stderr.contains("ci.yml:6:"), "{}", run.all());
    assert!(!run.stderr.contains("panicked"), "{}", run.all());
}

#[test]
fn an_invalid_workflow_is_skipped_and_the_others_run_then_exit_2() {
    let r = Repo::new();
    r.workflow(
        "broken.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ nope( }}\n",
    );
    r.workflow(
        "good.yml",
        "on: push\njobs:\n  fine:\n    runs-on: x\n    steps:\n      - run: echo still ran\n",
    );
    r.workflow(
        "deploy.yml",
        "on:\n  workflow_dispatch:\n    inputs:\n      target: {required: true}\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: echo deploying ${{ inputs.target }}\n",
    );
    r.workflow(
        "manual.yml",
        "on: workflow_dispatch\njobs:\n  m:\n    runs-on: x\n    steps:\n      - run: echo manual ran\n",
    );
    r.commit("init");
    let run = r.run(&[]);
    run.assert_code(2);
    assert!(run.stderr.contains("broken.yml:6:"), "{}", run.all());
    assert!(
        run.stderr
            .contains("error: a workflow file is not valid, not run: .github/workflows/broken.yml"),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("fine").contains(&"still ran".to_owned()),
        "{}",
        run.all()
    );
    // A dispatch: the workflow missing its required input is not run, the other is.
    let run = r.run(&["workflow_dispatch"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains(
            "error: .github/workflows/deploy.yml: input `target` is required: not run (give it with `--input NAME=VALUE`, or run other workflows only with `-W FILE`)"
        ),
        "{}",
        run.all()
    );
    assert!(
        run.lines_of("m").contains(&"manual ran".to_owned()),
        "{}",
        run.all()
    );
    // Everything valid and given: 0.
    let run = r.run(&["workflow_dispatch", "-W", "manual.yml"]);
    run.assert_code(0);
}

/// A step's script holds the values its expressions were replaced with, secrets among them,
/// in a directory others may pass through (a job's services may run as another user): the
/// script and the step's file-command files are its user's alone, also when a run reuses
/// the files of the run before.
#[test]
fn a_step_s_script_and_file_commands_are_its_user_s_alone() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo \"${{{{ secrets.API_KEY }}}}\" > /dev/null
          echo \"modes $(stat -c %a \"$0\" \"$GITHUB_OUTPUT\" \"$GITHUB_ENV\" \"$GITHUB_PATH\" | tr '\\n' ,)\"
      - run: echo \"second $(stat -c %a \"$0\" \"$GITHUB_STATE\" | tr '\\n' ,)\"
"
    ));
    for _ in 0..2 {
        let run = r.run(&["--secret", "API_KEY=supersecret-value"]);
        run.assert_code(0);
        let lines = run.lines_of("a");
        for want in ["modes 600,600,600,600,", "second 600,600,"] {
            assert!(
                lines.contains(&want.to_owned()),
                "missing `{want}`\n{}",
                run.all()
            );
        }
    }
}

#[test]
fn bad_invocations_exit_2() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: true\n"
    ));
    for args in [
        vec!["--secret", "novalue"],
        vec!["--job", "missing"],
        vec!["--sha", "0123456789"],
        vec!["--workflow", "nope.yml"],
        vec!["--bogus-flag"],
    ] {
        let run = r.run(&args);
        assert_eq!(run.code, 2, "{args:?}\n{}", run.all());
        assert!(run.stderr.contains("error"), "{args:?}\n{}", run.all());
        assert!(!run.stderr.contains("panicked"), "{args:?}\n{}", run.all());
    }
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .arg("run")
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a git work tree"));
}

#[test]
fn dry_run_prints_the_plan() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: touch ran\n  b:\n    needs: a\n    runs-on: x\n    strategy:\n      matrix:\n        v: [1, 2]\n    steps:\n      - run: true\n"
    ));
    let out = r.command().args(["run", "--dry-run"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("b (needs: a) matrix: 2 combination(s)"),
        "{stdout}"
    );
    assert!(!r.path().join("ran").exists());
}

#[test]
fn only_one_job_and_its_needs() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: true\n  b:\n    needs: a\n    runs-on: x\n    steps:\n      - run: true\n  c:\n    runs-on: x\n    steps:\n      - run: true\n"
    ));
    let run = r.run(&["--job", "b"]);
    run.assert_code(0);
    assert_eq!(run.jobs("a").len(), 1);
    assert_eq!(run.jobs("b").len(), 1);
    assert!(run.jobs("c").is_empty());
}

#[test]
fn vars_and_hash_files_and_functions() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - run: |
          echo \"${{{{ vars.REGION }}}} ${{{{ format('{{0}}-{{1}}', 'a', 1.50) }}}} ${{{{ contains(fromJSON('[\"x\",\"y\"]'), 'Y') }}}}\"
          echo \"h=${{{{ hashFiles('README.md') }}}}\"
          echo \"none=${{{{ hashFiles('nothing/**') }}}}\"
"
    ));
    let run = r.run(&["--var", "REGION=eu"]);
    run.assert_code(0);
    let lines = run.lines_of("a");
    assert!(lines.contains(&"eu a-1.5 true".to_owned()), "{}", run.all());
    // sha256 over the sha256 of README.md ("hello\n").
    use std::process::Command;
    let inner = Command::new("sh")
        .arg("-c")
        .arg("printf 'hello\\n' | sha256sum | cut -c1-64 | xxd -r -p | sha256sum | cut -c1-64")
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&inner.stdout).trim().to_owned();
    if !want.is_empty() {
        assert!(
            lines.contains(&format!("h={want}")),
            "want {want}\n{}",
            run.all()
        );
    }
    assert!(lines.contains(&"none=".to_owned()), "{}", run.all());
}

#[test]
fn ctrl_c_cancels_running_steps_and_runs_always_steps() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: x
    steps:
      - run: touch \"${{{{ vars.MARK }}}}\"; sleep 300
      - run: echo not after cancel
      - if: always()
        run: echo always ran
      - if: cancelled()
        run: echo cancelled ran
"
    ));
    let report = r.path().join(".git/report.json");
    let marker = r.path().join(".git/started");
    let child = r
        .command()
        .args(["run", "--var"])
        .arg(format!("MARK={}", marker.display()))
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the step is running, then interrupt as a terminal would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(marker.exists(), "the step never started");
    nix_kill(child.id(), 2);
    let out = child.wait_with_output().unwrap();
    let run = common::Run::new(out, &report);
    run.assert_code(130);
    let lines = run.lines_of("a");
    assert!(
        lines.contains(&"always ran".to_owned()) && lines.contains(&"cancelled ran".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        !lines.contains(&"not after cancel".to_owned()),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("a"), "cancelled");
}

fn nix_kill(pid: u32, sig: i32) {
    std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[test]
fn remote_actions_fail_clearly_unless_placed_offline() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: someone/thing@v1\n"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "`someone/thing@v1` could not be fetched; tried https://github.com/someone/thing ("
        ),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains(".pipewright/actions"), "{}", run.all());
    // A copy placed in the repository's action directory is used.
    r.file(
        ".pipewright/actions/someone/thing@v1/action.yml",
        "name: thing\ninputs:\n  who:\n    default: world\noutputs:\n  said:\n    value: ${{ steps.s.outputs.said }}\nruns:\n  using: composite\n  steps:\n    - id: s\n      shell: bash\n      run: echo \"hello ${{ inputs.who }}\"; echo said=yes >> $GITHUB_OUTPUT\n",
    );
    let run = r.run(&[]);
    run.assert_code(0);
    assert!(
        run.lines_of("a").contains(&"hello world".to_owned()),
        "{}",
        run.all()
    );
}

#[test]
fn local_composite_and_node_actions() {
    let r = Repo::new();
    r.file(
        "act/greet/action.yml",
        "name: greet\ninputs:\n  name:\n    required: true\noutputs:\n  greeting:\n    value: ${{ steps.g.outputs.greeting }}\nruns:\n  using: composite\n  steps:\n    - id: g\n      shell: bash\n      run: echo \"greeting=hi ${{ inputs.name }}\" >> $GITHUB_OUTPUT\n",
    );
    r.file(
        "act/node/action.yml",
        "name: node\ninputs:\n  who:\n    default: node\nruns:\n  using: node20\n  main: index.js\n",
    );
    r.file(
        "act/node/index.js",
        "const fs=require('fs'); console.log('node says ' + process.env.INPUT_WHO); fs.appendFileSync(process.env.GITHUB_OUTPUT, 'x=1\\n');\n",
    );
    r.workflow(
        "ci.yml",
        &format!(
            "{PUSH_MAIN}jobs:
  a:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - id: greet
        uses: ./act/greet
        with:
          name: you
      - run: echo \"${{{{ steps.greet.outputs.greeting }}}}\"
      - id: n
        uses: ./act/node
      - run: echo \"node output ${{{{ steps.n.outputs.x }}}}\"
"
        ),
    );
    r.commit("init");
    let run = r.run(&[]);
    let lines = run.lines_of("a");
    assert!(lines.contains(&"hi you".to_owned()), "{}", run.all());
    if which("node") {
        run.assert_code(0);
        assert!(
            lines.contains(&"node says node".to_owned())
                && lines.contains(&"node output 1".to_owned()),
            "{}",
            run.all()
        );
    }
}

fn which(p: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {p}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn reusable_workflows_take_inputs_secrets_and_give_outputs() {
    let r = Repo::new();
    r.workflow(
        "build.yml",
        "on:
  workflow_call:
    inputs:
      target:
        type: string
        required: true
      verbose:
        type: boolean
        default: false
    secrets:
      TOKEN:
        required: true
    outputs:
      artifact:
        value: ${{ jobs.compile.outputs.name }}
jobs:
  compile:
    runs-on: x
    outputs:
      name: ${{ steps.c.outputs.name }}
    steps:
      - id: c
        run: |
          echo \"compiling for ${{ inputs.target }} verbose=${{ inputs.verbose }} token=${{ secrets.TOKEN }}\"
          echo name=app-${{ inputs.target }} >> $GITHUB_OUTPUT
",
    );
    r.workflow(
        "ci.yml",
        &format!(
            "{PUSH_MAIN}jobs:
  build:
    uses: ./.github/workflows/build.yml
    with:
      target: linux
    secrets:
      TOKEN: ${{{{ secrets.DEPLOY_TOKEN }}}}
  ship:
    needs: build
    runs-on: x
    steps:
      - run: echo \"shipping ${{{{ needs.build.outputs.artifact }}}} (${{{{ needs.build.result }}}})\"
"
        ),
    );
    r.commit("init");
    let run = r.run(&["--secret", "DEPLOY_TOKEN=tok-123456"]);
    run.assert_code(0);
    assert!(
        run.lines_of("build / compile")
            .contains(&"compiling for linux verbose=false token=***".to_owned()),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("build/compile"), "success");
    assert!(
        run.lines_of("ship")
            .contains(&"shipping app-linux (success)".to_owned()),
        "{}",
        run.all()
    );
    // A missing required secret fails the calling job with the reason.
    let run = r.run(&[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("secret `TOKEN` is required"),
        "{}",
        run.all()
    );
}

#[test]
fn concurrency_groups_keep_one_running_and_one_waiting() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: x
    concurrency: deploy
    steps:
      - run: sleep 1.5
  x:
    runs-on: x
    steps:
      - run: sleep 0.3
  y:
    runs-on: x
    steps:
      - run: sleep 0.7
  b:
    needs: x
    runs-on: x
    concurrency: deploy
    steps:
      - run: echo b ran
  c:
    needs: y
    runs-on: x
    concurrency:
      group: deploy
    steps:
      - run: echo c ran
"
    ));
    let run = r.run(&["--jobs", "6"]);
    // b waited, then c replaced it: b is cancelled, c runs after a.
    assert_eq!(run.conclusion("a"), "success", "{}", run.all());
    assert_eq!(run.conclusion("b"), "cancelled", "{}", run.all());
    assert_eq!(run.conclusion("c"), "success", "{}", run.all());
    let a_done = run.stdout.find("[a] ✓ job success").unwrap();
    let c_start = run.stdout.find("[c] job started").unwrap();
    assert!(a_done < c_start, "{}", run.all());

    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  a:
    runs-on: x
    concurrency: deploy
    steps:
      - run: sleep 30
  x:
    runs-on: x
    steps:
      - run: sleep 0.3
  b:
    needs: x
    runs-on: x
    concurrency:
      group: deploy
      cancel-in-progress: true
    steps:
      - run: echo b ran
"
    ));
    let started = std::time::Instant::now();
    let run = r.run(&["--jobs", "6"]);
    assert!(started.elapsed().as_secs() < 20, "{}", run.all());
    assert_eq!(run.conclusion("a"), "cancelled", "{}", run.all());
    assert_eq!(run.conclusion("b"), "success", "{}", run.all());
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn postgres_and_redis_services_run_from_local_binaries_without_docker() {
    let pg_port = free_port();
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  test:
    runs-on: ubuntu-latest
    services:
      postgres:
        image: postgres:15
        env:
          POSTGRES_USER: app
          POSTGRES_PASSWORD: s3cret
          POSTGRES_DB: app_test
        ports: ['{pg_port}:5432']
        options: >-
          --health-cmd pg_isready --health-interval 1s --health-timeout 5s --health-retries 20
      redis:
        image: redis:7
        ports: [6379]
    steps:
      - name: Query the database
        env:
          PGPASSWORD: s3cret
          PGPORT: ${{{{ job.services.postgres.ports['5432'] }}}}
        run: |
          echo \"pg port $PGPORT\"
          psql -h 127.0.0.1 -U app -d app_test -tAc 'select 40 + 2'
      - name: A wrong password is refused
        env:
          PGPASSWORD: wrong
        run: |
          if psql -h 127.0.0.1 -p {pg_port} -U app -d app_test -tAc 'select 1'; then exit 1; fi
      - name: Ping redis
        run: redis-cli -p ${{{{ job.services.redis.ports['6379'] }}}} ping
"
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("test");
    assert!(
        lines.contains(&format!("pg port {pg_port}")),
        "{}",
        run.all()
    );
    assert!(lines.contains(&"42".to_owned()), "{}", run.all());
    assert!(lines.contains(&"PONG".to_owned()), "{}", run.all());
    assert!(
        run.all().contains(
            "Service `postgres`: PostgreSQL 15 from /usr/lib/postgresql/15/bin on 127.0.0.1:"
        ),
        "{}",
        run.all()
    );
    // Their logs are kept in the job's, folded (as the terminal shows a job that passed).
    for service in ["postgres", "redis"] {
        let fold = format!("▸ Service `{service}`: its log (");
        assert!(run.all().contains(&fold), "{fold}\n{}", run.all());
    }
    // Stopped with the job.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "the database outlived its job"
    );
    // An image only Docker runs fails the job, saying so.
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  web:
    runs-on: ubuntu-latest
    services:
      nginx:
        image: nginx:1.27
    steps:
      - run: echo never
"
    ));
    let run = r.run(&[]);
    run.assert_code(1);
    // This machine's engine has no such image, and nothing can be pulled.
    assert!(
        run.all().contains(
            "`services.nginx`: image `nginx:1.27` is not on this machine, and pulling it failed"
        ),
        "{}",
        run.all()
    );
    assert!(!run.all().contains("never\n"), "{}", run.all());
    // Without an engine, the message says what runs without one.
    let out = r
        .command()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("run")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("service `nginx` (nginx:1.27): this image needs a Docker engine (no Docker engine answers at unix:///nonexistent/docker.sock"),
        "{text}"
    );
    assert!(
        text.contains("without one only postgres and redis services run"),
        "{text}"
    );
}

#[test]
fn same_repository_uses_and_case_run_as_on_github() {
    let r = Repo::new();
    r.workflow(
        "ci.yml",
        &format!(
            "{PUSH_MAIN}jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: $/.github/actions/hello
        with:
          who: ${{{{ case(github.ref == 'refs/heads/main', 'main', 'elsewhere') }}}}
  b:
    uses: $/.github/workflows/reusable.yml
"
        ),
    );
    r.file(
        ".github/actions/hello/action.yml",
        "name: hello\ninputs:\n  who: {required: true}\nruns:\n  using: composite\n  steps:\n    - run: echo \"hello from ${{ inputs.who }}\"\n      shell: bash\n",
    );
    r.file(
        ".github/workflows/reusable.yml",
        "on: workflow_call\njobs:\n  inner:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo reused\n",
    );
    r.commit("init");
    let run = r.run(&[]);
    run.assert_code(0);
    assert!(run.all().contains("hello from main"), "{}", run.all());
    assert!(run.all().contains("reused"), "{}", run.all());
}

#[test]
fn a_job_for_windows_or_macos_fails_instead_of_running_here() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  build:
    strategy:
      fail-fast: false
      matrix:
        os: [ubuntu-latest, windows-latest, macos-14]
    runs-on: ${{{{ matrix.os }}}}
    steps:
      - run: echo built on ${{{{ matrix.os }}}}
"
    ));
    let run = r.run(&["--jobs", "1"]);
    run.assert_code(1);
    let all = run.all();
    assert!(all.contains("built on ubuntu-latest"), "{all}");
    assert!(!all.contains("built on windows-latest"), "{all}");
    assert!(!all.contains("built on macos-14"), "{all}");
    for os in ["windows-latest", "macos-14"] {
        assert!(
            all.contains(&format!(
                "`runs-on`: `{os}` asks for another operating system: pipewright runs this job on this linux machine only"
            )),
            "{all}"
        );
    }
}

#[test]
fn the_plan_shows_a_matrix_computed_at_run_time_and_a_long_condition_on_one_line() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  setup:
    runs-on: x
    outputs:
      m: ${{{{ steps.s.outputs.m }}}}
    steps:
      - id: s
        run: echo 'm=[\"a\",\"b\"]' >> $GITHUB_OUTPUT
  build:
    needs: setup
    if: |
      github.event_name == 'push' &&
      true
    strategy:
      matrix:
        x: ${{{{ fromJSON(needs.setup.outputs.m) }}}}
    runs-on: x
    steps:
      - run: echo built ${{{{ matrix.x }}}}
"
    ));
    let plan = r.run(&["--dry-run"]);
    plan.assert_code(0);
    assert!(
        plan.stdout.contains(
            "  build (needs: setup) matrix: computed when the job runs if: github.event_name == 'push' && true\n"
        ),
        "{}",
        plan.all()
    );
    let run = r.run(&[]);
    run.assert_code(0);
    for x in ["a", "b"] {
        assert!(run.all().contains(&format!("built {x}")), "{}", run.all());
    }
}

#[test]
fn the_made_payloads_have_the_fields_workflows_read() {
    let r = Repo::new();
    r.workflow(
        "ci.yml",
        "on: [push, pull_request]
jobs:
  show:
    if: contains(fromJSON('[\"main\", \"trunk\"]'), github.event.repository.default_branch)
    runs-on: x
    steps:
      - run: |
          echo \"sender ${{ github.event.sender.login != '' }}\"
          echo \"default ${{ github.event.repository.default_branch }}\"
          echo \"message ${{ github.event.head_commit.message }}\"
          echo \"head repo ${{ github.event.pull_request.head.repo.full_name == github.repository }}\"
          echo \"base ${{ github.event.pull_request.base.ref }}\"
",
    );
    r.file("README.md", "hello\n");
    r.commit("Add the show job");
    let push = r.run(&[]);
    push.assert_code(0);
    let lines = push.lines_of("show");
    for want in ["sender true", "default main", "message Add the show job"] {
        assert!(lines.contains(&want.to_owned()), "{want}\n{}", push.all());
    }
    let pr = r.run(&["pull_request", "--base-ref", "main"]);
    pr.assert_code(0);
    let lines = pr.lines_of("show");
    for want in ["head repo true", "base main"] {
        assert!(lines.contains(&want.to_owned()), "{want}\n{}", pr.all());
    }
    // A payload of one's own, by `--event-file` too.
    let file = r.path().join(".git").join("event.json");
    std::fs::write(
        &file,
        r#"{"repository": {"default_branch": "trunk"}, "sender": {"login": "x"}}"#,
    )
    .unwrap();
    let own = r.run(&["--event-file", file.to_str().unwrap()]);
    own.assert_code(0);
    assert!(
        own.lines_of("show").contains(&"default trunk".to_owned()),
        "{}",
        own.all()
    );
}

/// Jobs start from a defined environment, not the whole host's: a host's `NO_COLOR` or
/// compiler flags do not change what a job does; `--pass-env` adds a variable.
#[test]
fn jobs_get_a_clean_environment_and_what_is_passed() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  env:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo \"no_color=${{NO_COLOR:-unset}} cflags=${{CFLAGS:-unset}} kept=${{KEPT:-unset}} set=${{SET:-unset}}\"
          echo \"ci=$CI lang=${{LANG:-unset}} lc=${{LC_TIME:-unset}}\"
          test -n \"$PATH\" && test -n \"$HOME\" && echo path-and-home
"
    ));
    let out = r
        .command()
        .env("NO_COLOR", "1")
        .env("CFLAGS", "-O0")
        .env("KEPT", "yes")
        .env("LANG", "C.UTF-8")
        .env("LC_TIME", "C")
        .args(["run", "--pass-env", "KEPT", "--pass-env", "SET=given"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for want in [
        "no_color=unset cflags=unset kept=yes set=given",
        "ci=true lang=C.UTF-8 lc=C",
        "path-and-home",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}

/// GitHub's parallel steps: a `background` step runs beside the next ones; what it did joins
/// the job at `wait` (its output, `GITHUB_ENV`, its entry in `steps`); a `parallel` group's
/// steps run at once; `cancel` stops a background step, which ends `cancelled` without
/// failing the job.
#[test]
fn background_and_parallel_steps_run_at_once_and_join_the_job_when_waited_for() {
    // Each side waits (at most 10 s) for a file the other writes: run one after the other,
    // the first would give up and fail.
    let wait_for = |f: &str| {
        format!("for i in $(seq 200); do [ -f {f} ] && break; sleep 0.05; done; test -f {f}")
    };
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  j:
    runs-on: ubuntu-latest
    outputs:
      x: ${{{{ steps.server.outputs.x }}}}
    steps:
      - name: Serve
        id: server
        background: true
        run: |
          touch started
          {go}
          echo served the request
          echo FROM_BG=yes >> $GITHUB_ENV
          echo x=7 >> $GITHUB_OUTPUT
      - run: |
          {started}
          echo \"before the wait: '${{{{ steps.server.outputs.x }}}}' '${{FROM_BG:-}}'\"
          touch go
      - wait: server
      - run: |
          echo \"after the wait: ${{{{ steps.server.outputs.x }}}} $FROM_BG ${{{{ steps.server.conclusion }}}}\"
      - name: Builds
        parallel:
          - run: touch a && {b}
          - run: touch b && {a}
      - run: test -f a && test -f b && echo both built
      - id: svc
        background: true
        run: |
          trap 'echo stopping; exit 0' TERM
          echo listening
          while :; do sleep 0.1; done
      - cancel: svc
      - run: |
          echo \"svc was ${{{{ steps.svc.conclusion }}}}\"
",
        go = wait_for("go"),
        started = wait_for("started"),
        a = wait_for("a"),
        b = wait_for("b"),
    ));
    let run = r.run(&[]);
    run.assert_code(0);
    let lines = run.lines_of("j");
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(has("before the wait: '' ''"), "{}", run.all());
    assert!(has("after the wait: 7 yes success"), "{}", run.all());
    assert!(has("served the request"), "{}", run.all());
    assert!(has("both built"), "{}", run.all());
    assert!(has("svc was cancelled"), "{}", run.all());
    assert_eq!(run.output("j", "x"), "7");
    // Each step is in the report where it was written; the background step as it ended.
    let names: Vec<String> = run.job("j")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names[0], "Serve", "{names:?}");
    assert_eq!(names[2], "Wait for server", "{names:?}");
    assert_eq!(names[6], "Builds", "{names:?}");
    assert_eq!(names[9], "Cancel svc", "{names:?}");
    let steps = run.steps("j");
    assert_eq!(
        steps[8],
        ("cancelled".into(), "cancelled".into()),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .enumerate()
            .all(|(i, s)| i == 8 || s.1 == "success"),
        "{steps:?}"
    );
    // The background step's lines are shown together, after the step that ran beside it.
    let served = lines
        .iter()
        .position(|l| l.contains("served the request"))
        .unwrap();
    let before = lines
        .iter()
        .position(|l| l.contains("before the wait"))
        .unwrap();
    assert!(before < served, "{}", run.all());
}

/// A background step that fails fails the step that waits for it (and so the job), unless
/// it may (`continue-on-error`); one left running when the job fails is stopped, not waited
/// for; one never waited for is waited for at the end.
#[test]
fn a_failed_background_step_fails_its_wait_and_one_left_running_is_stopped_when_the_job_fails() {
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:
  waits:
    runs-on: ubuntu-latest
    steps:
      - id: bad
        background: true
        run: echo going wrong; exit 3
      - id: allowed
        background: true
        continue-on-error: true
        run: exit 4
      - run: echo foreground ran
      - wait: allowed
      - wait: [bad]
      - run: echo never
  stops:
    runs-on: ubuntu-latest
    steps:
      - id: forever
        background: true
        run: |
          trap 'echo stopped at the end; exit 0' TERM
          while :; do sleep 0.1; done
      - run: exit 1
  ends:
    runs-on: ubuntu-latest
    steps:
      - background: true
        run: sleep 0.3; echo waited for at the end
      - run: echo last step
"
    ));
    let started = std::time::Instant::now();
    let run = r.run(&[]);
    run.assert_code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("waits"), "failure");
    let steps = run.steps("waits");
    assert_eq!(steps[0], ("failure".into(), "failure".into()), "{steps:?}");
    assert_eq!(steps[1], ("failure".into(), "success".into()), "{steps:?}");
    assert_eq!(
        steps[3].1, "success",
        "the wait for a step that may fail: {steps:?}"
    );
    assert_eq!(
        steps[4].1, "failure",
        "the wait for the failed step: {steps:?}"
    );
    assert_eq!(steps[5].1, "skipped", "{steps:?}");
    let waits = run.lines_of("waits");
    assert!(
        waits.iter().any(|l| l.contains("going wrong")),
        "{}",
        run.all()
    );
    assert!(!waits.iter().any(|l| l == "never"), "{}", run.all());

    assert_eq!(run.conclusion("stops"), "failure");
    assert!(
        run.lines_of("stops")
            .iter()
            .any(|l| l.contains("stopped at the end")),
        "{}",
        run.all()
    );
    assert_eq!(run.conclusion("ends"), "success");
    let ends = run.lines_of("ends");
    let last = ends.iter().position(|l| l.contains("last step")).unwrap();
    let waited = ends
        .iter()
        .position(|l| l.contains("waited for at the end"));
    assert!(waited.is_some_and(|w| w > last), "{}", run.all());
    let names: Vec<String> = run.job("ends")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("Wait for all background steps")
    );
}

/// A step's process is started by posix_spawn (a vfork: the job's memory is shared with the
/// child until its exec, not copied) even though it is given a working directory. In the
/// statically linked program the standard library finds glibc's
/// `posix_spawn_file_actions_addchdir_np` only if the program exports it (the link arguments
/// in .cargo/config.toml); otherwise it forks the whole process for every step. Seen with
/// strace, where it is installed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_step_is_started_without_copying_the_process_that_starts_it() {
    use std::collections::HashMap;
    if !std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("strace is not installed: not checked");
        return;
    }
    let r = repo_with(&format!(
        "{PUSH_MAIN}jobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: mkdir sub\n      - run: pwd\n        working-directory: sub\n"
    ));
    let trace = r.path().join(".git").join("strace.txt");
    let report = r.path().join(".git").join("report.json");
    let out = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=clone,clone3,fork,vfork,execve",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_pipewright"))
        .args(["run", "--report"])
        .arg(&report)
        .current_dir(r.path())
        .env("NO_COLOR", "1")
        .env("XDG_CACHE_HOME", r.path().join(".git/cache-home"))
        .output()
        .unwrap();
    let run = common::Run::new(out, &report);
    run.assert_code(0);
    assert!(
        run.lines_of("t")
            .iter()
            .any(|l| l.ends_with("/workspace/sub")),
        "the step did not run in its working directory:\n{}",
        run.all()
    );
    // strace -f: "PID clone3({flags=...}, 88) = CHILD", or the call "<unfinished ...>" and
    // its "<... clone3 resumed>)   = CHILD" on a later line; then "CHILD execve(...)".
    let text = std::fs::read_to_string(&trace).unwrap();
    let starts = ["clone(", "clone3(", "fork(", "vfork("];
    let (mut pending, mut made_by) = (HashMap::new(), HashMap::new());
    for line in text.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let started = starts.iter().any(|s| call.starts_with(s));
        if started {
            pending.insert(pid, call);
        }
        // The return value after the call's `)` and spaces (strace aligns them).
        if (started || call.starts_with("<... "))
            && let Some((_, child)) = call
                .rsplit_once("= ")
                .filter(|(_, c)| c.trim().parse::<u32>().is_ok())
            && let Some(how) = pending.remove(pid)
        {
            made_by.insert(child.trim(), how);
        }
    }
    let bashes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("execve(\"") && l.contains("bash\""))
        .filter_map(|l| l.split_once(' ').map(|(pid, _)| pid))
        .collect();
    assert_eq!(bashes.len(), 2, "one bash a step:\n{text}");
    for pid in bashes {
        let how = made_by.get(pid).copied().unwrap_or_default();
        assert!(
            how.contains("CLONE_VFORK"),
            "the step's process {pid} was started by `{how}`, not a vfork:\n{text}"
        );
    }
}
