//! Running one process on the host: its own process group, stdout and stderr merged line by
//! line, a deadline and cancellation that stop the whole group (SIGTERM, then SIGKILL after a
//! grace period).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What to start.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The whole environment of the process (nothing else is inherited).
    pub env: Vec<(String, String)>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long output is still read after the process exited, for background children that
/// keep the pipes open; their output after that is not waited for.
const DRAIN: Duration = Duration::from_millis(100);

/// Which of the process's outputs a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A piece of output: its text (without the newline), its stream, and whether its line
/// ended there (a line longer than [`MAX_LINE`] comes in pieces, all but the last `false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub stream: Stream,
    pub complete: bool,
}

/// Runs `spawn`, calling `on_line` for every piece of output (the pieces of the two streams
/// interleave: a consumer keeps a long line's state per stream). Returns the
/// exit and the process group id (the group may outlive the process: see [`kill_group`]).
pub async fn run(
    spawn: &Spawn,
    on_line: &mut (dyn FnMut(Piece) + Send),
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> std::io::Result<(Exit, i32)> {
    let mut cmd = Command::new(resolve(&spawn.program, &spawn.env, &spawn.cwd));
    cmd.args(&spawn.args)
        .current_dir(&spawn.cwd)
        .env_clear()
        .envs(spawn.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let (tx, mut rx) = mpsc::channel::<Piece>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(read_lines(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_lines(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);

    let mut status: Option<std::process::ExitStatus> = None;
    let mut pipes_open = true;
    let mut drain_until: Option<Instant> = None;
    let mut stopping: Option<(Exit, Instant, bool)> = None; // (reason, kill at, killed)
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    loop {
        if status.is_some() && !pipes_open {
            break;
        }
        let kill_at = stopping.as_ref().filter(|s| !s.2).map_or(far, |s| s.1);
        tokio::select! {
            line = rx.recv(), if pipes_open => match line {
                Some(piece) => on_line(piece),
                None => pipes_open = false,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s?);
                drain_until = Some(Instant::now() + DRAIN);
            }
            () = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => break,
            () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && stopping.is_none() && status.is_none() => {
                kill_group(pgid, Signal::SIGTERM);
                stopping = Some((Exit::TimedOut, Instant::now() + KILL_GRACE, false));
            }
            () = cancel.cancelled(), if stopping.is_none() && status.is_none() => {
                kill_group(pgid, Signal::SIGTERM);
                stopping = Some((Exit::Cancelled, Instant::now() + KILL_GRACE, false));
            }
            () = tokio::time::sleep_until(kill_at), if stopping.as_ref().is_some_and(|s| !s.2) => {
                kill_group(pgid, Signal::SIGKILL);
                if let Some(s) = stopping.as_mut() {
                    s.2 = true;
                }
            }
        }
    }
    if let Some((reason, ..)) = stopping {
        // Whatever the group left behind goes too: a timed-out step must not linger.
        kill_group(pgid, Signal::SIGKILL);
        return Ok((reason, pgid));
    }
    let exit = match status {
        Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Code(1),
        },
        None => Exit::Code(1),
    };
    Ok((exit, pgid))
}

/// The program to start: a bare name (`bash`) looked up in the `PATH` of the process's
/// environment, as the shell would. Spawning by full path lets the standard library start
/// the process with `posix_spawn` (no copy of this process's page tables, which `fork`
/// makes); given a bare name and a `PATH` of its own it must fork. Not found: the name as
/// given (spawning it then reports the error).
fn resolve(program: &str, env: &[(String, String)], cwd: &std::path::Path) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    find(program, env, cwd).unwrap_or_else(|| PathBuf::from(program))
}

/// Where the bare name `program` is on the `PATH` of `env` (an executable file), if
/// anywhere; a relative entry of the `PATH` is the process's, from its working directory
/// `cwd`.
pub(crate) fn find(
    program: &str,
    env: &[(String, String)],
    cwd: &std::path::Path,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cwd.join(d).join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The path that names this process's own program while it runs, even after its file was
/// replaced or removed (an upgrade while the server runs, `cargo build`): a process started
/// from that path, or its bytes read, are of the program that is running, not of whatever
/// now lies at its old path.
pub const RUNNING_IMAGE: &str = "/proc/self/exe";

/// Whether `path` is the file this process runs from (the same file, not one put at its
/// path since).
pub fn is_running_image(path: &std::path::Path) -> bool {
    same_file(path, std::path::Path::new(RUNNING_IMAGE))
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// This process's program, to read it whole (`pipewright/deploy` sends it to the hosts as
/// their agent): its path while that still names it (for messages), else
/// [`RUNNING_IMAGE`], which still does.
pub fn running_binary() -> std::io::Result<PathBuf> {
    Ok(binary_of(
        std::env::current_exe()?,
        std::path::Path::new(RUNNING_IMAGE),
    ))
}

/// `exe` if it is the file `image` names (or `image` names none), else `image`.
fn binary_of(exe: PathBuf, image: &std::path::Path) -> PathBuf {
    if same_file(&exe, image) || std::fs::metadata(image).is_err() {
        return exe;
    }
    image.to_path_buf()
}

/// Sends `signal` to a process group; a group that is already gone is not an error.
pub fn kill_group(pgid: i32, signal: Signal) {
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Longer lines are cut into pieces of this many bytes (a step printing without newlines
/// must not fill the memory).
const MAX_LINE: usize = 64 * 1024;

pub(crate) async fn read_lines(r: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::Sender<Piece>) {
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    // The bytes of a character cut by the end of the last piece, carried to the next.
    let mut partial: Vec<u8> = Vec::new();
    loop {
        buf.clear();
        buf.append(&mut partial);
        // `take` bounds one read: a line longer than MAX_LINE arrives in pieces.
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
        match (&mut reader).take(limit).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) if buf.is_empty() => return,
            Ok(0) | Err(_) => {
                // The output ended inside a line: what is left is its end.
                let text = String::from_utf8_lossy(&buf).into_owned();
                let _ = tx
                    .send(Piece {
                        text,
                        stream,
                        complete: true,
                    })
                    .await;
                return;
            }
            Ok(n) => {
                // Without a newline and short of the limit: the output ended there.
                let complete = buf.last() == Some(&b'\n') || (n as u64) < limit;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                } else if !complete
                    && let Err(e) = std::str::from_utf8(&buf)
                    && e.error_len().is_none()
                {
                    partial = buf.split_off(e.valid_up_to());
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                if tx
                    .send(Piece {
                        text,
                        stream,
                        complete,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_read_from_its_path_only_while_that_names_the_running_file() {
        let d = tempfile::tempdir().unwrap();
        let (running, link) = (d.path().join("running"), d.path().join("link"));
        std::fs::write(&running, "the program that runs").unwrap();
        std::fs::hard_link(&running, &link).unwrap();
        // Its path (or another name of the same file): that path.
        assert_eq!(binary_of(link.clone(), &running), link);
        // A file put at its path since, or none: the running one.
        let new = d.path().join("new");
        std::fs::write(&new, "another build").unwrap();
        std::fs::rename(&new, &link).unwrap();
        assert_eq!(binary_of(link.clone(), &running), running);
        std::fs::remove_file(&link).unwrap();
        assert_eq!(binary_of(link.clone(), &running), running);
        // Where there is no such name for the running file: the path, as it is.
        assert_eq!(binary_of(link.clone(), &d.path().join("none")), link);
        // This test's own program.
        assert!(is_running_image(&std::env::current_exe().unwrap()));
        assert!(!is_running_image(&running));
        assert_eq!(running_binary().unwrap(), std::env::current_exe().unwrap());
    }

    #[test]
    fn bare_names_are_looked_up_in_the_process_path() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let env = |path: &str| vec![("PATH".to_owned(), path.to_owned())];
        // Not executable: not a match.
        assert_eq!(
            resolve("tool", &env("/nowhere:bin"), d.path()),
            PathBuf::from("tool")
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Relative entries are from the working directory; the first match wins.
        assert_eq!(resolve("tool", &env("/nowhere:bin"), d.path()), tool);
        assert_eq!(
            resolve("./tool", &env("bin"), d.path()),
            PathBuf::from("./tool")
        );
        assert_eq!(resolve("sh", &env(""), d.path()), PathBuf::from("sh"));
    }

    #[tokio::test]
    async fn a_program_found_in_the_path_runs() {
        let spawn = Spawn {
            program: "sh".into(),
            args: vec!["-c".into(), "echo hi".into()],
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        };
        let mut lines = Vec::new();
        let (exit, _) = run(
            &spawn,
            &mut |p| lines.push(p.text),
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(exit, Exit::Code(0));
        assert_eq!(lines, ["hi"]);
    }
}
