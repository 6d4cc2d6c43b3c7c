//! Confining a job: the process that runs a server's job (and every step it starts) gives
//! up, for good, what job code must not have.
//!
//! - **Another user** ([`JobUser`]): a server or runner running as root switches to an
//!   unprivileged user, so the files it keeps `0600`/`0700` (the database, the secret key,
//!   runner credentials) are out of reach, and so are its own processes.
//! - **Landlock** (Linux 5.13 and later): the process may read everything except the
//!   `hidden` paths (the server's data directory, a runner's work directory, configuration
//!   files, the repositories of others) and write only beneath the `writable` ones (the
//!   job's own directory, its caches). It may not ptrace or read the memory of a process
//!   outside its domain (the server, the runner, other jobs), nor, where the kernel has
//!   scopes (ABI 6), signal one or reach its abstract sockets.
//! - **No new privileges**: nothing it runs gains privileges through set-user-ID binaries
//!   (no `sudo`).
//! - **Death with its parent**: the process is told (SIGHUP) when the runner that started it
//!   dies, and it is a child subreaper, so every process a step leaves behind, even one that
//!   detached itself with `setsid`, stays its descendant and is killed with it
//!   ([`kill_descendants`]).
//!
//! [`Confinement::apply`] must run while the process has a single thread: Landlock and the
//! change of user apply to the calling thread and the threads it starts later.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

/// The newest Landlock ABI this code asks for; older kernels get what they have.
const LANDLOCK_ABI: ABI = ABI::V6;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("there is no user `{0}` on this machine")]
    NoUser(String),
    #[error("looking up user `{user}`: {source}")]
    Lookup {
        user: String,
        #[source]
        source: nix::Error,
    },
    #[error("switching to user `{user}` needs root (this process runs as uid {uid})")]
    NotRoot { user: String, uid: u32 },
    #[error("switching to user `{user}`: {source}")]
    Switch {
        user: String,
        #[source]
        source: nix::Error,
    },
    #[error("Landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("Landlock: {path}: {source}")]
    LandlockPath {
        path: PathBuf,
        #[source]
        source: landlock::PathFdError,
    },
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("the process that started this one is gone")]
    Orphaned,
}

/// The unprivileged user a job runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl JobUser {
    /// The user named `name`, from the system's user database.
    pub fn lookup(name: &str) -> Result<JobUser, ConfineError> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|source| ConfineError::Lookup {
                user: name.to_owned(),
                source,
            })?
            .ok_or_else(|| ConfineError::NoUser(name.to_owned()))?;
        Ok(JobUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// Makes `path` (not following a symlink) this user's.
    pub fn own(&self, path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
    }
}

/// What confines a job's process; sent to it by the runner that starts it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Confinement {
    /// Run as this user (the process must be root to switch).
    pub user: Option<JobUser>,
    /// Confine with Landlock (where the kernel has it).
    pub landlock: bool,
    /// Never readable, nor anything beneath (absolute paths).
    pub hidden: Vec<PathBuf>,
    /// Readable beneath a hidden path (the job's slot: its source, its event).
    pub readable: Vec<PathBuf>,
    /// Readable and writable (the job's directory, its caches).
    pub writable: Vec<PathBuf>,
}

/// How the process was confined, to be told in the job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub user: Option<String>,
    /// `None`: Landlock not asked for. `Some(false)`: asked for, but the kernel does not
    /// enforce it.
    pub landlock: Option<bool>,
    /// Landlock enforced only partly (an older kernel lacks some of the rules asked for).
    pub partial: bool,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some(u) => write!(f, "as user {u}")?,
            None => write!(f, "as uid {}", Uid::current())?,
        }
        match self.landlock {
            Some(true) if self.partial => write!(f, ", Landlock (partly: an older kernel)"),
            Some(true) => write!(f, ", Landlock"),
            Some(false) => write!(f, ", no Landlock (the kernel does not enforce it)"),
            None => write!(f, ", Landlock off"),
        }
    }
}

