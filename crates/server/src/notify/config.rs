//! `[[monitors]]` and `[[notify]]` of the server's configuration: raw, then checked.

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitor {
    pub name: String,
    pub url: String,
    /// How often (`60s` unless given).
    pub interval: Option<String>,
    /// How long a check may take (`10s` unless given, at most the interval).
    pub timeout: Option<String>,
    /// The status a healthy answer has (200 unless given).
    pub expect_status: Option<u16>,
    /// The environment it watches, shown beside it.
    pub environment: Option<String>,
    /// Consecutive failures that open an incident (2 unless given).
    pub failures_before_alert: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    pub branches: Option<Vec<String>>,
    /// smtp: `smtp://user:pass@host:port` (`smtps://` for TLS, `?tls=starttls`); webhook:
    /// where to post.
    pub url: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// sendgrid.
    pub api_key: Option<String>,
    pub api_url: Option<String>,
    /// slack (and Slack-compatible incoming webhooks).
    pub webhook_url: Option<String>,
    /// webhook: the body's HMAC-SHA256 key.
    pub secret: Option<String>,
}

/// An HTTP endpoint the server checks.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub name: String,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub expect_status: u16,
    pub environment: Option<String>,
    /// The repository of the environment (a monitor an environment's deployment asked for;
    /// a configured one watches an environment of any repository).
    pub repo: Option<String>,
    pub failures_before_alert: i64,
}

impl Monitor {
    /// Whether it watches `repo`'s `environment`.
    pub fn watches(&self, repo: &str, environment: &str) -> bool {
        self.environment.as_deref() == Some(environment)
            && self.repo.as_deref().is_none_or(|r| r == repo)
    }
}

/// The monitors the server checks: the configured ones (`[[monitors]]`), then those the
/// environments' last deployments asked for (`health.monitor` in deploy.yml), except for
/// an environment a configured monitor watches.
pub(crate) fn all_monitors(
    config: &crate::Config,
    store: &store::Store,
) -> Result<Vec<Monitor>, store::StoreError> {
    let mut out = config.monitors.clone();
    for m in store.environment_monitors()? {
        let configured = config
            .monitors
            .iter()
            .any(|c| c.name == m.watched.name || c.environment.as_deref() == Some(&m.environment));
        if configured {
            continue;
        }
        out.push(Monitor {
            name: m.watched.name,
            url: m.watched.url,
            interval: Duration::from_millis(u64::try_from(m.watched.interval_ms).unwrap_or(60_000)),
            timeout: Duration::from_millis(
                u64::try_from(m.watched.interval_ms.min(10_000)).unwrap_or(10_000),
            ),
            expect_status: u16::try_from(m.watched.expect_status).unwrap_or(200),
            environment: Some(m.environment),
            repo: Some(m.repo),
            failures_before_alert: 2,
        });
    }
    Ok(out)
}

/// What an alert tells of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertEvent {
    RunFailed,
    RunFixed,
    DeployFailed,
    RolledBack,
    ApprovalWaiting,
    MonitorDown,
    MonitorUp,
}

impl AlertEvent {
    pub(crate) const ALL: [AlertEvent; 7] = [
        AlertEvent::RunFailed,
        AlertEvent::RunFixed,
        AlertEvent::DeployFailed,
        AlertEvent::RolledBack,
        AlertEvent::ApprovalWaiting,
        AlertEvent::MonitorDown,
        AlertEvent::MonitorUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::RunFailed => "run_failed",
            AlertEvent::RunFixed => "run_fixed",
            AlertEvent::DeployFailed => "deploy_failed",
            AlertEvent::RolledBack => "rolled_back",
            AlertEvent::ApprovalWaiting => "approval_waiting",
            AlertEvent::MonitorDown => "monitor_down",
            AlertEvent::MonitorUp => "monitor_up",
        }
    }
}

/// Where alerts go.
#[derive(Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub events: Vec<AlertEvent>,
    /// Run alerts of these repositories only (all when empty).
    pub repos: Vec<String>,
    /// Run alerts of these branches only; `None`: each repository's default branch and
    /// `development`.
    pub branches: Option<Vec<String>>,
}

#[derive(Clone)]
pub enum ChannelKind {
    Smtp {
        url: String,
        from: String,
        to: Vec<String>,
    },
    Sendgrid {
        api_key: String,
        api_url: String,
        from: String,
        to: Vec<String>,
    },
    Slack {
        webhook_url: String,
    },
    Webhook {
        url: String,
        secret: Option<String>,
    },
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            ChannelKind::Smtp { url, to, .. } => {
                format!("smtp {} to {to:?}", crate::config::redact_url(url))
            }
            ChannelKind::Sendgrid { api_url, to, .. } => format!("sendgrid {api_url} to {to:?}"),
            ChannelKind::Slack { .. } => "slack <webhook redacted>".into(),
            ChannelKind::Webhook { url, .. } => {
                format!("webhook {}", crate::config::redact_url(url))
            }
        };
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &kind)
            .field("events", &self.events)
            .finish()
    }
}

