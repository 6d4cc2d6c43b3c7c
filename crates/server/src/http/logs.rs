//! A run's logs: what is stored, as text, or followed live as server-sent events (the stored
//! lines, then new ones; a follower that fell behind catches up from the store); and a run's
//! end alone, for whoever waits for it without its log.

use std::convert::Infallible;
use std::sync::Arc;
use store::{Conclusion, JobId, RunId, RunStatus};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;

use super::auth::Authorized;
use super::error::ApiError;
use super::state::AppStateRef;
use crate::blocking::{blocking, store_now};
use crate::logs::Live;

#[derive(Deserialize)]
pub(super) struct LogQuery {
    job: Option<String>,
    follow: Option<bool>,
    /// Only the last lines of each job, this many at most: the text form says how many
    /// earlier lines were left out in the `pipewright-lines-skipped` header, the followed
    /// form in a first `skipped` event (then the lines stored since, and new ones).
    tail: Option<usize>,
}

/// Whether job `name` (display name) or `job_id` is what `filter` asks for.
fn job_matches(filter: Option<&str>, name: &str, job_id: &str) -> bool {
    filter.is_none_or(|n| name == n || job_id == n || name.starts_with(&format!("{n} (")))
}

/// A stored line on its way to a reader: (job, job's display name, sequence, text).
type LogItem = (JobId, Arc<str>, i64, String);

/// Lines of `run` (the jobs `filter` selects) after the positions in `last`, at most
/// [`CATCH_UP`] of them; and whether there may be more.
fn catch_up(
    store: &store::Store,
    data: &std::path::Path,
    run: RunId,
    filter: Option<&str>,
    last: &std::collections::HashMap<JobId, i64>,
) -> Result<(Vec<LogItem>, bool), ApiError> {
    let found = lines_after(store, run, filter, last, &mut |job, after, f| {
        crate::logfiles::each_line(store, data, job, after, f).map(|()| true)
    })?;
    Ok(found.unwrap_or_default())
}

/// [`catch_up`] from the store's rows alone: `None` if a job's log is in files (archived),
/// where only [`catch_up`] reads it. Reads no file: a follower told `done` while caught up
/// (the usual case, with nothing or little left to read) does it in place.
fn catch_up_stored(
    store: &store::Store,
    run: RunId,
    filter: Option<&str>,
    last: &std::collections::HashMap<JobId, i64>,
) -> Result<Option<(Vec<LogItem>, bool)>, ApiError> {
    lines_after(store, run, filter, last, &mut |job, after, f| {
        crate::logfiles::each_stored_line(store, job, after, f)
    })
}

/// A line reader: `job`'s lines after `after`, to `f` until it returns false; `false` if it
/// could not read them all.
type ReadLines<'a> = dyn FnMut(
        JobId,
        i64,
        &mut dyn FnMut(i64, String) -> bool,
    ) -> Result<bool, crate::logfiles::LogFileError>
    + 'a;

/// The lines of run `run`'s selected jobs after those in `last`, up to [`CATCH_UP`] (and
/// whether there are more), as `read` finds them; `None` if it could not read one job's.
fn lines_after(
    store: &store::Store,
    run: RunId,
    filter: Option<&str>,
    last: &std::collections::HashMap<JobId, i64>,
    read: &mut ReadLines<'_>,
) -> Result<Option<(Vec<LogItem>, bool)>, ApiError> {
    let mut out = Vec::new();
    for job in store.jobs(run)? {
        if !job_matches(filter, &job.name, &job.job_id) {
            continue;
        }
        let name: Arc<str> = job.name.as_str().into();
        let after = last.get(&job.id).copied().unwrap_or(0);
        let whole = read(job.id, after, &mut |seq, text| {
            out.push((job.id, name.clone(), seq, text));
            out.len() < CATCH_UP
        })
        .map_err(ApiError::internal)?;
        if !whole {
            return Ok(None);
        }
        if out.len() >= CATCH_UP {
            return Ok(Some((out, true)));
        }
    }
    Ok(Some((out, false)))
}

/// Lines a follower reads from the store at once when it fell behind.
const CATCH_UP: usize = 2000;

