//! File commands: the files a step writes to (`GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_PATH`,
//! `GITHUB_STEP_SUMMARY`, `GITHUB_STATE`) and what the job makes of them after the step.

use std::path::{Path, PathBuf};

use expr::{Map, Value};

use super::JobState;
use crate::commands::parse_key_values;
use crate::error::JobError;

/// Whether `name`, an entry of a job's temp dir, is one the engine makes itself (the
/// file-command files, the steps' scripts): it overwrites them before each use, so a job
/// directory kept for the next job may keep them.
pub fn is_engine_temp_file(name: &str) -> bool {
    name == FILE_COMMANDS_DIR
        || name
            .strip_prefix("step-")
            .and_then(|rest| rest.split('.').next())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

const FILE_COMMANDS_DIR: &str = "_runner_file_commands";

/// The file-command files of one step.
pub(crate) struct FileCommands {
    pub(crate) env: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) summary: PathBuf,
    pub(crate) state: PathBuf,
}

impl FileCommands {
    pub(crate) fn create(temp: &Path, n: usize) -> std::io::Result<FileCommands> {
        let dir = temp.join(FILE_COMMANDS_DIR);
        std::fs::create_dir_all(&dir)?;
        let f = |name: &str| -> std::io::Result<PathBuf> {
            let p = dir.join(format!("{name}_{n}"));
            crate::files::write_reusing(&p, b"")?;
            Ok(p)
        };
        Ok(FileCommands {
            env: f("set_env")?,
            output: f("set_output")?,
            path: f("add_path")?,
            summary: f("step_summary")?,
            state: f("save_state")?,
        })
    }
}

/// Reads the step's file commands: env, path, outputs, summary.
pub(super) fn apply_file_commands(
    state: &mut JobState<'_>,
    files: &FileCommands,
) -> Result<Map, JobError> {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let env = parse_key_values(&read(&files.env)).map_err(|source| JobError::FileCommand {
        file: "GITHUB_ENV",
        source,
    })?;
    for (k, v) in env {
        state.env.insert(k, Value::String(v));
    }
    for line in read(&files.path).lines() {
        let line = line.trim();
        if !line.is_empty() {
            state.path_prefix.push(line.to_owned());
        }
    }
    let summary = read(&files.summary);
    if !summary.is_empty() {
        let text = state.run.masker().mask(&summary);
        state.summary.push_str(&text);
    }
    let mut outputs = Map::new();
    for (k, v) in
        parse_key_values(&read(&files.output)).map_err(|source| JobError::FileCommand {
            file: "GITHUB_OUTPUT",
            source,
        })?
    {
        outputs.insert(k, Value::String(v));
    }
    Ok(outputs)
}
