//! Images a confined job pulled through its broker: the job's own while it runs, removed
//! when it ends.
//!
//! An image pulled with a job's registry credentials may be private, so what a job's pull
//! brought is that job's alone: the image ids a pull brought to the engine (ids it did not
//! have before the pull) may be used by no other job, and neither may an image while a name
//! of it is being pulled by another job. A name another job pulled (or is pulling) may not
//! be pulled again by a job: a pull by digest of what the engine holds is answered from the
//! engine's cache without asking the registry for the job's credentials. When a job ends,
//! the names it pulled are removed from the engine (an image that also has a name the
//! machine gave it keeps that one); until its images are gone, no job may use them. Names
//! are the engine's (the broker sends a pull under the name the engine will list), and what
//! the runner's jobs pulled is written down in its work directory before each pull, so
//! that what a runner stopped during a job left (or could not remove) is removed when it
//! starts again, or after a later job.
//!
//! The images on the machine that no job pulled are the machine's: its admin put them
//! there for jobs to run. A name a job pulled onto an image the engine had already (its
//! content was there) brings the job no image of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The most pulls a job may make.
const MAX_PULLS: usize = 256;

/// The images the jobs of this runner pulled: shared by its slots.
#[derive(Debug, Clone)]
pub(crate) struct Pulls(Arc<Mutex<Claims>>);

/// Whose a name or an image id is: a running job's (its label), or nobody's (its job ended
/// or the runner stopped; it is to be removed, and no job's to use until it is).
type Holder = Option<String>;

#[derive(Debug)]
struct Claims {
    /// A name a job pulled (as the engine lists it) → whose.
    names: BTreeMap<String, Holder>,
    /// An image id a job's pull brought → whose.
    ids: BTreeMap<String, Holder>,
    /// Names being pulled: by whom, and the ids the engine had before. Nobody else may use
    /// an image of such a name, nor one that landed during such a pull (it may be the
    /// pull's, not recorded yet).
    pulling: BTreeMap<String, Pulling>,
    /// How many pulls each running job made (each may leave an image behind).
    again: BTreeMap<String, usize>,
    /// Where the claims are written down (`WORK/docker-pulls`): `name LABEL NAME` and `id
    /// LABEL ID` a line, `-` for nobody.
    journal: PathBuf,
}

#[derive(Debug)]
struct Pulling {
    label: String,
    before: Arc<BTreeSet<String>>,
}

/// Why a job may not pull a name.
#[derive(Debug)]
pub(crate) enum NotPulled {
    /// Another job pulled it or is pulling it (or a job that ended, and it is not removed yet).
    Others,
    /// The job pulled as many names as it may.
    TooMany,
    /// It could not be written down (it could then not be removed after a crash).
    Journal(std::io::Error),
}

