//! Artifacts and `actions/cache` entries through the server's content-addressed store: a
//! directory goes up as a manifest (path, mode, size, BLAKE3 hash of each file) plus the
//! blobs the server lacks, so a file it has already (from any run) is not sent again; it
//! comes down as the manifest and its blobs, each checked against its hash.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{CacheError, CacheFuture, CacheHit, CacheSaved, CacheStore};
use protocol::{Lease, ManifestFile};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::{Client, RunnerError, check, io, protocol, retry};

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// Where a blob's content comes from.
enum Content {
    File(PathBuf),
    /// A symlink's target.
    Bytes(Vec<u8>),
}

/// The manifest of the files under `dir` (symlinks kept as links), with their contents.
/// Blocking.
fn manifest(dir: &Path) -> Result<Vec<(ManifestFile, Content)>, RunnerError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_owned();
            RunnerError::Io {
                path,
                source: e.into(),
            }
        })?;
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        let path = entry.path();
        let rel = path
            .strip_prefix(dir)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| {
                RunnerError::Job(format!("{}: file names must be UTF-8", path.display()))
            })?
            .to_owned();
        let meta = entry.metadata().map_err(|e| RunnerError::Io {
            path: path.to_owned(),
            source: e.into(),
        })?;
        if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(io(path))?;
            let bytes = target.as_os_str().as_encoded_bytes().to_vec();
            out.push((
                ManifestFile {
                    path: rel,
                    mode: S_IFLNK | 0o777,
                    size: bytes.len() as u64,
                    hash: blake3::hash(&bytes).to_hex().to_string(),
                },
                Content::Bytes(bytes),
            ));
        } else if kind.is_file() {
            let mut hasher = blake3::Hasher::new();
            let file = std::fs::File::open(path).map_err(io(path))?;
            hasher.update_reader(file).map_err(io(path))?;
            out.push((
                ManifestFile {
                    path: rel,
                    mode: S_IFREG | (meta.permissions().mode() & 0o777),
                    size: meta.len(),
                    hash: hasher.finalize().to_hex().to_string(),
                },
                Content::File(path.to_owned()),
            ));
        }
    }
    Ok(out)
}

/// Uploads the blobs of `files` the server lacks; how many that was.
async fn upload_blobs(
    client: &Client,
    lease: &Lease,
    files: &[(ManifestFile, Content)],
) -> Result<usize, RunnerError> {
    let never = CancellationToken::new();
    let mut by_hash: HashMap<&str, &Content> = HashMap::new();
    let mut hashes = Vec::new();
    for (f, content) in files {
        if by_hash.insert(&f.hash, content).is_none() {
            hashes.push(f.hash.clone());
        }
    }
    let query = protocol::BlobQuery { hashes };
    let missing: protocol::MissingBlobs = retry(&never, || async {
        let resp = client
            .job_request(Method::POST, lease, "/blobs/missing")
            .json(&query)
            .send()
            .await?;
        Ok(check(resp, Some(lease.job)).await?.json().await?)
    })
    .await?;
    for hash in &missing.missing {
        let Some(content) = by_hash.get(hash.as_str()) else {
            continue;
        };
        retry(&never, || async {
            let body = match content {
                Content::File(path) => {
                    let file = tokio::fs::File::open(path).await.map_err(io(path))?;
                    reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file))
                }
                Content::Bytes(bytes) => reqwest::Body::from(bytes.clone()),
            };
            let resp = client
                .job_request(Method::PUT, lease, &format!("/blobs/{hash}"))
                .body(body)
                .send()
                .await?;
            check(resp, Some(lease.job)).await.map(drop)
        })
        .await?;
    }
    Ok(missing.missing.len())
}

/// What [`upload_dir`] did: the answer to the manifest, the files, the blobs sent.
struct Uploaded<T> {
    answer: Option<T>,
    files: usize,
    sent: usize,
}

