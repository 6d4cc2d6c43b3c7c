//! File search with the glob rules of `@actions/glob` (used by `upload-artifact`, `cache` and
//! `hashFiles`): one pattern a line, `!` excludes, a matched directory includes all beneath it.

use std::path::{Component, Path, PathBuf};

use plan::filter::{Pattern, PatternKind};

/// The result of a search: files (absolute paths, sorted) and the root they are relative to.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub files: Vec<PathBuf>,
    pub root: PathBuf,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '+'])
}

/// `s` as one safe path component, the same wherever pipewright names a directory after a
/// repository, workflow or commit: ASCII letters, digits, `.`, `-` and `_` kept, anything
/// else `_`; never empty, `.` or `..`.
pub fn safe_name(s: &str) -> String {
    let name: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.as_str() {
        "" | "." | ".." => name.replace('.', "_") + "_",
        _ => name,
    }
}

/// Makes a path absolute against `base` (`~/` against `home`, the job's `HOME`) and removes
/// `.` and `..` textually.
pub fn normalize(base: &Path, home: Option<&Path>, p: &str) -> PathBuf {
    let expanded = match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The directory a pattern's search starts from: its segments before the first glob.
fn search_root(pattern: &Path) -> PathBuf {
    let mut root = PathBuf::new();
    for c in pattern.components() {
        let s = c.as_os_str().to_string_lossy();
        if has_glob(&s) {
            break;
        }
        root.push(c);
    }
    root
}

/// A search pattern that does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid pattern `{pattern}`: {message}")]
pub struct SearchError {
    pub pattern: String,
    pub message: String,
}

/// Searches files for newline-separated `patterns` relative to `base` (`~/` is `home`).
pub fn search(base: &Path, home: Option<&Path>, patterns: &str) -> Result<Found, SearchError> {
    let mut includes: Vec<(PathBuf, Option<Pattern>)> = Vec::new();
    let mut excludes: Vec<Pattern> = Vec::new();
    for line in patterns.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (neg, body) = match line.strip_prefix('!') {
            Some(b) => (true, b.trim()),
            None => (false, line),
        };
        let abs = normalize(base, home, body);
        let abs_str = abs.display().to_string();
        let pat = if has_glob(&abs_str) || neg {
            Some(
                Pattern::new(&abs_str, PatternKind::Path).map_err(|e| SearchError {
                    pattern: body.to_owned(),
                    message: e.message,
                })?,
            )
        } else {
            None
        };
        if neg {
            if let Some(p) = pat {
                excludes.push(p);
            }
        } else {
            includes.push((abs, pat));
        }
    }
    let mut files = Vec::new();
    let mut roots = Vec::new();
    for (abs, pat) in &includes {
        let root = match pat {
            Some(_) => search_root(abs),
            None => abs.clone(),
        };
        roots.push(if pat.is_none() && abs.is_file() {
            abs.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            root.clone()
        });
        if !root.exists() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&root)
            .follow_links(true)
            .into_iter()
            .filter_map(Result::ok)
        {
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let hit = match pat {
                None => true,
                Some(p) => matches_or_parent(p, path, &root),
            };
            if hit {
                files.push(path.to_path_buf());
            }
        }
    }
    files.retain(|f| {
        !excludes
            .iter()
            .any(|p| matches_or_parent(p, f, Path::new("/")))
    });
    files.sort();
    files.dedup();
    Ok(Found {
        root: common_ancestor(&roots),
        files,
    })
}

/// A file matches if it or one of its directories (below `stop`) matches.
fn matches_or_parent(p: &Pattern, path: &Path, stop: &Path) -> bool {
    let mut cur = Some(path);
    while let Some(c) = cur {
        if p.matches(&c.display().to_string()) {
            return true;
        }
        if c == stop {
            break;
        }
        cur = c.parent();
    }
    false
}

fn common_ancestor(paths: &[PathBuf]) -> PathBuf {
    let Some(first) = paths.first() else {
        return PathBuf::new();
    };
    let mut common: Vec<Component<'_>> = first.components().collect();
    for p in &paths[1..] {
        let n = common
            .iter()
            .zip(p.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(n);
    }
    common.iter().collect()
}

/// Copies `files` (under `root`) into `dest`, keeping their paths relative to `root`.
pub fn copy_files(files: &[PathBuf], root: &Path, dest: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(f.as_path());
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        bytes += std::fs::copy(f, &target)?;
    }
    Ok(bytes)
}

/// Copies a directory tree into `dest` (merging).
pub fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in walkdir::WalkDir::new(src)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let target = dest.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if entry.file_type().is_symlink() {
            let link = std::fs::read_link(entry.path())?;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)?;
        } else if entry.file_type().is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            bytes += std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(bytes)
}

/// Removes the directory entry `path`: a directory with all it holds, anything else (a
/// link included, never followed) by its name.
pub fn remove_entry(path: &Path, is_dir: bool) -> std::io::Result<()> {
    if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Writes `contents` to `path` like [`std::fs::write`], but reuses a regular file a previous
/// job left there (a runner's unconfined slots and `pipewright run` keep the scripts and
/// file-command files, blanked): one with the same contents is left alone, another is
/// overwritten in place and only cut when it was longer. Truncating a file is what costs:
/// on ext4 it frees the blocks, which with the `discard` mount option waits for the device,
/// and makes `close` allocate the new ones at once. Anything at `path` that is not a
/// writable regular file (a symlink, a directory or a read-only file a step left) is
/// replaced.
pub fn write_reusing(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_reusing_as(path, contents, None)
}

/// [`write_reusing`], the file left with permissions `mode` (a new one made with them, one
/// reused given them): a step's script holds the values its expressions were replaced with,
/// secrets among them, and the job's directories are open to other users passing through
/// (its services may run as another user).
pub fn write_reusing_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    write_reusing_as(path, contents, Some(mode))
}

