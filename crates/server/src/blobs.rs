//! The content-addressed store in the data directory: `blobs/ab/abcdef...`, each file named
//! by the BLAKE3 hash of its content, so identical files are stored once whichever run,
//! artifact or cache entry they belong to.
//!
//! A blob is written to `blobs/tmp/` while its hash is checked, then renamed into place: a
//! reader never sees half a blob, and a blob that exists is complete. Which blobs are still
//! needed is the store's business (manifests name them); [`Blobs::sweep`] deletes the others,
//! sparing any written or touched within a grace period, so that a blob uploaded (or found
//! present) for a manifest that is not recorded yet survives a collection running meanwhile.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BlobError {
    #[error("`{0}` is not a blob name (64 lowercase hex digits)")]
    BadHash(String),
    #[error("the content's hash is {actual}, not {expected}")]
    Mismatch { expected: String, actual: String },
    #[error("reading the upload: {0}")]
    Body(#[source] axum::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the operating system gave no random bytes: {0}")]
    Random(#[from] getrandom::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `hash` can name a blob: 64 lowercase hex digits (BLAKE3's 32 bytes).
pub(crate) fn valid_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Swept {
    pub(crate) blobs: u64,
    pub(crate) bytes: u64,
}

/// The blob directory of a data directory.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    root: PathBuf,
}

impl Blobs {
    pub(crate) fn new(data_dir: &Path) -> Blobs {
        Blobs {
            root: data_dir.join("blobs"),
        }
    }

    /// Where blob `hash` is (or would be). `hash` must be valid.
    pub(crate) fn path(&self, hash: &str) -> PathBuf {
        self.root.join(&hash[..2]).join(hash)
    }

    fn check(hash: &str) -> Result<(), BlobError> {
        if valid_hash(hash) {
            Ok(())
        } else {
            Err(BlobError::BadHash(hash.to_owned()))
        }
    }

    /// Whether blob `hash` is there; if so its time is renewed, so that a sweep spares it
    /// for the grace period (it is about to be named by a manifest). Blocking.
    pub(crate) fn touch(&self, hash: &str) -> Result<bool, BlobError> {
        Self::check(hash)?;
        let path = self.path(hash);
        match std::fs::File::options().append(true).open(&path) {
            Ok(f) => {
                f.set_modified(SystemTime::now()).map_err(io(&path))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Stores the body as blob `expected`, checking that it hashes to that; the size.
    pub(crate) async fn put(
        &self,
        expected: &str,
        body: axum::body::Body,
    ) -> Result<u64, BlobError> {
        Self::check(expected)?;
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(io(&tmp_dir))?;
        let tmp = tmp_dir.join(format!("{expected}.{}", crate::random_token()?));
        let written = self.write_checked(expected, body, &tmp).await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        written
    }

    async fn write_checked(
        &self,
        expected: &str,
        body: axum::body::Body,
        tmp: &Path,
    ) -> Result<u64, BlobError> {
        let mut file = tokio::fs::File::create(tmp).await.map_err(io(tmp))?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(BlobError::Body)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io(tmp))?;
        }
        file.sync_all().await.map_err(io(tmp))?;
        drop(file);
        let actual = hasher.finalize().to_hex().to_string();
        if actual != expected {
            return Err(BlobError::Mismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
        let dest = self.path(expected);
        let dir = self.root.join(&expected[..2]);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        // The same content uploaded twice at once: either rename leaves a whole blob.
        tokio::fs::rename(tmp, &dest).await.map_err(io(&dest))?;
        Ok(size)
    }

    /// Deletes the blobs not in `keep` whose time is older than `grace`, and upload
    /// leftovers older than that. Blocking.
    pub(crate) fn sweep(&self, keep: &HashSet<String>, grace: Duration) -> Swept {
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut swept = Swept::default();
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return swept;
        };
        for dir in dirs.flatten() {
            let name = dir.file_name();
            let is_tmp = name == "tmp";
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for f in files.flatten() {
                let file_name = f.file_name();
                let Some(hash) = file_name.to_str() else {
                    continue;
                };
                if !is_tmp && (!valid_hash(hash) || keep.contains(hash)) {
                    continue;
                }
                let Ok(meta) = f.metadata() else { continue };
                if meta.modified().is_ok_and(|t| t > cutoff) {
                    continue;
                }
                match std::fs::remove_file(f.path()) {
                    Ok(()) if !is_tmp => {
                        swept.blobs += 1;
                        swept.bytes += meta.len();
                    }
                    Ok(()) => {}
                    Err(e) => tracing::warn!("deleting blob {}: {e}", f.path().display()),
                }
            }
        }
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_checked_stored_once_and_swept_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path());
        let hash = blake3::hash(b"hello").to_hex().to_string();
        assert_eq!(blobs.put(&hash, "hello".into()).await.unwrap(), 5);
        assert_eq!(blobs.put(&hash, "hello".into()).await.unwrap(), 5);
        assert!(matches!(
            blobs.put(&hash, "other".into()).await,
            Err(BlobError::Mismatch { .. })
        ));
        assert!(matches!(
            blobs.put("../x", "other".into()).await,
            Err(BlobError::BadHash(_))
        ));
        assert!(blobs.touch(&hash).unwrap());
        assert!(!blobs.touch(&"0".repeat(64)).unwrap());
        let kept = HashSet::from([hash.clone()]);
        assert_eq!(blobs.sweep(&kept, Duration::ZERO), Swept::default());
        // Unreferenced but recent: spared.
        assert_eq!(
            blobs.sweep(&HashSet::new(), Duration::from_secs(60)).blobs,
            0
        );
        assert_eq!(
            blobs.sweep(&HashSet::new(), Duration::ZERO),
            Swept { blobs: 1, bytes: 5 }
        );
        assert!(!blobs.path(&hash).exists());
        // No upload leftovers.
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/tmp"))
                .unwrap()
                .count(),
            0
        );
    }
}
