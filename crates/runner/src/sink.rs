//! A job's lines on their way to the server: formatted as the server stores them, queued
//! within a budget, sent in numbered batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use engine::{Conclusion, JobLabel, Line, Sink};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, Lease, LogLine};
use crate::{Client, RunnerError, retry};

/// Lines waiting to be sent may hold at most this many bytes: a step printing faster than
/// the server takes its lines waits (its pipe fills, it blocks), the runner's memory does not
/// grow.
const LOG_BUDGET: usize = 4 << 20;
/// A batch of lines holds at most this many bytes (and 2,000 lines).
const BATCH_BYTES: usize = 1 << 20;

/// A line waiting to be sent, holding its share of [`LOG_BUDGET`] until it is.
pub(crate) type Queued = (String, Option<tokio::sync::OwnedSemaphorePermit>);

/// A job's lines, formatted as the server stores them, to the log sender.
pub(crate) struct RemoteSink {
    tx: mpsc::UnboundedSender<Queued>,
    /// [`LOG_BUDGET`], in KiB.
    budget: Arc<Semaphore>,
}

impl RemoteSink {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Queued>) -> Self {
        RemoteSink {
            tx,
            budget: Arc::new(Semaphore::new(LOG_BUDGET >> 10)),
        }
    }

    pub(crate) fn send(&self, text: String) {
        let kib = u32::try_from(text.len() >> 10)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let permit = match self.budget.clone().try_acquire_many_owned(kib) {
            Ok(p) => Some(p),
            // Over budget: wait for the sender, off the async workers (the engine calls sinks
            // from its tasks). A current-thread runtime cannot wait here: it goes unbounded.
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        let budget = self.budget.clone();
                        tokio::task::block_in_place(|| h.block_on(budget.acquire_many_owned(kib)))
                            .ok()
                    }
                    _ => None,
                }
            }
            Err(tokio::sync::TryAcquireError::Closed) => None,
        };
        let _ = self.tx.send((text, permit));
    }
}

/// The stored form of a line: output as is, markers for groups, steps and annotations.
pub fn format_line(line: Line) -> String {
    match line {
        Line::Output(t) => t,
        Line::GroupStart(t) => format!("##[group]{t}"),
        Line::GroupEnd => "##[endgroup]".to_owned(),
        Line::Annotation {
            level,
            message,
            file,
            line,
        } => {
            let place = match (file, line) {
                (Some(f), Some(l)) => format!(" {f}:{l}:"),
                (Some(f), None) => format!(" {f}:"),
                _ => String::new(),
            };
            format!("##[{}]{place} {message}", level.as_str())
        }
    }
}

/// The stored line that marks a step's start.
pub(crate) fn step_start_line(step: &str) -> String {
    format!("##[step] {step}")
}

/// The stored line that marks a step's end: its conclusion and how long it took.
pub(crate) fn step_end_line(step: &str, conclusion: Conclusion, duration: Duration) -> String {
    format!(
        "##[step-end] {step}: {} ({:.2}s)",
        conclusion.as_str(),
        duration.as_secs_f64()
    )
}

impl Sink for RemoteSink {
    fn job_started(&self, _job: &JobLabel) {}

    fn step_started(&self, _job: &JobLabel, step: &str) {
        self.send(step_start_line(step));
    }

    fn line(&self, _job: &JobLabel, line: Line) {
        self.send(format_line(line));
    }

    fn step_finished(
        &self,
        _job: &JobLabel,
        step: &str,
        conclusion: Conclusion,
        duration: Duration,
    ) {
        self.send(step_end_line(step, conclusion, duration));
    }

    fn job_finished(&self, _job: &JobLabel, _conclusion: Conclusion, _duration: Duration) {}
}

/// Sends the job's lines in numbered batches until the sink is dropped; stops (and marks
/// the lease lost) if the server says the job is no longer this runner's. The lines still
/// being gathered when the sink is dropped are returned, not sent: they go with the report.
pub(crate) async fn send_logs(
    client: Client,
    lease: Arc<Lease>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    lost: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> Vec<LogLine> {
    let mut seq = lease.log_seq;
    let never = CancellationToken::new();
    // The first batch waits longest: a short job's lines then all go with its report.
    let mut window = Duration::from_millis(50);
    while let Some((first, permit)) = rx.recv().await {
        let mut bytes = first.len();
        let mut lines = vec![first];
        // Their budget is given back once the batch is sent.
        let mut permits = vec![permit];
        let mut ended = false;
        // Gather what else is there, a few milliseconds' worth, up to a batch.
        let deadline = tokio::time::Instant::now() + window;
        window = Duration::from_millis(10);
        while lines.len() < 2000 && bytes < BATCH_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((l, p))) => {
                    bytes += l.len();
                    lines.push(l);
                    permits.push(p);
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if lost.load(Ordering::Relaxed) {
            continue;
        }
        let lines: Vec<LogLine> = lines
            .into_iter()
            .map(|text| {
                seq += 1;
                LogLine { seq, text }
            })
            .collect();
        if ended {
            return lines;
        }
        let batch = protocol::LogBatch { lines };
        let sent = retry(&never, || client.logs(&lease, &batch)).await;
        drop(permits);
        if let Err(RunnerError::NotHeld(_)) = sent {
            lost.store(true, Ordering::Relaxed);
            cancel.cancel();
        } else if let Err(e) = sent {
            tracing::warn!(job = lease.job, "sending log lines: {e}");
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stored_with_markers() {
        assert_eq!(format_line(Line::Output("x".into())), "x");
        assert_eq!(format_line(Line::GroupStart("g".into())), "##[group]g");
        assert_eq!(
            format_line(Line::Annotation {
                level: engine::Level::Error,
                message: "m".into(),
                file: Some("f".into()),
                line: Some("3".into()),
            }),
            "##[error] f:3: m"
        );
    }
}
