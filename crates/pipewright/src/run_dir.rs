//! The scratch space of `pipewright run`: each job's workspace and temp dir, the event file,
//! local artifacts. Kept from run to run in a directory of the user's in the temp dir
//! (`pipewright-UID/N`, one per `pipewright run` at a time, held by a lock; short, for the
//! Unix sockets jobs make in it) and emptied between runs, as a runner's slots are: making
//! and deleting a tree of directories and a few files for every step costs more than a
//! short step itself (the file system's inode allocation).

use std::fs::File;
use std::path::{Path, PathBuf};

use engine::files::remove_entry;

/// How many `pipewright run` processes may each hold a kept directory at once; one more
/// gets a new temporary directory, as with `--keep`.
const KEPT: usize = 16;

/// More job directories than this in a kept directory (many workflows run there over
/// time): it starts anew.
const MAX_JOB_DIRS: usize = 64;

/// A kept run directory, held while this value lives.
pub(crate) struct RunDir {
    pub(crate) path: PathBuf,
    /// Locked while held; says `clean` when the last run emptied the directory after it.
    lock: File,
    taken: std::time::SystemTime,
}

const CLEAN: &[u8; 5] = b"clean";
const DIRTY: &[u8; 5] = b"dirty";

impl RunDir {
    /// A directory under `base` no other `pipewright run` holds, emptied but for its jobs'
    /// directories and the engine's own files in them. `None` when none can be had (all
    /// held, or one that cannot be emptied): the caller makes a temporary one.
    pub(crate) fn take(base: &Path) -> Option<RunDir> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(base)
            .ok()?;
        // In a shared temp dir another user could have made it first: it must be this
        // user's own directory, not a link, that no one else may write to. Others may pass
        // through it (a job's services may run as another user: PostgreSQL's `initdb`).
        let meta = std::fs::symlink_metadata(base).ok()?;
        if !meta.is_dir()
            || meta.uid() != rustix::process::geteuid().as_raw()
            || meta.mode() & 0o022 != 0
        {
            return None;
        }
        if meta.mode() & 0o777 != 0o711 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o711)).ok()?;
        }
        for n in 0..KEPT {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(base.join(format!("{n}.lock")))
                .ok()?;
            if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                continue;
            }
            let path = base.join(n.to_string());
            let taken = std::time::SystemTime::now();
            // A run that ended without emptying it (killed): emptied now.
            let mut state = [0u8; 5];
            let clean = rustix::io::pread(&lock, &mut state, 0).is_ok_and(|n| n == 5)
                && &state == CLEAN
                && path.is_dir();
            if !clean && empty(&path, None).is_err() {
                // Something a job left cannot be deleted (read-only directories): this one
                // is left for its owner to look at.
                continue;
            }
            rustix::io::pwrite(&lock, DIRTY, 0).ok()?;
            return Some(RunDir { path, lock, taken });
        }
        None
    }

    /// Empties the directory after its run: the jobs' workspaces and what their steps left
    /// in their temp dirs (the engine's own files are kept, blanked, for the next run).
    /// The directories of jobs this run did not run (another workflow's, from earlier runs)
    /// are removed.
    pub(crate) fn finish(self) {
        // File times lag the clock by up to a tick.
        let since = self.taken - std::time::Duration::from_secs(1);
        if empty(&self.path, Some(since)).is_ok() {
            let _ = rustix::io::pwrite(&self.lock, CLEAN, 0);
        }
    }
}

/// Whether a job's directory was used since `since`: a step's script was written.
fn used_since(job: &Path, since: std::time::SystemTime) -> bool {
    std::fs::read_dir(job.join("temp")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("step-")
                && e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
        })
    })
}

