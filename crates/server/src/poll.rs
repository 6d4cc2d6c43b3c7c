//! Polling of `url` repositories. Each is fetched into a bare mirror (the repository's
//! `path`, so the runner, dispatch and schedules read its commits as from a local
//! repository) every `poll_interval`, and every branch or tag that moved queues a push
//! exactly as a local repository's post-receive hook does: the same `before`, `after` and
//! ref, all zeros as `before` for a new ref, nothing for a deleted one.
//!
//! What has been turned into pushes is kept in the mirror (`pipewright-seen.json`),
//! separately from the mirror's refs, and a ref is marked seen only once its runs are
//! queued: a server killed between a fetch and the queueing catches up when it restarts,
//! and pushes made while it was down are queued by its first poll. The first successful
//! fetch into a new mirror only records what is there, so adding an existing repository
//! does not start a run for each of its branches.
//!
//! A failed fetch (network, authentication, a missing repository) is logged and tried
//! again at the next interval; it never stops the server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RepoConfig, redact_url};
use crate::trigger::{self, Event, TriggerError};

/// A fetch still running after this is stopped (and tried again at the next interval): a
/// hung connection must not stop polling for good. Generous, because the first fetch of a
/// large repository is a whole clone.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The file in a mirror recording which commit of each ref has been turned into pushes.
const SEEN_FILE: &str = "pipewright-seen.json";

#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("git {args} failed: {stderr}")]
    Git { args: String, stderr: String },
    #[error("git fetch did not finish within {} minutes; stopped", FETCH_TIMEOUT.as_secs() / 60)]
    Timeout,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the polling task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Polls every `url` repository of `config` until `shutdown`.
