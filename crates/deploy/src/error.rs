//! The deploy crate's errors: what went wrong in which step, with its cause.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the `{hook}` hook failed ({status})")]
    Hook { hook: String, status: String },
    #[error("the `{hook}` hook did not finish within {after}: stopped")]
    HookTimedOut { hook: String, after: String },
    #[error(transparent)]
    Unhealthy(#[from] crate::health::HealthError),
    #[error(transparent)]
    Dotenv(#[from] crate::dotenv::DotenvError),
    #[error("`{path}` does not match its checksum")]
    Checksum { path: String },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the connection to the deployer closed before the upload was complete")]
    Disconnected,
    #[error("{0}")]
    Refused(String),
    #[error("ssh {destination}: {message}")]
    Ssh {
        destination: String,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
