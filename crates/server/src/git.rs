//! Reading the repositories the server builds (local bare repositories) with git.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("`{0}` is not a commit id (40 or 64 hex digits)")]
    NotAnId(String),
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

/// The author (`Name <email>`) and subject of commit `sha` (checked to be a commit id).
pub(crate) fn author(repo: &Path, sha: &str) -> Option<(String, String)> {
    let c = commit_info(repo, sha)?;
    Some((format!("{} <{}>", c.author_name, c.author_email), c.message))
}

/// What a payload tells of commit `sha`, read once for a burst of events of one commit.
pub(crate) fn commit_info_at(
    cache: &CommitCache,
    repo: &Path,
    sha: &str,
) -> Option<workflow::payload::CommitInfo> {
    let key = memo_key(repo, &[sha]);
    if let Some(hit) = cache.commits.lock().ok().and_then(|m| m.get(&key)) {
        return Some(hit);
    }
    let info = commit_info(repo, sha)?;
    if let Ok(mut m) = cache.commits.lock() {
        m.put(key, info.clone());
    }
    Some(info)
}

/// What a payload tells of commit `sha` (checked to be a commit id).
pub(crate) fn commit_info(repo: &Path, sha: &str) -> Option<workflow::payload::CommitInfo> {
    if !is_commit_id(sha) {
        return None;
    }
    let out = git(
        repo,
        &[
            "show",
            "-s",
            "--format=%s%x00%an%x00%ae%x00%cI",
            "--end-of-options",
            sha,
        ],
    )
    .ok()?;
    let mut f = out.trim_end().split('\0').map(str::to_owned);
    Some(workflow::payload::CommitInfo {
        message: f.next()?,
        author_name: f.next()?,
        author_email: f.next()?,
        timestamp: f.next()?,
    })
}

/// The commit a revision names.
pub fn resolve(repo: &Path, rev: &str) -> Result<String, GitError> {
    if let Some(sha) = read_branch(repo, rev) {
        return Ok(sha);
    }
    Ok(git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--end-of-options",
            &format!("{rev}^{{commit}}"),
        ],
    )?
    .trim()
    .to_owned())
}

/// Branch `rev` (`refs/heads/...`) of bare repository `repo`, read from its files as git
/// stores them (the loose ref, else `packed-refs`) instead of starting git (about 10 ms
/// here, for each dispatch). `None` for anything less plain (tags, symbolic refs, other
/// ref storage, a name git would refuse): git resolves those.
pub(crate) fn read_branch(repo: &Path, rev: &str) -> Option<String> {
    let name = rev.strip_prefix("refs/heads/")?;
    let plain = |c: &str| {
        !c.is_empty()
            && !c.starts_with('.')
            && !c.ends_with(".lock")
            && !c.contains("..")
            && c.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
            })
    };
    if !name.split('/').all(plain) || name.ends_with('.') || name.contains("@{") {
        return None;
    }
    // Only the files-backend layout of a bare repository.
    if !repo.join("refs").is_dir() || repo.join("reftable").exists() {
        return None;
    }
    match std::fs::read_to_string(repo.join(rev)) {
        Ok(text) => return is_commit_id(text.trim()).then(|| text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let packed = std::fs::read_to_string(repo.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (sha, name) = line.split_once(' ')?;
        (name == rev && is_commit_id(sha)).then(|| sha.to_owned())
    })
}

/// What was read of commits, by repository and commit ids. A commit never changes, so what
/// was read of it stays true; the most recent reads are kept (a burst of deliveries or
/// dispatches for one commit reads git once).
struct Memo<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V: Clone> Memo<V> {
    const CAPACITY: usize = 256;

    fn get(&self, key: &str) -> Option<V> {
        self.map.get(key).cloned()
    }

    fn put(&mut self, key: String, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

type Workflows = std::sync::Arc<Vec<(String, String)>>;

/// What was read of a repository's commits (its workflow files, the paths a push changed),
/// the most recent reads: held by the repository's configuration, so it lives and goes with
/// the server that reads them (no process-wide cache).
#[derive(Default)]
pub struct CommitCache {
    workflows: Mutex<Memo<Workflows>>,
    changed: Mutex<Memo<std::sync::Arc<Vec<String>>>>,
    /// What payloads tell of a commit.
    commits: Mutex<Memo<workflow::payload::CommitInfo>>,
}

impl std::fmt::Debug for CommitCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let workflows = self.workflows.lock().map(|m| m.map.len()).unwrap_or(0);
        let changed = self.changed.lock().map(|m| m.map.len()).unwrap_or(0);
        f.debug_struct("CommitCache")
            .field("workflows", &workflows)
            .field("changed", &changed)
            .finish()
    }
}

