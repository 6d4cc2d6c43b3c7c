//! A slot's directory between jobs: readied for the next job ([`ready_slot`]), what the
//! last job left emptied ([`clear_slot`]), the directories a job shares with later jobs of
//! its repository made the job user's ([`owned_dir`]), and the job processes a runner that
//! died left running there ended ([`reap_slots`]).

use std::path::Path;
use std::time::Duration;

use engine::confine::JobUser;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{RunnerError, io};

/// The file in a slot recording the job process running there: `pid start-time`.
pub(super) const CHILD_RECORD: &str = ".child";

/// A process's start time (clock ticks after boot), from `/proc/PID/stat`: with the pid it
/// names one process, never another that later got the same pid.
pub(super) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Ends the job processes a runner that died left in its slots (under `work_dir/slots`),
/// before their jobs are given to anyone again: each is told its runner is gone (SIGHUP: it
/// kills every process of its job and exits), then killed if it has not ended in 5 s.
pub fn reap_slots(work_dir: &Path) {
    // Blocking, but short: at start, before any job is taken.
    if let Some(cgroups) = crate::cgroup::Slots::detect(work_dir) {
        cgroups.empty_all();
    }
    let Ok(slots) = std::fs::read_dir(work_dir.join("slots")) else {
        return;
    };
    for slot in slots.flatten() {
        let record = slot.path().join(CHILD_RECORD);
        let Ok(text) = std::fs::read_to_string(&record) else {
            continue;
        };
        let mut parts = text.split_whitespace();
        let (Some(pid), Some(started)) = (
            parts.next().and_then(|p| p.parse::<i32>().ok()),
            parts.next().and_then(|t| t.parse::<u64>().ok()),
        ) else {
            let _ = std::fs::remove_file(&record);
            continue;
        };
        if pid > 1 && start_time(pid) == Some(started) {
            tracing::warn!(
                pid,
                slot = %slot.path().display(),
                "a job process outlived its runner: ending it and its steps"
            );
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while start_time(pid) == Some(started) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if start_time(pid) == Some(started) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(&record);
    }
}

/// Readies a slot for a confined job: what the last job left removed (its workspace, home
/// and artifacts emptied, its temp dir but for the engine's own files, which the engine
/// rewrites before each use), and `job/` (workspace, temp, home) and `artifacts/` there, the
/// job user's. With `keep`, the directories are kept from job to job (making and deleting
/// them per job made ext4 allocate inodes: a good part of a short job's cost), which is
/// safe only when no process of the last job can be left to reach into them: when its
/// cgroup was emptied. Otherwise they are made anew (a process that outlived its job keeps
/// Landlock rules for the old ones only). Directories that are not the job user's, or not
/// directories, are always made anew.
pub(crate) fn ready_slot(
    dir: &Path,
    user: Option<&JobUser>,
    keep: bool,
) -> Result<(), RunnerError> {
    if !keep {
        let job = dir.join("job");
        if job.exists()
            && let Err(e) = std::fs::remove_dir_all(&job)
        {
            crate::make_writable(&job);
            if std::fs::remove_dir_all(&job).is_err() {
                crate::set_aside(dir, &io(&job)(e))?;
            }
        }
    }
    if let Err(first) = clear_slot(dir, user) {
        // What a job may leave that cannot be deleted as it is (read-only directories, as
        // Go's module cache makes them; a runner that is not root cannot ignore their
        // mode): made writable, else the slot is set aside whole and starts anew.
        crate::make_writable(dir);
        if clear_slot(dir, user).is_err() {
            crate::set_aside(dir, &first)?;
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Others (the job user) pass through the slot to its job's directory, list nothing.
    crate::set_mode(dir, 0o711)?;
    // `job/` itself is the runner's (its event file too): the job may write in its
    // directories but not swap them, so what a container mounts of them is what it names.
    for sub in [
        "job",
        "job/workspace",
        "job/temp",
        "job/home",
        "job/github_home",
        "artifacts",
    ] {
        let path = dir.join(sub);
        if path.is_dir() {
            continue;
        }
        std::fs::create_dir(&path).map_err(io(&path))?;
        if let Some(u) = user.filter(|_| sub != "job") {
            u.own(&path).map_err(io(&path))?;
        }
    }
    // Only the job's group (and root) may pass into it: what a job's container leaves in
    // its directories (a set-user-ID file made by the container's root) is out of other
    // users' reach, and the job's own processes gain no privileges from it.
    // (Without a job user, a job run as root runs its services as another user, which must
    // pass.)
    let job = dir.join("job");
    if let Some(u) = user {
        std::os::unix::fs::lchown(&job, None, Some(u.gid)).map_err(io(&job))?;
        crate::set_mode(&job, 0o750)?;
    } else {
        crate::set_mode(&job, 0o755)?;
    }
    Ok(())
}

/// Empties what the last job left in a slot (keeping the slot, its record and the job's
/// directories when they are the job user's).
fn clear_slot(dir: &Path, user: Option<&JobUser>) -> Result<(), RunnerError> {
    use std::os::unix::fs::MetadataExt;
    let uid = user.map_or_else(|| nix::unistd::Uid::current().as_raw(), |u| u.uid);
    let remove = |path: &Path| -> Result<(), RunnerError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(io(path)),
            Ok(_) => std::fs::remove_file(path).map_err(io(path)),
            Err(_) => Ok(()),
        }
    };
    for sub in ["artifacts", "source.tar"] {
        remove(&dir.join(sub))?;
    }
    let job = dir.join("job");
    let owner = |p: &Path, uid: u32| {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid)
    };
    let runner = nix::unistd::Uid::current().as_raw();
    if !owner(&job, runner)
        || !["workspace", "temp", "home", "github_home"]
            .iter()
            .all(|sub| owner(&job.join(sub), uid))
    {
        return remove(&job);
    }
    crate::empty_dir(&job.join("workspace"), |_| false)?;
    // Nothing of the temp dir is kept, the engine's own files included: they are the job
    // user's to change, so the runner working on them in place (blanking them for the next
    // job) would follow what a job made of them (links, a directory swapped for one, hard
    // links, FIFOs), and a file kept is an inode a job may still hold open when the next
    // job (another repository's) writes its step scripts, secrets in them, into it.
    // `remove_dir_all` does not follow links.
    crate::empty_dir(&job.join("temp"), |_| false)?;
    crate::empty_dir(&job.join("home"), |_| false)?;
    crate::empty_dir(&job.join("github_home"), |_| false)?;
    // The job's directory itself: its event file and the directories above, nothing else.
    crate::empty_dir(&job, |name| {
        matches!(
            name,
            "workspace" | "temp" | "home" | "github_home" | "event.json"
        )
    })
}

