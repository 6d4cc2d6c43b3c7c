//! Artifacts and `actions/cache` entries: manifests in the store, contents in the blob store
//! of the data directory (identical files stored once). The runner routes (manifests, blobs,
//! cache lookups and saves, all under a job's lease), the users' routes (an artifact
//! downloaded as a tar archive built from its blobs), and garbage collection: artifacts of
//! runs older than `[artifacts] retention_days`, caches unused that long, then the blobs no
//! manifest names.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use runner::protocol::{self, ManifestFile};
use serde::Deserialize;

use super::auth::{Admin, Authorized};
use super::error::ApiError;
use super::runners::{JobCaller, held_by};
use super::state::AppStateRef;
use crate::blobs::{BlobError, Blobs, Swept};
use crate::blocking::blocking;

/// How long a blob no manifest names is kept after it was written or last found present:
/// longer than any upload takes between its blobs and its manifest.
const BLOB_GRACE: Duration = Duration::from_secs(3600);

/// `st_mode` file types a manifest may hold.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::BadHash(_) | BlobError::Mismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            BlobError::Body(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            BlobError::Io { .. } | BlobError::Random(_) => ApiError::internal(e),
        }
    }
}

fn valid_artifact(name: &str) -> Result<(), ApiError> {
    match engine::artifact_name_error(name) {
        Some(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e)),
        None => Ok(()),
    }
}

/// Files a manifest may list.
const MAX_FILES: usize = 200_000;

fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Checks a manifest from a runner (relative paths without `..`, each once and none inside
/// another, regular files and symlinks, valid hashes) and converts it for the store.
fn checked_files(files: &[ManifestFile]) -> Result<Vec<store::FileEntry>, ApiError> {
    if files.len() > MAX_FILES {
        return Err(unprocessable(format!(
            "a manifest lists at most {MAX_FILES} files"
        )));
    }
    let paths: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    if paths.len() != files.len() {
        return Err(unprocessable("a path appears twice in the manifest".into()));
    }
    files
        .iter()
        .map(|f| {
            let p = f.path.as_str();
            if p.is_empty()
                || p.len() > 4096
                || p.starts_with('/')
                || p.chars().any(char::is_control)
                || p
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".." || c.len() > 255)
            {
                return Err(unprocessable(format!(
                    "`{}` is not a relative path inside the artifact (no `.` or `..`, no control characters, components of at most 255 bytes, 4096 in all)",
                    engine::mask::neutralise(&p.chars().take(200).collect::<String>())
                )));
            }
            let mut parent = p;
            while let Some((dir, _)) = parent.rsplit_once('/') {
                if paths.contains(dir) {
                    return Err(unprocessable(format!(
                        "`{dir}` is a file and also holds `{p}`"
                    )));
                }
                parent = dir;
            }
            if !matches!(f.mode & S_IFMT, S_IFREG | S_IFLNK) || f.mode & !(S_IFMT | 0o7777) != 0 {
                return Err(unprocessable(format!(
                    "`{p}`: mode {:o} is neither a regular file nor a symlink",
                    f.mode
                )));
            }
            if !crate::blobs::valid_hash(&f.hash) {
                return Err(unprocessable(format!(
                    "`{p}`: `{}` is not a BLAKE3 hash",
                    f.hash
                )));
            }
            Ok(store::FileEntry {
                path: f.path.clone(),
                // Permissions only: no set-user-ID, set-group-ID or sticky bit reaches
                // another job's download.
                mode: i64::from(f.mode & (S_IFMT | 0o777)),
                size: i64::try_from(f.size)
                    .map_err(|_| unprocessable(format!("`{p}` is too large")))?,
                hash: f.hash.clone(),
            })
        })
        .collect()
}

fn manifest_file(f: store::FileEntry) -> ManifestFile {
    ManifestFile {
        path: f.path,
        mode: u32::try_from(f.mode).unwrap_or(S_IFREG | 0o644),
        size: u64::try_from(f.size).unwrap_or(0),
        hash: f.hash,
    }
}

/// Checks that every blob of `files` is there with its size, renewing their times so that
/// no collection takes them before the manifest is recorded.
async fn present(blobs: &Blobs, files: &[store::FileEntry]) -> Result<(), ApiError> {
    let blobs = blobs.clone();
    let wanted: Vec<(String, i64)> = files.iter().map(|f| (f.hash.clone(), f.size)).collect();
    blocking(move || -> Result<_, ApiError> {
        let mut seen = HashSet::new();
        for (hash, size) in wanted {
            if !seen.insert(hash.clone()) {
                continue;
            }
            if !blobs.touch(&hash)? {
                return Err(unprocessable(format!(
                    "blob {hash} is missing: upload it first"
                )));
            }
            let len = std::fs::metadata(blobs.path(&hash)).map_or(0, |m| m.len());
            if i64::try_from(len).ok() != Some(size) {
                return Err(unprocessable(format!(
                    "blob {hash} has {len} bytes, the manifest says {size}"
                )));
            }
        }
        Ok(())
    })
    .await
    .map_err(ApiError::from)
}

