//! Monitors and alerts: `GET /api/v1/monitors` (each configured monitor with its state,
//! uptime and incidents), `GET /api/v1/alerts` (the last alerts and how sending went) and
//! `POST /api/v1/notify/{channel}/test`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Admin, Authorized};
use super::error::ApiError;
use super::state::AppStateRef;
use crate::blocking::blocking;

/// `GET /api/v1/monitors`: the monitors (configured, and those environments' deployments
/// asked for), as the checks left them (a monitor not checked yet has `up: null`), with
/// their uptime over the last 24 hours, their last checks and incidents.
pub(crate) async fn list_monitors(
    _: Authorized,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let (store, config) = (s.store.clone(), s.config.clone());
    let (list, states, incidents) = blocking(move || -> Result<_, ApiError> {
        Ok((
            crate::notify::all_monitors(&config, &store)?,
            store.monitors()?,
            store.incidents(None, 100)?,
        ))
    })
    .await?;
    let monitors: Vec<serde_json::Value> = list
        .iter()
        .map(|m| {
            let state = states.iter().find(|st| st.name == m.name);
            let uptime = state
                .filter(|st| st.checks_24h > 0)
                .map(|st| (st.ok_24h as f64) * 100.0 / (st.checks_24h as f64));
            serde_json::json!({
                "name": m.name,
                "url": m.url,
                "environment": m.environment,
                "repo": m.repo,
                "interval_seconds": m.interval.as_secs(),
                "expect_status": m.expect_status,
                "up": state.and_then(|st| st.up),
                "failures": state.map_or(0, |st| st.failures),
                "last_checked_at": state.and_then(|st| st.last_at),
                "last_response_ms": state.and_then(|st| st.last_ms),
                "last_error": state.and_then(|st| st.last_error.clone()),
                "checks_24h": state.map_or(0, |st| st.checks_24h),
                "uptime_24h_percent": uptime,
                "incidents": incidents.iter().filter(|i| i.monitor == m.name).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "monitors": monitors })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct AlertsQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/alerts`: the latest alerts, newest first (admin: they name the channels).
pub(crate) async fn list_alerts(
    _: Admin,
    State(s): State<AppStateRef>,
    Query(q): Query<AlertsQuery>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let alerts = blocking(move || store.alerts(limit)).await?;
    Ok(Json(serde_json::json!({ "alerts": alerts })).into_response())
}

/// `POST /api/v1/notify/{channel}/test`: queues a test message to the channel; the alert's
/// id (`GET /api/v1/alerts` says how sending it went).
pub(crate) async fn test_channel(
    _: Admin,
    State(s): State<AppStateRef>,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    let id = queue_test(&s, channel).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response())
}

/// Queues a test message to `channel`; the alert's id.
pub(crate) async fn queue_test(s: &AppStateRef, channel: String) -> Result<Option<i64>, ApiError> {
    if !s.config.channels.iter().any(|c| c.name == channel) {
        let known: Vec<&str> = s.config.channels.iter().map(|c| c.name.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            if known.is_empty() {
                format!("there is no channel `{channel}`: the configuration has no [[notify]]")
            } else {
                format!(
                    "there is no channel `{channel}` (the configured ones: {})",
                    known.join(", ")
                )
            },
        ));
    }
    let message = crate::notify::Message {
        event: "test".into(),
        title: format!("pipewright: a test message to `{channel}`"),
        facts: vec![("Server".into(), s.config.public_url.clone())],
        log: Vec::new(),
        link: Some(s.config.public_url.clone()),
    };
    let alert = store::NewAlert {
        channel,
        event: "test".into(),
        subject: message.title.clone(),
        body: serde_json::to_string(&message).unwrap_or_default(),
    };
    let store = s.store.clone();
    let ids = blocking(move || store.queue_alerts(std::slice::from_ref(&alert))).await?;
    s.alerts.notify_one();
    Ok(ids.first().copied())
}
