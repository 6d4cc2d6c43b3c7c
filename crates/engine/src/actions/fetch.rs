//! Actions from anywhere: `owner/repo[/path]@ref` fetched with git from the configured
//! hosts (`https://github.com` by default, several tried in order, as Forgejo's
//! `DEFAULT_ACTIONS_URL`), resolved to a commit, kept by commit in a cache shared by jobs
//! (written whole under a temporary name, then renamed: safe when two jobs fetch at once),
//! with an offline mode that reads the cache only. A ref that is a full commit SHA is
//! verified: what is run is that commit.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ActionError;

/// Where actions come from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ActionSource {
    /// Base URLs, tried in order: `<url>/<owner>/<repo>` is a git repository.
    pub urls: Vec<String>,
    /// `<cache>/<owner>/<repo>/<commit>/`, and `refs/<ref>` naming the commit a ref had.
    pub cache: PathBuf,
    /// Read the cache only; fetch nothing.
    pub offline: bool,
}

impl ActionSource {
    /// The source this process's environment names: `PIPEWRIGHT_ACTIONS_URL` (GitHub by
    /// default), offline when `PIPEWRIGHT_OFFLINE` is set, cached in `cache`.
    pub fn from_env(cache: PathBuf) -> ActionSource {
        ActionSource {
            urls: ActionSource::urls_of(
                &std::env::var("PIPEWRIGHT_ACTIONS_URL").unwrap_or_default(),
            ),
            cache,
            offline: std::env::var_os("PIPEWRIGHT_OFFLINE").is_some(),
        }
    }

    /// The base URLs of a list (separated by commas or spaces); empty: GitHub's.
    pub fn urls_of(list: &str) -> Vec<String> {
        let urls: Vec<String> = list
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        if urls.is_empty() {
            vec!["https://github.com".to_owned()]
        } else {
            urls
        }
    }
}

impl ActionSource {
    /// The same source reading its cache only: what a job gets once its runner (the
    /// trusted side) has fetched its actions.
    pub fn cached(&self) -> ActionSource {
        ActionSource {
            offline: true,
            ..self.clone()
        }
    }
}

/// Fetches into `source`'s cache the remote actions (`owner/repo[/path]@ref`) that `steps`
/// use, and those their composite actions use in turn, skipping the names `known` says the
/// engine has (built-in or registered). Returns a line for each action: its commit, or why
/// it could not be fetched (the job then fails at that step, saying so).
pub fn prefetch(
    source: &ActionSource,
    steps: &[workflow::Step],
    known: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut queue: Vec<(String, usize)> = steps
        .iter()
        .filter_map(|s| s.uses.as_ref().map(|u| (u.value.clone(), 0)))
        .collect();
    queue.reverse();
    while let Some((uses, depth)) = queue.pop() {
        if uses.starts_with("./") || uses.starts_with("docker://") || uses.starts_with("$/") {
            continue;
        }
        let Some((path, git_ref)) = uses.split_once('@') else {
            continue;
        };
        let mut parts = path.splitn(3, '/');
        let (owner, repo, sub) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        if known(&path.to_ascii_lowercase()) || !seen.insert(uses.clone()) {
            continue;
        }
        match fetch(source, owner, repo, git_ref) {
            Ok((root, fetched)) => {
                let commit = root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let how = if fetched { "fetched" } else { "from the cache" };
                lines.push(format!("{uses}: commit {commit} ({how})"));
                // A composite action's own steps, a few levels deep at most (GitHub: 10).
                let dir = root.join(sub);
                let text = std::fs::read_to_string(dir.join("action.yml"))
                    .or_else(|_| std::fs::read_to_string(dir.join("action.yaml")));
                if depth < 10
                    && let Ok(text) = text
                    && let Ok(action) = workflow::action::parse_action(&text)
                    && let workflow::action::Runs::Composite(inner) = action.runs
                {
                    for s in inner.iter().rev() {
                        if let Some(u) = &s.uses {
                            queue.push((u.value.clone(), depth + 1));
                        }
                    }
                }
            }
            Err(e) => lines.push(format!("{uses}: {e}")),
        }
    }
    lines
}

