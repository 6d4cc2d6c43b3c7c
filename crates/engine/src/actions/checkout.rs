//! `actions/checkout`: fills the workspace from the local repository, without the network.
//! The work tree as it is (uncommitted changes included, git-ignored files left out), or the
//! commit given with `--sha`.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{ActionError, Call};
use crate::job::{JobState, Source};

pub(super) fn run(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let dest = crate::files::normalize(
        &state.workspace,
        state.home().as_deref(),
        &call.input_or("path", "."),
    );
    if !dest.starts_with(&state.workspace) {
        return Err(ActionError::Failed(format!(
            "`path` must stay inside the workspace, got `{}`",
            call.input("path")
        )));
    }
    materialize(&state.run.host.source, &dest)
}

/// Writes the run's source tree into `dest` (made if missing).
pub(super) fn materialize(source: &Source, dest: &Path) -> Result<(), ActionError> {
    std::fs::create_dir_all(dest).map_err(|e| ActionError::io(dest.display().to_string(), e))?;
    match source {
        Source::WorkingTree(repo) => copy_work_tree(repo, dest)?,
        Source::Commit { repo, sha } => export_commit(repo, sha, dest)?,
        Source::Archive(tar) => unpack(tar, dest)?,
    }
    Ok(())
}

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(repo);
    c
}

fn copy_work_tree(repo: &Path, dest: &Path) -> Result<(), ActionError> {
    let out = git(repo)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .map_err(|e| ActionError::io("git ls-files", e))?;
    if !out.status.success() {
        return Err(ActionError::Failed(format!(
            "git ls-files failed in {}: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    for rel in out.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = String::from_utf8_lossy(rel);
        let src = repo.join(rel.as_ref());
        let meta = match std::fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(_) => continue, // deleted in the work tree but still in the index
        };
        let target = dest.join(rel.as_ref());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ActionError::io(parent.display().to_string(), e))?;
        }
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&src)
                .map_err(|e| ActionError::io(src.display().to_string(), e))?;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)
                .map_err(|e| ActionError::io(target.display().to_string(), e))?;
        } else if meta.is_file() {
            std::fs::copy(&src, &target)
                .map_err(|e| ActionError::io(src.display().to_string(), e))?;
        }
    }
    Ok(())
}

fn unpack(tar: &Path, dest: &Path) -> Result<(), ActionError> {
    let out = Command::new("tar")
        .arg("-x")
        .arg("-f")
        .arg(tar)
        .arg("-C")
        .arg(dest)
        .output()
        .map_err(|e| ActionError::io("tar", e))?;
    if !out.status.success() {
        return Err(ActionError::Failed(format!(
            "cannot unpack {}: {}",
            tar.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn export_commit(repo: &Path, sha: &str, dest: &Path) -> Result<(), ActionError> {
    let mut archive = git(repo)
        .args(["archive", "--format=tar", sha])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ActionError::io("git archive", e))?;
    let stdout = archive
        .stdout
        .take()
        .ok_or_else(|| ActionError::Failed("git archive: no output".into()))?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(stdout)
        .output()
        .map_err(|e| ActionError::io("tar", e))?;
    let git_out = archive
        .wait_with_output()
        .map_err(|e| ActionError::io("git archive", e))?;
    if !git_out.status.success() {
        return Err(ActionError::Failed(format!(
            "cannot check out `{sha}`: {}",
            String::from_utf8_lossy(&git_out.stderr).trim()
        )));
    }
    if !tar.status.success() {
        return Err(ActionError::Failed(format!(
            "cannot unpack `{sha}`: {}",
            String::from_utf8_lossy(&tar.stderr).trim()
        )));
    }
    Ok(())
}
