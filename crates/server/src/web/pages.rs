//! The pages, as maud templates compiled into the binary. Everything shown that comes from
//! users (branch names, commit messages, job and step names, logs) is escaped by maud;
//! logs are added by the page's script as text, never as markup.

use maud::{DOCTYPE, Markup, html};

use super::session::{Role, Signed};

/// When, for a person: `2026-12-04 05:46:51 UTC`.
pub(crate) fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// How long, for a person: `1.2s`, `3m 4s`.
pub(crate) fn took(from: Option<i64>, to: Option<i64>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => {
            let ms = b - a;
            if ms < 60_000 {
                format!("{:.1}s", ms as f64 / 1000.0)
            } else {
                format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
            }
        }
        _ => "-".into(),
    }
}

/// The class a status or conclusion is shown with.
pub(crate) fn badge(status: &str, conclusion: Option<&str>) -> Markup {
    let word = conclusion.unwrap_or(status);
    html! { span class={ "badge " (word) } { (word) } }
}

pub(crate) fn layout(title: &str, who: Option<&Signed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pipewright" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "pipewright" }
                    @if let Some(w) = who {
                        nav {
                            a href="/" { "Overview" }
                            a href="/runs" { "Runs" }
                            a href="/environments" { "Environments" }
                            a href="/monitors" { "Monitors" }
                        }
                        form.who method="post" action="/logout" {
                            span { (w.name) " · " (w.role.as_str()) }
                            input type="hidden" name="csrf" value=(w.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

pub(crate) fn login(csrf: &str, next: Option<&str>, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            form.login method="post" action="/login" {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                label { "Name" input name="username" autocomplete="username" required autofocus; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next.unwrap_or("/"));
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A form that posts `action` with the session's CSRF token, shown to operators only.
pub(crate) fn button(who: &Signed, action: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        @if who.role >= Role::Operator {
            form.inline method="post" action=(action) data-confirm=[confirm] {
                input type="hidden" name="csrf" value=(who.csrf);
                button type="submit" { (label) }
            }
        }
    }
}

pub(crate) fn runs_table(runs: &[store::Run]) -> Markup {
    html! {
        table.runs {
            thead { tr { th { "Run" } th { "Repository" } th { "Ref" } th { "Event" } th { "Status" } th { "Commit" } th { "Started" } th { "Took" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href={ "/runs/" (r.id) } { "#" (r.id) } }
                        td { (r.repo) }
                        td { (r.git_ref.strip_prefix("refs/heads/").unwrap_or(&r.git_ref)) }
                        td { (r.event) }
                        td { (badge(r.status.as_str(), r.conclusion.map(|c| c.as_str()))) }
                        td.mono { (r.sha.get(..8).unwrap_or(&r.sha)) }
                        td { (when(r.started_at.or(Some(r.created_at)))) }
                        td { (took(r.started_at, r.finished_at)) }
                    }
                }
            }
        }
    }
}

pub(crate) fn environments_table(envs: &[store::EnvironmentState]) -> Markup {
    html! {
        table.envs {
            thead { tr { th { "Repository" } th { "Environment" } th { "Serving" } th { "Deployed" } th { "Last deploy" } } }
            tbody {
                @for e in envs {
                    tr {
                        td { (e.repo) }
                        td { a href={ "/environments?repo=" (urlencode(&e.repo)) "&name=" (urlencode(&e.environment)) } { (e.environment) } }
                        td {
                            @if let Some(c) = &e.current {
                                (c.version) " " span.mono { (c.release.as_deref().unwrap_or("")) } " by " (c.who)
                            } @else { "-" }
                        }
                        td { (when(e.current.as_ref().and_then(|c| c.finished_at))) }
                        td { (badge(&e.last.status, None)) " " (e.last.version) }
                    }
                }
            }
        }
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