pub(crate) async fn run(
    store: Arc<store::Store>,
    config: Arc<Config>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for repo in config.repos.iter().filter(|r| r.poll.is_some()) {
        tasks.spawn(poll_repo(
            store.clone(),
            repo.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn poll_repo(
    store: Arc<store::Store>,
    repo: RepoConfig,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let Some(poll) = repo.poll.clone() else {
        return;
    };
    let url = redact_url(&poll.url);
    // The first tick is at once: a starting server fetches before it waits.
    let mut ticks = tokio::time::interval(poll.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let repo = Arc::new(repo);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let result = tokio::select! {
            r = poll_once(&store, &repo, &poll.url) => r,
            // Dropping the poll kills a fetch in progress (`kill_on_drop`).
            () = shutdown.cancelled() => return,
        };
        match result {
            Ok(0) => {}
            Ok(queued) => {
                tracing::info!(repo = %repo.name, %url, queued, "polled: runs queued");
                wake.notify_waiters();
            }
            Err(e) => tracing::warn!(
                repo = %repo.name,
                %url,
                "polling failed, trying again in {:?}: {e}",
                poll.interval
            ),
        }
    }
}

/// One poll: fetch, then queue the pushes not seen yet. Returns how many runs were queued.
async fn poll_once(
    store: &Arc<store::Store>,
    repo: &Arc<RepoConfig>,
    url: &str,
) -> Result<usize, PollError> {
    let mirror = &repo.path;
    if !mirror.join("HEAD").is_file() {
        if let Some(parent) = mirror.parent() {
            std::fs::create_dir_all(parent).map_err(|source| PollError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        git(mirror, &["init", "--bare", "--quiet"]).await?;
    }
    let fetch_args = [
        "fetch",
        "--quiet",
        "--prune",
        "--no-write-fetch-head",
        url,
        "+refs/heads/*:refs/heads/*",
        "+refs/tags/*:refs/tags/*",
    ];
    tokio::time::timeout(FETCH_TIMEOUT, git(mirror, &fetch_args))
        .await
        .map_err(|_| PollError::Timeout)??;
    let now = parse_refs(
        &git(
            mirror,
            &[
                "for-each-ref",
                "--format=%(objectname) %(refname)",
                "refs/heads",
                "refs/tags",
            ],
        )
        .await?,
    );
    // Seen refs are tied to the URL without its credentials: a rotated token is the same
    // repository, and no password is written to disk.
    let (store, repo, url) = (store.clone(), repo.clone(), redact_url(url));
    tokio::task::spawn_blocking(move || queue_pushes(&store, &repo, &url, now)).await?
}

/// Queues a push for each ref of `now` that moved since it was last seen, marking each seen
/// once its runs are queued.
fn queue_pushes(
    store: &store::Store,
    repo: &RepoConfig,
    url: &str,
    now: BTreeMap<String, String>,
) -> Result<usize, PollError> {
    let seen_path = repo.path.join(SEEN_FILE);
    let Some(mut seen) = read_seen(&seen_path, url) else {
        // A new mirror (or one now fetched from another URL): what is there is the baseline.
        tracing::info!(
            repo = %repo.name,
            refs = now.len(),
            "first fetch of this repository: its branches and tags are the baseline, no runs"
        );
        let seen = Seen {
            url: url.to_owned(),
            refs: now,
        };
        write_seen(&seen_path, &seen)?;
        return Ok(0);
    };
    let mut queued = 0;
    let moved = pushes(&seen.refs, &now);
    let known = seen.refs.len();
    seen.refs.retain(|r, _| now.contains_key(r));
    if seen.refs.len() != known {
        write_seen(&seen_path, &seen)?;
    }
    for (git_ref, before, after) in moved {
        let event = Event::push(&repo.name, &git_ref, &before, &after);
        match trigger::enqueue(store, repo, &event) {
            Ok(ids) => queued += ids.len(),
            // The database may answer next time: leave the ref unseen so it is tried again.
            Err(TriggerError::Store(e)) => {
                tracing::warn!(repo = %repo.name, %git_ref, "cannot queue the push, trying again at the next poll: {e}");
                continue;
            }
            // The commit cannot be read (say, a tag of a blob): trying again cannot help.
            Err(e) => {
                tracing::warn!(repo = %repo.name, %git_ref, %after, "push not queued: {e}");
            }
        }
        // One ref at a time: a server killed here queues only the rest again.
        seen.refs.insert(git_ref, after);
        write_seen(&seen_path, &seen)?;
    }
    Ok(queued)
}

/// The pushes that take `seen` to `now`, as (ref, before, after): refs that moved, and new
/// refs with `before` all zeros. A deleted ref is no push.
fn pushes(
    seen: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    const ZERO: &str = "0000000000000000000000000000000000000000";
    now.iter()
        .filter(|(r, sha)| seen.get(*r) != Some(sha))
        .map(|(r, sha)| {
            let before = seen.get(r).map_or(ZERO, String::as_str);
            (r.clone(), before.to_owned(), sha.clone())
        })
        .collect()
}

/// `git for-each-ref --format='%(objectname) %(refname)'` as a map from ref to object.
fn parse_refs(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(sha, r)| (r.to_owned(), sha.to_owned()))
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    /// The URL these refs were fetched from: another URL starts a new baseline.
    url: String,
    refs: BTreeMap<String, String>,
}

/// What was seen from `url`; `None` when nothing was (no file, another URL, an unreadable
/// file: each starts a new baseline).
fn read_seen(path: &Path, url: &str) -> Option<Seen> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str::<Seen>(&text) {
        Ok(seen) if seen.url == url => Some(seen),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "unreadable, starting a new baseline: {e}");
            None
        }
    }
}

/// Written to a temporary file and renamed, so a killed server leaves the old file or the
/// new one, never half of one.
fn write_seen(path: &Path, seen: &Seen) -> Result<(), PollError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(seen).unwrap_or_default();
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| PollError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Runs git on the mirror from the server's working directory, so a relative `url` means
/// what it says in the configuration. Never prompts: a fetch that needs a password fails.
async fn git(mirror: &Path, args: &[&str]) -> Result<String, PollError> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(mirror)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(PollError::Spawn)?;
    if !out.status.success() {
        return Err(PollError::Git {
            args: args.first().copied().unwrap_or_default().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(r, s)| ((*r).to_owned(), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn moved_and_new_refs_are_pushes_deleted_ones_are_not() {
        let zero = "0".repeat(40);
        let seen = refs(&[
            ("refs/heads/main", "a1"),
            ("refs/heads/gone", "b1"),
            ("refs/tags/v1", "c1"),
        ]);
        let now = refs(&[
            ("refs/heads/main", "a2"),
            ("refs/heads/new", "d1"),
            ("refs/tags/v1", "c1"),
        ]);
        assert_eq!(
            pushes(&seen, &now),
            [
                (
                    "refs/heads/main".to_owned(),
                    "a1".to_owned(),
                    "a2".to_owned()
                ),
                ("refs/heads/new".to_owned(), zero, "d1".to_owned()),
            ]
        );
        assert!(pushes(&now, &now).is_empty());
    }

    #[test]
    fn for_each_ref_output() {
        assert_eq!(
            parse_refs("a1 refs/heads/main\nc1 refs/tags/v1\n"),
            refs(&[("refs/heads/main", "a1"), ("refs/tags/v1", "c1")])
        );
        assert!(parse_refs("").is_empty());
    }

    #[test]
    fn seen_refs_belong_to_their_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEEN_FILE);
        assert!(read_seen(&path, "u").is_none());
        let seen = Seen {
            url: "u".into(),
            refs: refs(&[("refs/heads/main", "a1")]),
        };
        write_seen(&path, &seen).unwrap();
        assert_eq!(read_seen(&path, "u").unwrap().refs, seen.refs);
        assert!(read_seen(&path, "another").is_none());
        std::fs::write(&path, "{not json").unwrap();
        assert!(read_seen(&path, "u").is_none());
    }
}