/// Uploads the files under `dir` and puts their manifest with `put` (a path under the
/// job, and the body around the files). A manifest refused for a missing blob (collected
/// meanwhile) is sent again after the blobs, once.
async fn upload_dir<T: serde::de::DeserializeOwned>(
    client: &Client,
    lease: &Lease,
    dir: &Path,
    put: &str,
    body: impl Fn(Vec<ManifestFile>) -> serde_json::Value,
) -> Result<Uploaded<T>, RunnerError> {
    let owned = dir.to_owned();
    let files = tokio::task::spawn_blocking(move || manifest(&owned))
        .await
        .map_err(|e| RunnerError::Job(format!("hashing {}: {e}", dir.display())))??;
    let json = body(files.iter().map(|(f, _)| f.clone()).collect());
    let never = CancellationToken::new();
    let mut again = true;
    let mut sent = 0;
    loop {
        sent += upload_blobs(client, lease, &files).await?;
        let put = retry(&never, || async {
            let resp = client
                .job_request(Method::PUT, lease, put)
                .json(&json)
                .send()
                .await?;
            let resp = check(resp, Some(lease.job)).await?;
            if resp.status() == StatusCode::NO_CONTENT {
                return Ok(None);
            }
            Ok(Some(resp.json::<T>().await?))
        })
        .await;
        match put {
            Err(RunnerError::Status { status, .. })
                if status == StatusCode::UNPROCESSABLE_ENTITY && again =>
            {
                again = false;
            }
            other => {
                return other.map(|answer| Uploaded {
                    answer,
                    files: files.len(),
                    sent,
                });
            }
        }
    }
}

/// A path of a manifest from the server, checked before it is joined to a directory.
fn safe_join(dir: &Path, rel: &str) -> Result<PathBuf, RunnerError> {
    if rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(RunnerError::Job(format!(
            "the server sent the unsafe path `{rel}`"
        )));
    }
    Ok(dir.join(rel))
}

/// Downloads blob `hash` into `dest`, checking its hash.
async fn download_blob(
    client: &Client,
    lease: &Lease,
    hash: &str,
    dest: &Path,
) -> Result<(), RunnerError> {
    let never = CancellationToken::new();
    retry(&never, || async {
        let mut resp = check(
            client
                .job_request(Method::GET, lease, &format!("/blobs/{hash}"))
                .send()
                .await?,
            Some(lease.job),
        )
        .await?;
        let mut file = tokio::fs::File::create(dest).await.map_err(io(dest))?;
        let mut hasher = blake3::Hasher::new();
        while let Some(chunk) = resp.chunk().await? {
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io(dest))?;
        }
        file.flush().await.map_err(io(dest))?;
        let got = hasher.finalize().to_hex().to_string();
        if got != hash {
            return Err(RunnerError::Job(format!(
                "blob {hash} arrived with the hash {got}"
            )));
        }
        Ok(())
    })
    .await
}

/// Writes the files of a manifest under `dir`: regular files first, then symlinks (so no
/// file is written through a link).
async fn download_files(
    client: &Client,
    lease: &Lease,
    files: &[ManifestFile],
    dir: &Path,
) -> Result<(), RunnerError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (links, regular): (Vec<&ManifestFile>, Vec<&ManifestFile>) =
        files.iter().partition(|f| f.mode & S_IFMT == S_IFLNK);
    for f in regular {
        let dest = safe_join(dir, &f.path)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        download_blob(client, lease, &f.hash, &dest).await?;
        // Permissions only, whatever the manifest says (no set-user-ID bit).
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(f.mode & 0o777))
            .map_err(io(&dest))?;
    }
    for f in links {
        let dest = safe_join(dir, &f.path)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let tmp = dir.join(format!(".link-{}", f.hash));
        download_blob(client, lease, &f.hash, &tmp).await?;
        let target = std::fs::read(&tmp).map_err(io(&tmp))?;
        let _ = std::fs::remove_file(&tmp);
        let target = PathBuf::from(String::from_utf8_lossy(&target).into_owned());
        let _ = std::fs::remove_file(&dest);
        std::os::unix::fs::symlink(target, &dest).map_err(io(&dest))?;
    }
    Ok(())
}

