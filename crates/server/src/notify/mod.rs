//! Telling people: alerts to notification channels (`[[notify]]`: SMTP, SendGrid,
//! Slack-compatible webhooks, signed webhooks) when a branch's run fails or is fixed and when
//! a monitor goes down or comes back up, and the monitors themselves (`[[monitors]]`).
//!
//! An alert is queued in the database in the transaction of the change it tells of (a run's
//! end, an incident opening or closing): it is queued once or not at all. Any server
//! sharing the database sends it ([`sender`]): it claims a few due alerts for a minute,
//! sends each on a task of its own (a slow or failing channel delays nothing else, and
//! never a run), and records the outcome; a failure is retried with backoff, then given up.

mod config;
mod message;
pub(crate) mod monitor;
mod send;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use config::all_monitors;
pub use config::{AlertEvent, Channel, ChannelKind, Monitor};
pub(crate) use config::{RawMonitor, RawNotify, check_channels, check_monitors};
pub(crate) use message::{Message, RunAlerts, approval_alerts, deployment_alerts};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::blocking::{Blocked, blocking};

/// How long a server holds the alerts it claimed before another may send them.
const CLAIM_MS: i64 = 60_000;

/// Attempts an alert gets before it is given up, and the wait after each failed one.
const BACKOFF: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
];

/// What an alert is about, for the channels' `repos` and `branches`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// A monitor: every channel subscribed to the event.
    Monitor,
    /// A run of `repo` on `branch` (whose default branch is `default_branch`).
    Run {
        repo: &'a str,
        branch: &'a str,
        default_branch: &'a str,
    },
    /// A deployment of `repo`.
    Deployment { repo: &'a str },
}

/// The alerts of `channels` subscribed to `event` and to its scope, each with `message`.
pub(crate) fn alerts_for(
    channels: &[Channel],
    event: AlertEvent,
    scope: Scope<'_>,
    message: &Message,
) -> Vec<store::NewAlert> {
    let body = serde_json::to_string(message).unwrap_or_else(|_| "{}".into());
    let repo_ok = |c: &Channel, repo: &str| c.repos.is_empty() || c.repos.iter().any(|r| r == repo);
    channels
        .iter()
        .filter(|c| c.events.contains(&event))
        .filter(|c| match scope {
            Scope::Monitor => true,
            Scope::Deployment { repo } => repo_ok(c, repo),
            Scope::Run {
                repo,
                branch,
                default_branch,
            } => {
                repo_ok(c, repo)
                    && match &c.branches {
                        Some(list) => list.iter().any(|b| b == branch || b == "*"),
                        None => branch == default_branch || branch == "development",
                    }
            }
        })
        .map(|c| store::NewAlert {
            channel: c.name.clone(),
            event: event.as_str().to_owned(),
            subject: message.title.clone(),
            body: body.clone(),
        })
        .collect()
}

/// Sends due alerts until shutdown: at once when `wake` is told (this server queued one),
/// else every second (another server queued one, or a retry came due).
pub(crate) async fn sender(
    store: Arc<store::Store>,
    channels: Arc<Vec<Channel>>,
    me: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let http = send::client();
    let mut sending = tokio::task::JoinSet::new();
    loop {
        let (s, me2) = (store.clone(), me.clone());
        match blocking(move || s.claim_alerts(&me2, CLAIM_MS, 16)).await {
            Ok(alerts) => {
                for alert in alerts {
                    let (store, channels, http) = (store.clone(), channels.clone(), http.clone());
                    sending.spawn(async move { deliver(&store, &channels, &http, alert).await });
                }
            }
            Err(Blocked::Call(e)) => tracing::error!("claiming alerts: {e}"),
            Err(Blocked::Task(_)) => {}
        }
        while sending.try_join_next().is_some() {}
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => break,
        }
    }
    // What is being sent gets a moment; what is not sent by then is sent by the next start
    // (its claim lapses).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while sending.join_next().await.is_some() {}
    })
    .await;
}

async fn deliver(
    store: &Arc<store::Store>,
    channels: &[Channel],
    http: &reqwest::Client,
    alert: store::Alert,
) {
    let outcome = match channels.iter().find(|c| c.name == alert.channel) {
        None => Err(send::SendError::Gone(alert.channel.clone())),
        Some(channel) => {
            let message: Message = serde_json::from_str(&alert.body).unwrap_or_else(|_| Message {
                event: alert.event.clone(),
                title: alert.subject.clone(),
                ..Message::default()
            });
            send::send(http, channel, &message).await
        }
    };
    let (store, id) = (store.clone(), alert.id);
    let recorded = match outcome {
        Ok(()) => {
            tracing::info!(channel = alert.channel, event = alert.event, "alert sent");
            blocking(move || store.alert_sent(id)).await
        }
        Err(e) => {
            let retry = usize::try_from(alert.attempts - 1)
                .ok()
                .and_then(|i| BACKOFF.get(i))
                .filter(|_| !matches!(e, send::SendError::Gone(_)))
                .map(|wait| store::now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            tracing::warn!(
                channel = alert.channel,
                event = alert.event,
                attempt = alert.attempts,
                retry = retry.is_some(),
                "sending an alert failed: {e}"
            );
            let error = e.to_string();
            blocking(move || store.alert_failed(id, &error, retry)).await
        }
    };
    if let Err(Blocked::Call(e)) = recorded {
        tracing::error!("recording an alert's outcome: {e}");
    }
}
