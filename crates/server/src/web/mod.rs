//! The dashboard: pages rendered by the server (maud templates compiled into the binary,
//! a little hand-written JavaScript for live logs), behind a sign-in. Viewers read;
//! operators also cancel, re-run, approve and reject; every form carries the session's CSRF
//! token. Who may do what is checked here, on every request, not in the page.

mod graph;
mod markdown;
mod pages;
pub(crate) mod session;
mod settings;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::html;
use serde::Deserialize;

use crate::blocking::blocking;
use crate::http::{ApiError, AppStateRef};
use pages::{badge, button, layout, took, when};
pub(crate) use session::{Role, Signed, first_admin, session_of};

pub(crate) fn router() -> Router<AppStateRef> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/rerun", post(rerun))
        .route("/runs/{id}/approve", post(approve))
        .route("/runs/{id}/reject", post(reject))
        .route("/environments", get(environments))
        .route("/environments/rollback", post(rollback))
        .route("/monitors", get(monitors))
        .route("/runners", get(settings::runners))
        .route("/settings", get(settings::settings))
        .route("/settings/secrets", post(settings::set_secret))
        .route("/settings/secrets/delete", post(settings::delete_secret))
        .route("/settings/tokens", post(settings::make_token))
        .route("/settings/tokens/{id}/revoke", post(settings::revoke_token))
        .route(
            "/settings/notify/{channel}/test",
            post(settings::test_channel),
        )
        .route("/settings/users", post(settings::add_user))
        .route("/settings/users/{name}", post(settings::set_role))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
}

