//! Where a running job's events go: the console, a log store, a remote server.
//!
//! Implementations must be cheap and must not block: they are called from the job's task for
//! every line of output. Lines handed to a sink are already masked.

use std::time::Duration;

use crate::report::Conclusion;

/// A job instance as shown to people: `test (3.11, ubuntu-latest)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobLabel {
    pub workflow: String,
    pub job_id: String,
    pub display: String,
}

/// One line of a step's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Output(String),
    GroupStart(String),
    GroupEnd,
    /// `::error`, `::warning`, `::notice`, `::debug`, and pipewright's own messages.
    Annotation {
        level: Level,
        message: String,
        file: Option<String>,
        line: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Notice,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

pub trait Sink: Send + Sync {
    fn job_started(&self, job: &JobLabel);
    fn step_started(&self, job: &JobLabel, step: &str);
    fn line(&self, job: &JobLabel, line: Line);
    fn step_finished(&self, job: &JobLabel, step: &str, conclusion: Conclusion, duration: Duration);
    fn job_finished(&self, job: &JobLabel, conclusion: Conclusion, duration: Duration);
}
