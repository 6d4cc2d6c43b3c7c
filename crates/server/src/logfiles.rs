//! Job logs on disk. While a run goes on, its jobs' lines are rows in the store (numbered,
//! stored once, read by followers as they arrive); once the run is completed, a task moves
//! each job's lines into one zstd-compressed file per step (`data_dir/logs/job-ID/0000.zst`
//! for what came before the first step, then one per step) and deletes the rows. Files are
//! written aside, made durable, and renamed into place (the renames made durable too) before
//! the store says the log is archived, so a crash at any point leaves either the rows or the
//! files, never neither.
//!
//! A record is the line's sequence number (8 bytes, little endian), its length (4 bytes) and
//! its text.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::blocking::{Blocked, blocking};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LogFileError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: a damaged log record")]
    Damaged(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogFileError + '_ {
    move |source| LogFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Lines read from the store at a time.
const PAGE: i64 = 2000;

fn dir(data: &Path, job: store::JobId) -> PathBuf {
    data.join("logs").join(format!("job-{job}"))
}

type Encoder = zstd::Encoder<'static, BufWriter<File>>;

/// A step's log up to this size is compressed whole, with a context sized for it; a longer
/// one is streamed. A streaming context is made for the largest input (about 1.3 MB at
/// level 3): one per step of every job kept the allocator's heap growing with the jobs run.
const WHOLE: usize = 256 * 1024;

/// One step's file being written: its bytes so far, or the stream they overflowed into.
enum StepFile {
    Buffered(Vec<u8>),
    Streamed(Encoder),
}

impl StepFile {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<(), LogFileError> {
        if let StepFile::Buffered(buf) = self {
            if buf.len() + bytes.len() <= WHOLE {
                buf.extend_from_slice(bytes);
                return Ok(());
            }
            let f = File::create(path).map_err(io(path))?;
            let mut enc = zstd::Encoder::new(BufWriter::new(f), 3).map_err(io(path))?;
            enc.write_all(buf).map_err(io(path))?;
            *self = StepFile::Streamed(enc);
        }
        match self {
            StepFile::Streamed(enc) => enc.write_all(bytes).map_err(io(path)),
            StepFile::Buffered(_) => Ok(()),
        }
    }
}

/// Writes the rest of a step's file (not yet made durable: see [`archive_all`]).
fn finish(
    file: Option<StepFile>,
    path: &Path,
    whole: &mut zstd::bulk::Compressor<'static>,
) -> Result<(), LogFileError> {
    match file {
        None => Ok(()),
        Some(StepFile::Streamed(e)) => {
            let mut w = e.finish().map_err(io(path))?;
            w.flush().map_err(io(path))
        }
        Some(StepFile::Buffered(buf)) => {
            let packed = whole.compress(&buf).map_err(io(path))?;
            let mut w = BufWriter::new(File::create(path).map_err(io(path))?);
            w.write_all(&packed).map_err(io(path))?;
            w.flush().map_err(io(path))
        }
    }
}

/// Writes a job's lines from the store into its step files in a directory aside (under
/// `root`, `.job-ID.tmp`); that directory.
fn write_aside(
    store: &store::Store,
    root: &Path,
    job: &store::Job,
    whole: &mut zstd::bulk::Compressor<'static>,
) -> Result<PathBuf, LogFileError> {
    let tmp = root.join(format!(".job-{}.tmp", job.id));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let mut after = 0;
    let mut step = 0usize;
    let mut file: Option<StepFile> = None;
    let mut path = tmp.join("0000.zst");
    loop {
        let page = store.job_log_page(job.id, after, PAGE)?;
        if page.is_empty() {
            break;
        }
        for (seq, text) in page {
            if text.starts_with("##[step] ") && file.is_some() {
                finish(file.take(), &path, whole)?;
                step += 1;
            }
            let f = file.get_or_insert_with(|| {
                path = tmp.join(format!("{step:04}.zst"));
                StepFile::Buffered(Vec::new())
            });
            let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
            f.write(&path, &seq.to_le_bytes())?;
            f.write(&path, &len.to_le_bytes())?;
            f.write(&path, &text.as_bytes()[..len as usize])?;
            after = seq;
        }
    }
    finish(file, &path, whole)?;
    Ok(tmp)
}

/// Makes what `path` holds (a file's contents, a directory's entries) durable.
fn sync(path: &Path) -> Result<(), LogFileError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Moves the lines of `jobs` from the store into their step files, until `stop`; how many
/// jobs it moved. Every job's files are written aside first, then all made durable together
/// (the first `fsync` commits the file system's journal with the whole batch in it, the
/// others find it done: a file made durable as soon as it was written cost a commit
/// each), then each job's directory is renamed into place, the renames are made durable,
/// and only then is the store told (which deletes the rows).
pub(crate) fn archive_all(
    store: &store::Store,
    data: &Path,
    jobs: &[store::Job],
    stop: &CancellationToken,
) -> Result<usize, LogFileError> {
    let root = data.join("logs");
    let mut whole = zstd::bulk::Compressor::new(3).map_err(io(&root))?;
    let mut aside = Vec::new();
    for job in jobs {
        if stop.is_cancelled() {
            break;
        }
        aside.push((job.id, write_aside(store, &root, job, &mut whole)?));
    }
    if aside.is_empty() {
        return Ok(0);
    }
    for (_, tmp) in &aside {
        for entry in std::fs::read_dir(tmp).map_err(io(tmp))? {
            sync(&entry.map_err(io(tmp))?.path())?;
        }
        sync(tmp)?;
    }
    for (job, tmp) in &aside {
        let target = dir(data, *job);
        if target.exists() {
            // An earlier archive of this job stopped after its rename: this one replaces it.
            std::fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        std::fs::rename(tmp, &target).map_err(io(&target))?;
    }
    sync(&root)?;
    for (job, _) in &aside {
        store.log_archived(*job)?;
    }
    Ok(aside.len())
}

/// The step files of the archived log of `log_job`, in order.
fn step_files(data: &Path, log_job: store::JobId) -> Result<Vec<PathBuf>, LogFileError> {
    let d = dir(data, log_job);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&d) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&d)(e)),
    };
    files.sort();
    Ok(files)
}

