//! The API's one error type ([`ApiError`]): it logs the cause and answers a safe message;
//! how the errors of the store, git, triggers and secrets map to it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::blocking::Blocked;
use crate::trigger;

/// An API error: a status and a message safe to show; the cause is logged.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message safe to show.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::NoRun(id) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("run {id} does not exist"))
            }
            store::StoreError::NoJob(id) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("job {id} does not exist"))
            }
            e @ store::StoreError::NoDeployment(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            e @ store::StoreError::NotHeld(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// A [`blocking`](crate::blocking::blocking) call that failed: the call's error as it maps,
/// a task that failed as an internal error.
impl<E: Into<ApiError>> From<Blocked<E>> for ApiError {
    fn from(e: Blocked<E>) -> Self {
        match e {
            Blocked::Call(e) => e.into(),
            Blocked::Task(e) => ApiError::internal(e),
        }
    }
}

impl From<getrandom::Error> for ApiError {
    fn from(e: getrandom::Error) -> Self {
        ApiError::internal(format!("no random bytes from the operating system: {e}"))
    }
}

impl From<crate::secrets::SecretError> for ApiError {
    fn from(e: crate::secrets::SecretError) -> Self {
        ApiError::internal(e)
    }
}

impl From<trigger::TriggerError> for ApiError {
    fn from(e: trigger::TriggerError) -> Self {
        match e {
            trigger::TriggerError::NoWorkflow(_)
            | trigger::TriggerError::NotDispatchable(_)
            | trigger::TriggerError::Inputs { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            trigger::TriggerError::Git(g) => git_error(&g),
            trigger::TriggerError::Store(s) => s.into(),
        }
    }
}

/// A git failure as an answer: what could not be read, without the server's paths (the
/// whole error is logged).
pub(super) fn git_error(e: &crate::git::GitError) -> ApiError {
    tracing::warn!("git: {e}");
    let what = match e {
        crate::git::GitError::NotAnId(id) => format!("`{id}` is not a commit id"),
        _ => "git could not read that revision of the repository".to_owned(),
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, what)
}
