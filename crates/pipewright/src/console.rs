//! The live console view: each line prefixed by its job, step start and end lines with
//! durations, `::group::` blocks folded to one line (shown whole if the step fails), and a
//! summary table at the end. `NO_COLOR` and non-terminals get plain text.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use engine::{Conclusion, JobLabel, Level, Line, RunReport, Sink};

pub(crate) struct Console {
    color: bool,
    groups: Mutex<HashMap<JobLabel, Group>>,
}

#[derive(Default)]
struct Group {
    title: Option<String>,
    lines: Vec<String>,
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.2}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

impl Console {
    pub(crate) fn new(color: bool) -> Self {
        Console {
            color,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn print(&self, job: &JobLabel, text: &str) {
        let prefix = self.paint(CYAN, &format!("[{}]", job.display));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{prefix} {text}");
    }

    fn mark(&self, c: Conclusion) -> String {
        match c {
            Conclusion::Success => self.paint(GREEN, "✓"),
            Conclusion::Failure => self.paint(RED, "✗"),
            Conclusion::Cancelled => self.paint(YELLOW, "⊘"),
            Conclusion::Skipped => self.paint(DIM, "-"),
        }
    }

    /// Prints the summary table of a run.
    pub(crate) fn summary(&self, report: &RunReport) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out);
        for wf in &report.workflows {
            let title = if wf.name == wf.file {
                wf.name.clone()
            } else {
                format!("{} ({})", wf.name, wf.file)
            };
            let _ = writeln!(out, "{}", self.paint(BOLD, &title));
            let width = wf
                .jobs
                .iter()
                .map(|j| j.name.chars().count())
                .max()
                .unwrap_or(0);
            for j in &wf.jobs {
                let cov = j
                    .coverage
                    .map(|c| format!("  coverage {c:.2}%"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} {:<width$}  {:<9}  {}{cov}",
                    self.mark(j.conclusion),
                    j.name,
                    j.conclusion.as_str(),
                    if j.conclusion == Conclusion::Skipped {
                        String::new()
                    } else {
                        human(j.duration)
                    },
                );
            }
        }
        let _ = writeln!(
            out,
            "{} {}",
            self.mark(report.conclusion),
            report.conclusion.as_str()
        );
    }
}

impl Sink for Console {
    fn job_started(&self, job: &JobLabel) {
        self.print(job, &self.paint(BOLD, "job started"));
    }

    fn step_started(&self, job: &JobLabel, step: &str) {
        self.print(job, &self.paint(BOLD, &format!("⏵ {step}")));
    }

    fn line(&self, job: &JobLabel, line: Line) {
        let mut groups = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let g = groups.entry(job.clone()).or_default();
        match line {
            Line::GroupStart(title) => {
                g.title = Some(title);
                g.lines.clear();
            }
            Line::GroupEnd => {
                if let Some(title) = g.title.take() {
                    let n = g.lines.len();
                    g.lines.clear();
                    drop(groups);
                    self.print(
                        job,
                        &format!(
                            "▸ {title} {}",
                            self.paint(DIM, &format!("({n} lines folded)"))
                        ),
                    );
                }
            }
            Line::Output(text) => {
                if g.title.is_some() {
                    g.lines.push(text);
                } else {
                    drop(groups);
                    self.print(job, &format!("  {text}"));
                }
            }
            Line::Annotation {
                level,
                message,
                file,
                line,
            } => {
                drop(groups);
                let place = match (file, line) {
                    (Some(f), Some(l)) => format!(" {f}:{l}:"),
                    (Some(f), None) => format!(" {f}:"),
                    _ => String::new(),
                };
                let code = match level {
                    Level::Error => RED,
                    Level::Warning => YELLOW,
                    _ => CYAN,
                };
                for (i, l) in message.lines().enumerate() {
                    let head = if i == 0 {
                        self.paint(code, &format!("{}{place}", level.as_str()))
                    } else {
                        " ".repeat(level.as_str().len())
                    };
                    self.print(job, &format!("  {head} {l}"));
                }
            }
        }
    }

    fn step_finished(
        &self,
        job: &JobLabel,
        step: &str,
        conclusion: Conclusion,
        duration: Duration,
    ) {
        // An open group of a failed step is shown whole: the folded lines are the evidence.
        let pending = {
            let mut groups = self
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            groups.remove(job)
        };
        if let Some(g) = pending
            && let Some(title) = g.title
        {
            self.print(job, &format!("▾ {title}"));
            for l in g.lines {
                self.print(job, &format!("  {l}"));
            }
        }
        self.print(
            job,
            &format!(
                "{} {step} {}",
                self.mark(conclusion),
                self.paint(DIM, &format!("({})", human(duration)))
            ),
        );
    }

    fn job_finished(&self, job: &JobLabel, conclusion: Conclusion, duration: Duration) {
        self.print(
            job,
            &format!(
                "{} job {} {}",
                self.mark(conclusion),
                conclusion.as_str(),
                self.paint(DIM, &format!("({})", human(duration)))
            ),
        );
    }
}