fn write_reusing_as(path: &Path, contents: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let create = || {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        if let Some(m) = mode {
            o.mode(m);
        }
        o.open(path)?.write_all(contents)
    };
    let replace = |remove: fn(&Path) -> std::io::Result<()>| {
        remove(path)?;
        create()
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => m,
        Ok(m) if m.file_type().is_dir() => return replace(|p| std::fs::remove_dir_all(p)),
        Ok(_) => return replace(|p| std::fs::remove_file(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create(),
        Err(e) => return Err(e),
    };
    let (old, new) = (meta.len(), contents.len() as u64);
    let mode_ok = mode.is_none_or(|m| meta.permissions().mode() & 0o7777 == m);
    if mode_ok && old == new && (new == 0 || std::fs::read(path).is_ok_and(|c| c == contents)) {
        return Ok(());
    }
    // Never following a link put in its place since.
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        // Made read-only, or a link, by a step: a new file then.
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied
                || e.raw_os_error() == Some(nix::libc::ELOOP) =>
        {
            return replace(|p| std::fs::remove_file(p));
        }
        Err(e) => return Err(e),
    };
    if let (Some(m), false) = (mode, mode_ok) {
        f.set_permissions(std::fs::Permissions::from_mode(m))?;
    }
    f.write_all(contents)?;
    if old > new {
        f.set_len(new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_safe_name_is_one_path_component() {
        for (name, want) in [
            ("acme/inner-architect", "acme_inner-architect"),
            ("o/r@x", "o_r_x"),
            ("CI / CD", "CI___CD"),
            ("v1.2", "v1.2"),
            ("", "_"),
            (".", "__"),
            ("..", "___"),
            ("../..", ".._.."),
            ("é", "_"),
        ] {
            assert_eq!(super::safe_name(name), want, "{name:?}");
        }
    }

    use super::*;

    #[test]
    fn write_reusing_leaves_the_file_holding_exactly_the_new_contents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        for contents in [
            "a longer first text",
            "short",
            "short",
            "",
            "grows again, longer",
        ] {
            write_reusing(&p, contents.as_bytes()).unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), contents);
        }
        // A symlink left at the path is replaced, its target untouched.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        write_reusing(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file());
        // So are a directory and a read-only file.
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir_all(p.join("sub")).unwrap();
        write_reusing(&p, b"over a directory").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "over a directory");
        let mut ro = std::fs::metadata(&p).unwrap().permissions();
        ro.set_readonly(true);
        std::fs::set_permissions(&p, ro).unwrap();
        write_reusing(&p, b"over a read-only file").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "over a read-only file"
        );
    }

    #[test]
    fn write_reusing_mode_leaves_the_file_with_its_mode_whatever_was_there() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("step-1.sh");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        // Made new, with the mode (not the umask's).
        write_reusing_mode(&p, b"echo s3cret", 0o600).unwrap();
        assert_eq!(mode(&p), 0o600);
        // Reused: one others could read (a runner made it ahead, an earlier version left
        // it), the same contents or not, is closed to them.
        for contents in ["echo s3cret", "echo other", ""] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            write_reusing_mode(&p, contents.as_bytes(), 0o600).unwrap();
            assert_eq!(mode(&p), 0o600, "{contents:?}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), contents);
        }
        // And opened again where a job's container needs it so.
        write_reusing_mode(&p, b"x", 0o644).unwrap();
        assert_eq!(mode(&p), 0o644);
        // A link put in its place is replaced by a file of that mode, its target untouched.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        write_reusing_mode(&p, b"new", 0o600).unwrap();
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file());
        assert_eq!((mode(&p), mode(&target)), (0o600, 0o644));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn normalize_removes_dots() {
        assert_eq!(
            normalize(Path::new("/w"), None, "a/./b/../c"),
            PathBuf::from("/w/a/c")
        );
        assert_eq!(
            normalize(Path::new("/w"), None, "/abs/x"),
            PathBuf::from("/abs/x")
        );
    }

    #[test]
    fn search_with_exclusions() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path();
        std::fs::create_dir_all(base.join("dist/sub")).unwrap();
        std::fs::write(base.join("dist/a.whl"), "a").unwrap();
        std::fs::write(base.join("dist/b.tmp"), "b").unwrap();
        std::fs::write(base.join("dist/sub/c.whl"), "c").unwrap();
        let f = search(base, None, "dist/\n!**/*.tmp\n").unwrap();
        let names: Vec<_> = f
            .files
            .iter()
            .map(|p| p.strip_prefix(base).unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["dist/a.whl", "dist/sub/c.whl"]);
        assert_eq!(f.root, base.join("dist"));
        let f = search(base, None, "dist/*.whl").unwrap();
        assert_eq!(f.files.len(), 1);
        let f = search(base, None, "dist/**/*.whl").unwrap();
        assert_eq!(f.files.len(), 2);
    }
}
