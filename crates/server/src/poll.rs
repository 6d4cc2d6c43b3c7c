//! Polling of `url` repositories. Each is fetched into a bare mirror (the repository's
//! `path`, so the runner, dispatch and schedules read its commits as from a local
//! repository) every `poll_interval`, and every branch or tag that moved queues a push
//! exactly as a local repository's post-receive hook does: the same `before`, `after` and
//! ref, all zeros as `before` for a new ref, nothing for a deleted one.
//!
//! What has been turned into pushes is kept in the store, separately from the mirror's refs:
//! a ref's new commit is recorded in the same transaction as the runs its push fires, so a
//! server killed between a fetch and the queueing catches up when it restarts (and never
//! queues a push twice), and pushes made while it was down are queued by its first poll. The first successful
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

use tokio::process::Command;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::blocking::{Blocked, blocking};
use crate::config::{Config, RepoConfig, redact_url};
use crate::trigger::{self, Event};

/// A fetch still running after this is stopped (and tried again at the next interval): a
/// hung connection must not stop polling for good. Generous, because the first fetch of a
/// large repository is a whole clone.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15 * 60);

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
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the polling task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Asks for a poll before the interval is up: a push webhook of a polled repository fetches
/// it at once (the poll then queues the push, once, however many times it is announced).
#[derive(Default)]
pub(crate) struct PollNow {
    repos: std::collections::HashMap<String, Arc<Notify>>,
}

impl PollNow {
    /// Polls `repo` now, if it is a polled repository; whether it is.
    pub(crate) fn poll(&self, repo: &str) -> bool {
        self.repos.get(repo).map(|n| n.notify_one()).is_some()
    }
}

/// The [`PollNow`] of `config`'s polled repositories.
pub(crate) fn poll_now(config: &Config) -> Arc<PollNow> {
    Arc::new(PollNow {
        repos: config
            .repos
            .iter()
            .filter(|r| r.poll.is_some())
            .map(|r| (r.name.clone(), Arc::new(Notify::new())))
            .collect(),
    })
}

/// Polls every `url` repository of `config` until `shutdown`.
pub(crate) async fn run(
    store: Arc<store::Store>,
    config: Arc<Config>,
    wake: Arc<Notify>,
    now: Arc<PollNow>,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for repo in config.repos.iter().filter(|r| r.poll.is_some()) {
        let asked = now.repos.get(&repo.name).cloned().unwrap_or_default();
        tasks.spawn(poll_repo(
            store.clone(),
            repo.clone(),
            wake.clone(),
            asked,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn poll_repo(
    store: Arc<store::Store>,
    repo: RepoConfig,
    wake: Arc<Notify>,
    asked: Arc<Notify>,
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
            () = asked.notified() => {}
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
        "--end-of-options",
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
    blocking(move || queue_pushes(&store, &repo, &url, now))
        .await
        .map_err(Blocked::flatten)
}

/// Queues a push for each ref of `now` that moved since it was last seen, each recorded as
/// seen in the transaction that queues its runs.
fn queue_pushes(
    store: &store::Store,
    repo: &RepoConfig,
    url: &str,
    now: BTreeMap<String, String>,
) -> Result<usize, PollError> {
    let Some(seen) = store.polled_refs(&repo.name, url)? else {
        // A new mirror (or one now fetched from another URL): what is there is the baseline.
        tracing::info!(
            repo = %repo.name,
            refs = now.len(),
            "first fetch of this repository: its branches and tags are the baseline, no runs"
        );
        store.set_polled_baseline(&repo.name, url, &now)?;
        return Ok(0);
    };
    let mut queued = 0;
    for gone in seen.keys().filter(|r| !now.contains_key(*r)) {
        store.forget_polled_ref(&repo.name, gone)?;
    }
    for (git_ref, before, after) in pushes(&seen, &now) {
        let event = Event::push(&repo.name, &git_ref, &before, &after);
        let runs = match trigger::plan(repo, &event) {
            Ok(runs) => runs,
            // The commit cannot be read (say, a tag of a blob): trying again cannot help.
            Err(e) => {
                tracing::warn!(repo = %repo.name, %git_ref, %after, "push not queued: {e}");
                Vec::new()
            }
        };
        match store.queue_polled_push(&repo.name, url, &git_ref, &after, &runs) {
            Ok(ids) => queued += ids.len(),
            // The database may answer next time: the ref stays unseen, tried again then.
            Err(e) => {
                tracing::warn!(repo = %repo.name, %git_ref, "cannot queue the push, trying again at the next poll: {e}");
            }
        }
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
    fn seen_refs_belong_to_their_url_and_a_push_is_queued_with_its_ref() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(&dir.path().join("db")).unwrap();
        assert!(store.polled_refs("r", "u").unwrap().is_none());
        // An empty baseline is a baseline.
        store.set_polled_baseline("r", "u", &refs(&[])).unwrap();
        assert_eq!(store.polled_refs("r", "u").unwrap(), Some(refs(&[])));
        store
            .set_polled_baseline("r", "u", &refs(&[("refs/heads/main", "a1")]))
            .unwrap();
        assert_eq!(
            store.polled_refs("r", "u").unwrap(),
            Some(refs(&[("refs/heads/main", "a1")]))
        );
        assert!(store.polled_refs("r", "another").unwrap().is_none());
        store
            .queue_polled_push("r", "u", "refs/heads/dev", "b1", &[])
            .unwrap();
        store.forget_polled_ref("r", "refs/heads/main").unwrap();
        assert_eq!(
            store.polled_refs("r", "u").unwrap(),
            Some(refs(&[("refs/heads/dev", "b1")]))
        );
    }
}