fn blobs(s: &AppStateRef) -> Blobs {
    Blobs::new(&s.config.data_dir)
}

/// `GET /api/v1/runner/jobs/{job}/artifacts`: the names of the run's artifacts so far.
pub(crate) async fn job_artifacts(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let j = held_by(&s, &caller, job, &headers).await?;
    let store = s.store.clone();
    let list = blocking(move || store.artifacts(j.run_id)).await?;
    let names = list.into_iter().map(|a| a.name).collect();
    Ok(Json(protocol::Artifacts { names }).into_response())
}

/// `GET /api/v1/runner/jobs/{job}/artifacts/{name}`: the artifact's manifest.
pub(crate) async fn job_artifact(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path((job, name)): Path<(store::JobId, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    valid_artifact(&name)?;
    let j = held_by(&s, &caller, job, &headers).await?;
    let files = artifact_files(&s, j.run_id, name).await?;
    Ok(Json(protocol::Manifest {
        files: files.into_iter().map(manifest_file).collect(),
    })
    .into_response())
}

async fn artifact_files(
    s: &AppStateRef,
    run: store::RunId,
    name: String,
) -> Result<Vec<store::FileEntry>, ApiError> {
    let store = s.store.clone();
    blocking(move || -> Result<_, ApiError> {
        store.artifact_files(run, &name)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("run {run} has no artifact `{name}`"),
            )
        })
    })
    .await
    .map_err(ApiError::from)
}

/// `PUT /api/v1/runner/jobs/{job}/artifacts/{name}`: the artifact's manifest, once its
/// blobs are uploaded. Replaces an artifact of that name in the run.
pub(crate) async fn put_artifact(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path((job, name)): Path<(store::JobId, String)>,
    headers: HeaderMap,
    Json(manifest): Json<protocol::Manifest>,
) -> Result<Response, ApiError> {
    valid_artifact(&name)?;
    let j = held_by(&s, &caller, job, &headers).await?;
    let files = checked_files(&manifest.files)?;
    present(&blobs(&s), &files).await?;
    let store = s.store.clone();
    blocking(move || store.put_artifact(j.run_id, &j.name, &name, &files)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/runner/jobs/{job}/blobs/missing`: which of the blobs the server lacks.
pub(crate) async fn missing_blobs(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
    Json(query): Json<protocol::BlobQuery>,
) -> Result<Response, ApiError> {
    held_by(&s, &caller, job, &headers).await?;
    let blobs = blobs(&s);
    let missing = blocking(move || -> Result<_, ApiError> {
        let mut missing = Vec::new();
        for hash in query.hashes {
            if !blobs.touch(&hash)? && !missing.contains(&hash) {
                missing.push(hash);
            }
        }
        Ok(missing)
    })
    .await?;
    Ok(Json(protocol::MissingBlobs { missing }).into_response())
}

/// `PUT /api/v1/runner/jobs/{job}/blobs/{hash}`: a blob's content, checked against its name.
pub(crate) async fn put_blob(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path((job, hash)): Path<(store::JobId, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    held_by(&s, &caller, job, &headers).await?;
    blobs(&s).put(&hash, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/runner/jobs/{job}/blobs/{hash}`: a blob of the run's artifacts or of the
/// repository's caches (a job reads nothing else).
pub(crate) async fn get_blob(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path((job, hash)): Path<(store::JobId, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !crate::blobs::valid_hash(&hash) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "not a blob name"));
    }
    let j = held_by(&s, &caller, job, &headers).await?;
    let (store, h) = (s.store.clone(), hash.clone());
    let visible = blocking(move || -> Result<_, ApiError> {
        let run = store.run(j.run_id)?;
        Ok(store.blob_visible(&h, run.id, &run.repo)?)
    })
    .await?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no blob {hash}"));
    if !visible {
        return Err(not_found());
    }
    let file = match tokio::fs::File::open(blobs(&s).path(&hash)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            ("content-type", "application/octet-stream".to_owned()),
            ("content-length", len.to_string()),
        ],
        body,
    )
        .into_response())
}

fn check_cache_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 512 || key.contains(',') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a cache key has 1 to 512 characters and no comma",
        ));
    }
    Ok(())
}