/// Empties a run directory but for its event file, `jobs/*/{workspace,temp}` and the
/// engine's own files in each temp dir, blanked (creates it if missing). With `since`, the
/// directories of jobs not run since then are removed.
fn empty(dir: &Path, since: Option<std::time::SystemTime>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // Others may pass through (to a job's services), not list.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let is_dir = kind.is_dir();
        if entry.file_name() == "event.json" && kind.is_file() {
            continue; // written again by the next run
        }
        if entry.file_name() == "jobs"
            && is_dir
            && std::fs::read_dir(&path)?.count() <= MAX_JOB_DIRS
        {
            for job in std::fs::read_dir(&path)? {
                let job = job?;
                let is_dir = job.file_type()?.is_dir();
                let used = since.is_none_or(|t| used_since(&job.path(), t));
                if is_dir && used {
                    empty_job(&job.path())?;
                } else {
                    remove_entry(&job.path(), is_dir)?;
                }
            }
        } else {
            remove_entry(&path, is_dir)?;
        }
    }
    Ok(())
}

fn empty_job(job: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(job)? {
        let entry = entry?;
        let path = entry.path();
        let is_dir = entry.file_type()?.is_dir();
        match entry.file_name().to_str() {
            Some("workspace") if is_dir => {
                for e in std::fs::read_dir(&path)? {
                    let e = e?;
                    remove_entry(&e.path(), e.file_type()?.is_dir())?;
                }
            }
            // The engine's files are kept but blanked: a step's script holds the values its
            // expressions were replaced with (secrets among them), and others may pass
            // through to it (services run as another user).
            Some("temp") if is_dir => engine::clear_engine_temp(&path)?,
            _ => remove_entry(&path, is_dir)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RunDir;

    #[test]
    fn a_run_directory_is_held_by_one_run_and_emptied_but_for_the_engine_s_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        // Not a directory others may write to (another user's would fail the owner check).
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(RunDir::take(&open).is_none());
        std::os::unix::fs::symlink(d.path(), d.path().join("link")).unwrap();
        assert!(RunDir::take(&d.path().join("link")).is_none());
        let d = tempfile::tempdir_in(d.path()).unwrap();
        let first = RunDir::take(d.path()).unwrap();
        let second = RunDir::take(d.path()).unwrap();
        assert_ne!(
            first.path, second.path,
            "a held directory is not given twice"
        );
        let job = first.path.join("jobs/w-a-0");
        for sub in ["workspace/src", "temp/_runner_file_commands", "temp/bin"] {
            std::fs::create_dir_all(job.join(sub)).unwrap();
        }
        std::fs::write(job.join("workspace/src/main.rs"), "x").unwrap();
        std::fs::write(job.join("temp/step-1.sh"), "echo one").unwrap();
        std::fs::write(job.join("temp/child.pid"), "1").unwrap();
        std::fs::write(first.path.join("event.json"), "{}").unwrap();
        std::fs::create_dir_all(first.path.join("artifacts/dist")).unwrap();
        // Another workflow's job, from a run before: its directory goes.
        let old = first.path.join("jobs/other-b-0");
        std::fs::create_dir_all(old.join("temp")).unwrap();
        let script = std::fs::File::create(old.join("temp/step-1.sh")).unwrap();
        script
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
        let path = first.path.clone();
        first.finish();
        let again = RunDir::take(d.path()).unwrap();
        assert_eq!(again.path, path, "a free directory is taken again");
        let names = |p: &std::path::Path| {
            let mut v: Vec<String> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&path), ["event.json", "jobs"]);
        assert_eq!(names(&path.join("jobs")), ["w-a-0"]);
        assert_eq!(names(&job), ["temp", "workspace"]);
        assert!(names(&job.join("workspace")).is_empty());
        assert_eq!(
            names(&job.join("temp")),
            ["_runner_file_commands", "step-1.sh"]
        );
        assert_eq!(std::fs::read(job.join("temp/step-1.sh")).unwrap(), [0; 8]);
        drop(second);
        // A run killed before its end: the next one empties what it left.
        std::fs::write(job.join("workspace/left"), "x").unwrap();
        drop(again);
        let after_kill = RunDir::take(d.path()).unwrap();
        assert_eq!(after_kill.path, path);
        assert!(names(&job.join("workspace")).is_empty());
    }
}
