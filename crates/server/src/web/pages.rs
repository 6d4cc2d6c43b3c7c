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
                            a href="/runners" { "Runners" }
                            (super::settings::nav_link(w))
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

/// Each environment's health: the monitors that watch it (`environment = ...` in
/// `[[monitors]]`, or asked for by its deployments) and their state.
pub(crate) type Health<'a> = &'a [(&'a crate::notify::Monitor, Option<bool>)];

/// The monitors of `health` that watch `repo`'s `environment`.
fn health_of(health: Health<'_>, repo: &str, environment: &str) -> Markup {
    let mine: Vec<&(&crate::notify::Monitor, Option<bool>)> = health
        .iter()
        .filter(|(m, _)| m.watches(repo, environment))
        .collect();
    html! {
        @if mine.is_empty() { "-" }
        @for (m, up) in mine {
            @let word = match up { Some(true) => "up", Some(false) => "down", None => "unknown" };
            span.health title=(m.url) { (badge(word, None)) " " (m.name) " " }
        }
    }
}

pub(crate) fn environments_table(envs: &[store::EnvironmentState], health: Health<'_>) -> Markup {
    html! {
        table.envs {
            thead { tr { th { "Repository" } th { "Environment" } th { "Serving" } th { "Deployed" } th { "Health" } th { "Last deploy" } } }
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
                        td { (health_of(health, &e.repo, &e.environment)) }
                        td { (badge(&e.last.status, None)) " " (e.last.version) }
                    }
                }
            }
        }
    }
}

/// A size, for a person: `512 B`, `3.4 KiB`, `12.0 MiB`.
pub(crate) fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else {
        format!("{:.1} GiB", n / 1024.0 / 1024.0 / 1024.0)
    }
}

/// A point of a chart: x and y in 0..=1 (top is 1), a title, a class (`marked`, `down`).
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
    pub title: String,
    pub class: &'static str,
    pub link: Option<String>,
}

const CW: f64 = 480.0;
const CH: f64 = 110.0;
const CPAD: f64 = 6.0;

/// A line chart as inline SVG; `None` breaks the line (no data there).
pub(crate) fn chart(label: &str, points: &[Option<Point>]) -> Markup {
    let at = |x: f64, y: f64| {
        (
            CPAD + x * (CW - 2.0 * CPAD),
            CPAD + (1.0 - y) * (CH - 2.0 * CPAD),
        )
    };
    let mut path = String::new();
    let mut pen_down = false;
    for p in points {
        match p {
            Some(p) => {
                let (px, py) = at(p.x, p.y);
                path.push_str(&format!(
                    "{}{px:.1} {py:.1} ",
                    if pen_down { "L" } else { "M" }
                ));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            viewBox={ "0 0 " (CW) " " (CH) } preserveAspectRatio="none" {
            line.axis x1=(CPAD) y1=(CH - CPAD) x2=(CW - CPAD) y2=(CH - CPAD) {}
            path.line d=(path) {}
            @for p in points.iter().flatten() {
                @let (px, py) = at(p.x, p.y);
                @let dot = html! {
                    circle class=(p.class) cx=(format!("{px:.1}")) cy=(format!("{py:.1}")) r="3" {
                        title { (p.title) }
                    }
                };
                @if let Some(href) = &p.link { a href=(href) { (dot) } } @else { (dot) }
            }
        }
    }
}

/// Line coverage of a branch's recent runs (oldest first), the run shown marked.
pub(crate) fn coverage_chart(trend: &[(store::RunId, f64)], this: store::RunId) -> Markup {
    let lo = trend.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    let hi = trend.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
    // A band of at least 2 points around the values, within 0..100.
    let (lo, hi) = if hi - lo < 2.0 {
        (
            ((lo + hi) / 2.0 - 1.0).max(0.0),
            ((lo + hi) / 2.0 + 1.0).min(100.0),
        )
    } else {
        (lo, hi)
    };
    let n = trend.len();
    let points: Vec<Option<Point>> = trend
        .iter()
        .enumerate()
        .map(|(i, (run, c))| {
            Some(Point {
                x: if n > 1 {
                    i as f64 / (n - 1) as f64
                } else {
                    0.5
                },
                y: if hi > lo { (c - lo) / (hi - lo) } else { 0.5 },
                title: format!("run #{run}: {c:.1}%"),
                class: if *run == this { "marked" } else { "" },
                link: Some(format!("/runs/{run}")),
            })
        })
        .collect();
    let last = trend.last().map(|t| t.1).unwrap_or(0.0);
    let before = trend.len().checked_sub(2).and_then(|i| trend.get(i));
    html! {
        p.coverage {
            strong { (format!("{last:.1}%")) }
            @if let Some((run, b)) = before {
                " (" (format!("{:+.1}", last - b)) " since run #" (run) ")"
            }
            " · the branch's last " (n) " runs with coverage, "
            (format!("{lo:.1}%")) " to " (format!("{hi:.1}%"))
        }
        (chart("Line coverage of the branch's recent runs", &points))
    }
}

/// A monitor's response times over `span_ms` up to `now`, from its buckets: the mean of
/// each bucket, a bucket with a failed check drawn as down, no line where nothing was
/// checked.
pub(crate) fn response_chart(
    label: &str,
    buckets: &[store::Bucket],
    now: i64,
    span_ms: i64,
    bucket_ms: i64,
) -> Markup {
    let since = now - span_ms;
    let top = buckets
        .iter()
        .filter_map(|b| b.avg_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slots = (span_ms / bucket_ms).max(1);
    let mut points: Vec<Option<Point>> = Vec::with_capacity(slots as usize + 1);
    let mut it = buckets.iter().peekable();
    for slot in 0..=slots {
        let start = (since / bucket_ms + slot) * bucket_ms;
        let b = loop {
            match it.peek() {
                Some(b) if b.at < start => {
                    it.next();
                }
                Some(b) if b.at == start => break it.next(),
                _ => break None,
            }
        };
        points.push(b.map(|b| {
            let failed = b.checks - b.ok;
            Point {
                x: ((start - since).max(0) as f64 / span_ms as f64).min(1.0),
                y: b.avg_ms.map_or(0.0, |ms| ms as f64 / top),
                title: format!(
                    "{}: {} checks, {} failed, mean {}",
                    when(Some(start)),
                    b.checks,
                    failed,
                    b.avg_ms.map_or("-".to_owned(), |ms| format!("{ms} ms"))
                ),
                class: if failed > 0 { "down" } else { "" },
                link: None,
            }
        }));
    }
    html! {
        figure.chart {
            (chart(label, &points))
            figcaption { (label) " · top " (top as i64) " ms" }
        }
    }
}

/// Uptime of `buckets` in percent, if anything was checked.
pub(crate) fn uptime(buckets: &[store::Bucket]) -> Option<f64> {
    let (checks, ok) = buckets
        .iter()
        .fold((0, 0), |(c, o), b| (c + b.checks, o + b.ok));
    (checks > 0).then(|| ok as f64 * 100.0 / checks as f64)
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
