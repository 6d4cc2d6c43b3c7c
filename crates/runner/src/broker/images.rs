//! Images a confined job pulled through its broker: the job's own while it runs, removed
//! when it ends.
//!
//! An image pulled with a job's registry credentials may be private. While the job runs,
//! another job of this runner may run or inspect it only if it pulled it too (the registry
//! then checked its credentials): an image is refused to a job when one of its names is a
//! running job's pull, none is the asking job's, and none of its tags is the machine's.
//! When the last job that pulled a name ends, the name is removed from the engine (an image
//! that also has a name the machine gave it keeps that one); until it is removed, no job
//! may use it. A pull that failed is nobody's. Names are the engine's (the broker sends the
//! pull under the name the engine will list), and what the runner's jobs pulled is written
//! down in its work directory before each pull, so that what a runner stopped during a job
//! left (or could not remove) is removed when it starts again, or after a later job.
//!
//! The images on the machine that no job pulled are the machine's: its admin put them
//! there for jobs to run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The images the jobs of this runner pulled, by name: shared by its slots.
#[derive(Debug, Clone)]
pub(crate) struct Pulls(Arc<Mutex<Claims>>);

#[derive(Debug)]
struct Claims {
    /// A pulled image's name (as the engine lists it) → the labels of the running jobs
    /// that pulled it; none: its jobs ended and it is to be removed (no job's to use).
    by_name: BTreeMap<String, BTreeSet<String>>,
    /// Where the claims are written down (`WORK/docker-pulls`): `LABEL NAME` a line, `-
    /// NAME` for a name to remove.
    journal: PathBuf,
}

/// How a job's pull of a name starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Nobody pulled it: it is the job's from now (others' pulls of it wait for the
    /// registry's answer to theirs).
    New,
    /// The job pulled it already.
    Own,
    /// Another running job pulled it: the job's too if its own pull succeeds.
    Others,
    /// A job that ended pulled it and it is not removed yet: refused.
    Left,
}

