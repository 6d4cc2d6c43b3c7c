//! The broker's checks on the files and on its peers.

use super::{descends_from, fixed, peer_is_of};
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_mount_must_name_what_the_job_cannot_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slot");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = root.join("workspace");
    std::fs::create_dir(&work).unwrap();
    std::fs::create_dir(work.join("sub")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
    let me = nix::unistd::getuid().as_raw();
    // Nobody else can change `slot`: its entries are fixed for another user.
    let other = me + 4242;
    assert_eq!(fixed(&work, other, false), Ok(()));
    let msg = fixed(&root.join("link"), other, false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("symbolic link"), "{msg}");
    // The job's own directory mounted read-write, not what it does not own.
    let msg = fixed(&work, me, true).unwrap_err().to_string();
    assert!(msg.contains("can replace"), "{msg}");
    let msg = fixed(&work, other, true).unwrap_err().to_string();
    assert!(msg.contains("owns"), "{msg}");
    // Inside a directory the job may write, a path is the job's to swap.
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let msg = fixed(&work.join("sub"), other, false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("can replace"), "{msg}");
    assert!(fixed(&root.join("missing"), other, false).is_err());
}

/// An access control list that lets the job's user write a directory shows in its mode:
/// its group bits are the list's mask, which bounds every named entry.
#[test]
fn a_directory_an_access_control_list_lets_the_job_write_is_the_job_s_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let above = dir.path().join("above");
    let work = above.join("workspace");
    std::fs::create_dir_all(&work).unwrap();
    for d in [dir.path(), above.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let other = nix::unistd::getuid().as_raw() + 4242;
    assert_eq!(fixed(&work, other, false), Ok(()));
    let acl = |spec: &str| {
        let status = std::process::Command::new("setfacl")
            .args(["-m", spec])
            .arg(&above)
            .status()
            .expect("setfacl (package acl; scripts/setup installs it)");
        assert!(status.success(), "setfacl -m {spec}");
    };
    acl(&format!("u:{other}:rwx"));
    let msg = fixed(&work, other, false).unwrap_err().to_string();
    assert!(msg.contains("can replace"), "{msg}");
    // Masked to read and search, the named entry writes nothing: the path holds.
    acl("m::rx");
    assert_eq!(fixed(&work, other, false), Ok(()));
    acl(&format!("g:{}:rwx", other));
    let msg = fixed(&work, other, false).unwrap_err().to_string();
    assert!(msg.contains("can replace"), "{msg}");
}

#[tokio::test]
async fn a_peer_that_is_gone_is_not_taken_for_the_job_s() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("s");
    let listener = tokio::net::UnixListener::bind(&at).unwrap();
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); sys.stdin.read()",
        ])
        .arg(&at)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let pid = stream.peer_cred().unwrap().pid().unwrap();
    let me = i32::try_from(std::process::id()).unwrap();
    assert!(peer_is_of(&stream, pid, me));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"bye").unwrap();
    drop(stdin);
    // Exited, not reaped yet: `/proc` still shows it as this process's child.
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !zombie() {
        assert!(
            std::time::Instant::now() < deadline,
            "the peer never exited"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(descends_from(pid, me));
    assert!(!peer_is_of(&stream, pid, me), "a peer that exited");
    child.wait().unwrap();
}

#[test]
fn a_process_descends_from_its_parents_and_not_from_others() {
    let me = i32::try_from(std::process::id()).unwrap();
    let parent = nix::unistd::getppid().as_raw();
    let mut child = std::process::Command::new("sleep")
        .arg("5")
        .spawn()
        .unwrap();
    let child_pid = i32::try_from(child.id()).unwrap();
    assert!(descends_from(me, me));
    assert!(descends_from(me, parent));
    assert!(descends_from(child_pid, me));
    assert!(!descends_from(me, child_pid));
    assert!(!descends_from(1, me));
    assert!(!descends_from(i32::MAX, me), "no such process");
    let _ = child.kill();
    let _ = child.wait();
}
