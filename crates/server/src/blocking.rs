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
