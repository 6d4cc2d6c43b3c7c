//! The git repository a run is for: its root, branch, commit, default branch, changed files,
//! and its workflow files.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) use workflow::payload::CommitInfo;

/// A git work tree, with what one `git rev-parse` tells about it.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    pub(crate) root: PathBuf,
    git_dir: PathBuf,
    branch: Option<String>,
    head: Option<String>,
    /// HEAD's commit details, asked of git in the background by [`Repo::prefetch_head`].
    head_info: std::sync::Arc<std::sync::Mutex<Option<HeadInfo>>>,
}

/// HEAD's commit and its details: read already, or being asked of git by a thread.
type HeadInfo = (String, Pending);

#[derive(Debug)]
enum Pending {
    Read(Option<CommitInfo>),
    Asked(std::thread::JoinHandle<Option<CommitInfo>>),
}

impl Repo {
    /// Finds the work tree around `dir`. One git process when the repository has commits:
    /// every git call costs about a millisecond, and `pipewright run` must start fast.
    pub(crate) fn discover(dir: &Path) -> Result<Repo> {
        let not_a_repo = || {
            anyhow::anyhow!(
                "{} is not inside a git work tree (pipewright run needs one: run `git init` or pass -C DIR)",
                dir.display()
            )
        };
        if let Some(repo) = Repo::from_files(dir) {
            return Ok(repo);
        }
        // Output follows the argument order; `--symbolic-full-name` applies to what follows it.
        if let Some(out) = git(
            dir,
            &[
                "rev-parse",
                "--show-toplevel",
                "--absolute-git-dir",
                "HEAD",
                "--symbolic-full-name",
                "HEAD",
            ],
        ) {
            let lines: Vec<&str> = out.lines().collect();
            if let [root, git_dir, sha, full] = lines[..] {
                return Ok(Repo {
                    root: PathBuf::from(root),
                    git_dir: PathBuf::from(git_dir),
                    branch: full.strip_prefix("refs/heads/").map(str::to_owned),
                    head: Some(sha.to_owned()),
                    head_info: std::sync::Arc::default(),
                });
            }
        }
        // No commit yet (or a detached HEAD printing fewer lines): ask separately.
        let out = git(dir, &["rev-parse", "--show-toplevel", "--absolute-git-dir"])
            .ok_or_else(not_a_repo)?;
        let mut lines = out.lines();
        let (Some(root), Some(git_dir)) = (lines.next(), lines.next()) else {
            return Err(not_a_repo());
        };
        let root = PathBuf::from(root);
        Ok(Repo {
            branch: git(&root, &["symbolic-ref", "--quiet", "--short", "HEAD"])
                .filter(|b| !b.is_empty()),
            head: git(&root, &["rev-parse", "--verify", "--quiet", "HEAD"])
                .filter(|s| !s.is_empty()),
            git_dir: PathBuf::from(git_dir),
            root,
            head_info: std::sync::Arc::default(),
        })
    }

