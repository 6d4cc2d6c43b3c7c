//! The routes that are not the API's resources: Prometheus metrics, the health check and the
//! API's OpenAPI description.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::constant_time_eq;
use super::error::ApiError;
use super::state::AppStateRef;
use crate::blocking::blocking;

/// The API's description; a test checks it names every route of the router.
pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

pub(super) async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus text format: runs and jobs by conclusion, queue depth, job durations,
/// runners online. Every figure is a counter kept by the database or a count of what is in
/// flight: the cost of a scrape does not grow with the history. With `[auth] metrics_token`
/// it needs that token (or the admin token).
pub(super) async fn metrics(
    State(s): State<AppStateRef>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(expected) = &s.config.metrics_token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.as_bytes())
            && !constant_time_eq(given.as_bytes(), s.admin_token.as_bytes())
        {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the metrics token",
            ));
        }
    }
    let (store, config) = (s.store.clone(), s.config.clone());
    let (stats, jobs_queued, runners, deliveries, (list, monitors), alerts, deployments) =
        blocking(move || -> Result<_, ApiError> {
            Ok((
                store.stats()?,
                store.queue_depth()?,
                store.runners()?,
                store.pending_count()?,
                (
                    crate::notify::all_monitors(&config, &store)?,
                    store.monitors()?,
                ),
                store.alert_counts()?,
                store.deployment_counts()?,
            ))
        })
        .await?;
    // Online: asked for work or reported within two leases (a long poll lasts 25 s).
    let recent = store::now_ms() - (2 * s.config.lease_ms).max(60_000);
    let online = runners
        .iter()
        .filter(|r| r.last_seen >= recent && (r.capacity > 0))
        .count();
    let mut out = String::new();
    out.push_str("# HELP pipewright_runs_total Completed runs by conclusion.\n# TYPE pipewright_runs_total counter\n");
    for (c, n) in &stats.runs_by_conclusion {
        out.push_str(&format!(
            "pipewright_runs_total{{conclusion=\"{c}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP pipewright_jobs_total Completed jobs by conclusion.\n# TYPE pipewright_jobs_total counter\n");
    for (c, n) in &stats.jobs_by_conclusion {
        out.push_str(&format!(
            "pipewright_jobs_total{{conclusion=\"{c}\"}} {n}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP pipewright_queue_depth Jobs waiting for a runner.\n# TYPE pipewright_queue_depth gauge\npipewright_queue_depth {jobs_queued}\n"
    ));
    out.push_str(&format!(
        "# HELP pipewright_runs_running Runs being run.\n# TYPE pipewright_runs_running gauge\npipewright_runs_running {}\n",
        stats.runs_running
    ));
    out.push_str(&format!(
        "# HELP pipewright_runners_online Runners able to take jobs.\n# TYPE pipewright_runners_online gauge\npipewright_runners_online {online}\n"
    ));
    out.push_str(&format!(
        "# HELP pipewright_webhook_deliveries_pending Webhook deliveries accepted, not yet turned into runs.\n# TYPE pipewright_webhook_deliveries_pending gauge\npipewright_webhook_deliveries_pending {deliveries}\n"
    ));
    out.push_str("# HELP pipewright_job_duration_seconds Job durations.\n# TYPE pipewright_job_duration_seconds histogram\n");
    let mut count = 0;
    for (le, n) in &stats.duration_buckets {
        out.push_str(&format!(
            "pipewright_job_duration_seconds_bucket{{le=\"{le}\"}} {n}\n"
        ));
        if le == "+Inf" {
            count = *n;
        }
    }
    out.push_str(&format!(
        "pipewright_job_duration_seconds_sum {}\npipewright_job_duration_seconds_count {count}\n",
        stats.duration_sum_ms as f64 / 1000.0,
    ));
    monitor_metrics(&mut out, &list, &monitors, alerts);
    deployment_metrics(&mut out, &deployments);
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

/// A label value quoted as the text format asks.
fn label(n: &str) -> String {
    n.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Deployments by repository, environment and result; rollbacks among them.
fn deployment_metrics(out: &mut String, counts: &[(String, String, String, i64)]) {
    out.push_str("# HELP pipewright_deployments_total Finished deployments by repository, environment and result (deployed, failed, rolled_back, rollback_failed).\n# TYPE pipewright_deployments_total counter\n");
    for (repo, env, status, n) in counts {
        out.push_str(&format!(
            "pipewright_deployments_total{{repo=\"{}\",environment=\"{}\",result=\"{}\"}} {n}\n",
            label(repo),
            label(env),
            label(status)
        ));
    }
    out.push_str("# HELP pipewright_rollbacks_total Automatic rollbacks after a failed deploy, by whether the rollback worked.\n# TYPE pipewright_rollbacks_total counter\n");
    for (repo, env, status, n) in counts {
        let result = match status.as_str() {
            "rolled_back" => "ok",
            "rollback_failed" => "failed",
            _ => continue,
        };
        out.push_str(&format!(
            "pipewright_rollbacks_total{{repo=\"{}\",environment=\"{}\",result=\"{result}\"}} {n}\n",
            label(repo),
            label(env)
        ));
    }
}

/// Monitors (up, last response time) and alerts (by state).
fn monitor_metrics(
    out: &mut String,
    configured: &[crate::notify::Monitor],
    states: &[store::MonitorState],
    alerts: store::AlertCounts,
) {
    let checked: Vec<&store::MonitorState> = configured
        .iter()
        .filter_map(|m| states.iter().find(|s| s.name == m.name))
        .collect();
    out.push_str("# HELP pipewright_monitor_up Whether a monitor is up (0 while an incident is open).\n# TYPE pipewright_monitor_up gauge\n");
    for m in checked.iter().filter(|m| m.up.is_some()) {
        out.push_str(&format!(
            "pipewright_monitor_up{{monitor=\"{}\"}} {}\n",
            label(&m.name),
            i64::from(m.up == Some(true))
        ));
    }
    out.push_str("# HELP pipewright_monitor_response_seconds A monitor's last response time.\n# TYPE pipewright_monitor_response_seconds gauge\n");
    for m in &checked {
        if let Some(ms) = m.last_ms {
            out.push_str(&format!(
                "pipewright_monitor_response_seconds{{monitor=\"{}\"}} {}\n",
                label(&m.name),
                ms as f64 / 1000.0
            ));
        }
    }
    out.push_str(&format!(
        "# HELP pipewright_alerts Alerts by state (pending, sent, failed: given up).\n# TYPE pipewright_alerts gauge\npipewright_alerts{{state=\"pending\"}} {}\npipewright_alerts{{state=\"sent\"}} {}\npipewright_alerts{{state=\"failed\"}} {}\n",
        alerts.pending, alerts.sent, alerts.failed
    ));
}
