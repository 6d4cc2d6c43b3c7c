//! A release's manifest: every file with its mode, size and BLAKE3 hash, every directory and
//! symlink. The local side builds it from the artifact; the host verifies uploads against it
//! and keeps it in the release (`.pipewright-manifest.json`) to hard-link unchanged files
//! into the next release.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The manifest's file name inside a release directory.
pub const FILE_NAME: &str = ".pipewright-manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        size: u64,
        /// BLAKE3, hex.
        hash: String,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Walks `root` (sorted, parents before children) and hashes every file, on every core.
    pub fn build(root: &Path) -> std::io::Result<Manifest> {
        let mut entries = Vec::new();
        walk(root, "", &mut entries)?;
        let files: Vec<&mut String> = entries
            .iter_mut()
            .filter_map(|e| match e {
                Entry::File { hash, .. } => Some(hash),
                _ => None,
            })
            .collect();
        // `walk` left each file's full path in its hash field; replace it with the hash.
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = files.len().div_ceil(threads).max(1);
        let mut files = files;
        std::thread::scope(|sc| {
            let handles: Vec<_> = files
                .chunks_mut(chunk)
                .map(|part| {
                    sc.spawn(move || -> std::io::Result<()> {
                        for slot in part {
                            let hash = hash_file(Path::new(slot.as_str()))?;
                            **slot = hash;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("hashing panicked")))
            })
        })?;
        Ok(Manifest { entries })
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e {
                Entry::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }

    /// Reads the manifest kept in a release directory, if any.
    pub fn read_from_release(dir: &Path) -> Option<Manifest> {
        let text = fs::read(dir.join(FILE_NAME)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> std::io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let name_s = name.to_string_lossy();
        if prefix.is_empty() && name_s == FILE_NAME {
            continue;
        }
        let rel = if prefix.is_empty() {
            name_s.into_owned()
        } else {
            format!("{prefix}/{name_s}")
        };
        let full = dir.join(&name);
        let meta = fs::symlink_metadata(&full)?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&full)?.to_string_lossy().into_owned();
            out.push(Entry::Symlink { path: rel, target });
        } else if meta.is_dir() {
            out.push(Entry::Dir {
                path: rel.clone(),
                mode,
            });
            walk(&full, &rel, out)?;
        } else if meta.is_file() {
            out.push(Entry::File {
                path: rel,
                mode,
                size: meta.len(),
                hash: full.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Whether a manifest path is safe to create below a release directory.
pub fn is_safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}
