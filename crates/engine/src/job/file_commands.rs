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

/// The names [`FileCommands::create`] gives a step's file-command files.
fn is_file_command_file(name: &str) -> bool {
    name.rsplit_once('_').is_some_and(|(kind, n)| {
        matches!(
            kind,
            "set_env" | "set_output" | "add_path" | "step_summary" | "save_state"
        ) && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Readies a job's temp dir kept from an earlier job (a runner's slot, `pipewright run`'s
/// reused directory) for the next: everything but the engine's own files is removed, and
/// those that hold anything are emptied. Kept as they were, a later job (another
/// repository's, a fork's) could read an earlier one's step scripts, which hold the values
/// their expressions were replaced with (secrets among them), and what its steps wrote to
/// their file commands. Blanking a file costs less than making a new one (inode allocation)
/// or cutting it (freeing its blocks).
pub fn clear_engine_temp(temp: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(temp) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if name == FILE_COMMANDS_DIR && meta.is_dir() {
            for file in std::fs::read_dir(&path)? {
                let file = file?;
                let file_path = file.path();
                let m = std::fs::symlink_metadata(&file_path)?;
                if m.is_file() && is_file_command_file(&file.file_name().to_string_lossy()) {
                    empty_file(&file_path, &m)?;
                } else {
                    remove(&file_path, &m)?;
                }
            }
        } else if meta.is_file() && is_engine_temp_file(&name) {
            empty_file(&path, &meta)?;
        } else {
            remove(&path, &meta)?;
        }
    }
    Ok(())
}

fn remove(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Overwrites a regular file's contents with zero bytes (never following a link); one that
/// cannot be opened for writing, or is over 1 MiB, is removed instead. Not cut to nothing:
/// freeing a file's blocks is what costs (with ext4's `discard` option it waits for the
/// device), and whoever uses the file next writes it whole
/// ([`crate::files::write_reusing`]).
fn empty_file(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const MAX: u64 = 1 << 20;
    if meta.len() == 0 {
        return Ok(());
    }
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path);
    match opened {
        Ok(mut f) if meta.len() <= MAX => {
            let len = usize::try_from(meta.len()).unwrap_or(0);
            f.write_all(&vec![0; len])
        }
        _ => std::fs::remove_file(path),
    }
}

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
