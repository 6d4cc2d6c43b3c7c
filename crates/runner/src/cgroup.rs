//! A cgroup (v2) per slot, where the kernel and this runner's privileges allow one: a job's
//! process is put there before it reads its job, and everything it and its steps start
//! stays there whatever they do (`setsid`, double forks, killing the job's process), since a
//! job may not write the cgroup files (they are root's, and outside what Landlock lets it
//! write). When the job ends, and when a runner starts after a crash, the slot's cgroup is
//! emptied with `cgroup.kill`. Without one (no cgroup v2, not root), the job's process is a
//! child subreaper that kills its descendants itself ([`engine::confine`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroups of a runner's slots: `<cgroup2 mount><this process's cgroup>/pipewright-<work
/// dir>/slot-N`.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    base: PathBuf,
}

impl Slots {
    /// The runner's cgroup directory, made if missing; `None` where there is none to make.
    pub(crate) fn detect(work_dir: &Path) -> Option<Slots> {
        if !nix::unistd::Uid::current().is_root() {
            return None;
        }
        let mount = cgroup2_mount()?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned))?;
        // Named after the work directory: a restarted runner finds its slots again.
        let tag = blake3::hash(work_dir.as_os_str().as_encoded_bytes()).to_hex();
        let base = mount
            .join(own.trim_start_matches('/'))
            .join(format!("pipewright-{}", &tag[..12]));
        std::fs::create_dir_all(&base).ok()?;
        // Usable only if a process can be put into a child of it.
        let probe = base.join("probe");
        let _ = std::fs::create_dir(&probe);
        let usable = probe.join("cgroup.procs").exists();
        let _ = std::fs::remove_dir(&probe);
        usable.then_some(Slots { base })
    }

    fn slot(&self, n: usize) -> PathBuf {
        self.base.join(format!("slot-{n}"))
    }

    /// Puts process `pid` into slot `n`'s cgroup (made if missing).
    pub(crate) fn enter(&self, n: usize, pid: i32) -> std::io::Result<()> {
        let dir = self.slot(n);
        if !dir.exists() {
            std::fs::create_dir(&dir)?;
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
    }

    /// Kills every process in slot `n`'s cgroup and waits (up to 5 s) until it is empty.
    pub(crate) fn empty(&self, n: usize) {
        empty(&self.slot(n));
    }

    /// Removes the runner's cgroups (a runner stopping, its jobs done); what cannot be
    /// removed (a process still there) stays for the next start to empty.
    pub(crate) fn remove(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.base) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("slot-") {
                    empty(&e.path());
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.base);
    }

    /// Empties every slot's cgroup (a runner starting after a crash).
    pub(crate) fn empty_all(&self) {
        let Ok(entries) = std::fs::read_dir(&self.base) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("slot-") {
                empty(&e.path());
            }
        }
    }
}

fn empty(dir: &Path) {
    let procs = dir.join("cgroup.procs");
    let populated = || std::fs::read_to_string(&procs).is_ok_and(|p| !p.trim().is_empty());
    if !populated() {
        return;
    }
    // `cgroup.kill` (Linux 5.14) kills all at once, forks racing it included; older
    // kernels get each process killed, again until none is left.
    let killed_at_once = std::fs::write(dir.join("cgroup.kill"), "1").is_ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while populated() && std::time::Instant::now() < deadline {
        if !killed_at_once {
            for pid in std::fs::read_to_string(&procs)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or its `unified` part on a
/// hybrid system).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        // `id parent major:minor root mount-point options ... - fstype source options`
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next() == Some("cgroup2"))
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}