/// Whether this kernel enforces Landlock (a throw-away probe: it creates a ruleset and
/// closes it, restricting nothing).
pub fn landlock_supported() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(Ruleset::create)
        .is_ok()
}

/// Device files a job may write (and read): the harmless ones a shell and its tools open.
/// Not `/dev/tty`: a job has no terminal (its process starts a session of its own), and
/// the terminal of whoever started the server is not its to type into.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// The rules every job confined with the same hidden paths gets: everything readable but
/// those paths, and the devices. Made by a job's process while it waits for its job (a
/// walk of `/` and a rule per entry: most of what confining a job costs), then completed
/// with the job's own paths ([`Confinement::apply_with`]).
pub struct Ahead {
    /// The hidden paths as given (the job's confinement must name the same).
    hidden: Vec<PathBuf>,
    ruleset: landlock::RulesetCreated,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead")
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

impl Ahead {
    /// The rules of a job whose hidden paths are `hidden`.
    pub fn make(hidden: Vec<PathBuf>) -> Result<Ahead, ConfineError> {
        let ruleset = base_rules(&hidden)?;
        Ok(Ahead { hidden, ruleset })
    }
}

impl Confinement {
    /// Confines the calling process for good. Call it before starting any thread.
    pub fn apply(&self, parent: Pid) -> Result<Applied, ConfineError> {
        self.apply_with(parent, None)
    }

    /// [`apply`](Self::apply), with the rules made `ahead` of the job if they were made for
    /// its hidden paths (else they are made now).
    pub fn apply_with(&self, parent: Pid, ahead: Option<Ahead>) -> Result<Applied, ConfineError> {
        // The rules are built as the current user (root can open every path), then the user
        // changes, then the rules are enforced.
        let ruleset = if self.landlock {
            let base = match ahead {
                Some(a) if a.hidden == self.hidden => a.ruleset,
                _ => base_rules(&self.hidden)?,
            };
            Some(self.job_rules(base)?)
        } else {
            None
        };
        if let Some(user) = &self.user {
            switch_user(user)?;
        }
        let mut applied = Applied {
            user: self.user.as_ref().map(|u| u.name.clone()),
            landlock: None,
            partial: false,
        };
        match ruleset {
            Some(r) => {
                let status = r.restrict_self()?;
                applied.landlock = Some(status.ruleset != RulesetStatus::NotEnforced);
                applied.partial = status.ruleset == RulesetStatus::PartiallyEnforced;
                if !status.no_new_privs {
                    nix::sys::prctl::set_no_new_privs().map_err(|source| ConfineError::Os {
                        what: "no_new_privs",
                        source,
                    })?;
                }
            }
            None => {
                nix::sys::prctl::set_no_new_privs().map_err(|source| ConfineError::Os {
                    what: "no_new_privs",
                    source,
                })?;
            }
        }
        // After the change of user, which clears it.
        nix::sys::prctl::set_pdeathsig(Some(Signal::SIGHUP)).map_err(|source| {
            ConfineError::Os {
                what: "the parent-death signal",
                source,
            }
        })?;
        nix::sys::prctl::set_child_subreaper(true).map_err(|source| ConfineError::Os {
            what: "becoming a subreaper",
            source,
        })?;
        // The parent may have died before the signal was asked for.
        if nix::unistd::getppid() != parent {
            return Err(ConfineError::Orphaned);
        }
        Ok(applied)
    }

    /// `base` completed with the job's own paths: its slot and what it may read beneath
    /// a hidden path, read; its directories and caches, read and written.
    fn job_rules(
        &self,
        mut ruleset: landlock::RulesetCreated,
    ) -> Result<landlock::RulesetCreated, ConfineError> {
        let abi = LANDLOCK_ABI;
        for path in &self.readable {
            if let Some(r) = rule(path, is_dir(path), AccessFs::from_read(abi))? {
                ruleset = ruleset.add_rule(r)?;
            }
        }
        for path in &self.writable {
            if let Some(r) = rule(path, is_dir(path), AccessFs::from_all(abi))? {
                ruleset = ruleset.add_rule(r)?;
            }
        }
        Ok(ruleset)
    }
}

fn is_dir(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_dir())
}