/// The run's artifacts so far, downloaded into the job's artifact store; their names.
pub(crate) async fn download_artifacts(
    client: &Client,
    lease: &Lease,
    store: &Path,
) -> Result<Vec<String>, RunnerError> {
    let never = CancellationToken::new();
    // The lease names the run's artifacts.
    for name in &lease.artifacts {
        let manifest: protocol::Manifest = retry(&never, || async {
            let resp = client
                .job_request(Method::GET, lease, &format!("/artifacts/{name}"))
                .send()
                .await?;
            Ok(check(resp, Some(lease.job)).await?.json().await?)
        })
        .await?;
        download_files(client, lease, &manifest.files, &safe_join(store, name)?).await?;
    }
    Ok(lease.artifacts.clone())
}

/// Uploads the artifacts this job made (those not downloaded before it).
pub(crate) async fn upload_artifacts(
    client: &Client,
    lease: &Lease,
    store: &Path,
    had: &[String],
) -> Result<(), RunnerError> {
    let Ok(entries) = std::fs::read_dir(store) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || had.contains(&name) || !e.path().is_dir() {
            continue;
        }
        let up = upload_dir::<serde_json::Value>(
            client,
            lease,
            &e.path(),
            &format!("/artifacts/{name}"),
            |files| serde_json::json!(protocol::Manifest { files }),
        )
        .await?;
        // The files the server had already (from any run) were not sent.
        tracing::info!(
            job = lease.job,
            artifact = name,
            files = up.files,
            sent = up.sent,
            "artifact uploaded"
        );
    }
    Ok(())
}

/// `actions/cache` entries of the job's repository, kept by the server.
pub(crate) struct RemoteCache {
    pub(crate) client: Client,
    pub(crate) lease: Arc<Lease>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("server", &self.client.base)
            .field("job", &self.lease.job)
            .finish()
    }
}

fn backend(e: RunnerError) -> CacheError {
    CacheError::Backend(Box::new(e))
}

impl CacheStore for RemoteCache {
    fn restore<'a>(
        &'a self,
        key: &'a str,
        restore_keys: &'a [String],
        scratch: &'a Path,
    ) -> CacheFuture<'a, Option<CacheHit>> {
        Box::pin(async move {
            let (client, lease) = (&self.client, &*self.lease);
            let never = CancellationToken::new();
            let query = protocol::CacheLookup {
                key: key.to_owned(),
                restore_keys: restore_keys.to_vec(),
            };
            let hit: Option<protocol::CacheHit> = retry(&never, || async {
                let resp = client
                    .job_request(Method::POST, lease, "/caches/lookup")
                    .json(&query)
                    .send()
                    .await?;
                let resp = check(resp, Some(lease.job)).await?;
                if resp.status() == StatusCode::NO_CONTENT {
                    return Ok(None);
                }
                Ok(Some(resp.json().await?))
            })
            .await
            .map_err(backend)?;
            let Some(hit) = hit else {
                return Ok(None);
            };
            download_files(client, lease, &hit.files, scratch)
                .await
                .map_err(backend)?;
            Ok(Some(CacheHit {
                key: hit.key,
                exact: hit.exact,
                dir: scratch.to_owned(),
            }))
        })
    }

    fn save<'a>(&'a self, key: &'a str, dir: &'a Path) -> CacheFuture<'a, CacheSaved> {
        Box::pin(async move {
            let saved: Uploaded<protocol::CacheSaved> =
                upload_dir(&self.client, &self.lease, dir, "/caches", |files| {
                    serde_json::json!(protocol::CacheSave {
                        key: key.to_owned(),
                        files,
                    })
                })
                .await
                .map_err(backend)?;
            Ok(if saved.answer.is_some_and(|s| s.created) {
                CacheSaved::Created
            } else {
                CacheSaved::Exists
            })
        })
    }
}
