//! The slots jobs run in: a slot's number and directory, held by one job at a time, and
//! readying its directory for the next job.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::{RunnerError, io};

/// A slot a job holds, and its directory (`work_dir/slots/N`), kept from job to job and
/// emptied between them: making and deleting a tree of directories and files for every job
/// costs more than the job itself when jobs are short (the file system's inode allocation).
/// Dropped, the slot is free again.
pub(crate) struct Slot {
    pub(crate) n: usize,
    pub(crate) dir: PathBuf,
    pub(crate) free: mpsc::UnboundedSender<usize>,
    /// The images the runner's running jobs pulled through their brokers (shared by slots).
    pub(crate) pulls: crate::broker::Pulls,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.free.send(self.n);
    }
}

/// Empties `dir` (keeping it), except the entries `keep` accepts; creates it if missing.
pub(crate) fn empty_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<(), RunnerError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::create_dir_all(dir).map_err(io(dir));
        }
        Err(e) => return Err(io(dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io(dir))?;
        if keep(&e.file_name().to_string_lossy()) {
            continue;
        }
        let path = e.path();
        engine::files::remove_entry(&path, e.file_type().is_ok_and(|t| t.is_dir()))
            .map_err(io(&path))?;
    }
    Ok(())
}

/// Readies a slot's directory for a job: the workspace and the temp dir empty (the temp
/// dir keeps the engine's own files, which it truncates before each use), no artifacts.
///
/// A job may leave what cannot be deleted as it is: read-only directories (Go's module
/// cache makes them) are made writable and deleted; whatever still resists, the slot's
/// whole directory is set aside (`slots/.aside-*`, for the owner to look at) and the slot
/// starts anew. A slot never stays unusable.
pub(crate) fn ready_slot(dir: &Path) -> Result<(), RunnerError> {
    let Err(first) = empty_slot(dir) else {
        return Ok(());
    };
    make_writable(dir);
    if empty_slot(dir).is_ok() {
        return Ok(());
    }
    set_aside(dir, &first)?;
    empty_slot(dir)
}

/// Moves a slot's directory that cannot be emptied aside (`slots/.aside-*`, for the owner to
/// look at), saying why.
pub(crate) fn set_aside(dir: &Path, why: &RunnerError) -> Result<(), RunnerError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = dir
        .file_name()
        .map_or_else(|| "slot".to_owned(), |n| n.to_string_lossy().into_owned());
    let aside = dir.with_file_name(format!(".aside-{name}-{stamp}"));
    std::fs::rename(dir, &aside).map_err(io(dir))?;
    tracing::warn!(
        "{why}; the slot's directory was set aside as {}",
        aside.display()
    );
    Ok(())
}

/// Adds the owner's write and search permission to every directory under `dir` (deleting
/// an entry needs write permission on its directory).
pub(crate) fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

fn empty_slot(dir: &Path) -> Result<(), RunnerError> {
    let job = dir.join("job");
    empty_dir(&job.join("workspace"), |_| false)?;
    let temp = job.join("temp");
    empty_dir(&temp, engine::is_engine_temp_file)?;
    engine::clear_engine_temp(&temp).map_err(io(&temp))?;
    let artifacts = dir.join("artifacts");
    if artifacts.exists() {
        std::fs::remove_dir_all(&artifacts).map_err(io(&artifacts))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_emptied_but_for_the_engine_s_own_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let slot = d.path().join("0");
        ready_slot(&slot).unwrap();
        let (ws, temp) = (slot.join("job/workspace"), slot.join("job/temp"));
        std::fs::create_dir_all(ws.join("ro/sub")).unwrap();
        std::fs::write(ws.join("ro/sub/f"), "x").unwrap();
        std::fs::write(ws.join(".hidden"), "x").unwrap();
        for p in [ws.join("ro/sub"), ws.join("ro")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let commands = temp.join("_runner_file_commands");
        std::fs::create_dir_all(&commands).unwrap();
        std::fs::write(commands.join("set_output_3"), "token=s3cret\n").unwrap();
        std::fs::write(commands.join("set_env_1"), "").unwrap();
        std::fs::write(commands.join("loot"), "x").unwrap();
        std::fs::write(temp.join("step-1.sh"), "curl -u s3cret").unwrap();
        std::fs::write(temp.join("step-x.sh"), "mine").unwrap();
        std::fs::create_dir_all(slot.join("artifacts/dist")).unwrap();
        ready_slot(&slot).unwrap();
        assert_eq!(std::fs::read_dir(&ws).unwrap().count(), 0);
        let mut kept: Vec<String> = std::fs::read_dir(&temp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(kept, ["_runner_file_commands", "step-1.sh"]);
        // What the last job's steps ran and wrote is not the next job's to read.
        let blank = |p: std::path::PathBuf| std::fs::read(p).unwrap().iter().all(|&b| b == 0);
        assert!(blank(temp.join("step-1.sh")));
        assert!(blank(commands.join("set_output_3")));
        let mut commands_kept: Vec<(String, u64)> = std::fs::read_dir(&commands)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let len = e.metadata().unwrap().len();
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .collect();
        commands_kept.sort();
        assert_eq!(
            commands_kept,
            [("set_env_1".to_owned(), 0), ("set_output_3".to_owned(), 13)]
        );
        assert!(!slot.join("artifacts").exists());
        // Nothing was set aside.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
