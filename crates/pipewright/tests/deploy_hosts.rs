//! Several hosts: upload and prepare everywhere at once, migrate on the first host only,
//! switch in batches, and roll every switched host back when one fails, so that versions
//! never mix. Two real sshd servers stand for two machines; each host has its own deploy
//! path and its app its own port, through the per-host `path` and `env`.

mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use deploy_support::{APP, DEFAULT_SECTIONS, Host, free_port, get};

struct Fleet {
    hosts: Vec<(Host, u16)>,
    repo: tempfile::TempDir,
    artifacts: tempfile::TempDir,
}

impl Fleet {
    fn new(batch: usize) -> Fleet {
        let hosts: Vec<(Host, u16)> = (0..2).map(|_| (Host::start(), free_port())).collect();
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        std::fs::create_dir_all(r.join(".pipewright")).unwrap();
        std::fs::create_dir_all(r.join("deploy")).unwrap();
        let ssh_config: String = hosts
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                h.ssh_config()
                    .replace("staging-1", &format!("web-{}", i + 1))
            })
            .collect();
        std::fs::write(r.join("deploy/ssh_config"), ssh_config).unwrap();
        let hosts_yml: String = hosts
            .iter()
            .enumerate()
            .map(|(i, (h, port))| {
                format!(
                    "      - {{host: web-{}, path: {}, env: {{PORT: \"{port}\"}}}}\n",
                    i + 1,
                    h.deploy_path().display()
                )
            })
            .collect();
        let yml = format!(
            "app: inner-architect\nenvironments:\n  production:\n    hosts:\n{hosts_yml}    batch: {batch}\n    ssh_config: deploy/ssh_config\n    shared: [data]\n{DEFAULT_SECTIONS}    health:\n      url: http://127.0.0.1:${{PORT}}/health\n      interval: 100ms\n      timeout: 1s\n      deadline: 3s\n"
        );
        std::fs::write(r.join(".pipewright/deploy.yml"), yml).unwrap();
        Fleet {
            hosts,
            repo,
            artifacts: tempfile::tempdir().unwrap(),
        }
    }

    fn artifact(&self, version: &str) -> PathBuf {
        let dir = self.artifacts.path().join(version);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(APP)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::write(
            dir.join("inner_architect/__init__.py"),
            format!("__version__ = \"{version}\"\n"),
        )
        .unwrap();
        dir
    }

    fn deploy(&self, artifact: &Path) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["deploy", "production", "--artifact"])
            .arg(artifact)
            .current_dir(self.repo.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn versions(&self) -> Vec<Option<String>> {
        self.hosts
            .iter()
            .map(|(_, port)| {
                let (_, body) = get(*port, "/health")?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                Some(v["version"].as_str()?.to_owned())
            })
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (h, _) in &self.hosts {
            if let Ok(pid) = std::fs::read_to_string(h.deploy_path().join("shared/app.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

fn v(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn every_host_is_deployed_and_the_database_is_migrated_once() {
    let fleet = Fleet::new(2);
    let (code, err) = fleet.deploy(&fleet.artifact("1.0.0"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fleet.versions(), [v("1.0.0"), v("1.0.0")]);
    assert!(
        err.contains("web-1: MIGRATE"),
        "the first host migrates: {err}"
    );
    assert!(
        !err.contains("web-2: MIGRATE"),
        "only the first host migrates: {err}"
    );
}

#[test]
fn when_one_host_fails_every_switched_host_is_rolled_back() {
    // One host at a time: web-1 switches and is healthy, then web-2 fails.
    let fleet = Fleet::new(1);
    let (code, err) = fleet.deploy(&fleet.artifact("1.0.0"));
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        fleet.hosts[1].0.deploy_path().join("shared/do-not-start"),
        "",
    )
    .unwrap();
    let (code, err) = fleet.deploy(&fleet.artifact("2.0.0"));
    assert_eq!(code, 4, "web-2's old release cannot start either: {err}");
    std::fs::remove_file(fleet.hosts[1].0.deploy_path().join("shared/do-not-start")).unwrap();
    // web-1 went back to 1.0.0 although it was healthy on 2.0.0.
    assert_eq!(fleet.versions()[0], v("1.0.0"), "{err}");
    assert!(err.contains("another host failed"), "{err}");
}

#[test]
fn a_failure_in_the_second_batch_reverts_the_first_and_exits_3() {
    let fleet = Fleet::new(1);
    let (code, err) = fleet.deploy(&fleet.artifact("1.0.0"));
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        fleet.hosts[1].0.deploy_path().join("shared/refuse-version"),
        "2.0.0",
    )
    .unwrap();
    let (code, err) = fleet.deploy(&fleet.artifact("2.0.0"));
    assert_eq!(code, 3, "{err}");
    assert_eq!(fleet.versions(), [v("1.0.0"), v("1.0.0")], "{err}");
    assert!(err.contains("web-1: switched and healthy"), "{err}");
}