/// Calls `f` with each record of the step file at `path` (its sequence number and text, in
/// `buf`, which it may keep), until it returns false; whether it went through the file.
fn each_record(
    path: &Path,
    buf: &mut Vec<u8>,
    f: &mut dyn FnMut(i64, &mut Vec<u8>) -> bool,
) -> Result<bool, LogFileError> {
    let file = File::open(path).map_err(io(path))?;
    let mut r = zstd::Decoder::new(file).map_err(io(path))?;
    let damaged = || LogFileError::Damaged(path.to_owned());
    let mut head = [0u8; 12];
    loop {
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(io(path)(e)),
        }
        let (seq_bytes, len_bytes) = head.split_at(8);
        let seq = i64::from_le_bytes(seq_bytes.try_into().map_err(|_| damaged())?);
        let len = u32::from_le_bytes(len_bytes.try_into().map_err(|_| damaged())?);
        buf.clear();
        buf.resize(len as usize, 0);
        r.read_exact(buf).map_err(|_| damaged())?;
        if !f(seq, buf) {
            return Ok(false);
        }
    }
}

/// A line's text: its bytes as they are when they are UTF-8 (they always are, as stored).
fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Calls `f` with each line of the archived log of `log_job` after `after`, in order, until
/// it returns false.
fn read_files(
    data: &Path,
    log_job: store::JobId,
    after: i64,
    f: &mut dyn FnMut(i64, String) -> bool,
) -> Result<(), LogFileError> {
    let mut buf = Vec::new();
    for path in step_files(data, log_job)? {
        let went_through = each_record(&path, &mut buf, &mut |seq, text| {
            seq <= after || f(seq, text_of(std::mem::take(text)))
        })?;
        if !went_through {
            return Ok(());
        }
    }
    Ok(())
}