/// Where the action a `uses:` names would come from, for `--dry-run` and `validate`:
/// built in, in the repository, an image, a vendored copy, the cache (which commit), fetched
/// when the job runs (from where), or nowhere (offline and not cached). `known` says which
/// names the engine has.
pub fn availability(
    uses: &str,
    known: &dyn Fn(&str) -> bool,
    action_dirs: &[PathBuf],
    source: Option<&ActionSource>,
) -> String {
    if uses.starts_with("./") || uses.starts_with("$/") {
        return "in the repository".into();
    }
    if let Some(image) = uses.strip_prefix("docker://") {
        return format!("the Docker image {image}");
    }
    let Some((path, git_ref)) = uses.split_once('@') else {
        return "not OWNER/REPO[/PATH]@REF: cannot be had".into();
    };
    if known(&path.to_ascii_lowercase()) {
        return "built in".into();
    }
    let mut parts = path.splitn(3, '/');
    let (owner, repo, sub) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if let Some(dir) = action_dirs
        .iter()
        .map(|d| d.join(owner).join(format!("{repo}@{git_ref}")).join(sub))
        .find(|d| d.join("action.yml").is_file() || d.join("action.yaml").is_file())
    {
        return format!("vendored in {}", dir.display());
    }
    let Some(source) = source else {
        return "not vendored, and this runner fetches no action: cannot be had".into();
    };
    let base = source.cache.join(component(owner)).join(component(repo));
    let cached = if is_sha(git_ref) {
        base.join(component(git_ref))
            .is_dir()
            .then(|| git_ref.to_owned())
    } else {
        std::fs::read_to_string(base.join("refs").join(component(git_ref)))
            .ok()
            .map(|c| c.trim().to_owned())
            .filter(|c| base.join(component(c)).is_dir())
    };
    match (cached, source.offline) {
        (Some(commit), true) => format!("cached (commit {commit})"),
        (Some(commit), false) => {
            format!("cached (commit {commit}); the ref is fetched again when the job runs")
        }
        (None, false) => format!(
            "fetched when the job runs, from {}",
            source
                .urls
                .iter()
                .map(|u| format!("{u}/{owner}/{repo}"))
                .collect::<Vec<_>>()
                .join(", then ")
        ),
        (None, true) => format!(
            "MISSING: not vendored ({}), not in the cache ({}), and offline",
            action_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            base.display()
        ),
    }
}

