//! Compose deploys in tests: the deploy user in the docker group, and a Compose project
//! whose containers, networks, volumes and built images are removed when the test ends.

use std::process::Command;
use std::time::Duration;

use super::USER;

/// `docker ARGS`: whether it succeeded, and its output (stderr on failure).
fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    (
        out.status.success(),
        String::from_utf8_lossy(text).into_owned(),
    )
}

/// The test user may use the Docker engine (the docker group), as a deploy user would.
/// Call it after the host made the user.
pub fn docker_user() {
    for _ in 0..100 {
        let groups = Command::new("id").args(["-nG", USER]).output().unwrap();
        if String::from_utf8_lossy(&groups.stdout)
            .split_whitespace()
            .any(|g| g == "docker")
        {
            return;
        }
        // Another test may hold /etc/group's lock: try again.
        let _ = Command::new("usermod")
            .args(["-aG", "docker", USER])
            .status();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot add {USER} to the docker group");
}

/// A Compose project a test deploys.
pub struct Stack {
    pub project: String,
}

impl Stack {
    pub fn new(project: String) -> Stack {
        Stack { project }
    }

    /// The filter that selects the project's objects.
    pub fn label(&self) -> String {
        format!("label=com.docker.compose.project={}", self.project)
    }

    /// `docker exec` in the running container of a service; its output.
    pub fn exec(&self, service: &str, cmd: &[&str]) -> String {
        let (_, id) = docker(&[
            "ps",
            "-q",
            "--filter",
            &self.label(),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        let mut args = vec!["exec", id.trim()];
        args.extend_from_slice(cmd);
        let (ok, out) = docker(&args);
        assert!(ok, "docker exec {service} {cmd:?}: {out}");
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let label = self.label();
        for (kind, list) in [
            ("container", vec!["ps", "-aq", "--filter", &label]),
            ("network", vec!["network", "ls", "-q", "--filter", &label]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &label]),
        ] {
            let (_, ids) = docker(&list);
            for id in ids.split_whitespace() {
                let _ = docker(&[kind, "rm", "-f", id]);
            }
        }
        let (_, images) = docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            &format!("reference={}-*", self.project),
        ]);
        for i in images.split_whitespace() {
            let _ = docker(&["rmi", "-f", i]);
        }
    }
}