    /// The work tree around `dir` read from its files, without a git process (a millisecond
    /// of `pipewright run`), in the plain case only: a `.git` directory of this user's, no
    /// variable that changes where git looks or what it reads, no `core.worktree` or
    /// `core.bare`;
    /// anything else is git's to read.
    fn from_files(dir: &Path) -> Option<Repo> {
        use std::os::unix::fs::MetadataExt;
        let moves_git = |k: &str| {
            matches!(
                k,
                "GIT_DIR"
                    | "GIT_WORK_TREE"
                    | "GIT_COMMON_DIR"
                    | "GIT_CEILING_DIRECTORIES"
                    | "GIT_DISCOVERY_ACROSS_FILESYSTEM"
                    | "GIT_NAMESPACE"
                    | "GIT_REPLACE_REF_BASE"
                    | "GIT_NO_REPLACE_OBJECTS"
            ) || k.starts_with("GIT_CONFIG")
        };
        if std::env::vars_os().any(|(k, _)| moves_git(&k.to_string_lossy())) {
            return None;
        }
        let start = std::fs::canonicalize(dir).ok()?;
        let root = start
            .ancestors()
            .find(|a| std::fs::symlink_metadata(a.join(".git")).is_ok())?
            .to_path_buf();
        let git_dir = root.join(".git");
        let meta = std::fs::symlink_metadata(&git_dir).ok()?;
        // A file (a linked work tree, a submodule), a link, or another user's repository
        // (git's `safe.directory`): git reads those.
        if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
            return None;
        }
        let config = std::fs::read_to_string(git_dir.join("config")).ok()?;
        // Refs in a reftable (`extensions.refStorage`) are git's to read.
        if config.contains("worktree")
            || config.contains("bare = true")
            || config.to_ascii_lowercase().contains("refstorage")
        {
            return None;
        }
        let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
        let head = head.trim_end();
        let sha = |s: &str| {
            (matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| s.to_owned())
        };
        let (branch, head) = match head.strip_prefix("ref: ") {
            Some(reference) => {
                let branch = reference.strip_prefix("refs/heads/")?.to_owned();
                if reference.contains("..") || reference.split('/').any(str::is_empty) {
                    return None;
                }
                let at = match std::fs::read_to_string(git_dir.join(reference)) {
                    Ok(text) => Some(sha(text.trim_end())?),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        match std::fs::read_to_string(git_dir.join("packed-refs")) {
                            Ok(packed) => packed.lines().find_map(|l| {
                                l.split_once(' ')
                                    .filter(|(_, r)| *r == reference)
                                    .and_then(|(s, _)| sha(s))
                            }),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                            Err(_) => return None,
                        }
                    }
                    Err(_) => return None,
                };
                (Some(branch), at)
            }
            None => (None, Some(sha(head)?)),
        };
        Some(Repo {
            root,
            git_dir,
            branch,
            head,
            head_info: std::sync::Arc::default(),
        })
    }

    /// Reads HEAD's details from its object, or starts asking git for them (a process of a
    /// few milliseconds) while the caller does other work; [`Repo::commit_info`] of HEAD then
    /// waits for it.
    pub(crate) fn prefetch_head(&self) {
        let Some(head) = self.head.clone() else {
            return;
        };
        let repo = Repo {
            head_info: std::sync::Arc::default(),
            ..self.clone()
        };
        let sha = head.clone();
        let pending = match self.commit_from_object(&head) {
            Some(info) => Pending::Read(Some(info)),
            None => Pending::Asked(std::thread::spawn(move || repo.commit_info(&sha))),
        };
        if let Ok(mut slot) = self.head_info.lock() {
            *slot = Some((head, pending));
        }
    }

    pub(crate) fn branch(&self) -> Option<String> {
        self.branch.clone()
    }

    pub(crate) fn head(&self) -> Option<String> {
        self.head.clone()
    }

    /// The subject, author name, author email and commit time (ISO 8601) of `sha`.
    pub(crate) fn commit_info(&self, sha: &str) -> Option<CommitInfo> {
        let pending = self
            .head_info
            .lock()
            .ok()
            .and_then(|mut slot| slot.take_if(|(head, _)| head == sha));
        match pending {
            Some((_, Pending::Read(info))) => return info,
            Some((_, Pending::Asked(handle))) => return handle.join().ok().flatten(),
            None => {}
        }
        if let Some(info) = self.commit_from_object(sha) {
            return Some(info);
        }
        let out = git(
            &self.root,
            &["log", "-1", "--format=%s%x00%an%x00%ae%x00%cI", sha],
        )?;
        let mut f = out.split('\0').map(str::to_owned);
        Some(CommitInfo {
            message: f.next()?,
            author_name: f.next()?,
            author_email: f.next()?,
            timestamp: zulu(f.next()?),
        })
    }

    /// What `git log -1 --format=%s%x00%an%x00%ae%x00%cI` shows of `sha`, read from its
    /// loose object (as git writes a new commit: zlib) without a git process, in the plain
    /// case only: a packed object, replace refs, alternates, an `encoding` header or an
    /// identity line not in git's usual form are git's to read (`None`).
    fn commit_from_object(&self, sha: &str) -> Option<CommitInfo> {
        use std::io::Read;
        if !matches!(sha.len(), 40 | 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let replaced = self.git_dir.join("refs/replace").exists()
            || std::fs::read_to_string(self.git_dir.join("packed-refs"))
                .is_ok_and(|p| p.contains("refs/replace/"));
        if replaced || self.git_dir.join("commondir").exists() {
            return None;
        }
        let raw =
            std::fs::read(self.git_dir.join("objects").join(&sha[..2]).join(&sha[2..])).ok()?;
        let mut data = Vec::new();
        flate2::read::ZlibDecoder::new(&raw[..])
            .take(1 << 20)
            .read_to_end(&mut data)
            .ok()?;
        let nul = data.iter().position(|&b| b == 0)?;
        let (kind, len) = std::str::from_utf8(&data[..nul]).ok()?.split_once(' ')?;
        let body = std::str::from_utf8(&data[nul + 1..]).ok()?;
        if kind != "commit" || len.parse::<usize>().ok()? != body.len() {
            return None;
        }
        parse_commit(body)
    }

    pub(crate) fn resolve(&self, rev: &str) -> Result<String> {
        git(
            &self.root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .filter(|s| !s.is_empty())
        .with_context(|| format!("`{rev}` is not a commit of {}", self.root.display()))
    }

    /// The default branch: origin's HEAD, else `main` or `master` if they exist, else `main`.
    /// Read from the repository's files (no git process).
    pub(crate) fn default_branch(&self) -> String {
        // A linked work tree keeps its refs in the common directory.
        let common = std::fs::read_to_string(self.git_dir.join("commondir"))
            .map(|c| self.git_dir.join(c.trim()))
            .unwrap_or_else(|_| self.git_dir.clone());
        if let Ok(text) = std::fs::read_to_string(common.join("refs/remotes/origin/HEAD"))
            && let Some(b) = text.trim().strip_prefix("ref: refs/remotes/origin/")
        {
            return b.to_owned();
        }
        let packed = std::fs::read_to_string(common.join("packed-refs")).unwrap_or_default();
        for b in ["main", "master"] {
            let name = format!("refs/heads/{b}");
            if common.join(&name).is_file()
                || packed
                    .lines()
                    .any(|l| l.split_once(' ').is_some_and(|(_, r)| r == name))
            {
                return b.to_owned();
            }
        }
        "main".to_owned()
    }

    /// `owner/name`, from the origin URL (read from the git config file, not through a git
    /// process) or the directory name.
    pub(crate) fn name(&self) -> String {
        let config = std::fs::read_to_string(self.git_dir.join("config")).unwrap_or_default();
        let mut in_origin = false;
        for line in config.lines().map(str::trim) {
            if line.starts_with('[') {
                in_origin = line == "[remote \"origin\"]";
            } else if in_origin
                && let Some(url) = line
                    .strip_prefix("url")
                    .map(str::trim_start)
                    .and_then(|l| l.strip_prefix('='))
            {
                let trimmed = url.trim().trim_end_matches('/').trim_end_matches(".git");
                let parts: Vec<&str> = trimmed.rsplit(['/', ':']).take(2).collect();
                if parts.len() == 2 && !parts[0].is_empty() && !parts[1].is_empty() {
                    return format!("{}/{}", parts[1], parts[0]);
                }
            }
        }
        let dir = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        format!("local/{dir}")
    }

    /// Files changed by the event: the last commit and the uncommitted changes (push), or
    /// everything since the merge base with the base branch (pull request). `None` if git
    /// cannot tell (for example a repository with one commit and no parent).
    pub(crate) fn changed_paths(&self, base: Option<&str>) -> Option<Vec<String>> {
        let mut files: Vec<String> = Vec::new();
        let diff_base = match base {
            Some(b) => git(&self.root, &["merge-base", "HEAD", b]),
            None => git(&self.root, &["rev-parse", "--verify", "--quiet", "HEAD~1"]),
        };
        match diff_base {
            Some(b) if !b.is_empty() => files.extend(
                git(&self.root, &["diff", "--name-only", &b])?
                    .lines()
                    .map(str::to_owned),
            ),
            _ => {
                // No parent: everything tracked counts as changed.
                files.extend(git(&self.root, &["ls-files"])?.lines().map(str::to_owned));
            }
        }
        if let Some(untracked) = git(&self.root, &["ls-files", "--others", "--exclude-standard"]) {
            files.extend(untracked.lines().map(str::to_owned));
        }
        files.sort();
        files.dedup();
        files.retain(|f| !f.is_empty());
        Some(files)
    }
}

/// A commit object's text as `git log` shows it with `%s`, `%an`, `%ae` and `%cI`.
fn parse_commit(body: &str) -> Option<CommitInfo> {
    let (headers, message) = body.split_once("\n\n").unwrap_or((body, ""));
    let mut author = None;
    let mut committer = None;
    for line in headers.lines() {
        if let Some(a) = line.strip_prefix("author ") {
            author = Some(a);
        } else if let Some(c) = line.strip_prefix("committer ") {
            committer = Some(c);
        } else if line.starts_with("encoding ") {
            return None; // git re-encodes the message
        }
    }
    let (author_name, author_email, _) = identity(author?)?;
    let (_, _, timestamp) = identity(committer?)?;
    // git's subject: the first paragraph after any blank lines, each line's trailing white
    // space trimmed, the lines joined by a space.
    let subject: Vec<&str> = message
        .lines()
        .map(|l| l.trim_end_matches(git_space))
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    Some(CommitInfo {
        message: subject.join(" "),
        author_name: author_name.to_owned(),
        author_email: author_email.to_owned(),
        timestamp,
    })
}

/// `Name <email> 1700000000 +0100` as name, email and git's strict ISO 8601 time
/// (`2023-11-14T23:13:20+01:00`; `Z` for a zero offset, as git writes it).
fn identity(line: &str) -> Option<(&str, &str, String)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (name, rest) = line.split_once('<')?;
    let (email, when) = rest.split_once('>')?;
    let (secs, zone) = when.trim_start_matches(' ').split_once(' ')?;
    if !digits(secs) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let (sign, hhmm) = match zone.as_bytes() {
        [b'+', d @ ..] if d.len() == 4 => (1, &zone[1..]),
        [b'-', d @ ..] if d.len() == 4 => (-1, &zone[1..]),
        _ => return None,
    };
    if !digits(hhmm) {
        return None;
    }
    let (h, m): (i32, i32) = (hhmm[..2].parse().ok()?, hhmm[2..].parse().ok()?);
    if m >= 60 {
        return None;
    }
    let offset = chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))?;
    let time = chrono::DateTime::from_timestamp(secs, 0)?.with_timezone(&offset);
    Some((
        name.trim_end_matches(git_space),
        email,
        time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ))
}

