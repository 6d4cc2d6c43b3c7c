//! `actions/cache` (and `cache/restore`, `cache/save`): entries shared by the runs of a
//! repository, saved after a successful job when the key missed. Where entries live is a
//! [`CacheStore`]: a directory on the local disk ([`LocalCache`], what `pipewright run` uses),
//! or the server's store for a remote runner.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use sha2::{Digest, Sha256};

use super::{ActionError, Call, Post, register_post};
use crate::job::{JobState, PostCondition};
use crate::sink::{Level, Line};

/// An entry's files: one directory per `path` input of the step that saved it (`0`, `1`, ...).
pub(crate) struct Save {
    key: String,
    paths: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The store behind a [`CacheStore`] failed (a server, a network).
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl CacheError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CacheError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The entry a lookup found.
#[derive(Debug, Clone)]
pub struct CacheHit {
    /// The entry's key.
    pub key: String,
    /// It is the lookup's key itself, not one found by a restore key.
    pub exact: bool,
    /// Where its files are (the entry's directory, or where they were downloaded).
    pub dir: PathBuf,
}

/// Whether a save stored the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    /// An entry has the key already: entries are never overwritten.
    Exists,
}

pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send + 'a>>;

/// Where `actions/cache` entries live, for one repository.
///
/// Contract: `restore` looks up `key` exactly, then each restore key in order as a prefix,
/// taking the newest entry that starts with it (GitHub's rules); it may place the entry's
/// files in `scratch` (an empty directory the caller removes afterwards) and returns where
/// they are. `save` stores the directory `dir` under `key` unless an entry has that key; it
/// may move `dir` away. Both are safe to call from concurrent jobs; a failure is reported to
/// the job as a warning, never fails it.
pub trait CacheStore: Send + Sync + std::fmt::Debug {
    fn restore<'a>(
        &'a self,
        key: &'a str,
        restore_keys: &'a [String],
        scratch: &'a Path,
    ) -> CacheFuture<'a, Option<CacheHit>>;

    fn save<'a>(&'a self, key: &'a str, dir: &'a Path) -> CacheFuture<'a, Saved>;
}

/// Entries as directories under `root` (named by a hash of the key, with a `key` file).
#[derive(Debug, Clone)]
pub struct LocalCache {
    root: PathBuf,
}

impl LocalCache {
    pub fn new(root: PathBuf) -> LocalCache {
        LocalCache { root }
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        let h = Sha256::digest(key.as_bytes());
        self.root.join(
            h.iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        )
    }

    /// Finds the entry for `key` exactly, else the newest whose key starts with a restore key.
    fn lookup(&self, key: &str, restore_keys: &[String]) -> Option<CacheHit> {
        let exact = self.entry_dir(key);
        if exact.join("key").is_file() {
            return Some(CacheHit {
                key: key.to_owned(),
                exact: true,
                dir: exact,
            });
        }
        let mut entries: Vec<(std::time::SystemTime, PathBuf, String)> =
            std::fs::read_dir(&self.root)
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let k = std::fs::read_to_string(e.path().join("key")).ok()?;
                    let t = e.metadata().ok()?.modified().ok()?;
                    Some((t, e.path(), k))
                })
                .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        restore_keys.iter().find_map(|prefix| {
            entries
                .iter()
                .find(|(_, _, k)| k.starts_with(prefix.as_str()))
                .map(|(_, p, k)| CacheHit {
                    key: k.clone(),
                    exact: false,
                    dir: p.clone(),
                })
        })
    }

    fn save_dir(&self, key: &str, dir: &Path) -> Result<Saved, CacheError> {
        let entry = self.entry_dir(key);
        if entry.exists() {
            return Ok(Saved::Exists);
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|e| CacheError::io(self.root.display().to_string(), e))?;
        std::fs::write(dir.join("key"), key).map_err(|e| CacheError::io("cache key", e))?;
        // Rename makes the entry appear whole or not at all, even with concurrent jobs. A
        // directory on another file system is copied beside the entries first.
        if std::fs::rename(dir, &entry).is_ok() {
            return Ok(Saved::Created);
        }
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            entry
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("entry")
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        let copied = crate::files::copy_tree(dir, &tmp).and_then(|_| std::fs::rename(&tmp, &entry));
        let _ = std::fs::remove_dir_all(&tmp);
        match copied {
            Ok(()) => Ok(Saved::Created),
            Err(_) if entry.exists() => Ok(Saved::Exists),
            Err(e) => Err(CacheError::io(entry.display().to_string(), e)),
        }
    }
}

