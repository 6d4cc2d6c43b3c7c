//! Giving memory back. glibc's allocator raises its mmap threshold (up to 32 MiB) each time
//! a large block is freed, and keeps up to twice that at the top of the heap: after one 10 MB
//! log went through, a server idles at three times its size; and each thread that allocates
//! at once gets an arena of its own, with its own free pages. A server is long-running, so
//! blocks from 128 KiB on are mapped and unmapped on their own, the heap is trimmed above
//! 128 KiB, threads share two arenas, and every few seconds the free pages inside the heap
//! are returned too (`malloc_trim`, well under a millisecond on a heap this size). Measured
//! by bench/dashboard.sh: idle after a 10 MB log and 100,000 runs, 63 MiB before, 24 after.
//!
//! The only `unsafe` of the server: calls into glibc that take and return plain integers.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const THRESHOLD: i32 = 128 * 1024;
const EVERY: Duration = Duration::from_secs(10);

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

/// Returns the heap's free pages to the system every few seconds, until shutdown.
pub(crate) async fn trimmer(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        #[allow(unsafe_code)]
        // SAFETY: malloc_trim takes the padding to leave and returns whether it freed
        // anything; it locks each arena as it walks it, like any allocation.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
