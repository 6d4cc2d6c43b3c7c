//! The one way async code calls the store (or anything else that blocks): [`blocking`].

/// Why a [`blocking`] call gave no value: the call's own error, or its task's. HTTP handlers
/// turn both into an `ApiError` with `?`; background tasks tell them apart.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Blocked<E> {
    /// What the call returned.
    #[error(transparent)]
    Call(E),
    /// The call panicked, or the runtime stopped before it ran.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl<E: From<tokio::task::JoinError>> Blocked<E> {
    /// The error as `E`, for calls whose error type can say that a task failed.
    pub(crate) fn flatten(self) -> E {
        match self {
            Blocked::Call(e) => e,
            Blocked::Task(e) => e.into(),
        }
    }
}

/// Runs `f` (store calls, file reads) on the blocking threads, off the async ones.
pub(crate) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Blocked<E>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?.map_err(Blocked::Call)
}

/// Runs `f`, a short store call, now on this thread when the store can answer it without
/// waiting on another thread (the embedded database's connection is free: see
/// [`store::Store::hold_if_free`]); else on the blocking threads, as [`blocking`] does.
///
/// Handing a call to a blocking thread and taking its answer back wakes two threads, and on
/// the dispatch path those wake-ups cost more than the calls themselves. Only for calls by
/// key that touch a few rows (a run's, a job's, a lease): not for ones that read files, run
/// git, or page through logs, which would hold this async thread.
pub(crate) async fn store_now<T, E>(
    store: &store::Store,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Blocked<E>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    match in_place(store, f) {
        Ok(out) => out.map_err(Blocked::Call),
        Err(f) => blocking(f).await,
    }
}

/// `f` run under a hold of the store's connection, or `f` back if another thread holds it.
/// Synchronous, so the hold (which is this thread's) never crosses an `await`.
fn in_place<R, F: FnOnce() -> R>(store: &store::Store, f: F) -> Result<R, F> {
    match store.hold_if_free() {
        Some(held) => {
            let out = f();
            drop(held);
            Ok(out)
        }
        None => Err(f),
    }
}
