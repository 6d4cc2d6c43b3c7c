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

/// The kinds of file command, as their files are named (`<kind>_<step>`).
const FILE_COMMAND_KINDS: [&str; 5] = [
    "set_env",
    "set_output",
    "add_path",
    "step_summary",
    "save_state",
];

/// Makes, empty and new, what a job's first step uses in its temp dir `temp` (emptied
/// before): its file-command files and its script (`step-1.sh`, a bash or sh step's).
/// A runner calls it as it readies an idle slot for its next job, so the files' inodes are
/// allocated then rather than while the job waits (on ext4, after many deletions, finding
/// a free inode may take long); the engine finds them empty and writes into them. Returns
/// what it made, for the runner to hand to the job's user; nothing that exists is opened.
/// Made for the job's user alone, as the job makes them (`JobState::step_file_mode`; a
/// job in a container opens them to others as it writes them).
pub fn make_first_step_files(temp: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::OpenOptionsExt;
    let new = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
    };
    let dir = temp.join(FILE_COMMANDS_DIR);
    std::fs::create_dir(&dir)?;
    let mut made = vec![dir.clone()];
    for kind in FILE_COMMAND_KINDS {
        let p = dir.join(format!("{kind}_1"));
        new(&p)?;
        made.push(p);
    }
    let script = temp.join("step-1.sh");
    new(&script)?;
    made.push(script);
    Ok(made)
}

/// The names [`FileCommands::create`] gives a step's file-command files.
fn is_file_command_file(name: &str) -> bool {
    name.rsplit_once('_').is_some_and(|(kind, n)| {
        FILE_COMMAND_KINDS.contains(&kind) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Readies a job's temp dir kept from an earlier job for the next, where jobs run as the
/// caller's own user (a runner's unconfined slots, `pipewright run`'s kept directory; a
/// confined slot's temp dir is the job user's and is emptied whole): everything but the
/// engine's own files is removed, and those that hold anything are blanked. Kept as they
/// were, a later job (another repository's) could read an earlier one's step scripts, which
/// hold the values their expressions were replaced with (secrets among them), and what its
/// steps wrote to their file commands. Blanking a file costs less than making a new one
/// (inode allocation) or cutting it (freeing its blocks).
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
                    crate::files::remove_entry(&file_path, m.is_dir())?;
                }
            }
        } else if meta.is_file() && is_engine_temp_file(&name) {
            empty_file(&path, &meta)?;
        } else {
            crate::files::remove_entry(&path, meta.is_dir())?;
        }
    }
    Ok(())
}

/// Overwrites a regular file's contents with zero bytes (never following a link); one that
/// cannot be opened for writing, has another name (a hard link) or is over 1 MiB is removed
/// instead. Not cut to nothing: freeing a file's blocks is what costs (with ext4's `discard`
/// option it waits for the device), and whoever uses the file next writes it whole
/// ([`crate::files::write_reusing`]).
fn empty_file(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    const MAX: u64 = 1 << 20;
    if meta.len() == 0 {
        return Ok(());
    }
    // Not blocking on a FIFO put in its place; written only if it is still the file looked
    // at and has no other name (a hard link would have the zeros written elsewhere).
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let same = |m: &std::fs::Metadata| {
        m.is_file()
            && m.nlink() == 1
            && m.dev() == meta.dev()
            && m.ino() == meta.ino()
            && m.len() <= MAX
    };
    match opened.and_then(|f| Ok((f.metadata()?, f))) {
        Ok((m, mut f)) if same(&m) => f.write_all(&vec![0; usize::try_from(m.len()).unwrap_or(0)]),
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
    /// The files of step `n` in `temp`, empty, with permissions `mode`.
    pub(crate) fn create(temp: &Path, n: usize, mode: u32) -> std::io::Result<FileCommands> {
        let dir = temp.join(FILE_COMMANDS_DIR);
        std::fs::create_dir_all(&dir)?;
        let f = |name: &str| -> std::io::Result<PathBuf> {
            let p = dir.join(format!("{name}_{n}"));
            crate::files::write_reusing_mode(&p, b"", mode)?;
            Ok(p)
        };
        let [env, output, path, summary, state] = FILE_COMMAND_KINDS;
        Ok(FileCommands {
            env: f(env)?,
            output: f(output)?,
            path: f(path)?,
            summary: f(summary)?,
            state: f(state)?,
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

#[cfg(test)]
mod tests {
    use super::{FileCommands, clear_engine_temp, is_engine_temp_file, make_first_step_files};

    /// What a runner makes ahead of a job is what the job's first step uses, taken as it
    /// is (the same inodes, nothing allocated while the job waits); what exists is never
    /// opened.
    #[test]
    fn the_first_step_s_files_made_ahead_are_the_ones_the_step_uses() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let temp = d.path();
        let made = make_first_step_files(temp).unwrap();
        let inode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().ino();
        let before: Vec<u64> = made.iter().map(|p| inode(p)).collect();
        let files = FileCommands::create(temp, 1, 0o600).unwrap();
        for p in [
            &files.env,
            &files.output,
            &files.path,
            &files.summary,
            &files.state,
        ] {
            assert!(made.contains(p), "{} made ahead", p.display());
            assert_eq!(std::fs::read(p).unwrap(), b"");
        }
        let script = temp.join("step-1.sh");
        assert!(made.contains(&script) && is_engine_temp_file("step-1.sh"));
        let after: Vec<u64> = made.iter().map(|p| inode(p)).collect();
        assert_eq!(before, after);
        // Made once: a second time finds them there and stops, opening nothing.
        std::fs::write(&files.env, "A=1\n").unwrap();
        assert!(make_first_step_files(temp).is_err());
        assert_eq!(std::fs::read(&files.env).unwrap(), b"A=1\n");
    }

    /// What a step made of the engine's files is removed, never followed or written through.
    #[test]
    fn the_engine_s_files_are_blanked_and_anything_else_removed_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let temp = d.path().join("temp");
        let commands = temp.join("_runner_file_commands");
        std::fs::create_dir_all(&commands).unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, "precious").unwrap();
        std::fs::write(temp.join("step-1.sh"), "echo s3cret").unwrap();
        std::os::unix::fs::symlink(&outside, temp.join("step-2.sh")).unwrap();
        std::fs::hard_link(&outside, temp.join("step-3.sh")).unwrap();
        std::fs::write(temp.join("step-4.sh"), vec![b'x'; (1 << 20) + 1]).unwrap();
        std::fs::write(temp.join("leftover"), "x").unwrap();
        std::fs::write(commands.join("set_output_1"), "k=v\n").unwrap();
        std::fs::write(commands.join("set_env_1"), "").unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(commands.join("set_env_2"))
            .status()
            .unwrap();
        assert!(fifo.success());
        std::fs::create_dir(commands.join("add_path_1")).unwrap();
        std::os::unix::fs::symlink(&outside, commands.join("save_state_1")).unwrap();
        clear_engine_temp(&temp).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        let names = |p: &std::path::Path| {
            let mut v: Vec<String> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&temp), ["_runner_file_commands", "step-1.sh"]);
        assert_eq!(std::fs::read(temp.join("step-1.sh")).unwrap(), [0; 11]);
        assert_eq!(names(&commands), ["set_env_1", "set_output_1"]);
        assert_eq!(
            std::fs::read(commands.join("set_output_1")).unwrap(),
            [0; 4]
        );
        // A missing directory is nothing to do.
        clear_engine_temp(&d.path().join("missing")).unwrap();
    }
}
