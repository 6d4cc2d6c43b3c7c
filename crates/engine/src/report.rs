//! Results of steps, jobs, workflows and runs, and the JSON report `--report` writes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// GitHub's result vocabulary for steps and jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub id: Option<String>,
    pub name: String,
    pub outcome: Conclusion,
    pub conclusion: Conclusion,
    #[serde(skip)]
    pub duration: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobReport {
    pub id: String,
    pub name: String,
    pub matrix: Option<serde_json::Value>,
    /// `failure` for a job that failed under `continue-on-error`, whose conclusion is `success`.
    pub outcome: Conclusion,
    pub conclusion: Conclusion,
    pub steps: Vec<StepReport>,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Line coverage recorded by `codecov/codecov-action`, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// `environment:` of the job, evaluated: `{"name": ..., "url": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<serde_json::Value>,
    /// The job summary (`GITHUB_STEP_SUMMARY`), Markdown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(skip)]
    pub duration: Duration,
}

impl JobReport {
    /// The report of a job instance that ended without running steps: failed before it
    /// could start, cancelled while queued, its runner lost.
    pub fn without_steps(
        id: &str,
        name: &str,
        matrix: Option<serde_json::Value>,
        conclusion: Conclusion,
    ) -> JobReport {
        JobReport {
            id: id.to_owned(),
            name: name.to_owned(),
            matrix,
            outcome: conclusion,
            conclusion,
            steps: Vec::new(),
            outputs: serde_json::Map::new(),
            coverage: None,
            environment: None,
            summary: String::new(),
            duration: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkflowReport {
    pub file: String,
    pub name: String,
    pub conclusion: Conclusion,
    pub jobs: Vec<JobReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub conclusion: Conclusion,
    pub workflows: Vec<WorkflowReport>,
}

/// The conclusion of a set of jobs: failure wins, then cancelled (a matrix sibling stopped by
/// `fail-fast` does not hide the failure that stopped it); skipped jobs count as passed.
pub fn combine(conclusions: impl IntoIterator<Item = Conclusion>) -> Conclusion {
    let mut out = Conclusion::Success;
    for c in conclusions {
        match c {
            Conclusion::Failure => return Conclusion::Failure,
            Conclusion::Cancelled => out = Conclusion::Cancelled,
            Conclusion::Success | Conclusion::Skipped => {}
        }
    }
    out
}
