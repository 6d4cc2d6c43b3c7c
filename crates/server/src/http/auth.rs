//! Who may call: the admin token and API tokens as extractors ([`Authorized`], [`Admin`]),
//! bearer tokens and their hashes, and the API-token routes.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::state::AppStateRef;
use crate::blocking::blocking;

/// The caller presented the admin token or an API token.
pub(crate) struct Authorized;

impl FromRequestParts<AppStateRef> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        let expected = &state.admin_token;
        let Some(given) = bearer(parts).map(str::to_owned) else {
            // The dashboard's pages read the API (a run's live log) with their session;
            // they change nothing through it (forms with CSRF tokens do that).
            if parts.method == axum::http::Method::GET
                && crate::web::session_of(state, &parts.headers)
                    .await
                    .is_some()
            {
                return Ok(Authorized);
            }
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token",
            ));
        };
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Ok(Authorized);
        }
        // Tokens made with `pipewright tokens create` are stored hashed.
        let store = state.store.clone();
        let hash = token_hash(&given);
        match blocking(move || store.token_name(&hash)).await? {
            Some(_) => Ok(Authorized),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid token")),
        }
    }
}

/// The caller presented the admin token itself (to create tokens).
pub(crate) struct Admin;

impl FromRequestParts<AppStateRef> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        let expected = &state.admin_token;
        match bearer(parts) {
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(Admin),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the admin token",
            )),
        }
    }
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// SHA-256 of a token, hex: tokens are random and long, so a slow hash adds nothing.
pub(crate) fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[derive(Deserialize)]
pub(super) struct NewToken {
    name: String,
}

/// `POST /api/v1/tokens`: a new API token, shown once.
pub(super) async fn create_token(
    _: Admin,
    State(s): State<AppStateRef>,
    Json(body): Json<NewToken>,
) -> Result<Response, ApiError> {
    let (id, token) = new_token(&s, body.name.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "name": body.name, "token": token })),
    )
        .into_response())
}

/// Makes an API token named `name`: its id and the token (only its hash is kept).
pub(crate) async fn new_token(
    s: &AppStateRef,
    name: String,
) -> Result<(store::TokenId, String), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a token needs a name",
        ));
    }
    let token = format!("pw_{}", crate::random_token()?);
    let hash = token_hash(&token);
    let store = s.store.clone();
    let id = blocking(move || store.add_token(&name, &hash)).await?;
    Ok((id, token))
}

/// `GET /api/v1/tokens`: the API tokens (ids, names, when made; never the tokens).
pub(super) async fn list_tokens(
    _: Admin,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let rows = blocking(move || store.tokens()).await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, name, created_at)| {
            serde_json::json!({"id": id, "name": name, "created_at": created_at})
        })
        .collect();
    Ok(Json(list).into_response())
}

/// `DELETE /api/v1/tokens/{id}`: the token stops working at once.
pub(super) async fn revoke_token(
    _: Admin,
    State(s): State<AppStateRef>,
    Path(id): Path<store::TokenId>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    if blocking(move || store.revoke_token(id)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no token {id}"),
        ))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
