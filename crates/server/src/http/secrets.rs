//! Secrets: set (sealed before they are stored), deleted, and listed by name and scope,
//! never by value.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Authorized;
use super::error::ApiError;
use super::state::AppStateRef;
use crate::blocking::blocking;

#[derive(Deserialize)]
pub(super) struct SecretScope {
    repo: Option<String>,
    environment: Option<String>,
}

fn valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

/// `PUT /api/v1/secrets/{name}?repo=R&environment=E`, the value as the body.
pub(super) async fn put_secret(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(name): Path<String>,
    Query(scope): Query<SecretScope>,
    body: String,
) -> Result<Response, ApiError> {
    set_secret(
        &s,
        scope.repo.unwrap_or_default(),
        scope.environment.unwrap_or_default(),
        name,
        body.trim_end_matches('\n'),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Seals and stores secret `name` of `repo` (all repositories when empty) and
/// `environment` (any job when empty).
pub(crate) async fn set_secret(
    s: &AppStateRef,
    repo: String,
    environment: String,
    name: String,
    value: &str,
) -> Result<(), ApiError> {
    if !valid_secret_name(&name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`{name}` is not a valid secret name: letters, digits and `_`, not starting with a digit or GITHUB_"
            ),
        ));
    }
    if !repo.is_empty() && s.config.repo(&repo).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository `{repo}` is not configured"),
        ));
    }
    let sealed = s.sealer.seal(&repo, &environment, &name, value)?;
    let store = s.store.clone();
    blocking(move || store.put_secret(&repo, &environment, &name, &sealed)).await?;
    Ok(())
}

pub(super) async fn delete_secret(
    _: Authorized,
    State(s): State<AppStateRef>,
    Path(name): Path<String>,
    Query(scope): Query<SecretScope>,
) -> Result<Response, ApiError> {
    let found = remove_secret(
        &s,
        scope.repo.unwrap_or_default(),
        scope.environment.unwrap_or_default(),
        name,
    )
    .await?;
    Ok(if found {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response())
}

/// Deletes a secret; false if there was none.
pub(crate) async fn remove_secret(
    s: &AppStateRef,
    repo: String,
    environment: String,
    name: String,
) -> Result<bool, ApiError> {
    let store = s.store.clone();
    Ok(blocking(move || store.delete_secret(&repo, &environment, &name)).await?)
}

/// Names and scopes only, never values.
pub(super) async fn list_secrets(
    _: Authorized,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let rows = blocking(move || store.secret_names()).await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(repo, environment, name, updated_at)| {
            serde_json::json!({"name": name, "repo": repo, "environment": environment, "updated_at": updated_at})
        })
        .collect();
    Ok(Json(list).into_response())
}
