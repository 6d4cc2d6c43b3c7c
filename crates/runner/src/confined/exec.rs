//! The job's process's side: `pipewright job-exec` reads its job from the runner, confines
//! itself, runs the job and tells the runner its lines and its report.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::{Conclusion, JobLabel, Line, Sink};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use super::{AHEAD_VAR, JobExec, Message};
use crate::{Client, Workflows, format_line};

/// The sink of a job's process: messages to the runner, on standard output. A line is
/// written when the job's task next waits ([`StdoutSink::writer`], on the process's one
/// thread), with every line said since: the lines said as a step is started go out
/// together as the step runs, instead of each waking the runner on this CPU (a pipe's
/// reader is woken where its writer runs) while the step still waits to be started.
#[derive(Default)]
struct StdoutSink {
    pending: std::sync::Mutex<Vec<u8>>,
    said: tokio::sync::Notify,
}

impl StdoutSink {
    fn send(&self, message: &Message) {
        if self.queue(message) {
            self.said.notify_one();
        }
    }

    /// Adds `message` to what is to be written; whether it was.
    fn queue(&self, message: &Message) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        let len = pending.len();
        if serde_json::to_writer(&mut *pending, message).is_err() {
            pending.truncate(len);
            return false;
        }
        pending.push(b'\n');
        true
    }

    /// Writes what was said and not yet written.
    fn flush(&self) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        // The runner gone: the job's process is told so (SIGHUP) and ends.
        let _ = out.write_all(&pending).and_then(|()| out.flush());
        // A burst of output (a step's lines read in one turn) does not stay held.
        if pending.capacity() > 1 << 20 {
            *pending = Vec::new();
        } else {
            pending.clear();
        }
    }

    /// The last message: written now, after everything said before it.
    fn finish(&self, message: &Message) {
        self.queue(message);
        self.flush();
    }

    /// Writes what is said, whenever the job's task waits; runs until the process ends.
    async fn writer(self: Arc<Self>) {
        loop {
            self.said.notified().await;
            self.flush();
        }
    }
}

impl Sink for StdoutSink {
    fn job_started(&self, _job: &JobLabel) {}

    fn step_started(&self, _job: &JobLabel, step: &str) {
        self.send(&Message::Line(crate::sink::step_start_line(step)));
    }

    fn line(&self, _job: &JobLabel, line: Line) {
        self.send(&Message::Line(format_line(line)));
    }

    fn step_finished(
        &self,
        _job: &JobLabel,
        step: &str,
        conclusion: Conclusion,
        duration: Duration,
    ) {
        self.send(&Message::Line(crate::sink::step_end_line(
            step, conclusion, duration,
        )));
    }

    fn job_finished(&self, _job: &JobLabel, _conclusion: Conclusion, _duration: Duration) {}
}

/// `pipewright job-exec`: runs the job the runner gives on standard input, confined. Call
/// it first thing in `main`, before any thread is started. Its exit code.
pub fn job_exec(actions: engine::Actions) -> u8 {
    // While the job has not come: the rules every job of this runner gets. A failure here
    // is met again, and told, when the job's own rules are made.
    let ahead = std::env::var(AHEAD_VAR)
        .ok()
        .and_then(|hidden| serde_json::from_str::<Vec<PathBuf>>(&hidden).ok())
        .and_then(|hidden| engine::confine::Ahead::make(hidden).ok());
    // The job's runtime too (its event loop's descriptors, its timers: 90 µs), and the
    // CPU's features, which the standard library detects at their first use (the masker's
    // search, as it names the first step: some `cpuid`s, which a hypervisor may trap).
    // Neither depends on the job, and a runtime on the current thread starts no thread:
    // the one thread this process has is still the only one the rules and the change of
    // user apply to, and every thread started later is started under them.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pipewright job-exec: {e}");
            return 2;
        }
    };
    detect_cpu_features();
    let mut input = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut input) {
        eprintln!("pipewright job-exec: cannot read the job: {e}");
        return 2;
    }
    if input.is_empty() {
        // Started ahead of a job that never came: the runner stopped.
        return 0;
    }
    let mut exec: JobExec = match serde_json::from_slice(&input) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pipewright job-exec: cannot read the job: {e}");
            return 2;
        }
    };
    drop(input);
    exec.site.actions = actions;
    let t0 = std::time::Instant::now();
    // A session of its own: no controlling terminal (the one the server may have been
    // started from is not the job's to type into), and out of the runner's process group.
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("pipewright job-exec: a session of its own: {e}");
        return 2;
    }
    let applied = match exec
        .confinement
        .apply_with(Pid::from_raw(exec.parent), ahead)
    {
        Ok(a) => a,
        Err(e) => {
            let sink = StdoutSink::default();
            sink.send(&Message::Line(format!(
                "##[error] the job cannot be confined: {e}"
            )));
            sink.finish(&Message::Done {
                report: Box::new(crate::failed_report(&exec.lease)),
                upload_error: None,
            });
            return 1;
        }
    };
    tracing::debug!(
        job = exec.lease.job,
        us = t0.elapsed().as_micros(),
        "confined"
    );
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        // SIGTERM from the runner: cancel (the job's `always()` steps still run). SIGHUP:
        // the runner died; nothing of the job may go on.
        let (Ok(mut term), Ok(mut hup)) = (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()),
        ) else {
            return 2;
        };
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => stop.cancel(),
                    _ = hup.recv() => {
                        engine::confine::kill_descendants();
                        std::process::exit(1);
                    }
                }
            }
        });
        let sink = Arc::new(StdoutSink::default());
        tokio::spawn(sink.clone().writer());
        sink.send(&Message::Line(format!(
            "pipewright: this job runs confined: {applied}"
        )));
        let client = Client::for_job(&exec.server, &exec.lease.token);
        let workflows = Workflows::default();
        if let Err(e) = workflows.known(&exec.source, &exec.lease.spec.file, Some(&exec.workflow)) {
            tracing::warn!(job = exec.lease.job, "{e}");
        }
        let job = crate::Leased {
            lease: Arc::new(exec.lease.clone()),
            context: std::mem::take(&mut exec.context),
            tar: exec.source.clone(),
        };
        let (report, uploaded) =
            crate::run_here(&client, &workflows, &exec.site, job, &*sink, &cancel).await;
        tracing::debug!(job = exec.lease.job, us = t0.elapsed().as_micros(), "ran");
        // Whatever the steps left running ends with the job.
        engine::confine::kill_descendants();
        sink.finish(&Message::Done {
            report: Box::new(report),
            upload_error: uploaded.err().map(|e| e.to_string()),
        });
        0
    })
}

/// Has the standard library detect the CPU's features now (it caches them for the
/// process), not at their first use on a job's path.
fn detect_cpu_features() {
    #[cfg(target_arch = "x86_64")]
    let _ = std::arch::is_x86_feature_detected!("avx2");
}
