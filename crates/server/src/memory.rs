//! Giving memory back. glibc's allocator raises its mmap threshold (up to 32 MiB) each time
//! a large block is freed, and keeps up to twice that at the top of the heap: after one 10 MB
//! log went through, a server idles at three times its size; and each thread that allocates
//! at once gets an arena of its own, with its own free pages. A server is long-running, so
//! blocks from 128 KiB on are mapped and unmapped on their own, the heap is trimmed above
//! 128 KiB, threads share two arenas, and every few seconds the free pages inside the heap
//! are returned too (`malloc_trim`, well under a millisecond on a heap this size), and as soon
//! as a run ends (at most once a second): a run's orchestration, its jobs' leases and reports
//! leave free pages behind that would otherwise stay in the resident set until the next tick.
//! Measured by bench/dashboard.sh: idle after a 10 MB log and 100,000 runs, 63 MiB before,
//! 24 after; by bench/soak.sh: the RSS read after each run is the idle one.
//!
//! glibc's per-thread caches of freed blocks are turned off (its tunables, read as a process
//! starts: `serve` starts itself again once with them, [`start_tuned`]).
//!
//! The only `unsafe` of the server: calls into glibc that take and return plain integers,
//! and the removal of the tunables from the environment before any thread starts.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const THRESHOLD: i32 = 128 * 1024;
const EVERY: Duration = Duration::from_secs(10);
/// At most one trim this often for runs that end.
const AFTER_RUN: Duration = Duration::from_secs(1);

/// Sets the allocator for a server: call it before the threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt takes two integers, changes only the allocator's parameters (under its
    // own lock) and returns 0 if it refused them, which leaves glibc's defaults.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Arenas: threads share two (each arena keeps its own free pages; two serve two cores).
const ARENAS: i32 = 2;

/// glibc's tunables for a server: no per-thread caches of freed blocks. Each thread that
/// frees keeps up to seven blocks of each of 64 sizes for itself, out of its arena's reach:
/// `malloc_trim` cannot give back the pages they sit on. With a server's twenty threads
/// that was 4 MiB of its resident set after a thousand jobs (bench/soak.sh: 8.7 MiB
/// anonymous at 3,072 jobs, 4.9 MiB without them, flat from the first thousand; the
/// dispatch benchmark within its noise).
const TUNABLES: &str = "glibc.malloc.tcache_count=0";
const TUNABLES_VAR: &str = "GLIBC_TUNABLES";

/// Starts this process again with [`TUNABLES`], which glibc reads only as a process
/// starts, unless `GLIBC_TUNABLES` is set (the admin's own choice is left as it is); once
/// started with them, takes them out of the environment, so that nothing the server starts
/// (git, a runner's unconfined job) inherits them. Call it first thing, before any thread
/// starts: it returns once the process runs with them, or if it cannot start again (then
/// it says so and the server runs with glibc's defaults).
pub fn start_tuned() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        match std::env::var_os(TUNABLES_VAR) {
            Some(v) if v == TUNABLES => {
                #[allow(unsafe_code)]
                // SAFETY: the caller calls this before any thread starts, so nothing reads
                // the environment at the same time.
                unsafe {
                    std::env::remove_var(TUNABLES_VAR);
                }
            }
            Some(_) => {}
            None => {
                let mut args = std::env::args_os();
                let (Some(arg0), Ok(exe)) = (args.next(), std::env::current_exe()) else {
                    return;
                };
                let e = std::process::Command::new(exe)
                    .arg0(arg0)
                    .args(args)
                    .env(TUNABLES_VAR, TUNABLES)
                    .exec();
                eprintln!(
                    "pipewright: cannot start again with the allocator's settings ({e}); going on with glibc's defaults"
                );
            }
        }
    }
}

/// Returns the heap's free pages to the system every few seconds, and soon after a run ends
/// (`run_ended` changes), until shutdown.
pub(crate) async fn trimmer(run_ended: watch::Receiver<()>, shutdown: CancellationToken) {
    schedule(run_ended, &shutdown, trim).await;
}

/// Calls `trim` every `EVERY`, and when `run_ended` changes at most `AFTER_RUN` after the
/// last trim (at once if that is past); until `shutdown`.
async fn schedule(
    mut run_ended: watch::Receiver<()>,
    shutdown: &CancellationToken,
    mut trim: impl FnMut(),
) {
    let mut last = Instant::now();
    let mut listening = true;
    loop {
        // The next trim: the periodic one, or one owed since a run ended.
        let mut due = last + EVERY;
        let mut owed = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due) => break,
                () = shutdown.cancelled() => return,
                changed = run_ended.changed(), if listening && !owed => match changed {
                    Ok(()) => {
                        owed = true;
                        due = due.min(last + AFTER_RUN);
                    }
                    // The server is going: the periodic trims go on until it has.
                    Err(_) => listening = false,
                },
            }
        }
        // The runs that ended until now are all served by this trim.
        run_ended.mark_unchanged();
        trim();
        last = Instant::now();
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes the padding to leave and returns whether it freed
    // anything; it locks each arena as it walks it, like any allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio::sync::watch;
    use tokio::time::{Instant, advance};
    use tokio_util::sync::CancellationToken;

    /// Lets the schedule's task run at the paused clock's current instant.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_s_end_trims_at_once_and_a_burst_of_ends_trims_once_a_second() {
        let (ended, receiver) = watch::channel(());
        let shutdown = CancellationToken::new();
        let trims = Arc::new(AtomicU32::new(0));
        let (s, t) = (shutdown.clone(), trims.clone());
        let start = Instant::now();
        let task = tokio::spawn(async move {
            super::schedule(receiver, &s, || {
                t.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        });
        settle().await;
        // Nothing ended, no tick yet: no trim.
        advance(Duration::from_secs(3)).await;
        settle().await;
        assert_eq!(trims.load(Ordering::SeqCst), 0);
        // A run ends three seconds after the last trim: trimmed at once.
        ended.send_replace(());
        settle().await;
        assert_eq!(trims.load(Ordering::SeqCst), 1);
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // Three runs end within the next second: one trim, a second after the last.
        for _ in 0..3 {
            advance(Duration::from_millis(200)).await;
            ended.send_replace(());
            settle().await;
        }
        assert_eq!(trims.load(Ordering::SeqCst), 1);
        advance(Duration::from_millis(400)).await;
        settle().await;
        assert_eq!(trims.load(Ordering::SeqCst), 2);
        // No run ends: the periodic trim, ten seconds after the last.
        advance(super::EVERY - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(trims.load(Ordering::SeqCst), 2);
        advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(trims.load(Ordering::SeqCst), 3);
        shutdown.cancel();
        task.await.unwrap();
    }
}
