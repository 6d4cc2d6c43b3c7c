//! `pipewright deploy`, `rollback`, `releases` and `deploy-lock` against a real sshd and the
//! real test application (a Python HTTP server with SQLite migrations).

mod deploy_support;

use std::os::unix::fs::PermissionsExt;

use deploy_support::App;

#[test]
fn first_deploy_then_a_redeploy_sends_only_what_changed() {
    let app = App::new("");
    let v1 = app.artifact("1.0.0", |_| {});
    let d = app.deploy(&v1);
    d.code(0);
    assert!(d.stderr.contains("HEALTHCHECK ok"), "{}", d.stderr);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    assert_eq!(app.live_schema(), ["001_notes.sql"]);
    let first = app.current().unwrap();

    let v2 = app.artifact("1.1.0", |_| {});
    let d = app.deploy(&v2);
    d.code(0);
    // Only __init__.py differs: one file sent, the rest hard-linked from the live release.
    assert!(d.stderr.contains("sent 1 files"), "{}", d.stderr);
    assert_eq!(app.live_version().as_deref(), Some("1.1.0"));
    let second = app.current().unwrap();
    assert_ne!(first, second);
    let ino = |id: &str| {
        std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(
                app.path()
                    .join("releases")
                    .join(id)
                    .join("inner_architect/app.py"),
            )
            .unwrap(),
        )
    };
    assert_eq!(ino(&first), ino(&second));

    let r = app.releases_json();
    let list = r[0]["releases"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["status"], "current");
    assert_eq!(list[0]["version"], "1.1.0");
    assert_eq!(list[0]["deployed_by"], "tester@ci");
    assert_eq!(list[1]["status"], "ok");
    let h = app.history();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1]["result"], "ok");
    assert!(
        h[1]["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["phase"] == "SWITCH")
    );
}

fn broken_main(dir: &std::path::Path) {
    std::fs::write(
        dir.join("inner_architect/__main__.py"),
        "raise SystemExit('this release cannot start')\n",
    )
    .unwrap();
}

#[test]
fn a_failed_health_check_rolls_back_and_the_old_version_answers_again() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let good = app.current().unwrap();
    let d = app.deploy(&app.artifact("2.0.0", broken_main));
    d.code(3);
    assert!(d.stderr.contains("HEALTHCHECK FAILED"), "{}", d.stderr);
    assert!(d.stderr.contains("rolled back to"), "{}", d.stderr);
    assert_eq!(app.current().unwrap(), good);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    let r = app.releases_json();
    let list = r[0]["releases"].as_array().unwrap();
    assert_eq!(list[0]["status"], "bad");
    assert_eq!(list[0]["version"], "2.0.0");
    assert_eq!(list[1]["status"], "current");
    assert!(!app.path().join(".pipewright/journal.json").exists());
    // The lock is free again: the next deploy goes through.
    app.deploy(&app.artifact("2.0.1", |_| {})).code(0);
    assert_eq!(app.live_version().as_deref(), Some("2.0.1"));
}

#[test]
fn a_failed_migration_restores_the_database_and_changes_nothing_live() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let good = app.current().unwrap();
    let d = app.deploy(&app.artifact("2.0.0", |dir| {
        // 002 commits, then 003 fails: the database must come back without 002.
        std::fs::write(
            dir.join("migrations/002_more.sql"),
            "INSERT INTO notes (body) VALUES ('second');\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("migrations/003_bad.sql"),
            "INSERT INTO nowhere VALUES (1);\n",
        )
        .unwrap();
    }));
    d.code(1);
    assert!(d.stderr.contains("MIGRATE     FAILED"), "{}", d.stderr);
    assert!(d.stderr.contains("database restored"), "{}", d.stderr);
    assert_eq!(app.current().unwrap(), good);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    assert_eq!(app.live_schema(), ["001_notes.sql"]);
    let ids: Vec<_> = std::fs::read_dir(app.path().join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(ids.len(), 1, "the failed release is removed: {ids:?}");
}

