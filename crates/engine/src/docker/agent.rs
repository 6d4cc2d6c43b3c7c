//! One long-lived shell in a job's container that starts its steps' processes. An `exec` of
//! the engine costs tens of milliseconds (the engine starts each one through its runtime); a
//! step given to the agent costs a line on its input and a `fork` in the container.
//!
//! The agent reads the path of a script (written by the job into its temp directory, which
//! the container mounts) per line, runs it with `sh` in the background with its output on
//! the agent's, tells its pid on standard error, waits for it, and then prints a line of its
//! own on standard output: `\x1e<nonce> <exit code>`. Being on the same stream, after
//! everything the step printed, it marks the step's end without waiting for the engine.
//! One step at a time: a background step that runs while the agent is busy gets an `exec`
//! of its own ([`Agent::run`] answers `None`). As it starts, it says whether the
//! container's user can read and write a `0600` file of the job's user (a probe the job
//! wrote): if so, the steps' files are the job's user's alone ([`Agent::private`]).

use std::pin::Pin;

use bollard::exec::{CreateExecOptions, StartExecResults};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::{DockerError, Engine, api, pump};
use crate::process::{Exit, KILL_GRACE, Piece, Stream};

const SCRIPT: &str = r#"if [ -n "$2" ] && [ -r "$2" ] && [ -w "$2" ]; then echo ready private >&2; else echo ready >&2; fi
while IFS= read -r s; do
  sh "$s" </dev/null 2>&1 &
  p=$!
  echo "pid $p" >&2
  wait "$p"
  c=$?
  printf '\036%s %s\n' "$1" "$c"
done"#;

/// How long the agent has to say it is ready.
const READY: Duration = Duration::from_secs(10);

struct Channel {
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: mpsc::Receiver<Piece>,
}

/// A job container's agent.
pub struct Agent {
    container: String,
    nonce: String,
    channel: Mutex<Option<Channel>>,
    /// The container's user reads and writes a file only the job's user may (`0600`): root
    /// in the container, with its capabilities, in the host's user namespace.
    private: bool,
}

/// A script for the agent: `cd` to `workdir`, `export` each of `env` (`NAME=value`, over
/// the container's), then `exec` `cmd`. `None` when a name cannot be exported by a shell
/// (the step then runs with an `exec`, which takes any name).
pub fn script(cmd: &[String], env: &[String], workdir: &str) -> Option<String> {
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut out = format!("cd {} || exit 1\n", q(workdir));
    for e in env {
        let (name, value) = e.split_once('=')?;
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return None;
        }
        out.push_str(&format!("export {name}={}\n", q(value)));
    }
    out.push_str("exec");
    for a in cmd {
        out.push(' ');
        out.push_str(&q(a));
    }
    out.push('\n');
    Some(out)
}

impl Engine {
    /// Starts the agent in `container`; an error when the image cannot run it (no `sh`):
    /// its steps then run with an `exec` each. `probe`: the path in the container of a
    /// `0600` file of the job's user, which the agent tries to read and write as the
    /// container's user ([`Agent::private`]).
    pub async fn start_agent(
        &self,
        container: &str,
        probe: Option<&str>,
    ) -> Result<Agent, DockerError> {
        let nonce = super::random_hex();
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec![
                        "sh".to_owned(),
                        "-c".to_owned(),
                        SCRIPT.to_owned(),
                        "pipewright-agent".to_owned(),
                        nonce.clone(),
                        probe.unwrap_or_default().to_owned(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .map_err(api("starting the job's agent"))?;
        let started = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(api("starting the job's agent"))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(DockerError::Failed("the agent is not attached".into()));
        };
        let mut output = pump(output);
        let ready = tokio::time::timeout(READY, async {
            while let Some(p) = output.recv().await {
                if p.stream == Stream::Stderr {
                    match p.text.trim() {
                        "ready" => return Ok(false),
                        "ready private" => return Ok(true),
                        _ => {}
                    }
                }
                if p.stream == Stream::Stderr {
                    return Err(p.text);
                }
            }
            Err("it ended".to_owned())
        })
        .await;
        match ready {
            Ok(Ok(private)) => Ok(Agent {
                container: container.to_owned(),
                nonce,
                channel: Mutex::new(Some(Channel { input, output })),
                private,
            }),
            Ok(Err(why)) => Err(DockerError::Failed(format!("the job's agent: {why}"))),
            Err(_) => Err(DockerError::Failed("the job's agent did not start".into())),
        }
    }
}

impl Agent {
    /// Whether the container's user reads and writes files only the job's user may: the
    /// steps' scripts and file-command files can then be the job's user's alone.
    pub fn private(&self) -> bool {
        self.private
    }