/// The last `n` lines of `job`'s log, wherever it is, and how many lines came before them.
/// Reads only what it needs: from the rows, those lines; from the files, the last step
/// files, each line's buffer reused as older lines drop out.
pub(crate) fn last_lines(
    store: &store::Store,
    data: &Path,
    job: store::JobId,
    n: usize,
) -> Result<(Vec<String>, u64), LogFileError> {
    let n = n.max(1);
    let current = store.job(job)?;
    if !current.log_archived {
        let last = store.job_log_last_seq(job)?;
        let after = (last - i64::try_from(n).unwrap_or(i64::MAX)).max(0);
        let mut lines: std::collections::VecDeque<(i64, String)> =
            std::collections::VecDeque::with_capacity(n);
        // (More may come while it reads: the last `n` of what it read are kept.)
        each_line(store, data, job, after, &mut |seq, text| {
            if lines.len() == n {
                lines.pop_front();
            }
            lines.push_back((seq, text));
            true
        })?;
        // Lines come numbered from 1: those before the first kept one were left out.
        let skipped = lines.front().map_or(after, |(seq, _)| seq - 1).max(0);
        return Ok((
            lines.into_iter().map(|(_, t)| t).collect(),
            u64::try_from(skipped).unwrap_or(0),
        ));
    }
    // Newest step file first, until `n` lines are known.
    let mut kept: std::collections::VecDeque<(i64, Vec<u8>)> = std::collections::VecDeque::new();
    let mut buf = Vec::new();
    for path in step_files(data, current.log_job)?.iter().rev() {
        let want = n - kept.len();
        let mut ring: std::collections::VecDeque<(i64, Vec<u8>)> =
            std::collections::VecDeque::with_capacity(want);
        each_record(path, &mut buf, &mut |seq, text| {
            if ring.len() == want {
                // The oldest line drops out; its buffer takes the next one.
                if let Some((_, mut old)) = ring.pop_front() {
                    old.clear();
                    old.extend_from_slice(text);
                    ring.push_back((seq, old));
                }
            } else {
                ring.push_back((seq, text.clone()));
            }
            true
        })?;
        while let Some(line) = ring.pop_back() {
            kept.push_front(line);
        }
        if kept.len() >= n {
            break;
        }
    }
    let skipped = kept
        .front()
        .map_or(0, |(seq, _)| u64::try_from(seq - 1).unwrap_or(0));
    Ok((kept.into_iter().map(|(_, t)| text_of(t)).collect(), skipped))
}

/// Calls `f` with each line of `job`'s log after `after`, in order, while the log is the
/// store's rows: `false` if it is archived (in files), before or while it was read, and then
/// what `f` was given is not the whole rest. No file is read, so an async caller may do it
/// in place ([`crate::blocking::store_now`]).
pub(crate) fn each_stored_line(
    store: &store::Store,
    job: store::JobId,
    mut after: i64,
    f: &mut dyn FnMut(i64, String) -> bool,
) -> Result<bool, LogFileError> {
    if store.job(job)?.log_archived {
        return Ok(false);
    }
    if stored_pages(store, job, &mut after, f)? == Paged::Stopped {
        return Ok(true);
    }
    Ok(!store.job(job)?.log_archived)
}

