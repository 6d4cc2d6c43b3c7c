//! Live log lines: runners' batches are stored by the runner API and broadcast to followers
//! from there; this module has the broadcast's type and the orchestrator's sink, which
//! stores what the server itself says about a job (an `if` or `runs-on` it could not
//! evaluate) and tells followers when a run is done.

use std::sync::Arc;
use std::time::Duration;

use engine::{Conclusion, JobLabel, Line, Sink};
use store::{JobId, RunId};
use tokio::sync::{broadcast, mpsc, watch};

use crate::blocking::{Blocked, blocking};

/// What the writer receives.
#[derive(Debug)]
pub(crate) enum Event {
    Line {
        run: RunId,
        name: String,
        job_id: String,
        text: String,
    },
    /// The run is over: followers may stop. Sent after every line of the run.
    RunDone {
        run: RunId,
        conclusion: store::Conclusion,
    },
}

/// What followers receive.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    Line {
        run: RunId,
        job: JobId,
        job_name: String,
        seq: i64,
        text: String,
    },
    RunDone {
        run: RunId,
        conclusion: store::Conclusion,
    },
}

/// The orchestrator's sink for one run: job instances run on runners, which send their own
/// lines; what reaches this sink is the server's own word about a job.
pub(crate) struct StoreSink {
    pub(crate) run: RunId,
    pub(crate) tx: mpsc::UnboundedSender<Event>,
}

impl Sink for StoreSink {
    fn job_started(&self, _job: &JobLabel) {}

    fn step_started(&self, _job: &JobLabel, _step: &str) {}

    fn line(&self, job: &JobLabel, line: Line) {
        let _ = self.tx.send(Event::Line {
            run: self.run,
            name: job.display.clone(),
            job_id: job.job_id.clone(),
            text: runner::format_line(line),
        });
    }

    fn step_finished(&self, _: &JobLabel, _: &str, _: Conclusion, _: Duration) {}

    fn job_finished(&self, _: &JobLabel, _: Conclusion, _: Duration) {}
}

/// The writer task: stores the orchestrators' lines in order and broadcasts them, and tells
/// `run_ended` of each run's end (the allocator's trimmer); runs until every sender is gone.
pub(crate) async fn writer(
    store: Arc<store::Store>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    live: broadcast::Sender<Live>,
    run_ended: watch::Sender<()>,
) {
    while let Some(e) = rx.recv().await {
        match e {
            Event::Line {
                run,
                name,
                job_id,
                text,
            } => {
                let (s, n, t) = (store.clone(), name.clone(), text.clone());
                match blocking(move || s.annotate_job(run, &n, &job_id, &t)).await {
                    Ok((job, seq)) => {
                        let _ = live.send(Live::Line {
                            run,
                            job,
                            job_name: name,
                            seq,
                            text,
                        });
                    }
                    Err(Blocked::Call(e)) => {
                        tracing::warn!(run = run.get(), "storing a line of job `{name}`: {e}");
                    }
                    Err(Blocked::Task(_)) => {}
                }
            }
            Event::RunDone { run, conclusion } => {
                let _ = live.send(Live::RunDone { run, conclusion });
                run_ended.send_replace(());
            }
        }
    }
}