/// git's `isspace`: space, tab, line feed, carriage return (not form feed).
fn git_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A time as git 2.45 and later write `%cI`: `Z` for a zero offset (older git writes
/// `+00:00`), so a commit read from its object and one shown by git read alike.
fn zulu(time: String) -> String {
    match time.strip_suffix("+00:00") {
        Some(t) => format!("{t}Z"),
        None => time,
    }
}

/// The workflow files of `.github/workflows/` under `root`, sorted.
pub(crate) fn workflow_files(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join(".github").join("workflows");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// A path relative to `base` for display.
pub(crate) fn display_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::{Repo, git};
    use std::path::Path;

    fn sh(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    }

    /// What the files say is what git says: branch, commit, top level, git directory.
    fn same_as_git(dir: &Path) {
        let files = Repo::from_files(dir).expect("a plain repository is read from its files");
        let toplevel = git(dir, &["rev-parse", "--show-toplevel"]).unwrap();
        let git_dir = git(dir, &["rev-parse", "--absolute-git-dir"]).unwrap();
        assert_eq!(files.root, Path::new(&toplevel));
        assert_eq!(files.git_dir, Path::new(&git_dir));
        let head =
            git(dir, &["rev-parse", "--verify", "--quiet", "HEAD"]).filter(|s| !s.is_empty());
        assert_eq!(files.head, head, "{}", dir.display());
        let branch =
            git(dir, &["symbolic-ref", "--quiet", "--short", "HEAD"]).filter(|s| !s.is_empty());
        assert_eq!(files.branch, branch, "{}", dir.display());
    }

    /// What a commit's loose object says is what `git log` shows of it; what the object
    /// cannot say as git would (another encoding, a packed object) is left to git.
    #[test]
    fn a_commit_s_details_are_read_from_its_object_as_git_shows_them() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("repo");
        std::fs::create_dir_all(&r).unwrap();
        sh(&r, &["init", "-q", "-b", "main"]);
        let commit = |message: &str, date: &str, extra: &[&str]| -> String {
            std::fs::write(r.join("f"), format!("{message}{date}")).unwrap();
            sh(&r, &["add", "-A"]);
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(&r)
                .args([
                    "-c",
                    "user.name=Ada  Lovelace",
                    "-c",
                    "user.email=ada@example.invalid",
                ])
                .args(extra)
                .args(["commit", "-q", "--cleanup=verbatim", "-m", message])
                .env("GIT_AUTHOR_DATE", date)
                .env("GIT_COMMITTER_DATE", date)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            git(&r, &["rev-parse", "HEAD"]).unwrap()
        };
        let shown = |sha: &str| {
            let out = git(&r, &["log", "-1", "--format=%s%x00%an%x00%ae%x00%cI", sha]).unwrap();
            let mut f: Vec<String> = out.split('\0').map(str::to_owned).collect();
            f[3] = super::zulu(f[3].clone());
            f
        };
        let fields = |c: &super::CommitInfo| {
            vec![
                c.message.clone(),
                c.author_name.clone(),
                c.author_email.clone(),
                c.timestamp.clone(),
            ]
        };
        let repo = Repo::from_files(&r).unwrap();
        for (message, date) in [
            ("one", "1700000000 +0000"),
            ("two lines \nof subject\n\nand a body\n", "1700000000 +0530"),
            ("\n\nafter blank lines", "1700000000 -0800"),
            ("zero west", "1700000000 -0000"),
        ] {
            let sha = commit(message, date, &[]);
            let read = repo
                .commit_from_object(&sha)
                .expect("a loose commit is read");
            assert_eq!(fields(&read), shown(&sha), "{message:?} {date}");
        }
        // Another encoding: git's to show (it re-encodes), and shown as git shows it.
        let sha = commit(
            "latin",
            "1700000000 +0100",
            &["-c", "i18n.commitEncoding=ISO-8859-1"],
        );
        assert!(repo.commit_from_object(&sha).is_none());
        assert_eq!(fields(&repo.commit_info(&sha).unwrap()), shown(&sha));
        // Packed: git's.
        sh(&r, &["gc", "-q"]);
        assert!(repo.commit_from_object(&sha).is_none());
        assert_eq!(fields(&repo.commit_info(&sha).unwrap()), shown(&sha));
    }

    #[test]
    fn a_plain_repository_is_read_from_its_files_as_git_reads_it() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("repo");
        std::fs::create_dir_all(r.join("sub/deeper")).unwrap();
        sh(&r, &["init", "-q", "-b", "trunk"]);
        same_as_git(&r);
        std::fs::write(r.join("sub/f"), "x").unwrap();
        sh(&r, &["add", "-A"]);
        sh(&r, &["commit", "-qm", "one"]);
        same_as_git(&r);
        same_as_git(&r.join("sub/deeper"));
        // Refs packed, a branch with a slash, a detached HEAD.
        sh(&r, &["checkout", "-q", "-b", "feature/x"]);
        sh(&r, &["pack-refs", "--all"]);
        same_as_git(&r);
        sh(&r, &["checkout", "-q", "--detach"]);
        same_as_git(&r);
        // A linked work tree is git's to read.
        sh(&r, &["worktree", "add", "-q", "../linked"]);
        assert!(Repo::from_files(&d.path().join("linked")).is_none());
        assert!(Repo::from_files(Path::new("/")).is_none());
        // Refs in a reftable: git's to read.
        let t = d.path().join("table");
        std::fs::create_dir_all(&t).unwrap();
        sh(&t, &["init", "-q", "--ref-format=reftable", "-b", "main"]);
        assert!(Repo::from_files(&t).is_none());
    }
}