/// Makes `dir` a directory of `user`'s (created if missing). One that belongs to someone
/// else is replaced by a new, empty one: its contents are never taken over in place (a
/// job could have planted links there).
pub(crate) fn owned_dir(dir: &Path, user: Option<&JobUser>) -> Result<(), RunnerError> {
    use std::os::unix::fs::MetadataExt;
    if let Some(u) = user
        && let Ok(m) = std::fs::symlink_metadata(dir)
        && (m.uid() != u.uid || !m.is_dir())
    {
        let aside = dir.with_extension(format!("old-{}", std::process::id()));
        std::fs::rename(dir, &aside).map_err(io(dir))?;
        if let Err(e) = std::fs::remove_dir_all(&aside) {
            tracing::warn!("{}: {e}", aside.display());
        }
    }
    if !dir.exists() {
        let Some(u) = user else {
            return std::fs::create_dir_all(dir).map_err(io(dir));
        };
        // Made under a name of its own and owned before it takes its place: another slot's
        // job of the same repository may be making it too, and would otherwise find it
        // root's for a moment and set it aside under this one.
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let tmp = dir.with_extension(format!("new-{}", engine::docker::random_hex()));
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        u.own(&tmp).map_err(io(&tmp))?;
        // Over the other's, empty and owned as this one, when it got there first.
        if let Err(e) = std::fs::rename(&tmp, dir) {
            let _ = std::fs::remove_dir(&tmp);
            if !dir.is_dir() {
                return Err(io(dir)(e));
            }
        }
    }
    Ok(())
}
