//! The HTTP API: every route in one table ([`router`]), the handlers by resource. The
//! leaves [`state`], [`error`] and [`auth`] (what every handler shares, the one error type,
//! who may call) depend on no route module; the route modules depend on them.

mod artifacts;
mod auth;
mod deployments;
mod error;
mod in_place;
mod logs;
mod metrics;
mod monitors;
mod runners;
mod runs;
mod secrets;
mod state;
mod users;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub(crate) use artifacts::gc_task;
pub(crate) use auth::{constant_time_eq, new_token, token_hash};
pub(crate) use deployments::roll_back;
pub(crate) use error::ApiError;
pub(crate) use in_place::InPlace;
pub(crate) use monitors::queue_test;
pub(crate) use runners::reaper;
pub(crate) use runs::decide;
pub(crate) use secrets::{remove_secret, set_secret};
pub(crate) use state::{AppState, AppStateRef, Runners, WEBHOOK_BUDGET};
pub(crate) use users::{change_user, create_user};
pub use webhooks::read_webhook;

use state::MAX_BODY;

pub(crate) fn router(state: AppStateRef) -> Router {
    Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/openapi.json", get(metrics::openapi))
        .route("/api/v1/runs/{id}/rerun", post(runs::rerun_run))
        .route("/api/v1/runs", get(runs::list_runs))
        .route("/api/v1/runs/{id}", get(runs::show_run))
        .route("/api/v1/runs/{id}/logs", get(logs::run_logs))
        .route("/api/v1/runs/{id}/wait", get(logs::run_wait))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel_run))
        .route("/api/v1/runs/{id}/approve", post(runs::approve_run))
        .route("/api/v1/runs/{id}/reject", post(runs::reject_run))
        .route("/api/v1/repos/{repo}/dispatch", post(runs::dispatch))
        .route("/api/v1/internal/push", post(webhooks::hook_push))
        .route("/api/v1/secrets", get(secrets::list_secrets))
        .route(
            "/api/v1/tokens",
            post(auth::create_token).get(auth::list_tokens),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(auth::revoke_token),
        )
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(secrets::put_secret).delete(secrets::delete_secret),
        )
        .route("/api/v1/runners", get(runners::list_runners))
        .route(
            "/api/v1/runners/{id}",
            axum::routing::delete(runners::remove_runner),
        )
        .route("/api/v1/runners/tokens", post(runners::create_runner_token))
        .route("/api/v1/runners/register", post(runners::register))
        .route("/api/v1/runner/jobs/next", post(runners::next_job))
        .route(
            "/api/v1/runner/jobs/{id}/heartbeat",
            post(runners::heartbeat),
        )
        .route("/api/v1/runner/jobs/{id}/logs", post(runners::logs))
        .route("/api/v1/runner/jobs/{id}/finish", post(runners::finish))
        .route("/api/v1/runner/jobs/{id}/source", get(runners::source))
        .route(
            "/api/v1/runner/jobs/{id}/artifacts",
            get(artifacts::job_artifacts),
        )
        .route(
            "/api/v1/runner/jobs/{id}/artifacts/{name}",
            get(artifacts::job_artifact).put(artifacts::put_artifact),
        )
        .route(
            "/api/v1/runner/jobs/{id}/blobs/missing",
            post(artifacts::missing_blobs),
        )
        .route(
            "/api/v1/runner/jobs/{id}/blobs/{hash}",
            get(artifacts::get_blob).put(artifacts::put_blob),
        )
        .route(
            "/api/v1/runner/jobs/{id}/caches/lookup",
            post(artifacts::lookup_cache),
        )
        .route(
            "/api/v1/runner/jobs/{id}/caches",
            axum::routing::put(artifacts::save_cache),
        )
        .route("/api/v1/runs/{id}/artifacts", get(artifacts::run_artifacts))
        .route(
            "/api/v1/runs/{id}/artifacts/{name}",
            get(artifacts::run_artifact),
        )
        .route("/api/v1/admin/gc", post(artifacts::admin_gc))
        .route("/api/v1/monitors", get(monitors::list_monitors))
        .route(
            "/api/v1/users",
            get(users::list_users).post(users::add_user),
        )
        .route("/api/v1/users/{name}", axum::routing::put(users::set_user))
        .route("/api/v1/environments", get(deployments::environments))
        .route(
            "/api/v1/environments/{repo}/{name}/deployments",
            get(deployments::deployments),
        )
        .route(
            "/api/v1/environments/{repo}/{name}/rollback",
            post(deployments::rollback),
        )
        .route("/api/v1/deployments", post(deployments::cli_start))
        .route("/api/v1/deployments/{id}", post(deployments::cli_finish))
        .route("/api/v1/job/deployments", post(deployments::start))
        .route("/api/v1/job/deployments/{id}", post(deployments::finish))
        .route("/api/v1/alerts", get(monitors::list_alerts))
        .route(
            "/api/v1/notify/{channel}/test",
            post(monitors::test_channel),
        )
        .route("/hooks/github", post(webhooks::github_webhook))
        .route("/hooks/gitea", post(webhooks::gitea_webhook))
        .route("/hooks/gitlab", post(webhooks::gitlab_webhook))
        .merge(crate::web::router())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    /// Every route of `router` is described in openapi.json, and nothing else is.
    #[test]
    fn openapi_matches_the_router() {
        let doc: serde_json::Value = serde_json::from_str(super::metrics::OPENAPI).unwrap();
        let mut documented: Vec<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let src = include_str!("mod.rs");
        // The router function only.
        let start = src.find("pub(crate) fn router(").unwrap();
        let body = &src[start..start + src[start..].find("\n}\n").unwrap()];
        let mut routed: Vec<String> = body
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"'))
            .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