impl Pulls {
    /// The runner's: claims are written down under `work_dir`, where those of jobs a runner
    /// stopped during (or could not remove) are read back, to be removed ([`Pulls::left`]).
    pub(crate) fn new(work_dir: &Path) -> Pulls {
        let journal = work_dir.join("docker-pulls");
        let mut claims = Claims {
            names: BTreeMap::new(),
            ids: BTreeMap::new(),
            pulling: BTreeMap::new(),
            again: BTreeMap::new(),
            journal,
        };
        for line in std::fs::read_to_string(&claims.journal)
            .unwrap_or_default()
            .lines()
        {
            match line.split(' ').collect::<Vec<_>>()[..] {
                ["name", _, name] => {
                    claims.names.insert(name.to_owned(), None);
                }
                ["id", _, id] => {
                    claims.ids.insert(id.to_owned(), None);
                }
                _ => {}
            }
        }
        Pulls(Arc::new(Mutex::new(claims)))
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether job `label` pulled `name` itself (it may pull it again).
    pub(crate) fn its_own(&self, name: &str, label: &str) -> bool {
        self.claims().names.get(name) == Some(&Some(label.to_owned()))
    }

    /// Whether another job pulled `name` or is pulling it (or a job that ended, and the name
    /// is not removed yet).
    pub(crate) fn taken(&self, name: &str, label: &str) -> bool {
        let c = self.claims();
        c.names
            .get(name)
            .is_some_and(|h| h.as_deref() != Some(label))
            || c.pulling.get(name).is_some_and(|p| p.label != label)
    }

    /// Starts job `label`'s pull of `name` (the engine had the image ids `before`), written
    /// down first. Refused when another job pulled it or is pulling it.
    pub(crate) fn start(
        &self,
        name: &str,
        label: &str,
        before: Arc<BTreeSet<String>>,
    ) -> Result<(), NotPulled> {
        let mut c = self.claims();
        let mine = Some(label.to_owned());
        match c.names.get(name) {
            Some(h) if *h != mine => return Err(NotPulled::Others),
            _ => {}
        }
        if c.pulling.contains_key(name) {
            return Err(NotPulled::Others);
        }
        // Every pull counts, of its own names again too: each may leave an image behind.
        let under_way = c.pulling.values().filter(|p| p.label == label).count();
        if c.pulled(label) + under_way >= MAX_PULLS {
            return Err(NotPulled::TooMany);
        }
        let new = c.names.insert(name.to_owned(), mine).is_none();
        if let Err(e) = c.write() {
            if new {
                c.names.remove(name);
            }
            return Err(NotPulled::Journal(e));
        }
        c.pulling.insert(
            name.to_owned(),
            Pulling {
                label: label.to_owned(),
                before,
            },
        );
        Ok(())
    }

    /// Job `label`'s pull of `name` ended. `brought`: the image id it landed on, when that
    /// id was not on the engine before the pull (the job's from now). `gone`: the name is
    /// not on the engine (a pull that failed): forgotten.
    pub(crate) fn ended(&self, name: &str, label: &str, brought: Option<String>, gone: bool) {
        let mut c = self.claims();
        c.pulling.remove(name);
        *c.again.entry(label.to_owned()).or_default() += 1;
        if let Some(id) = brought {
            // Two jobs' pulls that both brought one id: neither's (nobody's, to be removed).
            let holder = match c.ids.get(&id) {
                Some(h) if *h != Some(label.to_owned()) => None,
                _ => Some(label.to_owned()),
            };
            c.ids.insert(id, holder);
        }
        if gone && c.names.get(name) == Some(&Some(label.to_owned())) {
            c.names.remove(name);
        }
        if let Err(e) = c.write() {
            tracing::warn!("writing down the runner's jobs' pulls: {e}");
        }
    }

    /// Whether job `label` may not use the image `id` of these `names` (its tags and
    /// digests): a pull of another job brought it (or of a job that ended), a name of it is
    /// being pulled by another job, or it landed while another job's pull is under way.
    pub(crate) fn others(&self, id: &str, names: &[String], label: &str) -> bool {
        let c = self.claims();
        let mine = Some(label.to_owned());
        if let Some(h) = c.ids.get(id) {
            return *h != mine;
        }
        names
            .iter()
            .any(|n| c.pulling.get(n).is_some_and(|p| p.label != label))
            || c.pulling
                .values()
                .any(|p| p.label != label && !p.before.contains(id))
    }

    /// Job `label` ended: what it pulled is nobody's, to be removed.
    pub(crate) fn release(&self, label: &str) {
        let mut guard = self.claims();
        let c = &mut *guard;
        let mine = Some(label.to_owned());
        for h in c.names.values_mut().chain(c.ids.values_mut()) {
            if *h == mine {
                *h = None;
            }
        }
        c.pulling.retain(|_, p| p.label != label);
        c.again.remove(label);
        if let Err(e) = c.write() {
            tracing::warn!("writing down the runner's jobs' pulls: {e}");
        }
    }

    /// The names and image ids no running job holds, to be removed from the engine.
    pub(crate) fn left(&self) -> (Vec<String>, Vec<String>) {
        let c = self.claims();
        let nobody = |m: &BTreeMap<String, Holder>| {
            m.iter()
                .filter(|(_, h)| h.is_none())
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
        };
        (nobody(&c.names), nobody(&c.ids))
    }

    /// These names and ids are no longer on the engine: forgotten (those nobody holds, and
    /// no pull is under way of).
    pub(crate) fn forget(&self, names: &[String], ids: &[String]) {
        let mut c = self.claims();
        let pulling: Vec<String> = c.pulling.keys().cloned().collect();
        c.names
            .retain(|n, h| h.is_some() || pulling.contains(n) || !names.contains(n));
        c.ids.retain(|i, h| h.is_some() || !ids.contains(i));
        if let Err(e) = c.write() {
            tracing::warn!("writing down the runner's jobs' pulls: {e}");
        }
    }
}

impl Claims {
    fn pulled(&self, label: &str) -> usize {
        self.again.get(label).copied().unwrap_or(0)
    }