async fn css() -> Response {
    (
        [("content-type", "text/css; charset=utf-8")],
        include_str!("app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [("content-type", "text/javascript; charset=utf-8")],
        include_str!("app.js"),
    )
        .into_response()
}

/// `/`: per repository the latest run of each branch; environments; monitors.
async fn overview(who: Signed, State(s): State<AppStateRef>) -> Result<Response, ApiError> {
    let (store, config) = (s.store.clone(), s.config.clone());
    let repos: Vec<String> = s.config.repos.iter().map(|r| r.name.clone()).collect();
    let (latest, envs, mons) = blocking(move || -> Result<_, ApiError> {
        let mut latest = Vec::new();
        for repo in &repos {
            let mut seen = std::collections::HashSet::new();
            let branches: Vec<store::Run> = store
                .runs(Some(repo), 200)?
                .into_iter()
                .filter(|r| seen.insert(r.git_ref.clone()))
                .take(10)
                .collect();
            latest.push((repo.clone(), branches));
        }
        let mons = (
            crate::notify::all_monitors(&config, &store)?,
            store.monitors()?,
        );
        Ok((latest, store.environments()?, mons))
    })
    .await?;
    let body = html! {
        @for (repo, runs) in &latest {
            section {
                h2 { (repo) }
                @if runs.is_empty() { p { "No runs yet." } } @else { (pages::runs_table(runs)) }
            }
        }
        section {
            h2 { "Environments" }
            @if envs.is_empty() { p { "Nothing deployed yet." } } @else { (pages::environments_table(&envs, &health(&mons.0, &mons.1))) }
        }
        section {
            h2 { "Monitors" }
            (monitor_table(&mons.0, &mons.1))
        }
    };
    Ok(layout("Overview", Some(&who), body).into_response())
}

#[derive(Deserialize)]
struct RunsQuery {
    repo: Option<String>,
    branch: Option<String>,
    event: Option<String>,
    status: Option<String>,
    before: Option<i64>,
}

const PAGE: i64 = 50;

/// `/runs`: filtered by repository, branch, event and status; 50 a page.
async fn runs(
    who: Signed,
    State(s): State<AppStateRef>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, ApiError> {
    let nonempty = |v: &Option<String>| v.clone().filter(|x| !x.is_empty());
    let (repo, branch, event, status) = (
        nonempty(&q.repo),
        nonempty(&q.branch),
        nonempty(&q.event),
        nonempty(&q.status),
    );
    let git_ref = branch.as_ref().map(|b| format!("refs/heads/{b}"));
    let store = s.store.clone();
    let (r2, e2, s2, before) = (repo.clone(), event.clone(), status.clone(), q.before);
    let list = blocking(move || {
        store.runs_page(
            &store::RunFilter {
                repo: r2.as_deref(),
                git_ref: git_ref.as_deref(),
                event: e2.as_deref(),
                status: s2.as_deref(),
                before: before.map(store::RunId::from),
            },
            PAGE,
        )
    })
    .await?;
    let next = (list.len() as i64 == PAGE)
        .then(|| list.last().map(|r| r.id))
        .flatten();
    let keep = |k: &str, v: &Option<String>| {
        v.as_ref()
            .map(|x| format!("&{k}={}", pages::urlencode(x)))
            .unwrap_or_default()
    };
    let query = format!(
        "{}{}{}{}",
        keep("repo", &repo),
        keep("branch", &branch),
        keep("event", &event),
        keep("status", &status)
    );
    let body = html! {
        form.filters method="get" action="/runs" {
            select name="repo" {
                option value="" { "All repositories" }
                @for r in &s.config.repos {
                    option value=(r.name) selected[repo.as_deref() == Some(r.name.as_str())] { (r.name) }
                }
            }
            input name="branch" placeholder="Branch" value=[branch.as_deref()];
            select name="event" {
                option value="" { "Any event" }
                @for e in ["push", "pull_request", "workflow_dispatch", "schedule"] {
                    option value=(e) selected[event.as_deref() == Some(e)] { (e) }
                }
            }
            select name="status" {
                option value="" { "Any status" }
                @for st in ["queued", "waiting", "running", "success", "failure", "cancelled"] {
                    option value=(st) selected[status.as_deref() == Some(st)] { (st) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if list.is_empty() { p { "No runs." } } @else { (pages::runs_table(&list)) }
        @if let Some(n) = next {
            p { a href={ "/runs?before=" (n) (query) } { "Older runs" } }
        }
    };
    Ok(layout("Runs", Some(&who), body).into_response())
}

/// How many of a branch's runs the coverage trend shows.
const TREND: i64 = 12;

/// `/runs/{id}`: the job graph, the jobs and their steps, summaries, artifacts, the
/// coverage trend of the branch, the live log; cancel, re-run, approve.
async fn run(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (run, jobs, artifacts, trend) = blocking(move || -> Result<_, ApiError> {
        let run = store.run(id)?;
        let jobs = store.jobs(id)?;
        let artifacts = store.artifacts(id)?;
        // Line coverage of the branch's recent runs up to this one, oldest first.
        let mut trend = Vec::new();
        let recent = store.runs_page(
            &store::RunFilter {
                repo: Some(&run.repo),
                git_ref: Some(&run.git_ref),
                event: None,
                status: None,
                before: Some(store::RunId::from(id.get() + 1)),
            },
            TREND,
        )?;
        for r in recent.iter().rev() {
            let list = if r.id == id {
                jobs.clone()
            } else {
                store.jobs(r.id)?
            };
            if let Some(c) = list.iter().find_map(|j| coverage(j.report.as_deref())) {
                trend.push((r.id, c));
            }
        }
        Ok((run, jobs, artifacts, trend))
    })
    .await?;
    let reports: Vec<Option<engine::JobReport>> = jobs
        .iter()
        .map(|j| {
            j.report
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
        })
        .collect();
    let graph = run
        .workflow_text
        .as_deref()
        .and_then(|t| workflow::parse_model(t).workflow)
        .map(|wf| graph::svg(&graph::layout(&wf, &jobs)));
    let done = run.status == store::RunStatus::Completed;
    let body = html! {
        p.meta {
            (badge(run.status.as_str(), run.conclusion.map(|c| c.as_str())))
            " " (run.repo) " · " (run.workflow) " · " (run.event) " · "
            (run.git_ref) " · " span.mono { (run.sha) }
        }
        @if let Some(reason) = &run.reason { p.error { (reason) } }
        p.actions {
            @if !done { (button(&who, &format!("/runs/{id}/cancel"), "Cancel", Some("Cancel this run?"))) }
            @if done {
                (button(&who, &format!("/runs/{id}/rerun"), "Re-run", None))
                (button(&who, &format!("/runs/{id}/rerun?failed=true"), "Re-run failed jobs", None))
            }
        }
        @if let Some(g) = graph { div.graph { (g) } }
        table.jobs {
            thead { tr { th { "Job" } th { "Status" } th { "Took" } th { "Steps" } } }
            tbody {
                @for (j, report) in jobs.iter().zip(&reports) {
                    tr id={ "job-" (j.id) } {
                        td { (j.name) }
                        td {
                            (badge(j.status.as_str(), j.conclusion.map(|c| c.as_str())))
                            @if let Some(r) = &j.reason { " " span.reason { (r) } }
                            @if j.status == store::JobStatus::Waiting {
                                " "
                                (button(&who, &format!("/runs/{id}/approve?job={}", pages::urlencode(&j.name)), "Approve", Some("Let this job deploy?")))
                                (button(&who, &format!("/runs/{id}/reject?job={}", pages::urlencode(&j.name)), "Reject", Some("Fail this job without running it?")))
                            }
                        }
                        td { (took(j.started_at, j.finished_at)) }
                        td {
                            @if let Some(r) = report {
                                ol.steps {
                                    @for st in &r.steps {
                                        li { (badge(st.conclusion.as_str(), None)) " " (st.name) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @for (j, report) in jobs.iter().zip(&reports) {
            @if let Some(r) = report.as_ref().filter(|r| !r.summary.trim().is_empty()) {
                section.summary {
                    h2 { "Summary · " (j.name) }
                    div.markdown { (maud::PreEscaped(markdown::render(&r.summary))) }
                }
            }
        }
        @if !artifacts.is_empty() {
            h2 { "Artifacts" }
            ul.artifacts {
                @for a in &artifacts {
                    li {
                        a href={ "/api/v1/runs/" (id) "/artifacts/" (pages::urlencode(&a.name)) } download={ (a.name) ".tar" } { (a.name) }
                        " " span.reason { (a.files) " files, " (pages::bytes(a.size)) }
                    }
                }
            }
        }
        @if !trend.is_empty() {
            h2 { "Line coverage" }
            (pages::coverage_chart(&trend, id))
        }
        h2 { "Log" }
        ul id="annotations" hidden {}
        div id="log" data-run=(id) data-done=(done) {}
    };
    Ok(layout(&format!("Run #{id}"), Some(&who), body).into_response())
}

/// The line coverage a job's report records (`codecov/codecov-action`), in percent.
fn coverage(report: Option<&str>) -> Option<f64> {
    let report: engine::JobReport = serde_json::from_str(report?).ok()?;
    report.coverage
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct ActionQuery {
    job: Option<String>,
    failed: Option<bool>,
}

async fn cancel(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
    Form(f): Form<ActionForm>,
) -> Result<Response, ApiError> {
    if let Err(refused) = who.may(Role::Operator, &f.csrf) {
        return Ok(refused.into_response());
    }
    let store = s.store.clone();
    blocking(move || store.request_cancel(id)).await?;
    tracing::info!(
        run = id.get(),
        user = who.name,
        "cancel asked from the dashboard"
    );
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

async fn rerun(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
    Query(q): Query<ActionQuery>,
    Form(f): Form<ActionForm>,
) -> Result<Response, ApiError> {
    if let Err(refused) = who.may(Role::Operator, &f.csrf) {
        return Ok(refused.into_response());
    }
    let store = s.store.clone();
    let failed = q.failed.unwrap_or(false);
    let new_id = blocking(move || store.rerun(id, failed)).await?;
    s.wake.notify_waiters();
    tracing::info!(run = id.get(), user = who.name, "re-run from the dashboard");
    Ok(Redirect::to(&format!("/runs/{new_id}")).into_response())
}

async fn approve(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
    Query(q): Query<ActionQuery>,
    Form(f): Form<ActionForm>,
) -> Result<Response, ApiError> {
    decide(who, s, id, q.job, f, true).await
}

async fn reject(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(id): Path<store::RunId>,
    Query(q): Query<ActionQuery>,
    Form(f): Form<ActionForm>,
) -> Result<Response, ApiError> {
    decide(who, s, id, q.job, f, false).await
}

async fn decide(
    who: Signed,
    s: AppStateRef,
    id: store::RunId,
    job: Option<String>,
    f: ActionForm,
    approve: bool,
) -> Result<Response, ApiError> {
    if let Err(refused) = who.may(Role::Operator, &f.csrf) {
        return Ok(refused.into_response());
    }
    crate::http::decide(&s, id, approve, job).await?;
    tracing::info!(
        run = id.get(),
        user = who.name,
        approve,
        "decided from the dashboard"
    );
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

#[derive(Deserialize)]
struct EnvQuery {
    repo: Option<String>,
    name: Option<String>,
}

/// `/environments`: what serves each environment; one environment's deployments with
/// their phases.
async fn environments(
    who: Signed,
    State(s): State<AppStateRef>,
    Query(q): Query<EnvQuery>,
) -> Result<Response, ApiError> {
    let (store, config) = (s.store.clone(), s.config.clone());
    let pick = q.repo.clone().zip(q.name.clone());
    let (envs, history, mons) = blocking(move || -> Result<_, ApiError> {
        let history = match &pick {
            Some((repo, name)) => store.deployments(repo, name, 50)?,
            None => Vec::new(),
        };
        let mons = (
            crate::notify::all_monitors(&config, &store)?,
            store.monitors()?,
        );
        Ok((store.environments()?, history, mons))
    })
    .await?;
    // What serves the environment now: its last deployment that deployed.
    let serving = history
        .iter()
        .find(|d| d.status == "deployed" && d.release.is_some())
        .and_then(|d| d.release.clone());
    let body = html! {
        @if envs.is_empty() { p { "Nothing deployed yet." } } @else { (pages::environments_table(&envs, &health(&mons.0, &mons.1))) }
        @if let (Some(repo), Some(name)) = (&q.repo, &q.name) {
            h2 { (repo) " · " (name) }
            table.deploys {
                thead { tr { th { "Deploy" } th { "Version" } th { "Result" } th { "By" } th { "Started" } th { "Took" } th { "Phases" } th {} } }
                tbody {
                    @for d in &history {
                        tr {
                            td { "#" (d.id) @if let Some(run) = d.run_id { " " a href={ "/runs/" (run) } { "run " (run) } } }
                            td { (d.version) " " span.mono { (d.release.as_deref().unwrap_or("")) } }
                            td { (badge(&d.status, None)) @if let Some(m) = &d.message { " " span.reason { (m) } } }
                            td { (d.who) }
                            td { (when(Some(d.started_at))) }
                            td { (took(Some(d.started_at), d.finished_at)) }
                            td {
                                ol.steps {
                                    @for p in d.phases.as_array().into_iter().flatten() {
                                        li {
                                            (p["host"].as_str().unwrap_or("")) ": "
                                            (p["phase"].as_str().unwrap_or("")) " "
                                            (badge(p["status"].as_str().unwrap_or(""), None))
                                            " " (p["ms"].as_u64().unwrap_or(0)) " ms"
                                        }
                                    }
                                }
                            }
                            td {
                                @if let Some(release) = d.release.as_ref().filter(|r| d.status == "deployed" && serving.as_ref() != Some(*r)) {
                                    @if who.role >= Role::Operator {
                                        form.inline method="post" action="/environments/rollback"
                                            data-confirm={ "Roll " (name) " back to " (d.version) " (release " (release) ")?" } {
                                            input type="hidden" name="csrf" value=(who.csrf);
                                            input type="hidden" name="repo" value=(repo);
                                            input type="hidden" name="name" value=(name);
                                            input type="hidden" name="to" value=(release);
                                            button type="submit" { "Roll back to this" }
                                        }
                                    }
                                } @else if serving.as_ref().is_some_and(|s| d.release.as_ref() == Some(s) && d.status == "deployed") {
                                    (badge("serving", None))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Environments", Some(&who), body).into_response())
}

#[derive(Deserialize)]
struct RollbackForm {
    #[serde(default)]
    csrf: String,
    repo: String,
    name: String,
    to: String,
}

/// Rolls an environment back to a release it served (operators): a run on a runner; the
/// browser goes to it.
async fn rollback(
    who: Signed,
    State(s): State<AppStateRef>,
    Form(f): Form<RollbackForm>,
) -> Result<Response, ApiError> {
    if let Err(refused) = who.may(Role::Operator, &f.csrf) {
        return Ok(refused.into_response());
    }
    match crate::http::roll_back(
        &s,
        f.repo.clone(),
        f.name.clone(),
        Some(f.to),
        who.name.clone(),
    )
    .await
    {
        Ok((run, _)) => Ok(Redirect::to(&format!("/runs/{run}")).into_response()),
        Err(e) => {
            let body = html! {
                p.error role="alert" { (e.message()) }
                p { a href={ "/environments?repo=" (pages::urlencode(&f.repo)) "&name=" (pages::urlencode(&f.name)) } { "Back to " (f.name) } }
            };
            Ok((e.status(), layout("Rollback refused", Some(&who), body)).into_response())
        }
    }
}

/// (monitor, up) of the monitors that watch an environment.
fn health<'a>(
    monitors: &'a [crate::notify::Monitor],
    states: &'a [store::MonitorState],
) -> Vec<(&'a crate::notify::Monitor, Option<bool>)> {
    monitors
        .iter()
        .filter(|m| m.environment.is_some())
        .map(|m| {
            let up = states.iter().find(|x| x.name == m.name).and_then(|x| x.up);
            (m, up)
        })
        .collect()
}

fn monitor_table(list: &[crate::notify::Monitor], states: &[store::MonitorState]) -> maud::Markup {
    html! {
        @if list.is_empty() {
            p {
                "No monitors yet: configure them (" code { "[[monitors]]" } ") or deploy an environment with a "
                code { "health" } " check."
            }
        } @else {
            table.monitors {
                thead { tr { th { "Monitor" } th { "State" } th { "Last answer" } th { "Uptime 24 h" } th { "URL" } } }
                tbody {
                    @for m in list {
                        @let st = states.iter().find(|x| x.name == m.name);
                        tr {
                            td { (m.name) @if let Some(e) = &m.environment { " · " (e) } }
                            td {
                                @match st.and_then(|x| x.up) {
                                    Some(true) => (badge("up", None)),
                                    Some(false) => (badge("down", None)),
                                    None => (badge("unknown", None)),
                                }
                            }
                            td { (st.and_then(|x| x.last_ms).map_or("-".to_owned(), |ms| format!("{ms} ms"))) }
                            td {
                                (st.filter(|x| x.checks_24h > 0)
                                    .map_or("-".to_owned(), |x| format!("{:.2}%", x.ok_24h as f64 * 100.0 / x.checks_24h as f64)))
                            }
                            td.mono { (m.url) }
                        }
                    }
                }
            }
        }
    }
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// `/monitors`: each monitor's state, its response times over 24 hours (15-minute means)
/// and 30 days (6-hour means), its uptime over both, and the incidents.
async fn monitors(who: Signed, State(s): State<AppStateRef>) -> Result<Response, ApiError> {
    let (store, config) = (s.store.clone(), s.config.clone());
    let now = store::now_ms();
    let (list, states, incidents, series) = blocking(move || -> Result<_, ApiError> {
        let list = crate::notify::all_monitors(&config, &store)?;
        let mut series = Vec::new();
        for m in &list {
            series.push((
                store.monitor_buckets(&m.name, now - DAY_MS, 15 * MINUTE_MS)?,
                store.monitor_buckets(&m.name, now - 30 * DAY_MS, 360 * MINUTE_MS)?,
            ));
        }
        Ok((list, store.monitors()?, store.incidents(None, 50)?, series))
    })
    .await?;
    let body = html! {
        (monitor_table(&list, &states))
        @for (m, (day, month)) in list.iter().zip(&series) {
            section.monitor {
                h2 { (m.name) }
                p.reason {
                    "Uptime: "
                    (pages::uptime(day).map_or("-".to_owned(), |u| format!("{u:.2}%"))) " over 24 hours, "
                    (pages::uptime(month).map_or("-".to_owned(), |u| format!("{u:.2}%"))) " over 30 days"
                }
                div.charts {
                    (pages::response_chart("Response time, 24 hours", day, now, DAY_MS, 15 * MINUTE_MS))
                    (pages::response_chart("Response time, 30 days", month, now, 30 * DAY_MS, 360 * MINUTE_MS))
                }
            }
        }
        h2 { "Incidents" }
        @if incidents.is_empty() { p { "None." } } @else {
            table.incidents {
                thead { tr { th { "Monitor" } th { "Down since" } th { "Up again" } th { "Cause" } } }
                tbody {
                    @for i in &incidents {
                        tr {
                            td { (i.monitor) }
                            td { (when(Some(i.opened_at))) }
                            td { (when(i.closed_at)) }
                            td { (i.cause) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Monitors", Some(&who), body).into_response())
}