impl Pulls {
    /// The runner's: claims are written down under `work_dir`, where those of jobs a runner
    /// stopped during (or could not remove) are read back, to be removed ([`Pulls::left`]).
    pub(crate) fn new(work_dir: &Path) -> Pulls {
        let journal = work_dir.join("docker-pulls");
        let by_name = std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, name)| !name.is_empty())
            .map(|(_, name)| (name.to_owned(), BTreeSet::new()))
            .collect();
        Pulls(Arc::new(Mutex::new(Claims { by_name, journal })))
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether anyone pulled `name` (running or not).
    pub(crate) fn known(&self, name: &str) -> bool {
        self.claims().by_name.contains_key(name)
    }

    /// Starts job `label`'s pull of `name`: a new name is the job's (written down first: an
    /// error when it cannot be, and the pull is then refused).
    pub(crate) fn start(&self, name: &str, label: &str) -> std::io::Result<Start> {
        let mut c = self.claims();
        let start = match c.by_name.get(name) {
            Some(h) if h.contains(label) => return Ok(Start::Own),
            Some(h) if h.is_empty() => return Ok(Start::Left),
            Some(_) => return Ok(Start::Others),
            None => Start::New,
        };
        c.by_name
            .insert(name.to_owned(), BTreeSet::from([label.to_owned()]));
        c.write()?;
        Ok(start)
    }

    /// Job `label`'s pull of `name`, started as `start`, ended: `pulled` when the engine
    /// has it now. Answers whether the name is nobody's now and may be on the engine (to be
    /// looked up, and forgotten if it is not).
    pub(crate) fn ended(&self, name: &str, label: &str, start: Start, pulled: bool) -> bool {
        let mut c = self.claims();
        let orphan = {
            let Some(h) = c.by_name.get_mut(name) else {
                return false;
            };
            match (start, pulled) {
                (Start::Others, true) => {
                    h.insert(label.to_owned());
                }
                (Start::New, false) => {
                    h.remove(label);
                }
                _ => {}
            }
            h.is_empty()
        };
        if let Err(e) = c.write() {
            tracing::warn!("writing down the runner's jobs' pulls: {e}");
        }
        orphan
    }

    /// Whether an image of these `tags` and `digests` is another's: one of its names was
    /// pulled by a job (running, or ended and not removed yet), none by this job, and none
    /// of its tags is the machine's. (A pull by tag also gives the image a digest nobody
    /// pulled by.)
    pub(crate) fn others(&self, tags: &[String], digests: &[String], label: &str) -> bool {
        let c = self.claims();
        let mut names = tags.iter().chain(digests);
        if names
            .clone()
            .any(|n| c.by_name.get(n).is_some_and(|h| h.contains(label)))
        {
            return false;
        }
        if tags.iter().any(|t| !c.by_name.contains_key(t)) {
            return false;
        }
        names.any(|n| c.by_name.contains_key(n))
    }

    /// Job `label` ended: what it pulled is no longer its.
    pub(crate) fn release(&self, label: &str) {
        let mut c = self.claims();
        for h in c.by_name.values_mut() {
            h.remove(label);
        }
        if let Err(e) = c.write() {
            tracing::warn!("writing down the runner's jobs' pulls: {e}");
        }
    }

    /// The names no running job pulled, to be removed from the engine.
    pub(crate) fn left(&self) -> Vec<String> {
        self.claims()
            .by_name
            .iter()
            .filter(|(_, h)| h.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `names` were removed from the engine (or were not on it): forgotten, unless a job
    /// pulled one again meanwhile.
    pub(crate) fn forget(&self, names: &[String]) {
        let mut c = self.claims();
        c.by_name
            .retain(|n, h| !(h.is_empty() && names.contains(n)));
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
        for (name, holders) in &self.by_name {
            if holders.is_empty() {
                text.push_str(&format!("- {name}\n"));
            }
            for label in holders {
                text.push_str(&format!("{label} {name}\n"));
            }
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

/// Whether job `label` may use `image`: the engine has it, and it is not another job's pull
/// ([`Pulls::others`]). For a container (`creating`), the image must not carry labels that
/// something on the machine acts on: a container gets its image's labels.
pub(crate) async fn usable(
    engine: &Path,
    pulls: &Pulls,
    label: &str,
    image: &str,
    creating: bool,
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
            "the image `{image}` was pulled by another job: it is that job's alone (it may be \
             private) until it ends and the image is removed"
        )));
    }
    if creating
        && let Some(labels) = found
            .get("Config")
            .and_then(|c| c.get("Labels"))
            .and_then(serde_json::Value::as_object)
        && let Err(r) = super::policy::refuse_routed_labels(labels)
    {
        return Err(Unusable::Refused(format!(
            "the image `{image}` carries a label its containers would get: {}",
            r.to_string().trim_start_matches("pipewright: ")
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

/// Whether the engine has image `name`: `None` when it cannot tell.
async fn present(engine: &Path, name: &str) -> Option<bool> {
    let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    match super::engine_get(engine, &format!("/images/{encoded}/json")).await? {
        (status, _) if status.is_success() => Some(true),
        (hyper::StatusCode::NOT_FOUND, _) => Some(false),
        _ => None,
    }
}

/// Job `label`'s pull of `name` ended (`ok`: the engine's answer told of no error): the
/// job's if the engine has the image now; a name nobody holds any more and that is not on
/// the engine is forgotten.
pub(super) async fn pull_ended(
    engine: &Path,
    pulls: &Pulls,
    label: &str,
    name: &str,
    start: Start,
    ok: bool,
) {
    let pulled = ok && present(engine, name).await == Some(true);
    if pulls.ended(name, label, start, pulled) && present(engine, name).await == Some(false) {
        pulls.forget(&[name.to_owned()]);
    }
}

/// Sends the engine's answer to a pull on to the job as it comes, and when it ends (the
/// job may have hung up: it is read to its end all the same) records the pull
/// ([`pull_ended`]); `counted` is held until then, so the job's end waits for it.
pub(super) fn follow_pull(
    response: hyper::Response<hyper::body::Incoming>,
    name: String,
    start: Start,
    (engine, pulls, label): (PathBuf, Pulls, String),
    counted: Option<super::InFlight>,
) -> hyper::Response<super::Body> {
    use http_body_util::BodyExt;
    let (parts, mut incoming) = response.into_parts();
    let answered = parts.status.is_success();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    tokio::spawn(async move {
        let _counted = counted;
        let mut errors = Errors::default();
        let mut broken = false;
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else {
                broken = true;
                break;
            };
            if let Ok(data) = frame.into_data() {
                errors.read(&data);
                // A job that hung up: the pull is read to its end all the same.
                let _ = tx.send(data).await;
            }
        }
        drop(tx);
        let ok = answered && !broken && !errors.seen;
        pull_ended(&engine, &pulls, &label, &name, start, ok).await;
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(data)),
            rx,
        ))
    });
    hyper::Response::from_parts(parts, http_body_util::StreamBody::new(frames).boxed())
}

/// Reads a pull's answer, JSON objects a line, for one that tells of an error.
#[derive(Default)]
struct Errors {
    line: Vec<u8>,
    seen: bool,
}

impl Errors {
    fn read(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                self.line_ended();
            } else if self.line.len() < 1 << 20 {
                self.line.push(b);
            }
        }
    }

    fn line_ended(&mut self) {
        let line = std::mem::take(&mut self.line);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line)
            && (v.get("error").is_some() || v.get("errorDetail").is_some())
        {
            self.seen = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Errors, Pulls, Start};

    #[test]
    fn a_pull_that_told_of_an_error_failed() {
        let mut e = Errors::default();
        e.read(b"{\"status\":\"Pulling from x\"}\r\n{\"status\":\"Downloa");
        e.read(b"ding\"}\r\n");
        assert!(!e.seen);
        e.read(b"{\"errorDetail\":{\"message\":\"denied\"},\"error\":\"denied\"}\r\n");
        assert!(e.seen);
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_pulled_image_is_its_jobs_until_they_end_and_written_down_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let pulls = Pulls::new(dir.path());
        let (tag, digest) = (names(&["private:1"]), names(&["private@sha256:aa"]));
        assert_eq!(pulls.start("private:1", "job-1").unwrap(), Start::New);
        assert_eq!(pulls.start("private:1", "job-1").unwrap(), Start::Own);
        // Nobody may use it while the pull is under way but its job.
        assert!(pulls.others(&tag, &digest, "job-2"));
        assert!(!pulls.others(&tag, &digest, "job-1"), "its own");
        // Also a tag of the machine's: the machine's image.
        assert!(!pulls.others(&names(&["private:1", "base:1"]), &digest, "job-2"));
        assert!(!pulls.others(&[], &[], "job-2"));
        assert!(
            !pulls.others(&[], &digest, "job-2"),
            "a digest nobody pulled by"
        );
        assert!(!pulls.ended("private:1", "job-1", Start::New, true));
        // Another job pulls it too: its own once its pull (its credentials) succeeds.
        assert_eq!(pulls.start("private:1", "job-2").unwrap(), Start::Others);
        assert!(!pulls.ended("private:1", "job-2", Start::Others, false));
        assert!(pulls.others(&tag, &digest, "job-2"), "its pull failed");
        assert!(!pulls.ended("private:1", "job-2", Start::Others, true));
        assert!(!pulls.others(&tag, &digest, "job-2"));
        let journal = std::fs::read_to_string(dir.path().join("docker-pulls")).unwrap();
        assert_eq!(journal, "job-1 private:1\njob-2 private:1\n");
        // A failed pull is nobody's.
        assert_eq!(pulls.start("gone:1", "job-3").unwrap(), Start::New);
        assert!(pulls.ended("gone:1", "job-3", Start::New, false));
        pulls.forget(&names(&["gone:1"]));
        assert!(!pulls.known("gone:1"));
        // When the last of its jobs ends it is to be removed, and no job's to use meanwhile.
        pulls.release("job-1");
        assert!(pulls.left().is_empty(), "job-2 still runs");
        pulls.release("job-2");
        assert_eq!(pulls.left(), tag);
        assert!(pulls.others(&tag, &digest, "job-4"));
        assert_eq!(pulls.start("private:1", "job-4").unwrap(), Start::Left);
        // A runner stopped: when it starts again, what was written down is to be removed.
        let again = Pulls::new(dir.path());
        assert_eq!(again.left(), tag);
        assert!(again.others(&tag, &digest, "job-2"));
        again.forget(&tag);
        assert!(again.left().is_empty());
        assert!(!dir.path().join("docker-pulls").exists());
    }
}
