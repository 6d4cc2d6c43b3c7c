//! From running jobs to the store and to live followers: a [`StoreSink`] per run sends
//! events down one channel; one writer task numbers the lines, stores them in batches and
//! broadcasts them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use engine::{Conclusion, JobLabel, Line, Sink};
use tokio::sync::{broadcast, mpsc};

/// What the writer receives.
#[derive(Debug)]
pub(crate) enum Event {
    JobStarted {
        run: i64,
        name: String,
        job_id: String,
    },
    Line {
        run: i64,
        name: String,
        text: String,
    },
    JobFinished {
        run: i64,
        name: String,
        conclusion: Conclusion,
    },
    /// The run is over: followers may stop. Sent after every line of the run.
    RunDone { run: i64, conclusion: String },
}

/// What followers receive.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    Line {
        run: i64,
        job: i64,
        job_name: String,
        seq: i64,
        text: String,
    },
    RunDone {
        run: i64,
        conclusion: String,
    },
}

/// The sink of one run.
pub(crate) struct StoreSink {
    pub(crate) run: i64,
    pub(crate) tx: mpsc::UnboundedSender<Event>,
}

impl StoreSink {
    fn line_event(&self, job: &JobLabel, text: String) {
        let _ = self.tx.send(Event::Line {
            run: self.run,
            name: job.display.clone(),
            text,
        });
    }
}

impl Sink for StoreSink {
    fn job_started(&self, job: &JobLabel) {
        let _ = self.tx.send(Event::JobStarted {
            run: self.run,
            name: job.display.clone(),
            job_id: job.job_id.clone(),
        });
    }

    fn step_started(&self, job: &JobLabel, step: &str) {
        self.line_event(job, format!("##[step] {step}"));
    }

    fn line(&self, job: &JobLabel, line: Line) {
        let text = match line {
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
        };
        self.line_event(job, text);
    }

    fn step_finished(
        &self,
        job: &JobLabel,
        step: &str,
        conclusion: Conclusion,
        duration: Duration,
    ) {
        self.line_event(
            job,
            format!(
                "##[step-end] {step}: {} ({:.2}s)",
                conclusion.as_str(),
                duration.as_secs_f64()
            ),
        );
    }

    fn job_finished(&self, job: &JobLabel, conclusion: Conclusion, _duration: Duration) {
        let _ = self.tx.send(Event::JobFinished {
            run: self.run,
            name: job.display.clone(),
            conclusion,
        });
    }
}

/// The writer task: runs until every sender is gone.
pub(crate) async fn writer(
    store: Arc<store::Store>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    live: broadcast::Sender<Live>,
) {
    // (run, job name) -> (job row, last seq)
    let mut jobs: HashMap<(i64, String), (i64, i64)> = HashMap::new();
    let mut out: Vec<Live> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        while let Ok(e) = rx.try_recv() {
            events.push(e);
            if events.len() >= 4096 {
                break;
            }
        }
        let store2 = store.clone();
        let mut jobs_local = std::mem::take(&mut jobs);
        // Database work off the async threads.
        let result = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            let mut live_out = Vec::new();
            for e in events {
                match e {
                    Event::JobStarted { run, name, job_id } => {
                        if let Ok(id) = store2.job_started(run, &name, &job_id) {
                            jobs_local.insert((run, name), (id, 0));
                        }
                    }
                    Event::Line { run, name, text } => {
                        if let Some((job, seq)) = jobs_local.get_mut(&(run, name.clone())) {
                            *seq += 1;
                            lines.push(store::LogLine {
                                job: *job,
                                seq: *seq,
                                text: text.clone(),
                            });
                            live_out.push(Live::Line {
                                run,
                                job: *job,
                                job_name: name,
                                seq: *seq,
                                text,
                            });
                        }
                    }
                    Event::JobFinished {
                        run,
                        name,
                        conclusion,
                    } => {
                        if !lines.is_empty() {
                            let _ = store2.append_logs(&lines);
                            lines.clear();
                        }
                        if let Some((job, _)) = jobs_local.get(&(run, name)) {
                            let _ = store2.job_finished(*job, conclusion.as_str());
                        }
                    }
                    Event::RunDone { run, conclusion } => {
                        if !lines.is_empty() {
                            let _ = store2.append_logs(&lines);
                            lines.clear();
                        }
                        jobs_local.retain(|(r, _), _| *r != run);
                        live_out.push(Live::RunDone { run, conclusion });
                    }
                }
            }
            if !lines.is_empty() {
                let _ = store2.append_logs(&lines);
            }
            (jobs_local, live_out)
        })
        .await;
        let Ok((j, l)) = result else { continue };
        jobs = j;
        out.extend(l);
        for l in out.drain(..) {
            let _ = live.send(l);
        }
    }
}