/// A full object id (SHA-1 or SHA-256, hex): only these name the same content forever (a
/// branch name moves), and only these are given to git where an id is expected, so that
/// nothing from outside is ever read by git as an option.
pub fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn memo_key(repo: &Path, ids: &[&str]) -> String {
    format!("{}\0{}", repo.display(), ids.join("\0"))
}

/// The workflow files of a commit: (path, text). Only regular files count (a directory named
/// `x.yml` is not a workflow).
pub fn workflows_at(cache: &CommitCache, repo: &Path, sha: &str) -> Result<Workflows, GitError> {
    if !is_commit_id(sha) {
        return Err(GitError::NotAnId(sha.to_owned()));
    }
    let key = memo_key(repo, &[sha]);
    if let Some(hit) = cache.workflows.lock().ok().and_then(|m| m.get(&key)) {
        return Ok(hit);
    }
    // `<mode> <type> <object>\t<path>`: blobs only.
    let list = git(
        repo,
        &["ls-tree", "--end-of-options", sha, ".github/workflows/"],
    )?;
    let mut out = Vec::new();
    for entry in list.lines() {
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let is_blob = meta.split(' ').nth(1) == Some("blob");
        if !is_blob || !(path.ends_with(".yml") || path.ends_with(".yaml")) {
            continue;
        }
        let text = git(
            repo,
            &["show", "--end-of-options", &format!("{sha}:{path}")],
        )?;
        out.push((path.to_owned(), text));
    }
    let out = std::sync::Arc::new(out);
    if let Ok(mut m) = cache.workflows.lock() {
        m.put(key, out.clone());
    }
    Ok(out)
}

/// Files changed between two commits; every file when `before` is absent (a new branch).
pub fn changed_paths(
    cache: &CommitCache,
    repo: &Path,
    before: Option<&str>,
    after: &str,
) -> Option<std::sync::Arc<Vec<String>>> {
    let before = before.filter(|b| !b.chars().all(|c| c == '0'));
    // Anything but object ids is refused (a `before` of `--output=FILE` would be an option).
    if !is_commit_id(after) || !before.is_none_or(is_commit_id) {
        return None;
    }
    let key = memo_key(repo, &[before.unwrap_or(""), after]);
    if let Some(hit) = cache.changed.lock().ok().and_then(|m| m.get(&key)) {
        return Some(hit);
    }
    let text = match before {
        Some(b) => git(repo, &["diff", "--name-only", "--end-of-options", b, after]).ok()?,
        None => git(
            repo,
            &["ls-tree", "-r", "--name-only", "--end-of-options", after],
        )
        .ok()?,
    };
    let paths = std::sync::Arc::new(text.lines().map(str::to_owned).collect::<Vec<_>>());
    if let Ok(mut m) = cache.changed.lock() {
        m.put(key, paths.clone());
    }
    Some(paths)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn a_branch_is_read_as_git_reads_it_loose_or_packed_and_anything_else_is_left_to_git() {
        let d = tempfile::tempdir().unwrap();
        let (work, bare) = (d.path().join("w"), d.path().join("b.git"));
        run(d.path(), &["init", "-q", "-b", "main", "w"]);
        std::fs::write(work.join("f"), "x").unwrap();
        run(&work, &["add", "-A"]);
        run(
            &work,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "commit",
                "-qm",
                "one",
            ],
        );
        run(&work, &["branch", "feature/x"]);
        run(&work, &["tag", "-a", "-m", "t", "v1"]);
        run(d.path(), &["clone", "-q", "--bare", "w", "b.git"]);
        let head = run(&work, &["rev-parse", "HEAD"]);
        // A fresh clone's refs are packed; then one loose, as a push makes it.
        assert_eq!(read_branch(&bare, "refs/heads/main"), Some(head.clone()));
        assert_eq!(
            read_branch(&bare, "refs/heads/feature/x"),
            Some(head.clone())
        );
        std::fs::write(work.join("f"), "y").unwrap();
        run(
            &work,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "commit",
                "-qam",
                "two",
            ],
        );
        run(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        let two = run(&work, &["rev-parse", "HEAD"]);
        assert_eq!(read_branch(&bare, "refs/heads/main"), Some(two.clone()));
        assert_eq!(resolve(&bare, "refs/heads/main").unwrap(), two);
        for other in [
            "refs/tags/v1",
            "HEAD",
            "main",
            "refs/heads/nope",
            "refs/heads/../config",
            "refs/heads/main~1",
            "refs/heads/main^{commit}",
            "refs/heads/.hidden",
        ] {
            assert_eq!(read_branch(&bare, other), None, "{other}");
        }
        // git still resolves what is not plain.
        assert_eq!(resolve(&bare, "refs/heads/main~1").unwrap(), head);
        assert!(resolve(&bare, "refs/heads/nope").is_err());
    }
}