/// The rule granting `access` beneath `path` (a directory if `dir`); `None` for a path that
/// vanished meanwhile, which is simply not granted.
fn rule(
    path: &Path,
    dir: bool,
    access: landlock::BitFlags<AccessFs>,
) -> Result<Option<PathBeneath<PathFd>>, ConfineError> {
    let abi = LANDLOCK_ABI;
    let fd = match PathFd::new(path) {
        Ok(fd) => fd,
        Err(_) if !path.exists() => return Ok(None),
        Err(source) => {
            return Err(ConfineError::LandlockPath {
                path: path.to_owned(),
                source,
            });
        }
    };
    // A rule on a file may only grant what applies to files.
    let access = if dir {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    Ok(Some(PathBeneath::new(fd, access)))
}

/// The rules that depend on the hidden paths alone: everything else readable, and the
/// devices a shell and its tools open, read and written.
fn base_rules(hidden: &[PathBuf]) -> Result<landlock::RulesetCreated, ConfineError> {
    let abi = LANDLOCK_ABI;
    let hidden: Vec<PathBuf> = hidden.iter().map(|p| canonical(p)).collect();
    let mut read = Vec::new();
    readable_roots(Path::new("/"), &hidden, &mut read);
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)?
        .create()?;
    for (path, dir) in &read {
        if let Some(r) = rule(path, *dir, AccessFs::from_read(abi))? {
            ruleset = ruleset.add_rule(r)?;
        }
    }
    for path in DEVICES
        .iter()
        .map(PathBuf::from)
        .filter(|p| !hidden.iter().any(|h| p.starts_with(h)))
    {
        if let Some(r) = rule(&path, is_dir(&path), AccessFs::from_all(abi))? {
            ruleset = ruleset.add_rule(r)?;
        }
    }
    Ok(ruleset)
}

/// `path` with symlinks resolved, or as given when it does not exist (yet).
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// The paths under `dir` to grant reading so that everything is readable except what
/// `hidden` names: a directory with nothing hidden beneath is granted whole; one that holds
/// a hidden path is granted entry by entry, the hidden entry left out. A symlink is granted
/// (as its target) unless it leads into or around a hidden path. A shared temporary
/// directory (world-writable and sticky, like `/tmp`) that holds a hidden path is not
/// granted at all: what others left there is theirs, and a job has a temporary directory
/// of its own. Each path comes with whether it is a directory.
fn readable_roots(dir: &Path, hidden: &[PathBuf], out: &mut Vec<(PathBuf, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    if hidden.iter().any(|h| h == dir) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(dir)) {
        out.push((dir.to_owned(), true));
        return;
    }
    let shared_temp =
        std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o1002 == 0o1002);
    if shared_temp {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            let Ok(target) = std::fs::canonicalize(&path) else {
                continue;
            };
            if hidden
                .iter()
                .any(|h| target.starts_with(h) || h.starts_with(&target))
            {
                continue;
            }
            out.push((path, target.is_dir()));
        } else if kind.is_dir() {
            readable_roots(&path, hidden, out);
        } else {
            out.push((path, false));
        }
    }
}

