//! `/runners` (every signed-in account) and `/settings` (admins only): secrets by name (set,
//! delete; a value is never shown again), API tokens (made and shown once, revoked),
//! notification channels with their last deliveries and a test button, and accounts. The
//! forms do what the admin API does, through the same functions.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{badge, layout, when};
use super::session::{Role, Signed};
use crate::blocking::blocking;
use crate::http::{ApiError, AppStateRef};
use crate::notify::ChannelKind;

/// How long ago a runner may have been seen to count as online.
const ONLINE_MS: i64 = 60_000;

/// `/runners`: the registered runners, their labels and capacity, when last seen, and the
/// jobs each holds now.
pub(crate) async fn runners(
    who: Signed,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (runners, busy) = blocking(move || -> Result<_, ApiError> {
        let runners = store.runners()?;
        let busy = store.running_jobs_by_runner()?;
        Ok((runners, busy))
    })
    .await?;
    let now = store::now_ms();
    let body = html! {
        @if runners.is_empty() {
            p { "No runner is registered. Start one with " code { "pipewright runner register" } "." }
        } @else {
            table.runners {
                thead { tr { th { "Runner" } th { "State" } th { "Labels" } th { "Busy" } th { "Last seen" } th { "Registered" } } }
                tbody {
                    @for r in &runners {
                        @let jobs: Vec<&(store::RunnerId, store::RunId, String)> = busy.iter().filter(|b| b.0 == r.id).collect();
                        tr {
                            td { (r.name) @if r.embedded { " " span.reason { "(in the server)" } } }
                            td {
                                @if r.embedded || now - r.last_seen < ONLINE_MS { (badge("up", None)) " online" }
                                @else { (badge("down", None)) " offline" }
                            }
                            td.mono { (r.labels.join(", ")) }
                            td {
                                (jobs.len()) " / " (r.capacity)
                                @for (_, run, name) in &jobs {
                                    br; a href={ "/runs/" (run) } { "#" (run) " " (name) }
                                }
                            }
                            td { (when(Some(r.last_seen))) }
                            td { (when(Some(r.created_at))) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Runners", Some(&who), body).into_response())
}

/// What a form just did, shown above the settings.
enum Flash {
    Done(String),
    /// Done, with a value shown this once (a new token or password).
    Once(String, String),
    Failed(StatusCode, String),
}

fn refused(who: &Signed) -> Option<Response> {
    (who.role < Role::Admin).then(|| {
        let body = html! { p.error { "The settings are for admins; `" (who.name) "` is " (who.role.as_str()) "." } };
        (StatusCode::FORBIDDEN, layout("Settings", Some(who), body)).into_response()
    })
}

/// Where a channel sends, without its secrets (a Slack webhook's address is one).
fn destination(kind: &ChannelKind) -> String {
    match kind {
        ChannelKind::Smtp { url, to, .. } => {
            format!(
                "smtp {} to {}",
                crate::config::redact_url(url),
                to.join(", ")
            )
        }
        ChannelKind::Sendgrid { api_url, to, .. } => {
            format!("sendgrid {api_url} to {}", to.join(", "))
        }
        ChannelKind::Slack { webhook_url } => {
            let host = webhook_url
                .split_once("://")
                .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
            format!("slack-compatible webhook at {host}")
        }
        ChannelKind::Webhook { url, secret } => format!(
            "webhook {}{}",
            crate::config::redact_url(url),
            if secret.is_some() { ", signed" } else { "" }
        ),
    }
}

/// `/settings`.
pub(crate) async fn settings(
    who: Signed,
    State(s): State<AppStateRef>,
) -> Result<Response, ApiError> {
    if let Some(r) = refused(&who) {
        return Ok(r);
    }
    page(&s, &who, None).await
}

async fn page(s: &AppStateRef, who: &Signed, flash: Option<Flash>) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (secrets, tokens, users, alerts) = blocking(move || -> Result<_, ApiError> {
        Ok((
            store.secret_names()?,
            store.tokens()?,
            store.users()?,
            store.alerts(20)?,
        ))
    })
    .await?;
    let csrf = html! { input type="hidden" name="csrf" value=(who.csrf); };
    let status = match &flash {
        Some(Flash::Failed(code, _)) => *code,
        _ => StatusCode::OK,
    };
    let body = html! {
        @match &flash {
            Some(Flash::Done(m)) => p.done role="status" { (m) },
            Some(Flash::Once(m, value)) => div.once role="status" {
                p { (m) " It is shown this once:" }
                pre.mono.once { (value) }
            },
            Some(Flash::Failed(_, m)) => p.error role="alert" { (m) },
            None => {},
        }
        section #secrets {
            h2 { "Secrets" }
            p.reason { "Values are sealed when set and never shown again. An empty repository is every repository; an empty environment is any job." }
            @if secrets.is_empty() { p { "No secrets." } } @else {
                table.secrets {
                    thead { tr { th { "Name" } th { "Repository" } th { "Environment" } th { "Set" } th {} } }
                    tbody {
                        @for (repo, env, name, at) in &secrets {
                            tr {
                                td.mono { (name) }
                                td { @if repo.is_empty() { "all" } @else { (repo) } }
                                td { @if env.is_empty() { "any" } @else { (env) } }
                                td { (when(Some(*at))) }
                                td {
                                    form.inline method="post" action="/settings/secrets/delete" data-confirm={ "Delete secret " (name) "?" } {
                                        (csrf)
                                        input type="hidden" name="repo" value=(repo);
                                        input type="hidden" name="environment" value=(env);
                                        input type="hidden" name="name" value=(name);
                                        button type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/settings/secrets" {
                (csrf)
                input name="name" placeholder="NAME" required pattern="[A-Za-z_][A-Za-z0-9_]*" aria-label="Secret name";
                select name="repo" aria-label="Repository" {
                    option value="" { "All repositories" }
                    @for r in &s.config.repos { option value=(r.name) { (r.name) } }
                }
                input name="environment" placeholder="Environment (optional)" aria-label="Environment";
                input name="value" type="password" placeholder="Value" required aria-label="Value" autocomplete="off";
                button type="submit" { "Set secret" }
            }
        }
        section #tokens {
            h2 { "API tokens" }
            @if tokens.is_empty() { p { "No API tokens." } } @else {
                table.tokens {
                    thead { tr { th { "Token" } th { "Made" } th {} } }
                    tbody {
                        @for (id, name, at) in &tokens {
                            tr {
                                td { (name) " " span.reason { "#" (id) } }
                                td { (when(Some(*at))) }
                                td {
                                    form.inline method="post" action={ "/settings/tokens/" (id) "/revoke" } data-confirm={ "Revoke token " (name) "? It stops working at once." } {
                                        (csrf)
                                        button type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/settings/tokens" {
                (csrf)
                input name="name" placeholder="What it is for" required aria-label="Token name";
                button type="submit" { "Make a token" }
            }
        }
        section #channels {
            h2 { "Notification channels" }
            @if s.config.channels.is_empty() {
                p { "No channels are configured (" code { "[[notify]]" } " in the server's configuration)." }
            } @else {
                table.channels {
                    thead { tr { th { "Channel" } th { "Sends to" } th { "Events" } th {} } }
                    tbody {
                        @for c in &s.config.channels {
                            tr {
                                td { (c.name) }
                                td.mono { (destination(&c.kind)) }
                                td { (c.events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")) }
                                td {
                                    form.inline method="post" action={ "/settings/notify/" (super::pages::urlencode(&c.name)) "/test" } {
                                        (csrf)
                                        button type="submit" { "Send a test" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Last deliveries" }
            @if alerts.is_empty() { p { "Nothing sent yet." } } @else {
                table.alerts {
                    thead { tr { th { "Alert" } th { "Channel" } th { "Event" } th { "State" } th { "Tries" } th { "Queued" } th { "Sent" } } }
                    tbody {
                        @for a in &alerts {
                            tr {
                                td { (a.subject) }
                                td { (a.channel) }
                                td { (a.event) }
                                td {
                                    (badge(&a.status, None))
                                    @if let Some(e) = &a.last_error { " " span.reason { (e) } }
                                }
                                td { (a.attempts) }
                                td { (when(Some(a.created_at))) }
                                td { (when(a.sent_at)) }
                            }
                        }
                    }
                }
            }
        }
        section #users {
            h2 { "Accounts" }
            table.users {
                thead { tr { th { "Name" } th { "Role" } th { "Made" } th { "Sign-in" } } }
                tbody {
                    @for u in &users {
                        tr {
                            td { (u.name) }
                            td {
                                form.inline method="post" action={ "/settings/users/" (super::pages::urlencode(&u.name)) } {
                                    (csrf)
                                    select name="role" aria-label={ "Role of " (u.name) } {
                                        @for r in ["viewer", "operator", "admin"] {
                                            option value=(r) selected[u.role == r] { (r) }
                                        }
                                    }
                                    " " button type="submit" { "Change" }
                                }
                            }
                            td { (when(Some(u.created_at))) }
                            td {
                                @if u.locked_until.is_some_and(|t| t > store::now_ms()) { (badge("locked", None)) " until " (when(u.locked_until)) }
                                @else if u.failed_logins > 0 { (u.failed_logins) " wrong passwords" }
                                @else { "-" }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/settings/users" {
                (csrf)
                input name="name" placeholder="Name" required aria-label="Account name";
                select name="role" aria-label="Role" {
                    option value="viewer" { "viewer" }
                    option value="operator" { "operator" }
                    option value="admin" { "admin" }
                }
                input name="password" type="password" placeholder="Password (empty: made for you)" aria-label="Password" autocomplete="new-password";
                button type="submit" { "Add account" }
            }
        }
    };
    Ok((status, layout("Settings", Some(who), body)).into_response())
}

/// Runs a settings form: refused unless the session's CSRF token and an admin; the page
/// again with what happened.
async fn act<F, Fut>(
    s: AppStateRef,
    who: Signed,
    csrf: &str,
    what: &str,
    f: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(AppStateRef) -> Fut,
    Fut: std::future::Future<Output = Result<Flash, ApiError>>,
{
    if let Err(refused) = who.may(Role::Admin, csrf) {
        return Ok(refused.into_response());
    }
    let flash = match f(s.clone()).await {
        Ok(flash) => {
            tracing::info!(user = who.name, "{what} from the settings page");
            flash
        }
        Err(e) => Flash::Failed(e.status(), e.message().to_owned()),
    };
    page(&s, &who, Some(flash)).await
}

#[derive(Deserialize)]
pub(crate) struct SecretForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    environment: String,
    name: String,
    #[serde(default)]
    value: String,
}

pub(crate) async fn set_secret(
    who: Signed,
    State(s): State<AppStateRef>,
    Form(f): Form<SecretForm>,
) -> Result<Response, ApiError> {
    let csrf = f.csrf.clone();
    act(s, who, &csrf, "a secret set", |s| async move {
        let name = f.name.trim().to_owned();
        crate::http::set_secret(
            &s,
            f.repo.trim().to_owned(),
            f.environment.trim().to_owned(),
            name.clone(),
            &f.value,
        )
        .await?;
        Ok(Flash::Done(format!("Secret {name} set.")))
    })
    .await
}

pub(crate) async fn delete_secret(
    who: Signed,
    State(s): State<AppStateRef>,
    Form(f): Form<SecretForm>,
) -> Result<Response, ApiError> {
    let csrf = f.csrf.clone();
    act(s, who, &csrf, "a secret deleted", |s| async move {
        let found = crate::http::remove_secret(&s, f.repo, f.environment, f.name.clone()).await?;
        if found {
            Ok(Flash::Done(format!("Secret {} deleted.", f.name)))
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("there is no secret `{}` in that scope", f.name),
            ))
        }
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct NameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub(crate) async fn make_token(
    who: Signed,
    State(s): State<AppStateRef>,
    Form(f): Form<NameForm>,
) -> Result<Response, ApiError> {
    let csrf = f.csrf.clone();
    act(s, who, &csrf, "an API token made", |s| async move {
        let (id, token) = crate::http::new_token(&s, f.name.trim().to_owned()).await?;
        Ok(Flash::Once(
            format!("Token #{id} ({}) made.", f.name.trim()),
            token,
        ))
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn revoke_token(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(id): Path<store::TokenId>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    act(s, who, &f.csrf, "an API token revoked", |s| async move {
        let store = s.store.clone();
        if blocking(move || store.revoke_token(id)).await? {
            Ok(Flash::Done(format!("Token #{id} revoked.")))
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("there is no token {id}"),
            ))
        }
    })
    .await
}

pub(crate) async fn test_channel(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(channel): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    act(s, who, &f.csrf, "a test message queued", |s| async move {
        crate::http::queue_test(&s, channel.clone()).await?;
        Ok(Flash::Done(format!(
            "A test message to {channel} is queued; its delivery shows below."
        )))
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    role: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn add_user(
    who: Signed,
    State(s): State<AppStateRef>,
    Form(f): Form<UserForm>,
) -> Result<Response, ApiError> {
    let csrf = f.csrf.clone();
    act(s, who, &csrf, "an account made", |s| async move {
        let password = Some(f.password).filter(|p| !p.is_empty());
        let (name, role, made) = crate::http::create_user(&s, &f.name, &f.role, password).await?;
        let done = format!("Account {name} ({}) made.", role.as_str());
        Ok(match made {
            Some(p) => Flash::Once(format!("{done} Its password was made for it."), p),
            None => Flash::Done(done),
        })
    })
    .await
}

pub(crate) async fn set_role(
    who: Signed,
    State(s): State<AppStateRef>,
    Path(name): Path<String>,
    Form(f): Form<UserForm>,
) -> Result<Response, ApiError> {
    let csrf = f.csrf.clone();
    if name == who.name && f.role != "admin" {
        // An admin cannot demote the account it is signed in with: there must stay one.
        return act(s, who, &csrf, "nothing", |_| async move {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "you cannot take the admin role from your own account",
            ))
        })
        .await;
    }
    act(s, who, &csrf, "an account's role changed", |s| async move {
        let role = crate::http::change_user(&s, &name, &f.role, None).await?;
        Ok(Flash::Done(format!("{name} is now {}.", role.as_str())))
    })
    .await
}

/// The settings link, for admins.
pub(crate) fn nav_link(who: &Signed) -> Markup {
    html! { @if who.role >= Role::Admin { a href="/settings" { "Settings" } } }
}