pub(super) async fn run_logs(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<RunId>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    // Subscribe before reading what is stored, so no line falls between the two.
    let rx = s.live.subscribe();
    let store = s.store.clone();
    let job_name = q.job.clone();
    let (run, jobs) = store_now(&s.store, move || -> Result<_, ApiError> {
        let run = store.run(id)?;
        let jobs = store.jobs(id)?;
        if let Some(n) = &job_name
            && !jobs.iter().any(|j| j.name == *n || j.job_id == *n)
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("run {id} has no job `{n}`"),
            ));
        }
        Ok((run, jobs))
    })
    .await?;
    if let (Some(n), false) = (q.tail, q.follow.unwrap_or(false)) {
        return tail_of(&s, id, &jobs, q.job.as_deref(), n).await;
    }
    // What is stored, read in pages by a blocking task, a bounded channel between: a log of
    // any size is sent with little memory.
    let (tx, stored) = tokio::sync::mpsc::channel::<LogItem>(1024);
    let (store, data, filter) = (s.store.clone(), s.config.data_dir.clone(), q.job.clone());
    let mut selected: Vec<(JobId, Arc<str>, i64)> = jobs
        .iter()
        .filter(|j| job_matches(filter.as_deref(), &j.name, &j.job_id))
        .map(|j| (j.id, j.name.as_str().into(), 0))
        .collect();
    // Followed from the last `tail` lines of each job still in rows (a running run's).
    let mut skipped = 0i64;
    if let (Some(n), true) = (q.tail, q.follow.unwrap_or(false)) {
        let n = i64::try_from(n.clamp(1, 100_000)).unwrap_or(100_000);
        let ids: Vec<(JobId, bool)> = jobs
            .iter()
            .filter(|j| job_matches(filter.as_deref(), &j.name, &j.job_id))
            .map(|j| (j.id, j.log_archived))
            .collect();
        let store = store.clone();
        let lasts = blocking(move || -> Result<Vec<(JobId, i64)>, ApiError> {
            let mut out = Vec::new();
            for (job, archived) in ids {
                out.push((
                    job,
                    if archived {
                        0
                    } else {
                        store.job_log_last_seq(job)?
                    },
                ));
            }
            Ok(out)
        })
        .await?;
        for (job, _, after) in &mut selected {
            let last = lasts.iter().find(|(j, _)| j == job).map_or(0, |(_, l)| *l);
            *after = (last - n).max(0);
            skipped += *after;
        }
    }
    let starts: std::collections::HashMap<JobId, i64> =
        selected.iter().map(|(j, _, a)| (*j, *a)).collect();
    tokio::task::spawn_blocking(move || {
        for (job, name, after) in &selected {
            let read = crate::logfiles::each_line(&store, &data, *job, *after, &mut |seq, text| {
                tx.blocking_send((*job, name.clone(), seq, text)).is_ok()
            });
            if let Err(e) = read {
                tracing::warn!(run = id.get(), job = job.get(), "reading a job log: {e}");
            }
        }
    });
    let stored = tokio_stream::wrappers::ReceiverStream::new(stored);
    if !q.follow.unwrap_or(false) {
        // Lines gathered into chunks of about 64 KiB.
        let body = stored.ready_chunks(256).map(|items| {
            let mut text = String::new();
            for (_, name, _, line) in items {
                text.push_str(&format!("[{name}] {line}\n"));
            }
            Ok::<_, Infallible>(text)
        });
        return Ok((
            [("content-type", "text/plain; charset=utf-8")],
            axum::body::Body::from_stream(body),
        )
            .into_response());
    }
    let line_event = |name: &str, text: &str| {
        SseEvent::default()
            .event("line")
            .data(format!("[{name}] {text}"))
    };
    // Live: the stored lines, then new ones, until the run is done. A follower that fell
    // behind the broadcast (or sees a gap) reads what it missed from the store. The
    // broadcast tells only of the runs this server orchestrates and the lines its runners
    // send: every [`WAIT_RECHECK`] the store is read too, its new lines and whether the run
    // ended, for a run another server sharing the database has.
    struct Follow {
        stored: Option<tokio_stream::wrappers::ReceiverStream<LogItem>>,
        live: BroadcastStream<Live>,
        recheck: tokio::time::Interval,
        last: std::collections::HashMap<JobId, i64>,
        queue: std::collections::VecDeque<SseEvent>,
        /// Read the store before taking more from the broadcast.
        behind: bool,
        /// Read the store (its new lines, then whether the run ended) before taking more
        /// from the broadcast.
        look: bool,
        /// The run ended: after the catch-up, `done`.
        done: Option<String>,
        finished: bool,
    }
    let mut recheck = tokio::time::interval(WAIT_RECHECK);
    recheck.reset();
    let completed = (run.status == RunStatus::Completed)
        .then(|| run.conclusion.map_or("", Conclusion::as_str).to_owned());
    let start = Follow {
        stored: Some(stored),
        live: BroadcastStream::new(rx),
        recheck,
        last: starts,
        queue: (skipped > 0)
            .then(|| {
                SseEvent::default()
                    .event("skipped")
                    .data(skipped.to_string())
            })
            .into_iter()
            .collect(),
        behind: false,
        look: false,
        done: None,
        finished: false,
    };
    let (store, data, filter) = (s.store.clone(), s.config.data_dir.clone(), q.job.clone());
    let events = stream::unfold(start, move |mut f| {
        let (store, data, filter, completed) = (
            store.clone(),
            data.clone(),
            filter.clone(),
            completed.clone(),
        );
        async move {
            loop {
                if let Some(e) = f.queue.pop_front() {
                    return Some((Ok::<_, Infallible>(e), f));
                }
                if f.finished {
                    return None;
                }
                if let Some(stored) = f.stored.as_mut() {
                    match stored.next().await {
                        Some((job, name, seq, text)) => {
                            f.last.insert(job, seq);
                            f.queue.push_back(line_event(&name, &text));
                        }
                        None => {
                            f.stored = None;
                            if let Some(c) = &completed {
                                f.queue.push_back(SseEvent::default().event("done").data(c));
                                f.finished = true;
                            }
                        }
                    }
                    continue;
                }
                if f.behind || f.look || f.done.is_some() {
                    // Told `done` while caught up: what is left is usually nothing, read in
                    // place from the store's rows; the files (an archived log) and a
                    // follower that fell behind, on a blocking thread.
                    let stored = if f.behind {
                        None
                    } else {
                        let (s2, fl, last) = (store.clone(), filter.clone(), f.last.clone());
                        store_now(&store, move || {
                            catch_up_stored(&s2, id, fl.as_deref(), &last)
                        })
                        .await
                        .ok()
                        .flatten()
                    };
                    let (items, more) = match stored {
                        Some(found) => found,
                        None => {
                            let (s2, d2, fl, last) =
                                (store.clone(), data.clone(), filter.clone(), f.last.clone());
                            blocking(move || catch_up(&s2, &d2, id, fl.as_deref(), &last))
                                .await
                                .unwrap_or_default()
                        }
                    };
                    for (job, name, seq, text) in items {
                        f.last.insert(job, seq);
                        f.queue.push_back(line_event(&name, &text));
                    }
                    f.behind = more;
                    if !more && let Some(c) = f.done.take() {
                        f.queue.push_back(SseEvent::default().event("done").data(c));
                        f.finished = true;
                    } else if !more && std::mem::take(&mut f.look) {
                        // Ended in the store: every line of it was stored before, so one
                        // more catch-up reads the rest, then `done`.
                        if let Some(c) = ended_in_store(&store, id).await {
                            f.done = Some(c.map_or("", Conclusion::as_str).to_owned());
                        }
                    }
                    continue;
                }
                let told = tokio::select! {
                    told = f.live.next() => told?,
                    _ = f.recheck.tick() => {
                        f.look = true;
                        continue;
                    }
                };
                match told {
                    Ok(Live::Line {
                        run,
                        job,
                        job_name,
                        seq,
                        text,
                    }) if run == id => {
                        if !job_matches(filter.as_deref(), &job_name, &job_name) {
                            continue;
                        }
                        let last = f.last.get(&job).copied().unwrap_or(0);
                        if seq == last + 1 {
                            f.last.insert(job, seq);
                            f.queue.push_back(line_event(&job_name, &text));
                        } else if seq > last + 1 {
                            f.behind = true; // a gap: read it from the store
                        }
                    }
                    Ok(Live::RunDone { run, conclusion }) if run == id => {
                        // Every line is stored before `done`: read what was not seen yet.
                        f.done = Some(conclusion.as_str().to_owned());
                    }
                    Err(_lagged) => f.behind = true,
                    _ => {}
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// How often a waiter reads the run again: the broadcast tells only of the runs this server
/// orchestrates, and a run may be another's (servers sharing a database) or become another's
/// (taken up after its server stopped).
const WAIT_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Run `id`'s conclusion if the store has it completed (read in place: a short keyed call).
async fn ended_in_store(
    store: &std::sync::Arc<store::Store>,
    id: RunId,
) -> Option<Option<Conclusion>> {
    let s2 = store.clone();
    let run = store_now(store, move || s2.run(id)).await.ok()?;
    (run.status == RunStatus::Completed).then_some(run.conclusion)
}

/// `GET /api/v1/runs/{id}/wait`: Server-Sent Events, one `done` with the run's conclusion
/// once it ends (at once if it has), keep-alive comments meanwhile. What `pipewright
/// dispatch --wait` follows: the end of a run without its log, so no line is read from the
/// store or sent for it. Told by this server's broadcast, or found in the store (read again
/// every [`WAIT_RECHECK`], and after the broadcast ran ahead of this waiter).
pub(super) async fn run_wait(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(id): Path<RunId>,
) -> Result<Response, ApiError> {
    // Subscribed before the run is read, so its end cannot fall between the two.
    let live = s.live.subscribe();
    let store = s.store.clone();
    let run = store_now(&s.store, move || store.run(id)).await?;
    let ended = (run.status == RunStatus::Completed).then_some(run.conclusion);
    let store = s.store.clone();
    let end = async move {
        if let Some(conclusion) = ended {
            return Some(conclusion);
        }
        use tokio::sync::broadcast::error::RecvError;
        let mut live = live;
        let mut recheck = tokio::time::interval(WAIT_RECHECK);
        recheck.reset();
        loop {
            let look = tokio::select! {
                told = live.recv() => match told {
                    Ok(Live::RunDone { run, conclusion }) if run == id => {
                        tracing::debug!(run = id.get(), "waiter told");
                        return Some(Some(conclusion));
                    }
                    Ok(_) => false,
                    // Behind the broadcast: the end may have been among what was missed.
                    Err(RecvError::Lagged(_)) => true,
                    // The server is stopping: the stream ends without `done`.
                    Err(RecvError::Closed) => return None,
                },
                _ = recheck.tick() => true,
            };
            if look && let Some(conclusion) = ended_in_store(&store, id).await {
                return Some(conclusion);
            }
        }
    };
    let events = stream::once(end).filter_map(|end| async move {
        end.map(|conclusion| {
            Ok::<_, Infallible>(
                SseEvent::default()
                    .event("done")
                    .data(conclusion.map_or("", Conclusion::as_str)),
            )
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The last `n` lines of each selected job of run `id`, as text, and how many earlier lines
/// were left out (header `pipewright-lines-skipped`): what a page shows of a finished run
/// first, whatever the size of its log.
async fn tail_of(
    s: &AppStateRef,
    id: RunId,
    jobs: &[store::Job],
    filter: Option<&str>,
    n: usize,
) -> Result<Response, ApiError> {
    let n = n.clamp(1, 100_000);
    let selected: Vec<(JobId, String)> = jobs
        .iter()
        .filter(|j| job_matches(filter, &j.name, &j.job_id))
        .map(|j| (j.id, j.name.clone()))
        .collect();
    let (store, data) = (s.store.clone(), s.config.data_dir.clone());
    let (text, skipped) = blocking(move || -> Result<(String, u64), ApiError> {
        let mut text = String::new();
        let mut skipped = 0u64;
        for (job, name) in &selected {
            let (last, before) =
                crate::logfiles::last_lines(&store, &data, *job, n).map_err(ApiError::internal)?;
            skipped += before;
            for line in last {
                text.push_str(&format!("[{name}] {line}\n"));
            }
        }
        Ok((text, skipped))
    })
    .await?;
    tracing::debug!(run = id.get(), skipped, "log tail");
    Ok((
        [
            ("content-type", "text/plain; charset=utf-8".to_owned()),
            ("pipewright-lines-skipped", skipped.to_string()),
        ],
        text,
    )
        .into_response())
}
