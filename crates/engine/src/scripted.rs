//! A [`JobRunner`] that starts no process: each job instance ends as a script says, so the
//! graph (needs, `if`s, matrices, `fail-fast`, `max-parallel`, outputs) can be exercised on
//! its own, quickly and deterministically (Woodpecker's dummy backend does the same).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::job::{JobSpec, RunEnv};
use crate::report::{Conclusion, JobReport};
use crate::run::{JobFuture, JobRunner};
use crate::sink::Sink;

/// What a scripted job instance does.
#[derive(Debug, Clone)]
struct Act {
    conclusion: Conclusion,
    outputs: Vec<(String, String)>,
}

/// Job instances that succeed unless scripted otherwise (by display name, else by job id),
/// each taking `delay` (cut short, as cancelled, when the instance is cancelled).
#[derive(Debug, Default)]
pub struct Scripted {
    acts: HashMap<String, Act>,
    delay: Duration,
    started: Mutex<Vec<String>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Scripted {
    pub fn new() -> Scripted {
        Scripted::default()
    }

    /// The instance named `name` (display name or job id) ends with `conclusion`.
    pub fn ends(mut self, name: &str, conclusion: Conclusion) -> Scripted {
        self.act(name).conclusion = conclusion;
        self
    }

    /// The instance named `name` sets these outputs.
    pub fn outputs(mut self, name: &str, outputs: &[(&str, &str)]) -> Scripted {
        self.act(name).outputs = outputs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self
    }

    /// Each instance takes this long.
    pub fn taking(mut self, delay: Duration) -> Scripted {
        self.delay = delay;
        self
    }

    fn act(&mut self, name: &str) -> &mut Act {
        self.acts.entry(name.to_owned()).or_insert(Act {
            conclusion: Conclusion::Success,
            outputs: Vec::new(),
        })
    }

    /// The display names of the instances started, in order.
    pub fn started(&self) -> Vec<String> {
        self.started.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The most instances that ran at once.
    pub fn most_running(&self) -> usize {
        self.most_running.load(Ordering::SeqCst)
    }
}

impl JobRunner for Arc<Scripted> {
    fn run_job(
        &self,
        spec: JobSpec,
        _env: Arc<RunEnv>,
        _sink: Arc<dyn Sink>,
        cancel: CancellationToken,
    ) -> JobFuture {
        let me = self.clone();
        Box::pin(async move {
            if let Ok(mut s) = me.started.lock() {
                s.push(spec.display.clone());
            }
            let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
            me.most_running.fetch_max(now, Ordering::SeqCst);
            let act = me
                .acts
                .get(&spec.display)
                .or_else(|| me.acts.get(&spec.job_id))
                .cloned()
                .unwrap_or(Act {
                    conclusion: Conclusion::Success,
                    outputs: Vec::new(),
                });
            let cancelled = tokio::select! {
                () = tokio::time::sleep(me.delay) => false,
                () = cancel.cancelled() => true,
            };
            me.running.fetch_sub(1, Ordering::SeqCst);
            let matrix = spec
                .matrix
                .as_ref()
                .map(|m| expr::Value::Object(m.clone()).to_json());
            let conclusion = if cancelled {
                Conclusion::Cancelled
            } else {
                act.conclusion
            };
            let mut r = JobReport::without_steps(&spec.job_id, &spec.display, matrix, conclusion);
            for (k, v) in act.outputs {
                r.outputs.insert(k, serde_json::Value::String(v));
            }
            r
        })
    }
}