/// Calls `f` with each line of `job`'s log after `after`, in order, wherever it is (rows or
/// files), until it returns false. Reads in pages: memory stays small for any log.
pub(crate) fn each_line(
    store: &store::Store,
    data: &Path,
    job: store::JobId,
    mut after: i64,
    f: &mut dyn FnMut(i64, String) -> bool,
) -> Result<(), LogFileError> {
    let current = store.job(job)?;
    if !current.log_archived {
        if stored_pages(store, job, &mut after, f)? == Paged::Stopped {
            return Ok(());
        }
        // Archived meanwhile? Then the rest is in the files.
        let now = store.job(job)?;
        if !now.log_archived {
            return Ok(());
        }
        return read_files(data, now.log_job, after, f);
    }
    read_files(data, current.log_job, after, f)
}

/// How [`stored_pages`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Paged {
    /// No row left after the last one read.
    Read,
    /// `f` asked for no more.
    Stopped,
}

/// `job`'s rows after `*after`, page by page, to `f`; `*after` follows the last one given.
fn stored_pages(
    store: &store::Store,
    job: store::JobId,
    after: &mut i64,
    f: &mut dyn FnMut(i64, String) -> bool,
) -> Result<Paged, LogFileError> {
    loop {
        let page = store.job_log_page(job, *after, PAGE)?;
        if page.is_empty() {
            return Ok(Paged::Read);
        }
        for (seq, text) in page {
            *after = seq;
            if !f(seq, text) {
                return Ok(Paged::Stopped);
            }
        }
    }
}

