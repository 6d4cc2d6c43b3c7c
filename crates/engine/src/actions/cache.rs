//! `actions/cache` (and `cache/restore`, `cache/save`): a store on the local disk shared by the
//! runs of a repository. Entries are saved after a successful job when the key missed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ActionError, Call, Post, register_post};
use crate::job::{JobState, PostCondition};
use crate::sink::Line;

pub(crate) struct Save {
    key: String,
    paths: Vec<String>,
}

fn root(state: &JobState<'_>) -> PathBuf {
    state.run.cache_dir.join("actions-cache")
}

fn entry_dir(root: &Path, key: &str) -> PathBuf {
    let h = Sha256::digest(key.as_bytes());
    root.join(
        h.iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
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

/// Finds the entry for `key` exactly, else the newest whose key starts with a restore key.
fn lookup(root: &Path, key: &str, restore_keys: &[String]) -> Option<(PathBuf, String, bool)> {
    let exact = entry_dir(root, key);
    if exact.join("key").is_file() {
        return Some((exact, key.to_owned(), true));
    }
    let mut entries: Vec<(std::time::SystemTime, PathBuf, String)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let k = std::fs::read_to_string(e.path().join("key")).ok()?;
            let t = e.metadata().ok()?.modified().ok()?;
            Some((t, e.path(), k))
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for prefix in restore_keys {
        if let Some((_, p, k)) = entries
            .iter()
            .find(|(_, _, k)| k.starts_with(prefix.as_str()))
        {
            return Some((p.clone(), k.clone(), false));
        }
    }
    None
}

pub(super) fn restore(
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
    let root = root(state);
    let hit = lookup(&root, &key, &restore_keys);
    match &hit {
        Some((dir, matched, exact)) => {
            for (i, p) in paths.iter().enumerate() {
                let src = dir.join(i.to_string());
                if src.exists() {
                    let dest = crate::files::normalize(&state.workspace, p);
                    crate::files::copy_tree(&src, &dest)
                        .map_err(|e| ActionError::io(format!("cache restore of `{p}`"), e))?;
                }
            }
            state.log(Line::Output(format!("Cache restored from key: {matched}")));
            call.set_output("cache-hit", if *exact { "true" } else { "false" })?;
            call.set_output("cache-matched-key", matched)?;
        }
        None => {
            state.log(Line::Output(format!(
                "Cache not found for input keys: {key}"
            )));
            call.set_output("cache-hit", "false")?;
        }
    }
    call.set_output("cache-primary-key", &key)?;
    let exact = hit.as_ref().is_some_and(|h| h.2);
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

pub(super) fn save_now(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let save = Save {
        key: call.required("key")?,
        paths: paths(call)?,
    };
    self::save(state, save)
}

pub(crate) fn save(state: &mut JobState<'_>, save: Save) -> Result<(), ActionError> {
    let root = root(state);
    let dir = entry_dir(&root, &save.key);
    if dir.exists() {
        state.log(Line::Output(format!(
            "Cache already exists for key: {}",
            save.key
        )));
        return Ok(());
    }
    let tmp = root.join(format!(".tmp-{}-{}", std::process::id(), state.spec.key));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| ActionError::io(tmp.display().to_string(), e))?;
    let mut bytes = 0;
    for (i, p) in save.paths.iter().enumerate() {
        let src = crate::files::normalize(&state.workspace, p);
        if src.exists() {
            bytes += crate::files::copy_tree(&src, &tmp.join(i.to_string()))
                .map_err(|e| ActionError::io(format!("cache save of `{p}`"), e))?;
        }
    }
    std::fs::write(tmp.join("key"), &save.key).map_err(|e| ActionError::io("cache key", e))?;
    // Rename makes the entry appear whole or not at all, even with concurrent jobs.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    state.log(Line::Output(format!(
        "Cache saved with key: {} ({bytes} bytes)",
        save.key
    )));
    Ok(())
}
