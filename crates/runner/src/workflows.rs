//! The workflows this runner read from its sources, parsed, kept per source and file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::Source;

use crate::RunnerError;

/// Workflows read from sources, parsed, kept per (source, file): the jobs of one run (and
/// of every run of one commit) read and parse their workflow once per runner.
#[derive(Default)]
pub(crate) struct Workflows(std::sync::Mutex<std::collections::HashMap<(PathBuf, String), Known>>);

/// A workflow file as read from a source, and parsed.
#[derive(Clone)]
pub(crate) struct Known {
    pub(crate) text: Arc<str>,
    pub(crate) workflow: Arc<workflow::Workflow>,
    /// Its text reduced to one job ([`Known::text_for_job`]).
    reduced: Arc<Reduced>,
}

/// Where a workflow's jobs lie in its text (read once, when a job first asks), and for which
/// job a reduction was checked good.
#[derive(Default)]
struct Reduced {
    lines: std::sync::OnceLock<Option<workflow::one_job::JobLines>>,
    checked: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl Known {
    /// The text a job's process parses for job `job`: the workflow's, the other jobs' lines
    /// made comments (`workflow::one_job`; checked once for each job), so that a process per
    /// job does not parse every job of a large workflow; the whole text where that cannot
    /// be done.
    pub(crate) fn text_for_job(&self, job: &str) -> Arc<str> {
        let Some(lines) = self
            .reduced
            .lines
            .get_or_init(|| workflow::one_job::JobLines::of(&self.text))
        else {
            return self.text.clone();
        };
        let mut checked = self
            .reduced
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match checked.get(job) {
            Some(true) => lines.blank(&self.text, job).into(),
            Some(false) => self.text.clone(),
            None => {
                let text = lines.only(&self.text, job);
                checked.insert(job.to_owned(), text.is_some());
                text.map_or_else(|| self.text.clone(), Into::into)
            }
        }
    }
}

impl Workflows {
    /// The workflow, parsed from `text` when given, else read from the source.
    pub(crate) fn known(
        &self,
        tar: &Path,
        file: &str,
        text: Option<&str>,
    ) -> Result<Known, RunnerError> {
        let key = (tar.to_owned(), file.to_owned());
        if let Some(w) = self.lock().get(&key) {
            return Ok(w.clone());
        }
        let text: Arc<str> = match text {
            Some(t) => t.into(),
            None => engine::read_source_file(&Source::Archive(tar.to_owned()), file)
                .map_err(|e| RunnerError::Job(format!("{file}: {e}")))?
                .into(),
        };
        // The server validated it when it queued the run.
        let parsed = workflow::parse_model(&text);
        if let Some(d) = parsed.diagnostics.iter().find(|d| d.is_error()) {
            return Err(RunnerError::Job(format!(
                "{file}:{}:{}: {}",
                d.span.start.line, d.span.start.col, d.message
            )));
        }
        let wf = Arc::new(
            parsed
                .workflow
                .ok_or_else(|| RunnerError::Job(format!("{file} is not a workflow")))?,
        );
        let known = Known {
            text,
            workflow: wf,
            reduced: Arc::default(),
        };
        let mut map = self.lock();
        // A bounded memory: sources come and go with commits.
        if map.len() >= 64 {
            map.clear();
        }
        map.insert(key, known.clone());
        Ok(known)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(PathBuf, String), Known>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