    fn write(&self) -> std::io::Result<()> {
        if self.names.is_empty() && self.ids.is_empty() {
            return match std::fs::remove_file(&self.journal) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let mut text = String::new();
        for (kind, map) in [("name", &self.names), ("id", &self.ids)] {
            for (what, holder) in map {
                let holder = holder.as_deref().unwrap_or("-");
                text.push_str(&format!("{kind} {holder} {what}\n"));
            }
        }
        // The runner's alone: the names and ids of what jobs pulled are not for jobs to read
        // (the work directory is open for them to pass through).
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.journal.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?
            .write_all(text.as_bytes())?;
        std::fs::rename(&tmp, &self.journal)
    }
}

/// Why a job may not use an image.
#[derive(Debug)]
pub(crate) enum Unusable {
    /// The engine has no such image, or it is another job's (answered as if there were
    /// none: a refusal would tell when another job's image lands).
    Missing,
    /// Why not (another job's pull, or the engine could not be asked).
    Refused(String),
}

/// What the engine says of image `image`: `Ok(None)` when it has none such.
async fn inspect(engine: &Path, image: &str) -> Result<Option<serde_json::Value>, String> {
    let encoded: String = form_urlencoded::byte_serialize(image.as_bytes()).collect();
    match super::engine_get(engine, &format!("/images/{encoded}/json")).await {
        None => Err("the Docker engine did not answer".into()),
        Some((status, found)) if status.is_success() => Ok(Some(found)),
        // Not found, or not a name the engine reads (it has no image of that name).
        Some((hyper::StatusCode::NOT_FOUND | hyper::StatusCode::BAD_REQUEST, _)) => Ok(None),
        Some((status, _)) => Err(format!("the Docker engine answered {status}")),
    }
}

fn id_of(found: &serde_json::Value) -> String {
    found
        .get("Id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Whether job `label` may use `image`: the engine has it, and it is not another job's
/// ([`Pulls::others`]). For a container (`creating`), the image must not carry labels that
/// something on the machine acts on: a container gets its image's labels.
pub(crate) async fn usable(
    engine: &Path,
    pulls: &Pulls,
    label: &str,
    image: &str,
    creating: bool,
) -> Result<(), Unusable> {
    let found = match inspect(engine, image).await {
        Err(e) => {
            return Err(Unusable::Refused(format!(
                "the image `{image}` could not be looked up: {e}"
            )));
        }
        Ok(None) => return Err(Unusable::Missing),
        Ok(Some(found)) => found,
    };
    let names: Vec<String> = ["RepoTags", "RepoDigests"]
        .iter()
        .filter_map(|k| found.get(*k).and_then(serde_json::Value::as_array))
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .map(str::to_owned)
        .collect();
    if pulls.others(&id_of(&found), &names, label) {
        return Err(Unusable::Missing);
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

/// The ids of the images the engine has (before a pull: what the pull brought is what was
/// not among them).
pub(super) async fn ids(engine: &Path) -> Option<BTreeSet<String>> {
    // A machine's list of images can be long: read up to 64 MiB of it.
    let (status, list) =
        super::engine_call_within(engine, hyper::Method::GET, "/images/json?all=1", 64 << 20)
            .await?;
    if !status.is_success() {
        return None;
    }
    Some(
        list.as_array()?
            .iter()
            .filter_map(|i| i.get("Id").and_then(serde_json::Value::as_str))
            .map(str::to_owned)
            .collect(),
    )
}

/// Removes from the engine what no running job holds ([`Pulls::left`]): the names (an
/// image with no other name goes; one that also has a name of the machine's keeps it),
/// then forgets the names and the ids the engine no longer has.
pub(crate) async fn remove_left(engine: &Path, pulls: &Pulls) {
    let (names, ids) = pulls.left();
    let mut gone_names = Vec::new();
    for name in names {
        // A name pulled onto an image the machine names by digest in that repository: its
        // removal would take the machine's digest names with it. The name stays.
        if let Ok(Some(found)) = inspect(engine, &name).await
            && machine_digests(&found, &name, pulls)
        {
            gone_names.push(name);
            continue;
        }
        if delete(engine, &name).await {
            gone_names.push(name);
        }
    }
    // What a job's pulls brought and no name holds any more (a tag its registry moved
    // between two pulls leaves the old image behind).
    let mut gone_ids = Vec::new();
    for id in ids {
        if delete(engine, &id).await {
            gone_ids.push(id);
        }
    }
    pulls.forget(&gone_names, &gone_ids);
}

/// Removes the image name or id `what` from the engine, without force: whether it is gone
/// (removed, or not there).
async fn delete(engine: &Path, what: &str) -> bool {
    let encoded: String = form_urlencoded::byte_serialize(what.as_bytes()).collect();
    let path = format!("/images/{encoded}");
    let why = match super::engine_call(engine, hyper::Method::DELETE, &path).await {
        Some((status, _))
            if status.is_success()
                || status == hyper::StatusCode::NOT_FOUND
                || status == hyper::StatusCode::BAD_REQUEST =>
        {
            return true;
        }
        Some((status, answer)) => {
            let message = answer.get("message").and_then(serde_json::Value::as_str);
            format!("{status} {}", message.unwrap_or_default())
        }
        None => "the Docker engine did not answer".to_owned(),
    };
    tracing::warn!("removing the image `{what}` a job pulled: {why}");
    false
}

/// Whether the image `found` has a digest name in the repository of `name` that no job
/// pulled (the machine's).
fn machine_digests(found: &serde_json::Value, name: &str, pulls: &Pulls) -> bool {
    let repository = match name.split_once('@') {
        Some((r, _)) => r,
        None => name
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map_or(name, |(r, _)| r),
    };
    let c = pulls.claims();
    found
        .get("RepoDigests")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .any(|d| {
            d.split_once('@').is_some_and(|(r, _)| r == repository) && !c.names.contains_key(d)
        })
}

/// Job `label`'s pull of `name` ended (the engine had the image ids `before`): the image
/// it landed on is the job's when it is new, whether or not the engine's answer told of an
/// error (what landed is there); a name the engine lacks is forgotten.
pub(super) async fn pull_ended(
    engine: &Path,
    pulls: &Pulls,
    label: &str,
    name: &str,
    before: &BTreeSet<String>,
) {
    let found = inspect(engine, name).await;
    let brought = match &found {
        Ok(Some(f)) => Some(id_of(f)).filter(|id| !id.is_empty() && !before.contains(id)),
        _ => None,
    };
    pulls.ended(name, label, brought, matches!(found, Ok(None)));
}

/// Sends the engine's answer to a pull on to the job as it comes, and when it ends (the
/// job may have hung up or stopped reading: it is read to its end all the same) records the
/// pull ([`pull_ended`]). `held` is kept until then: the job's end waits for the pull, and
/// its count of pulls at once stays taken.
pub(super) fn follow_pull<H: Send + 'static>(
    response: hyper::Response<hyper::body::Incoming>,
    name: String,
    before: BTreeSet<String>,
    (engine, pulls, label): (PathBuf, Pulls, String),
    held: H,
) -> hyper::Response<super::Body> {
    use http_body_util::BodyExt;
    let (parts, mut incoming) = response.into_parts();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(256);
    // Set when the job fell behind and lost part of the answer: it is then told so.
    let cut = Arc::new(AtomicBool::new(false));
    let cut_here = cut.clone();
    tokio::spawn(async move {
        let _held = held;
        let mut tx = Some(tx);
        while let Some(Ok(frame)) = incoming.frame().await {
            if let Ok(data) = frame.into_data()
                && let Some(t) = &tx
                && let Err(e) = t.try_send(data)
            {
                if matches!(e, tokio::sync::mpsc::error::TrySendError::Full(_)) {
                    cut_here.store(true, Ordering::SeqCst);
                }
                tx = None;
            }
        }
        drop(tx);
        pull_ended(&engine, &pulls, &label, &name, &before).await;
    });
    let frames = futures_util::stream::unfold((rx, cut, false), |(mut rx, cut, over)| async move {
        if over {
            return None;
        }
        match rx.recv().await {
            Some(data) => Some((Ok(hyper::body::Frame::data(data)), (rx, cut, false))),
            None if cut.load(Ordering::SeqCst) => {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    "pipewright: the pull's answer was not read in time".into();
                Some((Err(e), (rx, cut, true)))
            }
            None => None,
        }
    });
    hyper::Response::from_parts(parts, http_body_util::StreamBody::new(frames).boxed())
}

#[cfg(test)]
mod tests {
    use super::{NotPulled, Pulls};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn what_a_pull_brought_is_its_job_s_until_it_ends_and_written_down_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let pulls = Pulls::new(dir.path());
        let before = Arc::new(BTreeSet::from(["sha256:machine".to_owned()]));
        let tags = names(&["private:1", "private@sha256:aa"]);
        pulls.start("private:1", "job-1", before.clone()).unwrap();
        // Nobody else may pull it, nor use an image of that name while it is pulled, nor
        // one that landed meanwhile (it may be the pull's).
        assert!(matches!(
            pulls.start("private:1", "job-2", before.clone()),
            Err(NotPulled::Others)
        ));
        assert!(pulls.others("sha256:old", &tags, "job-2"));
        assert!(pulls.others("sha256:landed", &[], "job-2"));
        assert!(!pulls.others("sha256:machine", &[], "job-2"));
        assert!(!pulls.others("sha256:old", &tags, "job-1"));
        pulls.ended("private:1", "job-1", Some("sha256:new".into()), false);
        assert!(pulls.others("sha256:new", &[], "job-2"), "by its id alone");
        assert!(!pulls.others("sha256:new", &tags, "job-1"), "its own");
        assert!(pulls.its_own("private:1", "job-1"));
        // A name pulled onto what the engine had brings nothing: the machine's image.
        pulls.start("alias:1", "job-2", before.clone()).unwrap();
        pulls.ended("alias:1", "job-2", None, false);
        assert!(!pulls.others("sha256:machine", &names(&["alias:1"]), "job-3"));
        assert!(pulls.others("sha256:new", &names(&["alias:1"]), "job-2"));
        let journal = std::fs::read_to_string(dir.path().join("docker-pulls")).unwrap();
        let mode = std::fs::metadata(dir.path().join("docker-pulls"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(
            journal,
            "name job-2 alias:1\nname job-1 private:1\nid job-1 sha256:new\n"
        );
        // Two jobs whose pulls both brought one id: neither's.
        pulls.start("twin:1", "job-3", before.clone()).unwrap();
        pulls.ended("twin:1", "job-3", Some("sha256:new".into()), false);
        assert!(pulls.others("sha256:new", &[], "job-1"));
        assert!(pulls.others("sha256:new", &[], "job-3"));
        // A failed pull is forgotten.
        pulls.start("gone:1", "job-3", before.clone()).unwrap();
        pulls.ended("gone:1", "job-3", None, true);
        assert!(!pulls.its_own("gone:1", "job-3"));
        // When its job ends it is to be removed, and no job's to use or pull meanwhile.
        pulls.release("job-1");
        assert_eq!(
            pulls.left(),
            (names(&["private:1"]), names(&["sha256:new"]))
        );
        assert!(pulls.others("sha256:new", &[], "job-1"));
        assert!(matches!(
            pulls.start("private:1", "job-4", before.clone()),
            Err(NotPulled::Others)
        ));
        // A runner stopped: when it starts again, what was written down is to be removed.
        let again = Pulls::new(dir.path());
        assert_eq!(
            again.left(),
            (
                names(&["alias:1", "private:1", "twin:1"]),
                names(&["sha256:new"])
            )
        );
        assert!(again.others("sha256:new", &[], "job-2"));
        again.forget(
            &names(&["alias:1", "private:1", "twin:1"]),
            &names(&["sha256:new"]),
        );
        assert_eq!(again.left(), (vec![], vec![]));
        assert!(!dir.path().join("docker-pulls").exists());
        // At most so many pulls a job, pulls again of its own names included.
        let many = Pulls::new(dir.path());
        for _ in 0..super::MAX_PULLS {
            many.start("x:1", "job-5", before.clone()).unwrap();
            many.ended("x:1", "job-5", None, false);
        }
        assert!(matches!(
            many.start("x:1", "job-5", before),
            Err(NotPulled::TooMany)
        ));
    }
}
