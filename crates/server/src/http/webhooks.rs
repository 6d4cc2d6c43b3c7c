//! Pushes and pull/merge requests coming in: the post-receive hooks' route, and the signed
//! webhooks of GitHub, Gitea (and Forgejo) and GitLab, read within a memory budget and
//! handed to the intake.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::StreamExt;
use serde::Deserialize;

use super::auth::constant_time_eq;
use super::error::ApiError;
use super::state::{AppStateRef, MAX_BODY};
use crate::blocking::blocking;
use crate::trigger::{self, Event};

#[derive(Deserialize)]
pub(super) struct PushBody {
    repo: String,
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
}

/// A push reported by a repository's post-receive hook.
pub(super) async fn hook_push(
    State(s): State<AppStateRef>,
    headers: HeaderMap,
    Json(body): Json<PushBody>,
) -> Result<Response, ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|t| constant_time_eq(t.as_bytes(), s.hook_token.as_bytes())) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid hook token",
        ));
    }
    let cfg = s.config.repo(&body.repo).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository `{}` is not configured", body.repo),
        )
    })?;
    if body.after.chars().all(|c| c == '0') {
        return Ok((StatusCode::OK, Json(serde_json::json!({ "runs": [] }))).into_response()); // a deleted ref
    }
    // Ids go to git: anything else is refused, whoever sends it.
    for (what, id) in [("after", &body.after), ("before", &body.before)] {
        let new_ref = what == "before" && id.chars().all(|c| c == '0');
        if !(crate::git::is_commit_id(id) || new_ref) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`{what}` is not a commit id"),
            ));
        }
    }
    let store = s.store.clone();
    let ids = blocking(move || -> Result<_, ApiError> {
        let event = Event::push(&cfg.name, &body.git_ref, &body.before, &body.after);
        Ok(trigger::enqueue(&store, &cfg, &event)?)
    })
    .await?;
    s.wake.notify_waiters();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "runs": ids })),
    )
        .into_response())
}

/// The forges whose webhooks are understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forge {
    GitHub,
    /// Gitea and Forgejo (which also sends Gitea's headers).
    Gitea,
    GitLab,
}

pub(super) async fn github_webhook(
    state: State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    webhook(Forge::GitHub, state, headers, body).await
}

pub(super) async fn gitea_webhook(
    state: State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    webhook(Forge::Gitea, state, headers, body).await
}

pub(super) async fn gitlab_webhook(
    state: State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    webhook(Forge::GitLab, state, headers, body).await
}

/// What a delivery asks for.
enum Delivery {
    Ping,
    Ignored(String),
    /// Authentic, but not something to run (a commit id that is not one).
    Invalid(String),
    Run(Box<Event>),
}

/// `Invalid` unless every id in `ids` is a full commit id (an id is given to git).
fn ids_checked(ids: &[(&str, &str)], run: Event) -> Delivery {
    for (what, id) in ids {
        if !crate::git::is_commit_id(id) {
            return Delivery::Invalid(format!("`{what}` is not a commit id: `{id}`"));
        }
    }
    Delivery::Run(Box::new(run))
}