/// Where a job's run reads and writes cache entries: its repository, the scopes it reads
/// in order (its own ref, its pull request's base branch, the default branch: GitHub's
/// rule) and the one it writes (its own ref only). A fork's pull request thus never writes
/// where a branch reads.
async fn cache_scopes(
    s: &AppStateRef,
    run: store::RunId,
) -> Result<(String, Vec<String>), ApiError> {
    let store = s.store.clone();
    let run = blocking(move || store.run(run)).await?;
    let event: crate::trigger::Event = serde_json::from_str(&run.event_json).unwrap_or_default();
    let branch = |b: &str| {
        if b.starts_with("refs/") {
            b.to_owned()
        } else {
            format!("refs/heads/{b}")
        }
    };
    let mut scopes = vec![run.git_ref.clone()];
    if let Some(base) = event.base_ref.as_deref().filter(|b| !b.is_empty()) {
        scopes.push(branch(base));
    }
    if let Some(repo) = s.config.repo(&run.repo) {
        scopes.push(branch(&repo.default_branch));
    }
    let mut seen = std::collections::HashSet::new();
    scopes.retain(|x| seen.insert(x.clone()));
    Ok((run.repo, scopes))
}

/// `POST /api/v1/runner/jobs/{job}/caches/lookup`.
pub(crate) async fn lookup_cache(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
    Json(q): Json<protocol::CacheLookup>,
) -> Result<Response, ApiError> {
    check_cache_key(&q.key)?;
    let j = held_by(&s, &caller, job, &headers).await?;
    let (repo, scopes) = cache_scopes(&s, j.run_id).await?;
    let store = s.store.clone();
    let hit = blocking(move || store.lookup_cache(&repo, &scopes, &q.key, &q.restore_keys)).await?;
    Ok(match hit {
        Some(e) => Json(protocol::CacheHit {
            key: e.key,
            exact: e.exact,
            files: e.files.into_iter().map(manifest_file).collect(),
        })
        .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `PUT /api/v1/runner/jobs/{job}/caches`: a new entry for the job's repository, in the
/// scope of its run's ref.
pub(crate) async fn save_cache(
    caller: JobCaller,
    State(s): State<AppStateRef>,
    Path(job): Path<store::JobId>,
    headers: HeaderMap,
    Json(save): Json<protocol::CacheSave>,
) -> Result<Response, ApiError> {
    check_cache_key(&save.key)?;
    let j = held_by(&s, &caller, job, &headers).await?;
    let files = checked_files(&save.files)?;
    present(&blobs(&s), &files).await?;
    let (repo, scopes) = cache_scopes(&s, j.run_id).await?;
    let store = s.store.clone();
    let created = blocking(move || -> Result<_, ApiError> {
        let own = scopes.first().cloned().unwrap_or_default();
        Ok(store.put_cache(&repo, &own, &save.key, &files)?)
    })
    .await?;
    Ok(Json(protocol::CacheSaved { created }).into_response())
}

/// `GET /api/v1/runs/{id}/artifacts`: the names (`artifacts`) and, in `details`, each
/// one's file count, size in bytes and time of upload.
pub(crate) async fn run_artifacts(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(run): Path<store::RunId>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let list = blocking(move || -> Result<_, ApiError> {
        store.run(run)?;
        Ok(store.artifacts(run)?)
    })
    .await?;
    let names: Vec<&str> = list.iter().map(|a| a.name.as_str()).collect();
    Ok(Json(serde_json::json!({ "artifacts": names, "details": list })).into_response())
}

/// `GET /api/v1/runs/{id}/artifacts/{name}`: the artifact as a tar archive, built from its
/// blobs as it is sent.
pub(crate) async fn run_artifact(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path((run, name)): Path<(store::RunId, String)>,
) -> Result<Response, ApiError> {
    valid_artifact(&name)?;
    let files = artifact_files(&s, run, name).await?;
    let blobs = blobs(&s);
    // Every blob is there before the first byte goes out: a missing one is an error the
    // client can see, not a cut archive.
    for f in &files {
        if !tokio::fs::try_exists(blobs.path(&f.hash))
            .await
            .unwrap_or(false)
        {
            return Err(ApiError::internal(format!(
                "artifact of run {run}: blob {} of `{}` is missing",
                f.hash, f.path
            )));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let written = write_tar(&blobs, &files, &mut out).and_then(|()| out.flush_chunk());
        if let Err(e) = written {
            tracing::warn!("sending an artifact of run {run}: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([("content-type", "application/x-tar")], body).into_response())
}

const CHUNK: usize = 64 * 1024;

/// A `Write` feeding a response body in chunks (blocking: used off the async threads).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The files as a tar archive: regular files with their modes, symlinks (whose blob is the
/// target).
fn write_tar(
    blobs: &Blobs,
    files: &[store::FileEntry],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    let now = u64::try_from(store::now_ms() / 1000).unwrap_or(0);
    for f in files {
        let mode = u32::try_from(f.mode).unwrap_or(S_IFREG | 0o644);
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode & 0o7777);
        header.set_mtime(now);
        let path = blobs.path(&f.hash);
        if mode & S_IFMT == S_IFLNK {
            let target = std::fs::read(&path)?;
            let target = String::from_utf8_lossy(&target).into_owned();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &f.path, target)?;
        } else {
            let file = std::fs::File::open(&path)?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(file.metadata()?.len());
            tar.append_data(&mut header, &f.path, file)?;
        }
    }
    tar.into_inner()?.flush()
}

/// What a collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Collected {
    pub(crate) artifacts: u64,
    pub(crate) caches: u64,
    pub(crate) blobs: u64,
    pub(crate) bytes: u64,
}

/// Deletes the artifacts of runs created before `before` (ms since the epoch) and the cache
/// entries last used before it, then the blobs nothing names (older than `grace`). Blocking.
pub(crate) fn collect(
    store: &store::Store,
    blobs: &Blobs,
    before: i64,
    grace: Duration,
) -> Result<Collected, store::StoreError> {
    let expired = store.expire_artifacts(before)?;
    // Read after the deletions: a manifest recorded from here on names blobs that were
    // touched within the grace period, which the sweep spares.
    let keep = store.referenced_blobs()?;
    let Swept { blobs, bytes } = blobs.sweep(&keep, grace);
    Ok(Collected {
        artifacts: expired.artifacts,
        caches: expired.caches,
        blobs,
        bytes,
    })
}

fn retention_cutoff(days: u32) -> i64 {
    store::now_ms().saturating_sub(i64::from(days) * 86_400_000)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct GcRequest {
    /// Collect the artifacts of runs created before this (ms since the epoch) instead of
    /// the retention's cutoff.
    before: Option<i64>,
    /// Blobs nothing names are deleted once this old (default: an hour).
    grace_seconds: Option<u64>,
}

/// `POST /api/v1/admin/gc`: a collection now.
pub(crate) async fn admin_gc(
    _: Admin,
    State(s): State<AppStateRef>,
    body: Option<Json<GcRequest>>,
) -> Result<Response, ApiError> {
    let req = body.map(|Json(r)| r).unwrap_or_default();
    let before = req
        .before
        .unwrap_or_else(|| retention_cutoff(s.config.artifact_retention_days));
    let grace = req.grace_seconds.map_or(BLOB_GRACE, Duration::from_secs);
    let (store, blobs) = (s.store.clone(), blobs(&s));
    let collected = blocking(move || collect(&store, &blobs, before, grace)).await?;
    Ok(Json(collected).into_response())
}

/// Collects every `interval` (the first time a minute after the start, or sooner with a
/// shorter interval) until `stop`.
pub(crate) async fn gc_task(
    store: Arc<store::Store>,
    config: Arc<crate::config::Config>,
    stop: tokio_util::sync::CancellationToken,
) {
    let interval = config.gc_interval;
    let mut wait = interval.min(Duration::from_secs(60));
    let blobs = Blobs::new(&config.data_dir);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        wait = interval;
        let before = retention_cutoff(config.artifact_retention_days);
        let (store, blobs) = (store.clone(), blobs.clone());
        match blocking(move || collect(&store, &blobs, before, BLOB_GRACE)).await {
            Ok(c) if c != Collected::default() => tracing::info!(
                artifacts = c.artifacts,
                caches = c.caches,
                blobs = c.blobs,
                bytes = c.bytes,
                "artifacts collected"
            ),
            Ok(_) => {}
            // The call's error, or its task's: said the same way.
            Err(e) => tracing::error!("collecting artifacts: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            mode,
            size: 1,
            hash: "a".repeat(64),
        }
    }

    #[test]
    fn manifests_are_checked() {
        assert!(checked_files(&[file("a/b.txt", 0o100_644), file("l", 0o120_777)]).is_ok());
        for bad in [
            vec![file("/etc/passwd", 0o100_644)],
            vec![file("a/../../x", 0o100_644)],
            vec![file("a//b", 0o100_644)],
            vec![file("", 0o100_644)],
            vec![file("a", 0o100_644), file("a", 0o100_644)],
            vec![file("a", 0o100_644), file("a/b", 0o100_644)],
            vec![file("dev", 0o020_644)],
            vec![file("x", 0o644)],
            vec![ManifestFile {
                hash: "../x".into(),
                ..file("x", 0o100_644)
            }],
        ] {
            assert!(checked_files(&bad).is_err(), "{bad:?}");
        }
    }
}
