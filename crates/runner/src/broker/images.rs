//! Images a confined job pulled through its broker: the job's alone while it runs, removed
//! when it ends.
//!
//! An image pulled with a job's registry credentials may be private. While the job runs, no
//! other job of this runner may run or inspect it (an image is refused to a job when all of
//! its names are another running job's pulls); when the job ends, its names are removed
//! from the engine (an image that also has a name the machine gave it keeps that one).
//! What the runner's jobs pulled is written down in its work directory before each pull,
//! so that what a runner stopped during a job left (or could not remove) is removed when it
//! starts again.
//!
//! The images on the machine that no running job pulled are the machine's: its admin put
//! them there for jobs to run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The images the running jobs of this runner pulled, by name: shared by its slots.
#[derive(Debug, Clone)]
pub(crate) struct Pulls(Arc<Mutex<Claims>>);

#[derive(Debug)]
struct Claims {
    /// A pulled image's name (as the engine shows it) → the label of the job that pulled it.
    by_name: BTreeMap<String, String>,
    /// Where the claims are written down (`WORK/docker-pulls`): one `LABEL NAME` a line.
    journal: PathBuf,
}

/// The name the engine shows for `reference`: Docker Hub's host and its `library/` left
/// out (`docker.io/library/busybox:1` → `busybox:1`).
pub(crate) fn shown(reference: &str) -> String {
    let r = ["docker.io/", "index.docker.io/", "registry-1.docker.io/"]
        .iter()
        .find_map(|p| reference.strip_prefix(p))
        .unwrap_or(reference);
    r.strip_prefix("library/").unwrap_or(r).to_owned()
}