/// SendGrid's API, unless `api_url` says otherwise.
const SENDGRID_API: &str = "https://api.sendgrid.com";

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn duration(key: String, text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => crate::config::parse_interval(t).ok_or_else(|| {
            invalid(
                key,
                format!("`{t}` is not a duration of at least one second like 30s, 5m, 1h or 1m30s"),
            )
        }),
    }
}

fn http_url(key: String, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{url}` is not an http:// or https:// URL"),
        ))
    }
}

pub(crate) fn check_monitors(raw: Vec<RawMonitor>) -> Result<Vec<Monitor>, ConfigError> {
    let mut out: Vec<Monitor> = Vec::new();
    for m in raw {
        if m.name.trim().is_empty() {
            return Err(invalid(
                "monitors.name".into(),
                "a monitor needs a non-empty `name`",
            ));
        }
        let key = |k: &str| format!("monitors.{}.{k}", m.name);
        if out.iter().any(|o| o.name == m.name) {
            return Err(invalid(format!("monitors.{}", m.name), "is defined twice"));
        }
        http_url(key("url"), &m.url)?;
        let interval = duration(
            key("interval"),
            m.interval.as_deref(),
            Duration::from_secs(60),
        )?;
        let timeout = duration(
            key("timeout"),
            m.timeout.as_deref(),
            Duration::from_secs(10).min(interval),
        )?;
        if timeout > interval {
            return Err(invalid(
                key("timeout"),
                "is longer than the interval: checks would overlap",
            ));
        }
        let expect_status = m.expect_status.unwrap_or(200);
        if !(100..=599).contains(&expect_status) {
            return Err(invalid(
                key("expect_status"),
                format!("{expect_status} is not an HTTP status"),
            ));
        }
        let failures_before_alert = m.failures_before_alert.unwrap_or(2);
        if !(1..=100).contains(&failures_before_alert) {
            return Err(invalid(
                key("failures_before_alert"),
                format!("must be between 1 and 100, got {failures_before_alert}"),
            ));
        }
        out.push(Monitor {
            name: m.name,
            url: m.url,
            interval,
            timeout,
            expect_status,
            environment: m.environment,
            repo: None,
            failures_before_alert,
        });
    }
    Ok(out)
}

pub(crate) fn check_channels(raw: Vec<RawNotify>) -> Result<Vec<Channel>, ConfigError> {
    let mut out: Vec<Channel> = Vec::new();
    for n in raw {
        if n.name.trim().is_empty() {
            return Err(invalid(
                "notify.name".into(),
                "a channel needs a non-empty `name`",
            ));
        }
        let key = |k: &str| format!("notify.{}.{k}", n.name);
        if out.iter().any(|o| o.name == n.name) {
            return Err(invalid(format!("notify.{}", n.name), "is defined twice"));
        }
        let need = |v: &Option<String>, k: &str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| invalid(key(k), format!("a `{}` channel needs `{k}`", n.kind)))
        };
        let recipients = |to: &[String]| {
            if to.is_empty() {
                Err(invalid(
                    key("to"),
                    format!("a `{}` channel needs `to` (a list of addresses)", n.kind),
                ))
            } else {
                Ok(to.to_vec())
            }
        };
        let kind = match n.kind.as_str() {
            "smtp" => {
                let url = need(&n.url, "url")?;
                if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                    return Err(invalid(
                        key("url"),
                        format!(
                            "`{}` is not smtp://user:pass@host:port or smtps://…",
                            crate::config::redact_url(&url)
                        ),
                    ));
                }
                ChannelKind::Smtp {
                    url,
                    from: need(&n.from, "from")?,
                    to: recipients(&n.to)?,
                }
            }
            "sendgrid" => {
                let api_url = n
                    .api_url
                    .clone()
                    .unwrap_or_else(|| SENDGRID_API.into())
                    .trim_end_matches('/')
                    .to_owned();
                http_url(key("api_url"), &api_url)?;
                ChannelKind::Sendgrid {
                    api_key: need(&n.api_key, "api_key")?,
                    api_url,
                    from: need(&n.from, "from")?,
                    to: recipients(&n.to)?,
                }
            }
            "slack" => {
                let webhook_url = need(&n.webhook_url, "webhook_url")?;
                http_url(key("webhook_url"), &webhook_url)?;
                ChannelKind::Slack { webhook_url }
            }
            "webhook" => {
                let url = need(&n.url, "url")?;
                http_url(key("url"), &url)?;
                ChannelKind::Webhook {
                    url,
                    secret: n.secret.clone().filter(|s| !s.is_empty()),
                }
            }
            other => {
                return Err(invalid(
                    key("kind"),
                    format!("`{other}`: expected smtp, sendgrid, slack or webhook"),
                ));
            }
        };
        let mut events = Vec::new();
        for e in &n.events {
            match AlertEvent::ALL.iter().find(|a| a.as_str() == e) {
                Some(a) => events.push(*a),
                None => {
                    return Err(invalid(
                        key("events"),
                        format!(
                            "`{e}`: expected any of {}",
                            AlertEvent::ALL.map(AlertEvent::as_str).join(", ")
                        ),
                    ));
                }
            }
        }
        if events.is_empty() {
            events = AlertEvent::ALL.to_vec();
        }
        out.push(Channel {
            name: n.name,
            kind,
            events,
            repos: n.repos,
            branches: n.branches,
        });
    }
    Ok(out)
}