fn str_at(json: &serde_json::Value, ptr: &str) -> Option<String> {
    json.pointer(ptr)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// What an authentic delivery of `forge` (`github`, `gitea`, `gitlab`) for event `kind`
/// asks to run, read as the server reads one: any bytes give an answer, never a panic (the
/// fuzz target `webhook` holds it to that).
pub fn read_webhook(forge: &str, kind: &str, body: &[u8]) -> Option<Event> {
    let forge = match forge {
        "github" => Forge::GitHub,
        "gitea" => Forge::Gitea,
        "gitlab" => Forge::GitLab,
        _ => return None,
    };
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    match parse_delivery(forge, kind, &json) {
        Delivery::Run(e) => Some(*e),
        Delivery::Ping | Delivery::Ignored(_) | Delivery::Invalid(_) => None,
    }
}

/// Reads a forge's push or pull/merge request event into our [`Event`].
fn parse_delivery(forge: Forge, kind: &str, json: &serde_json::Value) -> Delivery {
    let deleted = |after: &str| after.is_empty() || after.chars().all(|c| c == '0');
    match (forge, kind) {
        (Forge::GitHub | Forge::Gitea, "ping") | (Forge::GitLab, "System Hook") => Delivery::Ping,
        (Forge::GitHub | Forge::Gitea, "push") | (Forge::GitLab, "Push Hook" | "Tag Push Hook") => {
            let after = str_at(json, "/after").unwrap_or_default();
            if deleted(&after) {
                return Delivery::Ignored("a deleted ref".into());
            }
            let before = str_at(json, "/before");
            let zeros = before
                .as_deref()
                .is_none_or(|b| b.chars().all(|c| c == '0'));
            let mut ids = vec![("after", after.as_str())];
            if let (false, Some(b)) = (zeros, before.as_deref()) {
                ids.push(("before", b));
            }
            ids_checked(
                &ids,
                Event {
                    name: "push".into(),
                    git_ref: str_at(json, "/ref").unwrap_or_default(),
                    sha: after.clone(),
                    before: before.clone(),
                    payload: json.clone(),
                    ..Event::default()
                },
            )
        }
        (Forge::GitHub | Forge::Gitea, "pull_request") => {
            let action = str_at(json, "/action").unwrap_or_default();
            // Gitea says `synchronized` where GitHub says `synchronize`.
            let action = if action == "synchronized" {
                "synchronize".to_owned()
            } else {
                action
            };
            if !["opened", "synchronize", "reopened"].contains(&action.as_str()) {
                return Delivery::Ignored(action);
            }
            let number = json["number"].as_u64().unwrap_or(0);
            let head_repo = str_at(json, "/pull_request/head/repo/full_name");
            let base_repo = str_at(json, "/pull_request/base/repo/full_name");
            let sha = str_at(json, "/pull_request/head/sha").unwrap_or_default();
            ids_checked(
                &[("pull_request.head.sha", &sha)],
                Event {
                    name: "pull_request".into(),
                    git_ref: format!("refs/pull/{number}/merge"),
                    base_ref: str_at(json, "/pull_request/base/ref"),
                    head_ref: str_at(json, "/pull_request/head/ref"),
                    // A fork unless proven otherwise: a head repository that is missing or
                    // null (GitHub sends null once the fork is deleted) is not the base.
                    fork: !(head_repo.is_some() && head_repo == base_repo),
                    action: Some(action),
                    payload: json.clone(),
                    sha: sha.clone(),
                    ..Event::default()
                },
            )
        }
        (Forge::GitLab, "Merge Request Hook") => {
            let action = match str_at(json, "/object_attributes/action").as_deref() {
                Some("open") => "opened",
                Some("update") => "synchronize",
                Some("reopen") => "reopened",
                other => return Delivery::Ignored(other.unwrap_or_default().to_owned()),
            };
            let iid = json
                .pointer("/object_attributes/iid")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let source = json
                .pointer("/object_attributes/source_project_id")
                .filter(|v| !v.is_null());
            let target = json.pointer("/object_attributes/target_project_id");
            let sha = str_at(json, "/object_attributes/last_commit/id").unwrap_or_default();
            ids_checked(
                &[("object_attributes.last_commit.id", &sha)],
                Event {
                    name: "pull_request".into(),
                    git_ref: format!("refs/merge-requests/{iid}/head"),
                    base_ref: str_at(json, "/object_attributes/target_branch"),
                    head_ref: str_at(json, "/object_attributes/source_branch"),
                    // A fork unless both projects are named and the same.
                    fork: !(source.is_some() && source == target),
                    action: Some(action.to_owned()),
                    payload: json.clone(),
                    sha: sha.clone(),
                    ..Event::default()
                },
            )
        }
        (_, other) => Delivery::Ignored(other.to_owned()),
    }
}

/// `POST /hooks/{github,gitea,gitlab}`: push and pull/merge request events, authenticated by
/// a repository's `webhook_secret` before anything in the body is believed or even parsed:
/// the repository is the one whose secret signs the body. A body is read whole only within
/// a budget shared by all deliveries ([`WEBHOOK_BUDGET`]), so a flood of large unsigned
/// bodies holds a bounded amount of memory.
async fn webhook(
    forge: Forge,
    State(s): State<AppStateRef>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (event_header, delivery_header) = match forge {
        Forge::GitHub => ("x-github-event", "x-github-delivery"),
        Forge::Gitea => ("x-gitea-event", "x-gitea-delivery"),
        Forge::GitLab => ("x-gitlab-event", "x-gitlab-event-uuid"),
    };
    let kind = header(event_header)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("missing {event_header}")))?;
    let delivery = header(delivery_header);
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is over 25 MiB",
        ));
    }
    // The body's share of the budget (KiB), waited for a little, then refused.
    let kib = u32::try_from(declared.unwrap_or(MAX_BODY) / 1024 + 1).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.webhook_budget.clone().acquire_many_owned(kib),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        tracing::warn!("webhook deliveries: the memory budget for bodies is spent");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many deliveries at once",
        )
    })?;
    let limit = declared.unwrap_or(MAX_BODY).min(MAX_BODY);
    // Read into a buffer of the announced size (no growth by doubling on the way), within a
    // deadline: a sender that stalls does not keep its share of the budget.
    let read = async {
        let mut buf = Vec::with_capacity(declared.unwrap_or(64 * 1024).min(MAX_BODY));
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is over 25 MiB or longer than announced",
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let body = tokio::time::timeout(s.config.idle_timeout, read)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            )
        })??;
    let signed_by = |secret: &str| match forge {
        Forge::GitHub => header("x-hub-signature-256")
            .is_some_and(|sig| verify_signature(secret.as_bytes(), &body, &sig)),
        Forge::Gitea => header("x-gitea-signature")
            .or_else(|| header("x-forgejo-signature"))
            .is_some_and(|sig| {
                verify_signature(secret.as_bytes(), &body, &format!("sha256={sig}"))
            }),
        Forge::GitLab => header("x-gitlab-token")
            .is_some_and(|t| constant_time_eq(t.as_bytes(), secret.as_bytes())),
    };
    let signers: Vec<&crate::config::RepoConfig> = s
        .config
        .repos
        .iter()
        .filter(|r| r.webhook_secret.as_deref().is_some_and(signed_by))
        .collect();
    // Nothing says which repositories exist to a caller that cannot sign.
    if signers.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad or missing signature",
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    drop(body);
    drop(permit);
    let names: Vec<String> = match forge {
        Forge::GitLab => [
            str_at(&json, "/project/path_with_namespace"),
            str_at(&json, "/project/name"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        _ => [
            str_at(&json, "/repository/full_name"),
            str_at(&json, "/repository/name"),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    // Repositories sharing a secret: the one the (authentic) body names.
    let cfg = match signers.as_slice() {
        [one] => (*one).clone(),
        many => many
            .iter()
            .find(|r| names.contains(&r.name))
            .map(|r| (*r).clone())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the delivery names none of the repositories its secret is for",
                )
            })?,
    };
    let event = match parse_delivery(forge, &kind, &json) {
        Delivery::Ping => {
            return Ok((StatusCode::OK, Json(serde_json::json!({ "pong": true }))).into_response());
        }
        Delivery::Ignored(what) => {
            return Ok((
                StatusCode::OK,
                Json(serde_json::json!({ "runs": [], "ignored": what })),
            )
                .into_response());
        }
        Delivery::Invalid(what) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, what));
        }
        Delivery::Run(e) => *e,
    };
    // Stored, answered, then turned into runs by the intake. Idempotent by delivery id: a
    // redelivery queues nothing.
    let event_json = serde_json::to_string(&event).map_err(ApiError::internal)?;
    let accepted = s
        .intake
        .accept(store::NewDelivery {
            key: delivery.map(|d| format!("{forge:?}:{d}")),
            repo: cfg.name.clone(),
            event_json,
        })
        .await
        .map_err(|e| match e {
            crate::intake::IntakeError::Stopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
            }
            e @ (crate::intake::IntakeError::Store(_) | crate::intake::IntakeError::Task) => {
                ApiError::internal(e)
            }
        })?;
    Ok(match accepted {
        Some(id) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "delivery": id, "queued": true })),
        )
            .into_response(),
        None => (
            StatusCode::OK,
            Json(serde_json::json!({ "runs": [], "duplicate": true })),
        )
            .into_response(),
    })
}

/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
pub(crate) fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}