/// Drops every privilege of root for `user`'s: its group alone, then its ids (real,
/// effective and saved, so there is no way back).
fn switch_user(user: &JobUser) -> Result<(), ConfineError> {
    let me = Uid::current();
    if me.as_raw() == user.uid {
        return Ok(());
    }
    if !me.is_root() {
        return Err(ConfineError::NotRoot {
            user: user.name.clone(),
            uid: me.as_raw(),
        });
    }
    let fail = |source| ConfineError::Switch {
        user: user.name.clone(),
        source,
    };
    let gid = Gid::from_raw(user.gid);
    nix::unistd::setgroups(&[gid]).map_err(fail)?;
    nix::unistd::setresgid(gid, gid, gid).map_err(fail)?;
    let uid = Uid::from_raw(user.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(fail)?;
    Ok(())
}

/// The processes descending from `ancestor` (not itself), read from `/proc`.
pub fn descendants(ancestor: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of = std::collections::HashMap::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold anything, so read after its last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.insert(pid, ppid);
        }
    }
    let root = ancestor.as_raw();
    let mut out = Vec::new();
    for &pid in parent_of.keys() {
        let mut at = pid;
        // The chain is short; a cycle cannot happen, the bound is only a guard.
        for _ in 0..4096 {
            match parent_of.get(&at) {
                Some(&p) if p == root => {
                    out.push(Pid::from_raw(pid));
                    break;
                }
                Some(&p) if p > 1 => at = p,
                _ => break,
            }
        }
    }
    out
}

/// Stops (SIGSTOP) every descendant of `ancestor`, looking again until a look finds none
/// it has not stopped (one may have forked before it was stopped), and returns them all.
fn stop_descendants(ancestor: Pid) -> Vec<Pid> {
    let mut stopped: Vec<Pid> = Vec::new();
    // Bounded: a fork bomb outruns any number of looks; what is left is the next round's.
    for _ in 0..64 {
        let fresh: Vec<Pid> = descendants(ancestor)
            .into_iter()
            .filter(|p| !stopped.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for &pid in &fresh {
            let _ = kill(pid, Signal::SIGSTOP);
        }
        stopped.extend(fresh);
    }
    stopped
}

/// Whether this process has no child process, from `/proc/self/task/*/children` (when the
/// kernel does not say, it may have some).
fn has_no_children() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    for t in tasks.flatten() {
        match std::fs::read_to_string(t.path().join("children")) {
            Ok(c) if c.trim().is_empty() => {}
            _ => return false,
        }
    }
    true
}

/// Kills (SIGKILL) every process descending from this one, again until none is left (a
/// process may fork while the others die), and reaps them. As a child subreaper this
/// process is the ancestor of every process its steps left, detached or not.
///
/// Each round stops (SIGSTOP) every descendant before it kills any: killed one by one, a
/// shell running `sleep 6; echo done >> file` could see its `sleep` die and run its
/// `echo` before its own SIGKILL came. A stopped process runs nothing more, forks nothing
/// more, and dies of SIGKILL all the same.
pub fn kill_descendants() {
    let me = nix::unistd::getpid();
    // The common case, cheaply: no child left at all (a subreaper's orphans are its
    // children, so no child means no descendant).
    if has_no_children() {
        return;
    }
    for round in 0..200 {
        let left = stop_descendants(me);
        if left.is_empty() {
            return;
        }
        for pid in left {
            let _ = kill(pid, Signal::SIGKILL);
        }
        // Reap what died (orphans reparented here are this process's children now).
        while let Ok(status) =
            nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
        // Most often what was left is a child not reaped yet (a step's exited process):
        // reaped now, nothing is left, and there is nothing to wait for.
        if has_no_children() {
            return;
        }
        let pause = if round < 10 { 1 } else { 10 };
        std::thread::sleep(std::time::Duration::from_millis(pause));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_readable_but_the_hidden_paths() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        for p in ["a/data/x", "a/other", "b", "shared/t/data"] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        std::fs::write(root.join("a/file"), "").unwrap();
        std::os::unix::fs::symlink(root.join("a/data"), root.join("a/link-in")).unwrap();
        std::os::unix::fs::symlink(root.join("b"), root.join("a/link-out")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("shared"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        let mut out = Vec::new();
        readable_roots(
            &root,
            &[root.join("a/data"), root.join("shared/t/data")],
            &mut out,
        );
        out.sort();
        let mut want = vec![
            (root.join("a/file"), false),
            (root.join("a/link-out"), true),
            (root.join("a/other"), true),
            (root.join("b"), true),
        ];
        want.sort();
        assert_eq!(out, want, "nothing of the shared temporary directory");
    }
}