#[test]
fn a_second_deploy_while_one_runs_exits_5_naming_the_holder() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let v2 = app.artifact("2.0.0", |d| {
        std::fs::write(d.join("a.txt"), "a").unwrap();
        std::fs::write(d.join("b.txt"), "b").unwrap();
        std::fs::write(d.join("c.txt"), "c").unwrap();
    });
    let mut first = app
        .pipewright()
        .env("PIPEWRIGHT_TEST_UPLOAD_DELAY_MS", "700")
        .env("PIPEWRIGHT_DEPLOYER", "alice@laptop")
        .args(["deploy", "staging", "--artifact", v2.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !app.path().join(".pipewright/lock.json").exists() {
        assert!(
            start.elapsed().as_secs() < 20,
            "the first deploy never locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let d = app.deploy(&app.artifact("3.0.0", |_| {}));
    d.code(5);
    assert!(d.stderr.contains("alice@laptop"), "{}", d.stderr);
    let s = app.run(&["deploy-lock", "staging", "status"]);
    assert!(s.stdout.contains("held: deploy by alice@laptop"), "{s:?}");
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert_eq!(app.live_version().as_deref(), Some("2.0.0"));
    let s = app.run(&["deploy-lock", "staging", "status"]);
    s.code(0);
    assert!(s.stdout.contains("staging-1: free"), "{s:?}");
}

#[test]
fn a_connection_killed_during_upload_leaves_the_live_release_and_the_next_deploy_works() {
    use std::os::unix::process::CommandExt;
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let good = app.current().unwrap();
    let v2 = app.artifact("2.0.0", |d| {
        for i in 0..10 {
            std::fs::write(d.join(format!("f{i}.txt")), format!("{i}")).unwrap();
        }
    });
    // The deployer and its ssh processes in their own group, killed together: the TCP
    // connection goes with the ssh master.
    let mut deployer = app
        .pipewright()
        .env("PIPEWRIGHT_TEST_UPLOAD_DELAY_MS", "300")
        .args(["deploy", "staging", "--artifact", v2.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let partial_exists = || {
        std::fs::read_dir(app.path().join("releases"))
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
    };
    let start = std::time::Instant::now();
    while !partial_exists() {
        assert!(start.elapsed().as_secs() < 20, "the upload never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pgid = format!("-{}", deployer.id());
    std::process::Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .status()
        .unwrap();
    let _ = deployer.wait();
    assert_eq!(app.current().unwrap(), good);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    // The agent notices the closed connection, removes the partial upload and unlocks.
    let start = std::time::Instant::now();
    loop {
        let s = app.run(&["deploy-lock", "staging", "status"]);
        if s.stdout.contains("free") {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 20,
            "the lock was never freed: {s:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!partial_exists());
    app.deploy(&v2).code(0);
    assert_eq!(app.live_version().as_deref(), Some("2.0.0"));
}

#[test]
fn a_deploy_killed_right_after_switch_is_repaired_by_the_next_command() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let good = app.current().unwrap();
    let d = app
        .pipewright()
        .env("PIPEWRIGHT_TEST_FAULT", "exit-after:SWITCH")
        .args([
            "deploy",
            "staging",
            "--artifact",
            app.artifact("2.0.0", |_| {}).to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        d.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&d.stderr)
    );
    // Killed between the switch and the restart: `current` is the new release, the journal
    // says so.
    assert_ne!(app.current().unwrap(), good);
    assert!(app.path().join(".pipewright/journal.json").exists());

    let r = app.run(&["releases", "staging"]);
    r.code(0);
    assert!(
        r.stderr.contains("repairing the interrupted deploy"),
        "{r:?}"
    );
    assert_eq!(app.current().unwrap(), good);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    assert!(!app.path().join(".pipewright/journal.json").exists());
    let h = app.history();
    assert_eq!(h.last().unwrap()["operation"], "repair");
    // And deploys go on.
    app.deploy(&app.artifact("2.0.1", |_| {})).code(0);
}

#[test]
fn a_full_disk_during_upload_fails_with_1_and_changes_nothing_live() {
    let app = App::new("");
    // A small filesystem as the deploy path: room for the agent binary and the app, not for
    // a 32 MiB file.
    let agent = std::fs::metadata(env!("CARGO_BIN_EXE_pipewright"))
        .unwrap()
        .len();
    let size = agent + 8 * 1024 * 1024;
    let path = app.path();
    std::fs::create_dir_all(&path).unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(mount.success(), "mount tmpfs (the deploy tests need root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(path.clone());
    std::process::Command::new("chown")
        .arg(deploy_support::USER)
        .arg(&path)
        .status()
        .unwrap();
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let good = app.current().unwrap();
    let big = app.artifact("2.0.0", |d| {
        let data: Vec<u8> = (0..32u32 * 1024 * 1024)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(d.join("big.bin"), data).unwrap();
    });
    let d = app.deploy(&big);
    d.code(1);
    assert!(d.stderr.contains("No space left on device"), "{}", d.stderr);
    assert_eq!(app.current().unwrap(), good);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    let names: Vec<_> = std::fs::read_dir(path.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // The app is stopped before the filesystem goes.
    drop(app);
}

#[test]
fn when_the_rollback_fails_too_the_lock_is_kept_until_released() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    // The old release will not start again either.
    std::fs::write(app.path().join("shared/do-not-start"), "").unwrap();
    let d = app.deploy(&app.artifact("2.0.0", broken_main));
    d.code(4);
    let s = app.run(&["deploy-lock", "staging", "status"]);
    s.code(5);
    assert!(s.stdout.contains("kept after a failed rollback"), "{s:?}");
    std::fs::remove_file(app.path().join("shared/do-not-start")).unwrap();
    app.deploy(&app.artifact("2.0.1", |_| {})).code(5);
    app.run(&["deploy-lock", "staging", "release"]).code(0);
    app.deploy(&app.artifact("2.0.1", |_| {})).code(0);
    assert_eq!(app.live_version().as_deref(), Some("2.0.1"));
}

#[test]
fn rollback_goes_back_to_the_previous_healthy_release_and_forward_with_to() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let first = app.current().unwrap();
    app.deploy(&app.artifact("2.0.0", |_| {})).code(0);
    let second = app.current().unwrap();
    let d = app.run(&["rollback", "staging"]);
    d.code(0);
    assert_eq!(app.current().unwrap(), first);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    let r = app.releases_json();
    assert_eq!(r[0]["releases"][0]["status"], "rolled_back");
    // Nothing healthy before the first release.
    app.run(&["rollback", "staging"]).code(1);
    app.run(&["rollback", "staging", "--to", &second]).code(0);
    assert_eq!(app.live_version().as_deref(), Some("2.0.0"));
    app.run(&["rollback", "staging", "--to", "nope"]).code(1);
}

#[test]
fn rollback_with_db_restores_the_data_from_before_the_next_deploy() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    app.deploy(&app.artifact("2.0.0", |d| {
        std::fs::write(
            d.join("migrations/002_more.sql"),
            "INSERT INTO notes (body) VALUES ('second');\n",
        )
        .unwrap();
    }))
    .code(0);
    assert_eq!(app.live_schema(), ["001_notes.sql", "002_more.sql"]);
    app.run(&["rollback", "staging", "--with-db"]).code(0);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    assert_eq!(app.live_schema(), ["001_notes.sql"]);
}

#[test]
fn keep_releases_prunes_old_releases() {
    let app = App::new("");
    for v in ["1", "2", "3", "4", "5"] {
        app.deploy(&app.artifact(v, |_| {})).code(0);
    }
    let r = app.releases_json();
    let versions: Vec<_> = r[0]["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(versions, ["5", "4", "3"]);
}

#[test]
fn a_tarball_artifact_deploys_like_a_directory() {
    let app = App::new("");
    let dir = app.artifact("1.0.0", |_| {});
    let tar = app.artifacts.path().join("app.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    app.run(&[
        "deploy",
        "staging",
        "--artifact",
        tar.to_str().unwrap(),
        "--version",
        "tgz",
    ])
    .code(0);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    assert_eq!(app.releases_json()[0]["releases"][0]["version"], "tgz");
}

#[test]
fn a_deployer_killed_after_the_upload_does_not_stop_the_deploy_on_the_host() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let v2 = app.artifact("2.0.0", |_| {});
    let mut deployer = app
        .pipewright()
        .args(["deploy", "staging", "--artifact", v2.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(deployer.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("SWITCH      ok") {
            break;
        }
    }
    // The deployer, its ssh master and the connection go; the agent carries on.
    let pgid = format!("-{}", deployer.id());
    std::process::Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .status()
        .unwrap();
    let _ = deployer.wait();
    let start = std::time::Instant::now();
    while app.history().len() < 2 {
        assert!(start.elapsed().as_secs() < 20, "the agent never finished");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(app.history()[1]["result"], "ok");
    assert_eq!(app.live_version().as_deref(), Some("2.0.0"));
}

#[test]
fn lock_wait_lets_a_second_deploy_follow_the_first() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let v2 = app.artifact("2.0.0", |d| std::fs::write(d.join("a.txt"), "a").unwrap());
    let mut first = app
        .pipewright()
        .env("PIPEWRIGHT_TEST_UPLOAD_DELAY_MS", "500")
        .args(["deploy", "staging", "--artifact", v2.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !app.path().join(".pipewright/lock.json").exists() {
        assert!(
            start.elapsed().as_secs() < 20,
            "the first deploy never locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let v3 = app.artifact("3.0.0", |_| {});
    app.run(&[
        "deploy",
        "staging",
        "--artifact",
        v3.to_str().unwrap(),
        "--lock-wait",
        "60s",
    ])
    .code(0);
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert_eq!(app.live_version().as_deref(), Some("3.0.0"));
    app.run(&[
        "deploy",
        "staging",
        "--artifact",
        v3.to_str().unwrap(),
        "--lock-wait",
        "soon",
    ])
    .code(2);
}

#[test]
fn hooks_see_the_documented_variables_and_shared_files_are_linked() {
    let app = App::with_sections(
        "    hooks:\n      install: env | grep -E '^(PIPEWRIGHT_|PORT=)' | sort > \"$PIPEWRIGHT_SHARED_DIR/install-env\"\n      restart: sh bin/restart.sh\n",
        "",
    );
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let first = app.current().unwrap();
    app.deploy(&app.artifact("1.1.0", |_| {})).code(0);
    let second = app.current().unwrap();
    let env = std::fs::read_to_string(app.path().join("shared/install-env")).unwrap();
    let path = app.path();
    let p = path.display();
    for expected in [
        "PIPEWRIGHT_ENVIRONMENT=staging".to_owned(),
        format!("PIPEWRIGHT_RELEASE={second}"),
        format!("PIPEWRIGHT_RELEASE_DIR={p}/releases/{second}"),
        format!("PIPEWRIGHT_PREVIOUS_RELEASE_DIR={p}/releases/{first}"),
        format!("PIPEWRIGHT_DEPLOY_PATH={p}"),
        format!("PIPEWRIGHT_SHARED_DIR={p}/shared"),
        format!("PORT={}", app.port),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} not in\n{env}"
        );
    }
    assert!(env.contains("PIPEWRIGHT_BACKUP_DIR="), "{env}");
    // `shared: [data]` is a link into shared/ in every release.
    let link = std::fs::read_link(path.join("releases").join(&second).join("data")).unwrap();
    assert_eq!(link, path.join("shared/data"));
}

#[test]
fn a_hook_that_hangs_is_stopped_at_its_timeout_with_what_it_started() {
    // The new release's install hook starts a child that ignores SIGTERM and waits for it
    // forever.
    let app = App::with_sections(
        "    hooks:\n      timeout: 1s\n      install: if [ -f hang ]; then (trap '' TERM; exec sleep 300) & echo $! > \"$PIPEWRIGHT_SHARED_DIR/child.pid\"; wait; fi\n      restart: sh bin/restart.sh\n",
        "",
    );
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let good = app.current().unwrap();
    let started = std::time::Instant::now();
    let d = app.deploy(&app.artifact("2.0.0", |dir| {
        std::fs::write(dir.join("hang"), "").unwrap();
    }));
    d.code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert!(
        d.stderr
            .contains("the `install` hook did not finish within 1s: stopped"),
        "{}",
        d.stderr
    );
    assert_eq!(app.current().unwrap(), good);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    // The hook's child went with it (gone, or a zombie nobody reaped yet).
    let pid = std::fs::read_to_string(app.path().join("shared/child.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        matches!(state, None | Some("Z")),
        "the hook's child still runs: {stat}"
    );
    // The lock is free again (a next deploy's restart would be stopped at 1 s too: this
    // app's restart waits for the old server to exit).
    assert!(!app.path().join(".pipewright/lock.json").exists());
    assert!(!app.path().join(".pipewright/journal.json").exists());
}

#[test]
fn deploy_lock_release_force_stops_a_live_deploy() {
    let app = App::new("");
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let v2 = app.artifact("2.0.0", |d| {
        for i in 0..20 {
            std::fs::write(d.join(format!("f{i}.txt")), format!("{i}")).unwrap();
        }
    });
    let mut stuck = app
        .pipewright()
        .env("PIPEWRIGHT_TEST_UPLOAD_DELAY_MS", "1000")
        .args(["deploy", "staging", "--artifact", v2.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !app.path().join(".pipewright/lock.json").exists() {
        assert!(start.elapsed().as_secs() < 20, "the deploy never locked");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let d = app.run(&["deploy-lock", "staging", "release"]);
    d.code(5);
    assert!(d.stderr.contains("use --force"), "{d:?}");
    app.run(&["deploy-lock", "staging", "release", "--force"])
        .code(0);
    // The stopped deploy changed nothing live, and the next one goes through.
    assert_ne!(stuck.wait().unwrap().code(), Some(0));
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
    app.run(&[
        "deploy",
        "staging",
        "--artifact",
        v2.to_str().unwrap(),
        "--lock-wait",
        "10s",
    ])
    .code(0);
    assert_eq!(app.live_version().as_deref(), Some("2.0.0"));
}

#[test]
fn a_workflow_deploys_with_the_builtin_action() {
    let app = App::new("");
    let v1 = app.artifact("2.0.0", |_| {});
    let r = app.repo.path();
    let sh = |cmd: &str| {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(r)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh(&format!("cp -a {} dist", v1.display()));
    std::fs::create_dir_all(r.join(".github/workflows")).unwrap();
    std::fs::write(
        r.join(".github/workflows/deploy.yml"),
        "on: push
jobs:
  deploy:
    runs-on: x
    environment: staging
    steps:
      - uses: actions/checkout@v4
      - id: d
        uses: pipewright/deploy@v1
        with:
          environment: staging
          artifact: dist
          version: v2
      - run: echo \"outcome ${{ steps.d.outputs.outcome }} exit ${{ steps.d.outputs.exit-code }}\"
",
    )
    .unwrap();
    sh(
        "git init -q -b main && git add -A && git -c user.name=t -c user.email=t@example.invalid commit -qm app",
    );
    let out = app.pipewright().args(["run", "push"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("HEALTHCHECK ok"), "{stdout}");
    assert!(stdout.contains("outcome ok exit 0"), "{stdout}");
    assert_eq!(app.live_version().as_deref(), Some("2.0.0"));
}

/// Runs `cmd` on the app's host as the deploy user, over ssh.
fn on_host(app: &App, cmd: &str) -> std::process::Output {
    std::process::Command::new("ssh")
        .arg("-F")
        .arg(app.repo.path().join("deploy/ssh_config"))
        .args(["staging-1", cmd])
        .output()
        .unwrap()
}

#[test]
fn an_operator_on_the_host_rolls_back_with_the_deploy_sh_left_in_the_deploy_path() {
    let app = App::new("");
    let path = app.path();
    let d = path.display();
    // Nothing is left before a deploy has been healthy.
    assert!(!path.join("deploy.sh").exists());
    app.deploy(&app.artifact("1.0.0", |_| {})).code(0);
    let first = app.current().unwrap();
    app.deploy(&app.artifact("2.0.0", |_| {})).code(0);
    let second = app.current().unwrap();
    // The settings hold the environment's variables: the deploy user's only.
    let mode = std::fs::metadata(path.join(".pipewright/settings.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = on_host(&app, &format!("cd {d} && ./deploy.sh status"));
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{status}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.contains(&format!("live:  2.0.0 ({second})")),
        "{status}"
    );
    assert!(status.contains("lock:  free"), "{status}");
    assert!(status.contains("last:  deploy of 2.0.0"), "{status}");

    // The seed's manual rollback: `cd PATH && ./deploy.sh rollback`.
    let out = on_host(&app, &format!("cd {d} && ./deploy.sh rollback"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("HEALTHCHECK"), "{err}");
    assert_eq!(app.current().unwrap(), first);
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));

    // The deployer's view from anywhere shows it, and the history says who.
    let r = app.releases_json();
    assert_eq!(r[0]["releases"][0]["id"].as_str(), Some(second.as_str()));
    assert_eq!(r[0]["releases"][0]["status"], "rolled_back");
    assert_eq!(r[0]["releases"][1]["status"], "current");
    let last = app.history().pop().unwrap();
    assert_eq!(last["operation"], "rollback");
    assert!(
        last["who"].as_str().unwrap().ends_with("(on the host)"),
        "{last}"
    );
    let out = on_host(&app, &format!("{d}/deploy.sh releases"));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&second) && listed.contains("rolled_back"),
        "{listed}"
    );

    // The same lock: a deploy holding it makes the host's rollback exit 5.
    let held = on_host(
        &app,
        &format!("exec 9>{d}/.pipewright/lock; flock 9; {d}/deploy.sh rollback; echo \"exit=$?\""),
    );
    let said = String::from_utf8_lossy(&held.stdout);
    assert!(
        said.contains("exit=5"),
        "{said}{}",
        String::from_utf8_lossy(&held.stderr)
    );
    // A wrong command is refused with clap's usage.
    let out = on_host(&app, &format!("{d}/deploy.sh nonsense"));
    assert_eq!(out.status.code(), Some(2));
}
