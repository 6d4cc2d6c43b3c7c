//! Reading the repositories the server builds (local bare repositories) with git.

use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("git {args} failed in {repo}: {stderr}")]
    Failed {
        args: String,
        repo: String,
        stderr: String,
    },
}

fn git(repo: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            repo: repo.display().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit a revision names.
pub fn resolve(repo: &Path, rev: &str) -> Result<String, GitError> {
    Ok(git(
        repo,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )?
    .trim()
    .to_owned())
}

/// The workflow files of a commit: (path, text).
pub fn workflows_at(repo: &Path, sha: &str) -> Result<Vec<(String, String)>, GitError> {
    let list = git(repo, &["ls-tree", "--name-only", sha, ".github/workflows/"])?;
    let mut out = Vec::new();
    for path in list
        .lines()
        .filter(|p| p.ends_with(".yml") || p.ends_with(".yaml"))
    {
        let text = git(repo, &["show", &format!("{sha}:{path}")])?;
        out.push((path.to_owned(), text));
    }
    Ok(out)
}

/// Files changed between two commits; every file when `before` is absent (a new branch).
pub fn changed_paths(repo: &Path, before: Option<&str>, after: &str) -> Option<Vec<String>> {
    let text = match before.filter(|b| !b.chars().all(|c| c == '0')) {
        Some(b) => git(repo, &["diff", "--name-only", b, after]).ok()?,
        None => git(repo, &["ls-tree", "-r", "--name-only", after]).ok()?,
    };
    Some(text.lines().map(str::to_owned).collect())
}

/// Installs a `post-receive` hook that tells the server about every push at once.
pub fn install_hook(
    repo: &Path,
    exe: &Path,
    server: &str,
    name: &str,
    token_file: &Path,
) -> std::io::Result<()> {
    let hooks = repo.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\n# Installed by pipewright serve: reports pushes to the server.\nexec {} hook post-receive --server {} --repo {} --token-file {}\n",
        quote(&exe.display().to_string()),
        quote(server),
        quote(name),
        quote(&token_file.display().to_string()),
    );
    let path = hooks.join("post-receive");
    std::fs::write(&path, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
}