/// Archives the logs of completed runs until shutdown: at start (what a stopped server left)
/// and every two seconds.
pub(crate) async fn archiver(store: Arc<store::Store>, data: PathBuf, shutdown: CancellationToken) {
    // Rows a stopped server left behind after archiving their job.
    let (s, stop) = (store.clone(), shutdown.clone());
    let purged = blocking(move || -> Result<(), store::StoreError> {
        for job in s.archived_with_rows()? {
            if stop.is_cancelled() {
                break;
            }
            s.purge_log_rows(job)?;
        }
        Ok(())
    })
    .await;
    if let Err(Blocked::Call(e)) = purged {
        tracing::error!("deleting the rows of archived job logs: {e}");
    }
    // A backlog is worked through batch by batch, and a stop is heard between any two jobs'
    // files: those written are put in place, what is left waits for the next start (a job's
    // log is whole in rows or in files, never half of each).
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let (s, d, stop) = (store.clone(), data.clone(), shutdown.clone());
        let done = blocking(move || -> Result<(usize, usize), LogFileError> {
            let jobs = s.logs_to_archive(64)?;
            Ok((jobs.len(), archive_all(&s, &d, &jobs, &stop)?))
        })
        .await;
        let more = match done {
            Ok((asked, moved)) => asked == 64 && moved == asked,
            // The call's error, or its task's: said the same way.
            Err(e) => {
                tracing::error!("archiving job logs: {e}");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose log has `lines` lines, the first of each step `##[step] ...` every
    /// `step` lines, still in rows.
    fn job_with_lines(store: &store::Store, lines: i64, step: i64) -> store::Job {
        jobs_with_lines(store, 1, lines, step).remove(0)
    }

    /// `n` such jobs, each of a run of its own, leased by one runner.
    fn jobs_with_lines(store: &store::Store, n: usize, lines: i64, step: i64) -> Vec<store::Job> {
        store.add_runner_token("t").unwrap();
        let r = store
            .register_runner("t", "r", &[], 1, "c", 3_600_000)
            .unwrap()
            .unwrap();
        (0..n)
            .map(|i| leased_job_with_lines(store, r, &format!("L{i}"), lines, step))
            .collect()
    }

    fn leased_job_with_lines(
        store: &store::Store,
        r: store::RunnerId,
        lease: &str,
        lines: i64,
        step: i64,
    ) -> store::Job {
        let run = store
            .create_run(&store::NewRun {
                repo: "r".into(),
                workflow: "ci.yml".into(),
                event: "push".into(),
                git_ref: "refs/heads/main".into(),
                sha: "abc".into(),
                event_json: "{}".into(),
                workflow_text: None,
                failure: None,
                held: false,
            })
            .unwrap();
        let job = store.enqueue_job(run, "j", "j", "[]", "{}", b"").unwrap();
        let want = store::Want {
            labels: &["*".to_owned()],
            lease,
            lease_ms: 60_000,
        };
        store.take_job(r, &want).unwrap().unwrap();
        let all: Vec<(i64, String)> = (1..=lines)
            .map(|i| {
                let text = if i % step == 1 {
                    format!("##[step] step {}", i / step)
                } else {
                    format!("line {i} é")
                };
                (i, text)
            })
            .collect();
        for chunk in all.chunks(500) {
            store.append_job_logs(job.id, r, lease, chunk).unwrap();
        }
        store.job(job.id).unwrap()
    }

    #[test]
    fn the_last_lines_are_the_same_from_rows_and_from_step_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(&dir.path().join("db")).unwrap();
        let job = job_with_lines(&store, 2_345, 400);
        let whole = |store: &store::Store| {
            let mut all = Vec::new();
            each_line(store, dir.path(), job.id, 0, &mut |_, t| {
                all.push(t);
                true
            })
            .unwrap();
            all
        };
        let before = whole(&store);
        assert_eq!(before.len(), 2_345);
        let from_rows: Vec<_> = [1, 7, 400, 1_000, 2_345, 5_000]
            .iter()
            .map(|&n| last_lines(&store, dir.path(), job.id, n).unwrap())
            .collect();
        let moved = archive_all(
            &store,
            dir.path(),
            std::slice::from_ref(&job),
            &CancellationToken::new(),
        )
        .unwrap();
        assert_eq!(moved, 1);
        assert!(store.job(job.id).unwrap().log_archived);
        // Six step files, read newest first.
        assert_eq!(step_files(dir.path(), job.id).unwrap().len(), 6);
        assert_eq!(whole(&store), before);
        for (i, &n) in [1usize, 7, 400, 1_000, 2_345, 5_000].iter().enumerate() {
            let (lines, skipped) = last_lines(&store, dir.path(), job.id, n).unwrap();
            let kept = n.min(2_345);
            assert_eq!(lines, before[2_345 - kept..], "{n} lines");
            assert_eq!(skipped, (2_345 - kept) as u64, "{n} lines");
            assert_eq!(
                (lines, skipped),
                from_rows[i],
                "{n} lines: rows and files differ"
            );
        }
    }

    /// A batch: every job's files are put in place and its rows deleted; a stop before any
    /// job leaves every log in its rows, nothing aside.
    #[test]
    fn a_batch_is_archived_whole_and_a_stop_leaves_the_logs_in_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(&dir.path().join("db")).unwrap();
        let jobs = jobs_with_lines(&store, 3, 50, 20);
        let lines = |job: store::JobId| {
            let mut all = Vec::new();
            each_line(&store, dir.path(), job, 0, &mut |_, t| {
                all.push(t);
                true
            })
            .unwrap();
            all
        };
        let before: Vec<_> = jobs.iter().map(|j| lines(j.id)).collect();
        let stopped = CancellationToken::new();
        stopped.cancel();
        assert_eq!(archive_all(&store, dir.path(), &jobs, &stopped).unwrap(), 0);
        assert!(jobs.iter().all(|j| !store.job(j.id).unwrap().log_archived));
        assert!(
            !dir.path().join("logs").exists()
                || step_files(dir.path(), jobs[0].id).unwrap().is_empty()
        );
        let moved = archive_all(&store, dir.path(), &jobs, &CancellationToken::new()).unwrap();
        assert_eq!(moved, 3);
        for (job, before) in jobs.iter().zip(&before) {
            assert!(store.job(job.id).unwrap().log_archived);
            assert_eq!(step_files(dir.path(), job.id).unwrap().len(), 3);
            assert_eq!(&lines(job.id), before);
        }
        // Nothing left aside.
        let aside: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(aside.is_empty());
    }
}
