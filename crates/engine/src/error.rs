//! Why a job or step could not do what its workflow says. Every such error ends up as a
//! message in the job's log and a failed step or job; none escapes the engine.

use crate::actions::ActionError;
use crate::commands::FileCommandError;

/// A job's definition could not be read or evaluated: what callers outside the engine see.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DefinitionError(#[from] pub(crate) JobError);

#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// An expression in `what` (for example "`run`" or "job `env`") could not be evaluated.
    #[error("{what}: {source}")]
    Expression {
        what: String,
        #[source]
        source: workflow::eval::EvalError,
    },
    /// A value of the workflow is not of the kind it must be.
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    FileCommand {
        file: &'static str,
        #[source]
        source: FileCommandError,
    },
    #[error(transparent)]
    Action(#[from] ActionError),
}

impl JobError {
    pub(crate) fn expr(what: impl Into<String>, source: workflow::eval::EvalError) -> Self {
        JobError::Expression {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        JobError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        JobError::Io {
            what: what.into(),
            source,
        }
    }
}