    /// Runs the script at `script` (its path in the container): its output, its exit code.
    /// `None` when the agent is busy with another step or gone: run it with an `exec`.
    pub async fn run(
        &self,
        engine: &Engine,
        script: &str,
        on_line: &mut (dyn FnMut(Piece) + Send),
        deadline: Option<Instant>,
        cancel: &CancellationToken,
    ) -> Option<Result<Exit, DockerError>> {
        let mut guard = self.channel.try_lock().ok()?;
        let channel = guard.as_mut()?;
        if channel
            .input
            .write_all(format!("{script}\n").as_bytes())
            .await
            .is_err()
            || channel.input.flush().await.is_err()
        {
            *guard = None;
            return None;
        }
        let marker = format!("\u{1e}{} ", self.nonce);
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let mut pid: Option<String> = None;
        // Why the step was stopped, when it was, and whether SIGKILL followed.
        let mut stopping: Option<(Exit, Instant, bool)> = None;
        loop {
            let kill_at = stopping.as_ref().filter(|s| !s.2).map_or(far, |s| s.1);
            tokio::select! {
                piece = channel.output.recv() => {
                    let Some(p) = piece else {
                        *guard = None;
                        return Some(Err(DockerError::Failed(
                            "the job's container is not running: its agent ended".into(),
                        )));
                    };
                    if p.stream == Stream::Stderr {
                        if let Some(n) = p.text.trim().strip_prefix("pid ") {
                            pid = Some(n.to_owned());
                        }
                        continue;
                    }
                    let Some(at) = p.text.find(&marker) else {
                        on_line(p);
                        continue;
                    };
                    // The step's last line, if it did not end it, comes before the mark.
                    if at > 0 {
                        on_line(Piece { text: p.text[..at].to_owned(), stream: Stream::Stdout, complete: true });
                    }
                    let code: i32 = p.text[at + marker.len()..].trim().parse().unwrap_or(1);
                    return Some(Ok(match stopping {
                        Some((reason, ..)) => reason,
                        None => Exit::Code(code),
                    }));
                }
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && stopping.is_none() => {
                    self.signal(engine, pid.as_deref(), "TERM").await;
                    stopping = Some((Exit::TimedOut, Instant::now() + KILL_GRACE, false));
                }
                () = cancel.cancelled(), if stopping.is_none() => {
                    self.signal(engine, pid.as_deref(), "TERM").await;
                    stopping = Some((Exit::Cancelled, Instant::now() + KILL_GRACE, false));
                }
                () = tokio::time::sleep_until(kill_at), if stopping.as_ref().is_some_and(|s| !s.2) => {
                    self.signal(engine, pid.as_deref(), "KILL").await;
                    if let Some(s) = stopping.as_mut() {
                        s.2 = true;
                    }
                }
            }
        }
    }

    /// Signals the step's process (and, with `KILL`, the container's other processes of it:
    /// its children, which the agent's `wait` does not wait for).
    async fn signal(&self, engine: &Engine, pid: Option<&str>, signal: &str) {
        let Some(pid) = pid.filter(|p| p.chars().all(|c| c.is_ascii_digit())) else {
            return;
        };
        let script = format!(
            "kill -{signal} {pid} 2>/dev/null; for c in $(cat /proc/{pid}/task/*/children 2>/dev/null); do kill -{signal} $c 2>/dev/null; done; true"
        );
        let _ = engine
            .exec_quiet(&self.container, &["sh", "-c", &script])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::script;

    #[test]
    fn a_script_quotes_what_it_is_given() {
        let s = script(
            &["sh".into(), "-e".into(), "/__w/_temp/step 1.sh".into()],
            &["A=it's".into(), "B=two\nlines=x".into()],
            "/__w/r/r",
        );
        assert_eq!(
            s.as_deref(),
            Some(
                "cd '/__w/r/r' || exit 1\nexport A='it'\\''s'\nexport B='two\nlines=x'\nexec 'sh' '-e' '/__w/_temp/step 1.sh'\n"
            )
        );
        assert_eq!(
            script(&["true".into()], &["NOT-A-NAME=1".into()], "/"),
            None
        );
    }
}
