//! Accounts of the dashboard (admin token): `GET /api/v1/users`, `POST /api/v1/users`
//! (`{name, role, password?}`: a password is generated and answered once when none is
//! given), `PUT /api/v1/users/{name}` (`{role, password?}`: the account's sessions end).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiError;
use super::state::AppStateRef;
use crate::blocking::blocking;
use crate::web::Role;

pub(crate) async fn list_users(
    _: Admin,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let users = blocking(move || store.users()).await?;
    Ok(Json(serde_json::json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewUser {
    name: String,
    role: String,
    password: Option<String>,
}

fn role_of(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{role}` is not a role: admin, operator or viewer"),
        )
    })
}

fn password_of(given: Option<String>) -> Result<(String, bool), ApiError> {
    match given {
        Some(p) if p.chars().count() < 10 => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a password needs at least 10 characters",
        )),
        Some(p) => Ok((p, false)),
        None => Ok((crate::random_token()?[..20].to_owned(), true)),
    }
}

pub(crate) async fn add_user(
    _: Admin,
    State(s): State<AppStateRef>,
    Json(u): Json<NewUser>,
) -> Result<Response, ApiError> {
    let (name, role, made) = create_user(&s, &u.name, &u.role, u.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "name": name,
            "role": role.as_str(),
            "password": made,
        })),
    )
        .into_response())
}

/// Makes an account: its name (trimmed), its role, and the password made for it when none
/// was given (shown once).
pub(crate) async fn create_user(
    s: &AppStateRef,
    name: &str,
    role: &str,
    password: Option<String>,
) -> Result<(String, Role, Option<String>), ApiError> {
    let role = role_of(role)?;
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a name is 1 to 64 characters, no `/` nor control characters",
        ));
    }
    let (password, made) = password_of(password)?;
    let (store, n, pw) = (s.store.clone(), name.clone(), password.clone());
    let created = blocking(move || -> Result<bool, ApiError> {
        let hash = crate::web::session::hash_password(&pw).map_err(ApiError::internal)?;
        Ok(store.create_user(&n, role.as_str(), &hash)?)
    })
    .await?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("there is an account `{name}` already"),
        ));
    }
    tracing::info!(user = name, role = role.as_str(), "account made");
    Ok((name, role, made.then_some(password)))
}

#[derive(Deserialize)]
pub(crate) struct UserChange {
    role: String,
    password: Option<String>,
}

pub(crate) async fn set_user(
    _: Admin,
    State(s): State<AppStateRef>,
    Path(name): Path<String>,
    Json(u): Json<UserChange>,
) -> Result<Response, ApiError> {
    let role = change_user(&s, &name, &u.role, u.password).await?;
    Ok(Json(serde_json::json!({ "name": name, "role": role.as_str() })).into_response())
}

/// Gives account `name` a role (and a new password); its sessions end.
pub(crate) async fn change_user(
    s: &AppStateRef,
    name: &str,
    role: &str,
    password: Option<String>,
) -> Result<Role, ApiError> {
    let name = name.to_owned();
    let role = role_of(role)?;
    let password = password.map(|p| password_of(Some(p))).transpose()?;
    let (store, n) = (s.store.clone(), name.clone());
    let changed = blocking(move || -> Result<bool, ApiError> {
        let hash = password
            .map(|(p, _)| crate::web::session::hash_password(&p))
            .transpose()
            .map_err(ApiError::internal)?;
        Ok(store.update_user(&n, role.as_str(), hash.as_deref())?)
    })
    .await?;
    if !changed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no account `{name}`"),
        ));
    }
    tracing::info!(user = name, role = role.as_str(), "account changed");
    Ok(role)
}