fn is_sha(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A name safe as one path component (owner, repo, ref).
fn component(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

/// The directory of `owner/repo` at `git_ref`, fetched if need be. Returns it and whether
/// it was fetched now (false: from the cache).
pub(crate) fn fetch(
    source: &ActionSource,
    owner: &str,
    repo: &str,
    git_ref: &str,
) -> Result<(PathBuf, bool), ActionError> {
    let uses = format!("{owner}/{repo}@{git_ref}");
    // The names reach git's command line (run by a runner for jobs it does not trust): no
    // option, no refspec, nothing but the characters names and refs are made of.
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(['-', '.'])
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let ref_ok = !git_ref.is_empty()
        && !git_ref.starts_with('-')
        && !git_ref.contains("..")
        && git_ref
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./+".contains(c));
    if !name_ok(owner) || !name_ok(repo) || !ref_ok {
        return Err(ActionError::Failed(format!(
            "`{uses}` is not OWNER/REPO[/PATH]@REF"
        )));
    }
    let base = source.cache.join(component(owner)).join(component(repo));
    let ref_file = base.join("refs").join(component(git_ref));
    let at = |commit: &str| base.join(component(commit));
    if is_sha(git_ref) && at(git_ref).is_dir() {
        return Ok((at(git_ref), false));
    }
    if source.offline {
        if let Ok(commit) = std::fs::read_to_string(&ref_file)
            && at(commit.trim()).is_dir()
        {
            return Ok((at(commit.trim()), false));
        }
        return Err(ActionError::Failed(format!(
            "`{uses}` is not in the action cache ({}) and pipewright is offline",
            base.display()
        )));
    }
    std::fs::create_dir_all(&base).map_err(|e| ActionError::io(base.display().to_string(), e))?;
    let mut tried = Vec::new();
    for url in &source.urls {
        let remote = format!("{url}/{owner}/{repo}");
        match fetch_from(&remote, git_ref, &base) {
            Ok(commit) => {
                if is_sha(git_ref) && !commit.eq_ignore_ascii_case(git_ref) {
                    return Err(ActionError::Failed(format!(
                        "`{uses}`: {remote} gave commit {commit}, not the one pinned"
                    )));
                }
                write_atomically(&ref_file, commit.as_bytes())?;
                return Ok((at(&commit), true));
            }
            Err(why) => tried.push(format!("{remote} ({why})")),
        }
    }
    // The network may be down: a ref fetched before still runs what it was.
    if let Ok(commit) = std::fs::read_to_string(&ref_file)
        && at(commit.trim()).is_dir()
    {
        tracing::warn!(
            "`{uses}`: fetching failed, using the cached commit {}",
            commit.trim()
        );
        return Ok((at(commit.trim()), false));
    }
    Err(ActionError::Failed(format!(
        "`{uses}` could not be fetched; tried {}",
        tried.join(", ")
    )))
}

/// Fetches `git_ref` of `remote` into `<base>/<commit>`; returns the commit. The error is
/// git's last line.
fn fetch_from(remote: &str, git_ref: &str, base: &Path) -> Result<String, String> {
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(base)
        .map_err(|e| e.to_string())?;
    let git = |args: &[&str]| -> Result<String, String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(tmp.path())
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("git failed")
                .trim()
                .to_owned())
        }
    };
    git(&["init", "-q"])?;
    let commit = match git(&["fetch", "-q", "--depth", "1", remote, git_ref]) {
        Ok(_) => git(&["rev-parse", "FETCH_HEAD^{commit}"])?,
        // A host that does not serve a commit by its id: all its branches and tags, then
        // the commit among them.
        Err(_) if is_sha(git_ref) => {
            git(&[
                "fetch",
                "-q",
                remote,
                "+refs/heads/*:refs/remotes/r/*",
                "+refs/tags/*:refs/tags/*",
            ])?;
            git(&["rev-parse", "--verify", &format!("{git_ref}^{{commit}}")])?
        }
        Err(e) => return Err(e),
    };
    let dest = base.join(component(&commit));
    if dest.is_dir() {
        return Ok(commit);
    }
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).map_err(|e| e.to_string())?;
    let tree_arg = format!("--work-tree={}", tree.display());
    git(&[&tree_arg, "checkout", "-q", &commit, "--", "."])?;
    // Another job may have put it there meanwhile: theirs is the same commit.
    if std::fs::rename(&tree, &dest).is_err() && !dest.is_dir() {
        return Err(format!("cannot move the checkout to {}", dest.display()));
    }
    Ok(commit)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ActionError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let err = |e: std::io::Error| ActionError::io(path.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    // Readable by the jobs that read the cache as another user (a temporary file is 0600).
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_reach_git_as_options_are_refused_before_any_fetch() {
        let source = ActionSource {
            urls: vec!["file:///nowhere".into()],
            cache: std::env::temp_dir().join("pipewright-fetch-names-test"),
            offline: false,
        };
        for (owner, repo, r) in [
            ("acme", "x", "--upload-pack=touch /tmp/pwned"),
            ("acme", "x", "-v"),
            ("-c", "x", "v1"),
            ("acme", "--x", "v1"),
            ("acme", "x", "main:refs/heads/other"),
            ("acme", "x", "a..b"),
            ("acme", "x", ""),
        ] {
            let e = fetch(&source, owner, repo, r).unwrap_err().to_string();
            assert!(
                e.contains("is not OWNER/REPO[/PATH]@REF"),
                "{owner}/{repo}@{r}: {e}"
            );
        }
    }

    #[test]
    fn urls_and_names() {
        assert_eq!(ActionSource::urls_of(""), ["https://github.com"]);
        assert_eq!(
            ActionSource::urls_of("https://a.example/, file:///srv/x"),
            ["https://a.example", "file:///srv/x"]
        );
        assert_eq!(component("../etc"), "_etc");
        assert_eq!(component("v1.2"), "v1.2");
        assert_eq!(component("release/1"), "release_1");
        assert!(is_sha("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_sha("v1"));
    }
}
