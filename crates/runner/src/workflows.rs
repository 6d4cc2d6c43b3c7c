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
        let known = Known { text, workflow: wf };
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
