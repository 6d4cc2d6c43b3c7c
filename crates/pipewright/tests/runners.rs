//! Remote runners end to end: a real `pipewright serve` without its in-process runner, and
//! `pipewright runner` processes registered with one-time tokens, taking jobs by their
//! `runs-on` labels, passing artifacts and outputs between jobs, and being killed.

mod common;
mod deploy_support;
mod serve_support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use serve_support::{Runner, Server, TOKEN, post, registration_token};

/// A server whose jobs only remote runners take; leases of 2 s.
fn server() -> Server {
    Server::start_with("[runner]\nembedded_capacity = 0\nlease_seconds = 2\n")
}

/// Starts a runner named `name` (its jobs see `RUNNER_TAG=name`) with extra `labels`.
fn runner(s: &Server, name: &str, labels: &str, token: Option<&str>) -> Runner {
    Runner::spawn(s, name, labels, token)
}

/// A server whose own runner confines its jobs (as the job user) and so brokers Docker for
/// them (by default), with `runner` lines added to its `[runner]`.
fn brokered_server(runner: &str) -> Server {
    let user = serve_support::job_user();
    Server::start_repos_env(
        |d| {
            format!(
                "[[repos]]\nname = \"acme/app\"\npath = \"{}/app.git\"\n[runner]\njob_user = \"{user}\"\n{runner}",
                d.display()
            )
        },
        &[],
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Pushes workflow `wf` to `main` and waits for its run: the run's id, the run and its log.
fn pushed(s: &Server, wf: &str) -> (i64, Value, String) {
    let work = s.commit("main", wf);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let run = s.wait_completed(id);
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    (id, run, log)
}

fn show(s: &Server, id: i64) -> Value {
    let (_, out, _) = s.cli(&["runs", "show", "--json", &id.to_string()]);
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

fn job_status(s: &Server, id: i64, job: &str) -> String {
    show(s, id)["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["name"] == job)
        .and_then(|j| j["status"].as_str())
        .unwrap_or("")
        .to_owned()
}

const PIPELINE: &str = r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      version: ${{ steps.v.outputs.version }}
    steps:
      - id: v
        run: |
          echo "build on $RUNNER_TAG"
          echo "version=1.2.3" >> "$GITHUB_OUTPUT"
          mkdir dist && echo "wheel of $RUNNER_TAG" > dist/app.whl
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: dist/
  train:
    needs: build
    runs-on: [self-hosted, gpu]
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: dist
          path: got
      - run: |
          echo "train on $RUNNER_TAG with ${{ needs.build.outputs.version }}"
          cat got/app.whl
"#;

#[test]
fn remote_runners_take_jobs_by_label_and_pass_artifacts_and_outputs() {
    let s = server();
    let token = registration_token(&s);
    let mut gpu = runner(&s, "gpu", "gpu", Some(&token));
    wait_for("the gpu runner to register", || {
        gpu.work_dir.join("runner.json").exists()
    });
    // A registration token works once.
    let mut again = runner(&s, "again", "", Some(&token));
    let status = again.child.wait().unwrap();
    assert!(!status.success());
    assert!(again.log().contains("used already"), "{}", again.log());
    let cpu = runner(&s, "cpu", "", Some(&registration_token(&s)));
    wait_for("the cpu runner to register", || {
        cpu.work_dir.join("runner.json").exists()
    });
    let (code, list, err) = s.cli(&["runners", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"gpu") && names.contains(&"cpu"),
        "{names:?}"
    );

    let (id, run, log) = pushed(&s, PIPELINE);
    assert_eq!(
        run["conclusion"],
        "success",
        "{run}\n{log}\n{}\n{}",
        gpu.log(),
        cpu.log()
    );
    // Only the gpu runner has the `gpu` label; `build` went to whichever asked first.
    assert!(log.contains("[train] train on gpu with 1.2.3"), "{log}");
    assert!(log.contains("[train] wheel of "), "{log}");
    assert!(log.contains("[build] build on "), "{log}");
    // The artifact is kept by the server and downloadable.
    let (code, out, _) = s.cli(&["runs", "show", "--json", &id.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("\"runner_id\""), "{out}");
    gpu.kill9();
}

/// Twenty jobs only a `gpu` runner takes, queued ahead of one any runner takes (`lint` is
/// queued once `setup` is done).
const BEHIND: &str = r#"on: push
jobs:
  setup:
    runs-on: ubuntu-latest
    steps:
      - run: "true"
  train:
    runs-on: [self-hosted, gpu]
    strategy:
      matrix:
        i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    steps:
      - run: echo "train ${{ matrix.i }} on $RUNNER_TAG"
  lint:
    needs: setup
    runs-on: ubuntu-latest
    steps:
      - run: echo "lint on $RUNNER_TAG"
"#;

#[test]
fn a_runner_takes_the_job_it_can_run_from_behind_a_page_of_jobs_it_cannot() {
    let s = server();
    let cpu = runner(&s, "cpu", "", Some(&registration_token(&s)));
    wait_for("the cpu runner to register", || {
        cpu.work_dir.join("runner.json").exists()
    });
    let work = s.commit("main", BEHIND);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    wait_for("lint to complete", || {
        job_status(&s, id, "lint") == "completed"
    });
    let run = show(&s, id);
    let jobs = run["jobs"].as_array().unwrap();
    let lint = jobs.iter().find(|j| j["name"] == "lint").unwrap();
    let train: Vec<&Value> = jobs.iter().filter(|j| j["job_id"] == "train").collect();
    assert_eq!(train.len(), 20, "{run}");
    // The case to test: more than a page (16) of jobs the runner cannot take queued first.
    let ahead = train
        .iter()
        .filter(|j| j["id"].as_i64() < lint["id"].as_i64())
        .count();
    assert!(
        ahead > 16,
        "only {ahead} train jobs were queued before lint: {run}"
    );
    assert_eq!(lint["conclusion"], "success", "{run}");
    assert!(
        train.iter().all(|j| j["status"] == "queued"),
        "a runner without `gpu` took a train job: {run}"
    );
    // Labels match without regard to case (on PostgreSQL in SQL, here for its first page).
    let gpu = runner(&s, "gpu", "GPU", Some(&registration_token(&s)));
    let run = s.wait_completed(id);
    assert_eq!(run["conclusion"], "success", "{run}\n{}", gpu.log());
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert!(log.contains("train 20 on gpu"), "{log}");
    assert!(log.contains("lint on cpu"), "{log}");
}

/// A job's event file (`GITHUB_EVENT_PATH`) is the payload of its run's event, on a runner
/// that confines its jobs (the runner writes it; the job's process is handed the `github`
/// context once, in the run's context) and on one that runs them in its own process.
#[test]
fn a_job_s_event_file_is_its_run_s_payload_confined_or_not() {
    let s = server();
    let confined = runner(&s, "confined", "boxed", Some(&registration_token(&s)));
    let open = Runner::spawn_with(
        &s,
        "open",
        "open",
        Some(&registration_token(&s)),
        &["--isolation", "none"],
    );
    let step = r#"
    steps:
      - run: |
          python3 -c '
          import json, os
          e = json.load(open(os.environ["GITHUB_EVENT_PATH"]))
          assert e["after"] == os.environ["GITHUB_SHA"], e
          print("the event of", e["ref"], "on", os.environ["RUNNER_TAG"])'
          test "${{ github.event.after }}" = "$GITHUB_SHA"
"#;
    let wf = format!(
        "on: push\njobs:\n  a:\n    runs-on: [self-hosted, boxed]{step}  b:\n    runs-on: [self-hosted, open]{step}"
    );
    let (_, run, log) = pushed(&s, &wf);
    assert_eq!(
        run["conclusion"],
        "success",
        "{run}\n{log}\n{}\n{}",
        confined.log(),
        open.log()
    );
    for tag in ["confined", "open"] {
        assert!(
            log.contains(&format!("the event of refs/heads/main on {tag}")),
            "{log}"
        );
    }
}

#[test]
fn a_runner_s_next_job_finds_a_clean_directory_and_every_log_line_arrives() {
    let s = server();
    let r = runner(&s, "solo", "", Some(&registration_token(&s)));
    // Three instances, one after another on the one runner (capacity 1), each in the
    // directory the last one used: none sees what another left.
    let wf = r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        n: [1, 2, 3]
    steps:
      - run: |
          test -z "$(ls -A "$GITHUB_WORKSPACE")" || { ls -la "$GITHUB_WORKSPACE"; exit 1; }
          test ! -e "$RUNNER_TEMP/left-by-a-step"
          test ! -s "$GITHUB_ENV" && test ! -s "$GITHUB_OUTPUT"
          echo "clean for ${{ matrix.n }}"
          mkdir -p "$GITHUB_WORKSPACE/sub" && touch "$GITHUB_WORKSPACE/sub/file" "$GITHUB_WORKSPACE/.hidden"
          touch "$RUNNER_TEMP/left-by-a-step"
          echo "LEFT=${{ matrix.n }}" >> "$GITHUB_ENV"
      - run: |
          test "$LEFT" = "${{ matrix.n }}"
          for i in $(seq 1 5); do echo "line $i of ${{ matrix.n }}"; done
"#;
    let (_, run, log) = pushed(&s, wf);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}\n{}", r.log());
    let runners: std::collections::HashSet<String> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["runner_id"].to_string())
        .collect();
    assert_eq!(runners.len(), 1, "{run}");
    for n in 1..=3 {
        assert!(log.contains(&format!("clean for {n}")), "{log}");
        // The last lines of a short job come with its report: all there, in order.
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!(" of {n}")) && l.contains("line "))
            .collect();
        assert_eq!(lines.len(), 5, "{log}");
        assert!(lines[4].ends_with(&format!("line 5 of {n}")), "{log}");
    }
    // One slot directory, kept.
    let slots: Vec<_> = std::fs::read_dir(r.work_dir.join("slots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(slots, ["0"], "{slots:?}");
}

#[test]
fn a_lost_runner_s_job_goes_to_another_and_a_killed_server_loses_nothing() {
    let mut s = server();
    let mut first = runner(&s, "first", "", Some(&registration_token(&s)));
    let work = s.commit(
        "main",
        "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"start on $RUNNER_TAG\"; sleep 3; echo \"done on $RUNNER_TAG\"\n",
    );
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    wait_for("the job to start on the first runner", || {
        job_status(&s, id, "slow") == "running"
    });
    // The runner dies: after its lease runs out (2 s) the job goes to the second runner.
    first.kill9();
    let second = runner(&s, "second", "", Some(&registration_token(&s)));
    let run = s.wait_completed(id);
    let (_, log, _) = s.cli(&["logs", &id.to_string()]);
    assert_eq!(
        run["conclusion"],
        "success",
        "{run}\n{log}\n{}",
        second.log()
    );
    assert!(log.contains("runner lost: attempt 2 of 2 follows"), "{log}");
    assert!(log.contains("done on second"), "{log}");
    assert!(!log.contains("done on first"), "{log}");
    assert_eq!(run["jobs"][0]["attempt"], 2, "{run}");

    // The server dies while the second runner runs a job: the runner keeps the job and
    // reports to the restarted server; nothing is run twice.
    let work = s.commit(
        "main",
        "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"begin\"; sleep 2; echo \"end on $RUNNER_TAG\"\n",
    );
    s.push(&work, "main");
    let id2 = s.runs()[0]["id"].as_i64().unwrap();
    assert_ne!(id, id2);
    wait_for("the job to start on the second runner", || {
        job_status(&s, id2, "slow") == "running"
    });
    s.kill9();
    std::thread::sleep(Duration::from_millis(500));
    s.spawn();
    let run = s.wait_completed(id2);
    let (_, log, _) = s.cli(&["logs", &id2.to_string()]);
    assert_eq!(
        run["conclusion"],
        "success",
        "{run}\n{log}\n{}\n{}",
        second.log(),
        s.log()
    );
    assert_eq!(run["jobs"][0]["attempt"], 1, "{run}");
    assert_eq!(
        log.lines().filter(|l| *l == "[slow] begin").count(),
        1,
        "{log}"
    );
    assert!(log.contains("end on second"), "{log}");
}

#[test]
fn a_runner_reporting_for_a_job_it_does_not_hold_is_refused() {
    let s = server();
    let r = runner(&s, "r", "", Some(&registration_token(&s)));
    wait_for("the runner to register", || {
        r.work_dir.join("runner.json").exists()
    });
    let reg: Value =
        serde_json::from_str(&std::fs::read_to_string(r.work_dir.join("runner.json")).unwrap())
            .unwrap();
    let credential = reg["credential"].as_str().unwrap();
    let post = |path: &str, auth: &str| {
        post(
            &s.url,
            path,
            &[
                ("authorization", format!("Bearer {auth}")),
                ("pipewright-lease", "not-a-lease".to_owned()),
                ("content-type", "application/json".to_owned()),
            ],
            b"{\"lines\":[]}",
        )
        .0
    };
    assert_eq!(post("/api/v1/runner/jobs/1/heartbeat", credential), 409);
    assert_eq!(post("/api/v1/runner/jobs/1/logs", credential), 409);
    assert_eq!(post("/api/v1/runner/jobs/1/heartbeat", "wrong"), 401);
    assert_eq!(post("/api/v1/runner/jobs/1/heartbeat", TOKEN), 401);
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the peak RSS of several processes until stopped.
struct Peaks {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<u64>>>,
}

impl Peaks {
    fn watch(pids: Vec<u32>) -> Peaks {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = vec![0; pids.len()];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for (peak, pid) in peaks.iter_mut().zip(&pids) {
                    *peak = (*peak).max(rss_kib(*pid));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peaks
        });
        Peaks {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_step_printing_hundreds_of_mebibytes_keeps_server_and_runner_small_and_its_log_compressed() {
    // 256 MiB here (the test binaries are unoptimised); bench/log-volume.sh prints 1 GiB
    // through the release binary.
    let mib: u64 = std::env::var("PIPEWRIGHT_TEST_LOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let lines = mib * 1024 * 1024 / 1001;
    let s = server();
    let token = registration_token(&s);
    let r = runner(&s, "big", "", Some(&token));
    let work = s.commit(
        "main",
        &format!(
            "on: push\njobs:\n  big:\n    runs-on: self-hosted\n    steps:\n      - run: yes \"$(printf 'x%.0s' $(seq 1000))\" | head -n {lines}; echo the last line\n      - run: echo second step\n"
        ),
    );
    let server_pid = s.child.as_ref().unwrap().id();
    let peaks = Peaks::watch(vec![server_pid, r.child.id()]);
    s.push(&work, "main");
    let id = s.runs()[0]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let run = loop {
        let run = show(&s, id);
        if run["status"] == "completed" {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["conclusion"], "success", "{run}\n{}", r.log());
    // The log moves into compressed files per step once the run is completed.
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let files = s.dir.path().join(format!("data/logs/job-{job}"));
    wait_for("the log archived", || files.exists());
    // One file per step.
    assert!(
        files.join("0001.zst").exists(),
        "{:?}",
        std::fs::read_dir(&files).unwrap().collect::<Vec<_>>()
    );
    let on_disk: u64 = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        on_disk < mib * 1024 * 1024 / 50,
        "{on_disk} bytes on disk for {mib} MiB of output"
    );
    // Read back whole through the API (streamed), while the peaks are still watched.
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["logs", &id.to_string(), "--server", &s.url])
        .env("PIPEWRIGHT_TOKEN", TOKEN)
        .output()
        .unwrap();
    let peaks = peaks.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    let output_lines = text
        .lines()
        .filter(|l| l.starts_with("[big] xxxxxxxxxx"))
        .count();
    assert_eq!(u64::try_from(output_lines).unwrap(), lines);
    assert!(
        text.contains("[big] the last line\n"),
        "{}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(text.contains("[big] second step\n"));
    let (server_kib, runner_kib) = (peaks[0], peaks[1]);
    assert!(
        server_kib < 64 * 1024 && runner_kib < 64 * 1024,
        "peak RSS: server {server_kib} KiB, runner {runner_kib} KiB"
    );
    eprintln!(
        "peak RSS: server {server_kib} KiB, runner {runner_kib} KiB; {on_disk} bytes on disk"
    );
}

/// A runner's `--image LABEL=IMAGE` runs that label's jobs in a container of the image (an
/// unconfined runner: a confined job cannot reach the Docker engine); other labels stay on
/// the host.
#[test]
fn a_runner_runs_a_label_s_jobs_in_its_image() {
    let image = common::busybox_image();
    let s = server();
    let arg = format!("ubuntu-latest={image}");
    let r = Runner::spawn_with(
        &s,
        "boxed",
        "",
        Some(&registration_token(&s)),
        &["--isolation", "none", "--image", &arg],
    );
    wait_for("the runner to register", || {
        r.work_dir.join("runner.json").exists()
    });
    let (_, run, log) = pushed(
        &s,
        "on: push\njobs:\n  boxed:\n    runs-on: ubuntu-latest\n    steps:\n      - run: cat /marker\n  host:\n    runs-on: self-hosted\n    steps:\n      - run: test ! -e /marker && echo on-the-host\n",
    );
    assert_eq!(run["conclusion"], "success", "{run}\n{log}\n{}", r.log());
    assert!(log.contains("[boxed] inside the container"), "{log}");
    assert!(log.contains("[host] on-the-host"), "{log}");
}

/// The server's own runner, its jobs confined (as by default), runs a label's jobs in the
/// image its configuration maps the label to, through its Docker broker.
#[test]
fn the_server_s_own_runner_runs_a_label_s_jobs_in_its_configured_image() {
    let image = common::busybox_image();
    let s = brokered_server(&format!("images = {{ ubuntu-latest = \"{image}\" }}\n"));
    let (_, run, log) = pushed(
        &s,
        "on: push\njobs:\n  boxed:\n    runs-on: ubuntu-latest\n    steps:\n      - run: cat /marker\n  host:\n    runs-on: self-hosted\n    steps:\n      - run: test ! -e /marker && echo on-the-host\n",
    );
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("[boxed] inside the container"), "{log}");
    assert!(log.contains("[host] on-the-host"), "{log}");
}

/// A reusable workflow of another repository in a server's run: the server fetches it (as
/// `pipewright run` does) and its jobs reach the runner with their workflow's text.
#[test]
fn a_server_s_run_calls_a_reusable_workflow_of_another_repository() {
    let hub = tempfile::tempdir().unwrap();
    common::reusable_greet(hub.path());
    let url = format!("file://{}", hub.path().display());
    let s = Server::start_repos_env(
        |d| {
            format!(
                "[[repos]]\nname = \"acme/app\"\npath = \"{}/app.git\"\n",
                d.display()
            )
        },
        &[("PIPEWRIGHT_ACTIONS_URL", &url)],
    );
    let (_, run, log) = pushed(
        &s,
        "on: push\njobs:\n  call:\n    uses: acme/shared/.github/workflows/greet.yml@v1\n    with:\n      who: the caller\n  after:\n    needs: call\n    runs-on: x\n    steps:\n      - run: echo \"said ${{ needs.call.outputs.said }}\"\n",
    );
    assert_eq!(run["conclusion"], "success", "{run}\n{log}\n{}", s.log());
    assert!(log.contains("shared says hello to the caller"), "{log}");
    assert!(log.contains("said yes"), "{log}");
}

/// The server's own runner takes any job, but not one for another operating system: that
/// job fails saying so, instead of running on this machine.
#[test]
fn the_server_s_own_runner_fails_a_job_for_another_operating_system() {
    let s = Server::start();
    let (_, run, log) = pushed(
        &s,
        "on: push\njobs:\n  win:\n    runs-on: windows-latest\n    steps:\n      - run: echo ran on this machine\n  linux:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ran on linux\n",
    );
    assert_eq!(run["conclusion"], "failure", "{run}\n{log}");
    assert!(
        log.contains("`windows-latest` asks for another operating system"),
        "{log}"
    );
    assert!(!log.contains("ran on this machine"), "{log}");
    assert!(log.contains("[linux] ran on linux"), "{log}");
}

/// The policy the main thread of process `pid` is scheduled with (`/proc/PID/stat`, field
/// 41): 0 is `SCHED_OTHER`, 5 `SCHED_IDLE`.
fn policy_of(pid: u32) -> Option<u32> {
    serve_support::stat_fields(pid)?.get(41 - 3)?.parse().ok()
}

/// The server's own runner starts a slot's next job process while the last job's report
/// goes out, at the lowest CPU priority (it then takes no CPU from what runs); the process
/// is raised before it gets its job, so the job's steps run at the normal priority.
#[test]
fn a_job_process_started_ahead_waits_at_the_lowest_priority_and_runs_its_job_at_the_normal_one() {
    let s = Server::start();
    let wf = "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"policy $(cut -d' ' -f41 /proc/$$/stat) of ${{ github.sha }}\"\n";
    let (_, run, log) = pushed(&s, wf);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("policy 0 of"), "{log}");
    // Whether this machine lets a process raise itself back from SCHED_IDLE (CAP_SYS_NICE):
    // only then does the runner lower anything.
    let raises = Command::new("chrt")
        .args(["-i", "0", "sh", "-c", "chrt -o -p 0 $$"])
        .output()
        .is_ok_and(|o| o.status.success());
    let server = s.child.as_ref().unwrap().id();
    let waiting = || {
        serve_support::job_processes(server)
            .into_iter()
            .filter_map(policy_of)
            .collect::<Vec<_>>()
    };
    if raises {
        wait_for("a job process started ahead, lowered", || {
            waiting().contains(&5)
        });
    } else {
        eprintln!("this machine does not let a process leave SCHED_IDLE: nothing is lowered");
        wait_for("a job process started ahead", || !waiting().is_empty());
        assert!(!waiting().contains(&5), "{:?}", waiting());
    }
    // The next job runs in it, raised.
    let (_, run, log) = pushed(&s, &wf.replace("j:", "k:"));
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("policy 0 of"), "{log}");
}

/// A confined job (a fork's as much as a branch's) reaches Docker only through its runner's
/// broker: its `container` and `services` run there, and `docker run` in a step works; what
/// would reach the host is refused even when a step asks the broker itself, the engine's
/// own socket stays closed to it, and nothing the job made outlives it.
#[test]
fn a_confined_job_runs_containers_through_its_runner_s_broker_and_cannot_reach_the_host() {
    let image = common::busybox_image();
    let s = brokered_server("");
    let create = |body: &str| {
        format!(
            "curl -s --unix-socket \"$sock\" -H 'Content-Type: application/json' -X POST -d '{body}' http://docker/containers/create; echo"
        )
    };
    let left = format!("pipewright-left-{}", std::process::id());
    // A volume of the machine's, which a job's volume of the same name must not be.
    let host_volume = format!("pipewright-host-{}", std::process::id());
    assert!(common::docker(&["volume", "create", &host_volume]).0);
    let workflow = format!(
        "on: push
jobs:
  boxed:
    runs-on: ubuntu-latest
    container: {image}
    services:
      web:
        image: {image}
    steps:
      - run: cat /marker && wget -q -O - http://web/ | head -1
  steps:
    runs-on: ubuntu-latest
    steps:
      - run: |
          sock=\"${{DOCKER_HOST#unix://}}\"
          test -S \"$sock\"
          docker run --rm {image} cat /marker
          docker create --name {left} {image} true
          docker run --rm --privileged {image} true 2>&1 || echo privileged refused
          docker run --rm -v /etc:/host-etc {image} true 2>&1 || echo mount refused
          {privileged}
          {root}
          {folded}
          docker pull {image} 2>&1 || echo pull refused
          docker run --rm -v \"$PWD:/w\" {image} mknod /w/disk b 8 0 2>&1 || echo mknod refused
          test ! -e disk
          docker network create {left}-net >/dev/null && echo network made
          echo 'FROM {image}' > Dockerfile
          DOCKER_BUILDKIT=0 docker build . 2>&1 || echo build refused
          ln -s / root-link
          docker run --rm -v \"$PWD/root-link:/h\" {image} true 2>&1 || echo link refused
          curl -s --unix-socket \"$sock\" -H 'Content-Type: application/json' -X POST -d '{{\"Name\":\"{host_volume}\"}}' http://docker/volumes/create; echo
          curl -s --unix-socket \"$sock\" http://docker/containers/json; echo
          curl -s --unix-socket /var/run/docker.sock http://docker/_ping 2>&1 || echo engine socket closed
      - uses: docker://{image}
        with:
          entrypoint: sh
          args: -c \"test -d /github/home && echo docker step in $HOME\"
",
        privileged = create(&format!(r#"{{"Image":"{image}","HostConfig":{{"Privileged":true}}}}"#)),
        root = create(&format!(r#"{{"Image":"{image}","HostConfig":{{"Binds":["/:/host"]}}}}"#)),
        folded = create(&format!(
            r#"{{"Image":"{image}","HostConfig":{{"Privileged":false,"privileged":true}}}}"#
        )),
    );
    let (_, run, log) = pushed(&s, &workflow);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("[boxed] inside the container"), "{log}");
    assert!(log.contains("[boxed] hello from the web service"), "{log}");
    assert!(log.contains("[steps] inside the container"), "{log}");
    for said in [
        "privileged refused",
        "mount refused",
        "pipewright: `HostConfig.Privileged` is not allowed to a job",
        "pipewright: mounting `/` is not allowed to a job",
        "pipewright: `HostConfig.privileged` is not allowed to a job",
        "link refused",
        "pull refused",
        "mknod refused",
        "[steps] network made",
        "pipewright: building an image is not allowed to a job",
        "[steps] build refused",
        "is on this machine already: a job may pull what the machine lacks",
        "root-link` is a symbolic link",
        // The job's volume of that name is its own, under its label.
        &format!(".{host_volume}\",\"Options\""),
        "[steps] []",
        "engine socket closed",
        "[steps] docker step in /github/home",
    ] {
        assert!(log.contains(said), "`{said}` not in:\n{log}");
    }
    assert!(
        !common::docker(&["network", "inspect", &format!("{left}-net")]).0,
        "the job's network outlived it"
    );
    assert!(
        common::docker(&["volume", "inspect", &host_volume]).0,
        "the machine's volume went with the job"
    );
    common::docker(&["volume", "rm", &host_volume]);
    // What the job made, what it left too (other tests' jobs may be running: only this
    // job's names are looked at), is gone with it.
    for name in log
        .split_whitespace()
        .filter(|w| w.starts_with("pipewright-") && (w.ends_with("-job") || w.ends_with("-web")))
        .chain([left.as_str()])
    {
        assert!(
            !common::docker(&["container", "inspect", name]).0,
            "container {name} outlived its job"
        );
    }
}

/// An image a confined job pulled with its registry's credentials is its own while it
/// runs: another job may neither run nor inspect nor pull it (not even with the
/// credentials: the engine would answer a pull by digest from its cache); it is removed
/// when the job ends.
#[test]
fn an_image_a_job_pulled_is_its_own_while_it_runs_and_removed_after() {
    let registry = common::Registry::start(
        &format!("private/app-{}", std::process::id()),
        "1",
        Some("puller:secret"),
    );
    let s = brokered_server("");
    let image = &registry.image;
    let host = image.split('/').next().unwrap();
    let meet = format!("http://127.0.0.1:{}", registry.port);
    // What `docker login` would write (it asks the engine to check, which a job may not).
    let login = format!(
        "mkdir -p \"$HOME/.docker\" && echo '{{\"auths\":{{\"{host}\":{{\"auth\":\"cHVsbGVyOnNlY3JldA==\"}}}}}}' > \"$HOME/.docker/config.json\""
    );
    let workflow = format!(
        "on: push
jobs:
  pulls:
    runs-on: ubuntu-latest
    steps:
      - run: |
          {login}
          docker pull {image} >/dev/null
          docker run --rm {image} cat /marker
          curl -s {meet}/mark/pulled
          curl -sf -m 90 {meet}/wait/tried
  other:
    runs-on: ubuntu-latest
    steps:
      - run: |
          curl -sf -m 90 {meet}/wait/pulled
          docker run --rm {image} true 2>&1 || echo run refused
          docker image inspect {image} 2>&1 || echo inspect refused
          docker image inspect {image} 2>&1 | grep -q 'No such image' && echo as if there were none
          docker pull {image} 2>&1 || echo pull without credentials refused
          {login}
          docker pull {image} 2>&1 || echo pull with credentials refused
          docker run --rm {image} true 2>&1 || echo run still refused
          curl -s {meet}/mark/tried
"
    );
    let (_, run, log) = pushed(&s, &workflow);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    for said in [
        "[pulls] inside the container",
        "[other] run refused",
        "[other] inspect refused",
        "[other] as if there were none",
        "[other] pull without credentials refused",
        "[other] pull with credentials refused",
        "was pulled by another job: a job's pulls are its own until it ends",
        "[other] run still refused",
    ] {
        assert!(log.contains(said), "`{said}` not in:\n{log}");
    }
    assert!(
        !common::docker(&["image", "inspect", image]).0,
        "the image the jobs pulled outlived them"
    );
    assert!(
        common::docker(&["image", "inspect", common::busybox_image()]).0,
        "the machine's image went with the jobs'"
    );
}

/// What a runner's brokers made carries the runner's label, and what its jobs pulled is
/// written down; a runner stopped during a job (here: a container made as its broker would
/// have, and an image written down as pulled, before the server starts) has them removed
/// when it starts again.
#[test]
fn a_runner_removes_at_its_start_what_its_brokers_left() {
    let image = common::busybox_image();
    let name = format!("pipewright-left-by-a-runner-{}", std::process::id());
    let pulled = format!("pipewright-pulled-by-a-job:{}", std::process::id());
    let user = serve_support::job_user();
    let s = Server::start_repos_env(
        |d| {
            let work = std::path::absolute(d.join("data").join("work")).unwrap();
            let runner =
                blake3::hash(work.as_os_str().as_encoded_bytes()).to_hex()[..16].to_owned();
            let label = format!("pipewright.broker.runner={runner}");
            let (made, out) =
                common::docker(&["create", "--label", &label, "--name", &name, image, "true"]);
            assert!(made, "{out}");
            // An image a job pulled, written down as its broker writes it before the pull.
            let (tagged, out) = common::docker(&["tag", image, &pulled]);
            assert!(tagged, "{out}");
            std::fs::create_dir_all(&work).unwrap();
            std::fs::write(
                work.join("docker-pulls"),
                format!("name job-1-ab {pulled}\n"),
            )
            .unwrap();
            format!(
                "[[repos]]\nname = \"acme/app\"\npath = \"{}/app.git\"\n[runner]\njob_user = \"{user}\"\n",
                d.display()
            )
        },
        &[],
    );
    wait_for("the left container's removal", || {
        !common::docker(&["container", "inspect", &name]).0
    });
    wait_for("the removal of the image a job pulled", || {
        !common::docker(&["image", "inspect", &pulled]).0
    });
    assert!(
        common::docker(&["image", "inspect", image]).0,
        "the machine's image went with the tag a job pulled"
    );
    drop(s);
}