impl Pulls {
    /// The runner's: claims are written down under `work_dir`, where those of jobs a runner
    /// stopped during (or could not remove) are read back, to be removed ([`Pulls::all`]).
    pub(crate) fn new(work_dir: &Path) -> Pulls {
        let journal = work_dir.join("docker-pulls");
        let by_name = std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, name)| !name.is_empty())
            .map(|(label, name)| (name.to_owned(), label.to_owned()))
            .collect();
        Pulls(Arc::new(Mutex::new(Claims { by_name, journal })))
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `reference` job `label`'s before it is pulled. Refused (with the other job's
    /// label) when another running job pulled it or is pulling it; an error when it cannot be
    /// written down (the pull is then refused: it could not be removed after a crash).
    pub(crate) fn claim(&self, reference: &str, label: &str) -> Result<(), Claim> {
        let name = shown(reference);
        let mut c = self.claims();
        match c.by_name.get(&name) {
            Some(other) if other != label => return Err(Claim::Others),
            Some(_) => return Ok(()),
            None => {}
        }
        c.by_name.insert(name, label.to_owned());
        c.write().map_err(Claim::Journal)
    }

    /// Whether an image of these `tags` and `digests` is another running job's: one of its
    /// names is that job's pull, none is this job's, and none of its tags is the machine's.
    /// (A pull by tag also gives the image a digest nobody pulled by.)
    pub(crate) fn others(&self, tags: &[String], digests: &[String], label: &str) -> bool {
        let c = self.claims();
        let holder = |n: &String| c.by_name.get(n).map(String::as_str);
        let mut names = tags.iter().chain(digests);
        if names.clone().any(|n| holder(n) == Some(label)) {
            return false;
        }
        if tags.iter().any(|t| holder(t).is_none()) {
            return false;
        }
        names.any(|n| holder(n).is_some())
    }

    /// The names job `label` pulled.
    pub(crate) fn of(&self, label: &str) -> Vec<String> {
        self.claims()
            .by_name
            .iter()
            .filter(|(_, l)| *l == label)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every name pulled and not removed yet (at a runner's start: what its last run left).
    pub(crate) fn all(&self) -> Vec<String> {
        self.claims().by_name.keys().cloned().collect()
    }

    /// `names` are no longer pulls of a running job (removed from the engine).
    pub(crate) fn forget(&self, names: &[String]) {
        let mut c = self.claims();
        c.by_name.retain(|n, _| !names.contains(n));
        if let Err(e) = c.write() {
            tracing::warn!("writing down the runner's jobs' pulls: {e}");
        }
    }
}

impl Claims {
    fn write(&self) -> std::io::Result<()> {
        if self.by_name.is_empty() {
            return match std::fs::remove_file(&self.journal) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let mut text = String::new();
        for (name, label) in &self.by_name {
            text.push_str(&format!("{label} {name}\n"));
        }
        let tmp = self.journal.with_extension("new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.journal)
    }
}

/// Why a job may not use an image.
#[derive(Debug)]
pub(crate) enum Unusable {
    /// The engine has no such image.
    Missing,
    /// Why not (another job's pull, or the engine could not be asked).
    Refused(String),
}

/// Whether job `label` may use `image`: the engine has it, and it is not another running
/// job's pull ([`Pulls::others`]).
pub(crate) async fn usable(
    engine: &Path,
    pulls: &Pulls,
    label: &str,
    image: &str,
) -> Result<(), Unusable> {
    let encoded: String = form_urlencoded::byte_serialize(image.as_bytes()).collect();
    let Some((status, found)) = super::engine_get(engine, &format!("/images/{encoded}/json")).await
    else {
        return Err(Unusable::Refused(format!(
            "the image `{image}` could not be looked up: the Docker engine did not answer"
        )));
    };
    if status == hyper::StatusCode::NOT_FOUND {
        return Err(Unusable::Missing);
    }
    if !status.is_success() {
        return Err(Unusable::Refused(format!(
            "the image `{image}` could not be looked up ({status})"
        )));
    }
    let names = |key: &str| -> Vec<String> {
        found
            .get(key)
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    if pulls.others(&names("RepoTags"), &names("RepoDigests"), label) {
        return Err(Unusable::Refused(format!(
            "the image `{image}` was pulled by another job that is still running: it is that \
             job's alone (it may be private)"
        )));
    }
    Ok(())
}

/// Removes the `names` of images jobs pulled from the engine (an image with no other name
/// goes; one that also has a name of the machine's keeps it): those removed (or already
/// gone).
pub(crate) async fn remove(engine: &Path, names: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    for name in names {
        let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let path = format!("/images/{encoded}");
        match super::engine_call(engine, hyper::Method::DELETE, &path).await {
            Some((status, _)) if status.is_success() || status == hyper::StatusCode::NOT_FOUND => {
                removed.push(name.clone());
            }
            Some((status, answer)) => {
                let why = answer.get("message").and_then(serde_json::Value::as_str);
                tracing::warn!(
                    "removing the image `{name}` a job pulled: {status} {}",
                    why.unwrap_or_default()
                );
            }
            None => tracing::warn!(
                "removing the image `{name}` a job pulled: the Docker engine did not answer"
            ),
        }
    }
    removed
}

/// Why a pull could not be made the job's.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Another running job pulled it, or is pulling it.
    Others,
    /// The claim could not be written down.
    Journal(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::{Pulls, shown};

    #[test]
    fn a_pulled_image_is_its_job_s_until_it_ends_and_written_down_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let pulls = Pulls::new(dir.path());
        assert_eq!(shown("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(shown("docker.io/me/app:2"), "me/app:2");
        assert_eq!(shown("ghcr.io/me/app:2"), "ghcr.io/me/app:2");
        pulls.claim("docker.io/library/private:1", "job-1").unwrap();
        pulls.claim("private:1", "job-1").unwrap();
        assert!(matches!(
            pulls.claim("private:1", "job-2"),
            Err(super::Claim::Others)
        ));
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let digest = names(&["private@sha256:aa"]);
        assert!(pulls.others(&names(&["private:1"]), &digest, "job-2"));
        assert!(
            !pulls.others(&names(&["private:1"]), &digest, "job-1"),
            "its own"
        );
        // Also a tag of the machine's: the machine's image.
        assert!(!pulls.others(&names(&["private:1", "base:1"]), &digest, "job-2"));
        assert!(!pulls.others(&[], &[], "job-2"));
        assert!(
            !pulls.others(&[], &digest, "job-2"),
            "a digest nobody pulled by"
        );
        // Pulled by its digest.
        pulls.claim("private@sha256:bb", "job-1").unwrap();
        assert!(pulls.others(&[], &names(&["private@sha256:bb"]), "job-2"));
        let journal = std::fs::read_to_string(dir.path().join("docker-pulls")).unwrap();
        assert_eq!(journal, "job-1 private:1\njob-1 private@sha256:bb\n");
        assert_eq!(
            pulls.of("job-1"),
            names(&["private:1", "private@sha256:bb"])
        );
        // What could not be removed stays the job's, written down.
        pulls.forget(&names(&["private:1"]));
        assert!(!pulls.others(&names(&["private:1"]), &digest, "job-2"));
        assert!(pulls.others(&[], &names(&["private@sha256:bb"]), "job-2"));
        // A runner stopped: when it starts again, what was left is still no job's to use,
        // and is to be removed.
        let again = Pulls::new(dir.path());
        assert_eq!(again.all(), names(&["private@sha256:bb"]));
        assert!(again.others(&[], &names(&["private@sha256:bb"]), "job-2"));
        again.forget(&names(&["private@sha256:bb"]));
        assert!(!dir.path().join("docker-pulls").exists());
    }
}
