//! What a job shows: the one way a line reaches the sink, and the workflow commands
//! (`::add-mask::`, `::group::`, annotations, ...) in a process's output.

use tokio_util::sync::CancellationToken;

use super::JobState;
use crate::commands::parse_command;
use crate::mask::Masker;
use crate::process::{self, Exit, Spawn};
use crate::sink::{JobLabel, Level, Line, Sink};

impl JobState<'_> {
    pub(crate) fn log(&self, line: Line) {
        shown(self.run.masker(), self.sink, &self.label, line);
    }

    pub(crate) fn error(&self, message: impl Into<String>) {
        self.log(Line::Annotation {
            level: Level::Error,
            message: message.into(),
            file: None,
            line: None,
        });
    }
    /// Runs a process as (part of) a step, handling workflow commands in its output.
    pub(crate) async fn run_process(
        &mut self,
        spawn: &Spawn,
        deadline: Option<tokio::time::Instant>,
        cancel: &CancellationToken,
    ) -> std::io::Result<Exit> {
        let mut on_line = self.output_handler();
        if let (Some(c), Some(d)) = (&self.container, &self.docker) {
            // In the job's container: the same process, its paths the container's.
            let mut cmd = vec![spawn.program.clone()];
            cmd.extend(spawn.args.iter().map(|a| c.paths.map(a)));
            let exec = crate::docker::Exec {
                cmd,
                env: spawn.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                workdir: c.paths.map(&spawn.cwd.display().to_string()),
            };
            let mut by_agent = None;
            if let Some(agent) = &c.agent
                && let Some(text) = crate::docker::agent_script(&exec.cmd, &exec.env, &exec.workdir)
            {
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let file = self.temp.join(format!("agent-{n}.sh"));
                // It holds the step's environment, secrets among it.
                if crate::files::write_reusing_mode(&file, text.as_bytes(), c.file_mode()).is_ok() {
                    let inside = c.paths.map(&file.display().to_string());
                    by_agent = agent
                        .run(&d.engine, &inside, &mut on_line, deadline, cancel)
                        .await;
                }
            }
            let exit = match by_agent {
                Some(exit) => exit,
                None => {
                    d.engine
                        .exec(&c.id, exec, &mut on_line, deadline, cancel)
                        .await
                }
            };
            // A failure because the container itself is gone says so. An exit that looks
            // like its death (killed, or "cannot exec") waits a moment for the engine to
            // record it.
            let looks_killed = matches!(exit, Ok(Exit::Code(126 | 137 | 143)) | Err(_));
            if !matches!(exit, Ok(Exit::Code(0))) {
                let tries = if looks_killed { 40 } else { 1 };
                for i in 0..tries {
                    if let Some(why) = d.engine.not_running(&c.id).await {
                        return Err(std::io::Error::other(why));
                    }
                    if i + 1 < tries {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
            return exit.map_err(std::io::Error::other);
        }
        let (exit, pgid) = process::run(spawn, &mut on_line, deadline, cancel).await?;
        self.process_groups.push(pgid);
        Ok(exit)
    }
}

impl<'a> JobState<'a> {
    /// What a step's process prints, handled: masked, workflow commands obeyed.
    pub(crate) fn output_handler(&self) -> impl FnMut(process::Piece) + Send + use<'a> {
        let masker = self.run.masker().clone();
        let sink = self.sink;
        let label = self.label.clone();
        let mut stop_token: Option<String> = None;
        // A line longer than the reader's pieces is masked as a whole: it is cut where no
        // secret can straddle the cut. The two streams' pieces interleave: each has its own.
        let mut cutters = [
            (crate::mask::LineCutter::default(), false),
            (crate::mask::LineCutter::default(), false),
        ];
        move |piece: process::Piece| {
            let (cutter, long_line) =
                &mut cutters[usize::from(piece.stream == process::Stream::Stderr)];
            let (raw, complete) = (piece.text, piece.complete);
            if *long_line || !complete {
                // Part of a long line: output, never a command.
                *long_line = !complete;
                if let Some(text) = cutter.piece(&masker, &raw, complete) {
                    shown(&masker, sink, &label, Line::Output(text));
                }
                return;
            }
            if let Some(tok) = &stop_token {
                if raw.trim() == format!("::{tok}::") {
                    stop_token = None;
                } else {
                    shown(&masker, sink, &label, Line::Output(raw));
                }
                return;
            }
            let Some(cmd) = parse_command(&raw) else {
                shown(&masker, sink, &label, Line::Output(raw));
                return;
            };
            let line = match cmd.name.as_str() {
                "add-mask" => {
                    masker.add(&cmd.message);
                    return;
                }
                "stop-commands" => {
                    stop_token = Some(cmd.message.clone());
                    return;
                }
                "group" => Line::GroupStart(cmd.message),
                "endgroup" => Line::GroupEnd,
                "error" | "warning" | "notice" | "debug" => Line::Annotation {
                    level: match cmd.name.as_str() {
                        "error" => Level::Error,
                        "warning" => Level::Warning,
                        "notice" => Level::Notice,
                        _ => Level::Debug,
                    },
                    message: cmd.message,
                    file: cmd.properties.get("file").cloned(),
                    line: cmd.properties.get("line").cloned(),
                },
                // Other commands (set-output, save-state, echo) are deprecated or disabled on
                // GitHub; their lines are shown as output.
                _ => Line::Output(raw),
            };
            shown(&masker, sink, &label, line);
        }
    }
}

/// The one way a line reaches the sink: every field masked, then neutralised (control
/// characters shown, not obeyed: see [`crate::mask::neutralise`]). A message of several
/// lines (`%0A` in a workflow command) becomes one annotation per line, so no text of a job
/// ever starts a log line of its own that is not its.
fn shown(masker: &Masker, sink: &dyn Sink, label: &JobLabel, line: Line) {
    let clean = |s: &str| crate::mask::neutralise(&masker.mask(s)).into_owned();
    match line {
        Line::Output(s) => sink.line(label, Line::Output(clean(&s))),
        Line::GroupStart(s) => sink.line(label, Line::GroupStart(clean(&s))),
        Line::GroupEnd => sink.line(label, Line::GroupEnd),
        Line::Annotation {
            level,
            message,
            file,
            line,
        } => {
            let (mut file, mut line) = (file.map(|f| clean(&f)), line.map(|l| clean(&l)));
            for part in message.split('\n') {
                sink.line(
                    label,
                    Line::Annotation {
                        level,
                        message: clean(part.strip_suffix('\r').unwrap_or(part)),
                        file: file.take(),
                        line: line.take(),
                    },
                );
            }
        }
    }
}
