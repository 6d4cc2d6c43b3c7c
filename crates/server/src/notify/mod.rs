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

pub use config::{AlertEvent, Channel, ChannelKind, Monitor};
pub(crate) use config::{RawMonitor, RawNotify, check_channels, check_monitors};
pub(crate) use message::{Message, RunAlerts};
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

/// The alerts of `channels` subscribed to `event` (and, for a run's alert, to its repository
/// and branch), each with `message`.
pub(crate) fn alerts_for(
    channels: &[Channel],
    event: AlertEvent,
    run: Option<(&str, &str, &str)>,
    message: &Message,
) -> Vec<store::NewAlert> {
    let body = serde_json::to_string(message).unwrap_or_else(|_| "{}".into());
    channels
        .iter()
        .filter(|c| c.events.contains(&event))
        .filter(|c| match run {
            None => true,
            Some((repo, branch, default_branch)) => {
                (c.repos.is_empty() || c.repos.iter().any(|r| r == repo))
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
