//! Release builds lay out first, side by side, the functions that `pipewright serve`, a
//! confined job's process (`job-exec`), the CLI and `pipewright run` execute
//! (`symbol-order.txt`, made by `scripts/symbol-order` from callgrind's record of them), so
//! the pages of code a process touches are few: the kernel maps 64 KiB of a program's code
//! around each page it touches, and with the functions in the compiler's order a server that
//! ran 4.8 MB of functions had 16 MB of its 20 MB of code resident.
//!
//! The order is a linker option of LLD only, Rust's default linker on x86-64 Linux since
//! 1.90; elsewhere, or with a linker of one's own, nothing changes. Names the program no
//! longer has are skipped, so a stale list costs locality, never the build.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let own_linker = std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| {
            // A linker of one's own (`-C linker=`, `-C link-arg=-fuse-ld=...`), not the link
            // arguments .cargo/config.toml gives every build.
            f.split('\x1f').any(|a| {
                a.contains("linker") || a.contains("fuse-ld") || a.contains("link-self-contained")
            })
        });
    if !release || target != "x86_64-unknown-linux-gnu" || own_linker || !rustc_links_with_lld() {
        return;
    }
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc is 1.90 or later (LLD by default on x86-64 Linux).
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