impl CacheStore for LocalCache {
    fn restore<'a>(
        &'a self,
        key: &'a str,
        restore_keys: &'a [String],
        _scratch: &'a Path,
    ) -> CacheFuture<'a, Option<CacheHit>> {
        Box::pin(async move { Ok(self.lookup(key, restore_keys)) })
    }

    fn save<'a>(&'a self, key: &'a str, dir: &'a Path) -> CacheFuture<'a, Saved> {
        Box::pin(async move { self.save_dir(key, dir) })
    }
}

fn paths(call: &Call<'_>) -> Result<Vec<String>, ActionError> {
    let p: Vec<String> = call
        .required("path")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(p)
}

/// The run's store: the one it was given, else entries under its cache directory.
fn store(state: &JobState<'_>) -> std::sync::Arc<dyn CacheStore> {
    match &state.run.host.cache_store {
        Some(s) => s.clone(),
        None => std::sync::Arc::new(LocalCache::new(
            state.run.host.cache_dir.join("actions-cache"),
        )),
    }
}

/// A scratch directory of the job for the store's use.
fn scratch(state: &JobState<'_>, what: &str) -> PathBuf {
    state
        .temp
        .join(format!("cache-{what}-{}", state.step_counter))
}

fn warn(state: &JobState<'_>, message: String) {
    state.log(Line::Annotation {
        level: Level::Warning,
        message,
        file: None,
        line: None,
    });
}

pub(super) async fn restore(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    with_post: bool,
) -> Result<(), ActionError> {
    let key = call.required("key")?;
    let paths = paths(call)?;
    let restore_keys: Vec<String> = call
        .input("restore-keys")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let store = store(state);
    let scratch = scratch(state, "restore");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ActionError::io(scratch.display().to_string(), e))?;
    let hit = match store.restore(&key, &restore_keys, &scratch).await {
        Ok(hit) => hit,
        Err(e) => {
            warn(state, format!("Failed to restore: {e}"));
            None
        }
    };
    let copied: Result<(), ActionError> = match &hit {
        Some(hit) => paths.iter().enumerate().try_for_each(|(i, p)| {
            let src = hit.dir.join(i.to_string());
            if src.exists() {
                let dest = crate::files::normalize(&state.workspace, state.home().as_deref(), p);
                crate::files::copy_tree(&src, &dest)
                    .map_err(|e| ActionError::io(format!("cache restore of `{p}`"), e))?;
            }
            Ok(())
        }),
        None => Ok(()),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    copied?;
    match &hit {
        Some(hit) => {
            state.log(Line::Output(format!(
                "Cache restored from key: {}",
                hit.key
            )));
            call.set_output("cache-hit", if hit.exact { "true" } else { "false" })?;
            call.set_output("cache-matched-key", &hit.key)?;
        }
        None => {
            state.log(Line::Output(format!(
                "Cache not found for input keys: {key}"
            )));
            call.set_output("cache-hit", "false")?;
        }
    }
    call.set_output("cache-primary-key", &key)?;
    let exact = hit.as_ref().is_some_and(|h| h.exact);
    if with_post && !exact {
        register_post(
            state,
            format!("Post cache {key}"),
            Post::CacheSave(Save { key, paths }),
            PostCondition::Success,
        );
    }
    Ok(())
}

pub(super) async fn save_now(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let save = Save {
        key: call.required("key")?,
        paths: paths(call)?,
    };
    self::save(state, save).await
}

pub(crate) async fn save(state: &mut JobState<'_>, save: Save) -> Result<(), ActionError> {
    let staged = scratch(state, "save");
    let _ = std::fs::remove_dir_all(&staged);
    std::fs::create_dir_all(&staged)
        .map_err(|e| ActionError::io(staged.display().to_string(), e))?;
    let mut bytes = 0;
    for (i, p) in save.paths.iter().enumerate() {
        let src = crate::files::normalize(&state.workspace, state.home().as_deref(), p);
        if src.exists() {
            match crate::files::copy_tree(&src, &staged.join(i.to_string())) {
                Ok(n) => bytes += n,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staged);
                    return Err(ActionError::io(format!("cache save of `{p}`"), e));
                }
            }
        }
    }
    let saved = store(state).save(&save.key, &staged).await;
    let _ = std::fs::remove_dir_all(&staged);
    match saved {
        Ok(Saved::Created) => state.log(Line::Output(format!(
            "Cache saved with key: {} ({bytes} bytes)",
            save.key
        ))),
        Ok(Saved::Exists) => state.log(Line::Output(format!(
            "Cache already exists for key: {}",
            save.key
        ))),
        Err(e) => warn(state, format!("Failed to save: {e}")),
    }
    Ok(())
}
