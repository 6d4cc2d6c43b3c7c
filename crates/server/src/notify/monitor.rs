//! Checking the monitors (the configured ones and those environments' deployments asked
//! for, re-read every few seconds): every second each monitor whose check is due is claimed
//! in the database (so servers sharing it check it once per interval), fetched with a
//! timeout, and recorded; an incident opening or closing queues its alerts with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{AlertEvent, Message, Monitor, Scope, alerts_for};
use crate::blocking::{Blocked, blocking};

/// How long checks are kept (what the 30-day chart shows).
const KEEP_MS: i64 = 31 * 24 * HOUR_MS;
/// How long each check is kept as it was; older ones are folded into hours.
const RAW_MS: i64 = 24 * HOUR_MS;
const HOUR_MS: i64 = 3600 * 1000;
/// How often the list of monitors is read again (environments' monitors come and go with
/// their deployments, made through any server).
const RELIST: Duration = Duration::from_secs(5);

pub(crate) async fn run(
    store: Arc<store::Store>,
    config: Arc<crate::Config>,
    alerts: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .user_agent(concat!("pipewright-monitor/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let mut checks = tokio::task::JoinSet::new();
    // Downsampled and pruned at start, then hourly.
    let mut pruned: Option<Instant> = None;
    let mut monitors: Vec<Monitor> = config.monitors.clone();
    let mut listed: Option<Instant> = None;
    loop {
        if listed.is_none_or(|l| l.elapsed() >= RELIST) {
            listed = Some(Instant::now());
            let (s, c) = (store.clone(), config.clone());
            match blocking(move || super::all_monitors(&c, &s)).await {
                Ok(list) => monitors = list,
                Err(Blocked::Call(e)) => tracing::error!("listing the monitors: {e}"),
                Err(Blocked::Task(_)) => {}
            }
        }
        for m in &monitors {
            let (s, name) = (store.clone(), m.name.clone());
            let interval = i64::try_from(m.interval.as_millis()).unwrap_or(i64::MAX);
            match blocking(move || s.claim_check(&name, interval)).await {
                Ok(true) => {
                    let (store, config, http, m, alerts) = (
                        store.clone(),
                        config.clone(),
                        http.clone(),
                        m.clone(),
                        alerts.clone(),
                    );
                    checks.spawn(async move {
                        let check = check(&http, &m).await;
                        record(&store, &config, &m, check, &alerts).await;
                    });
                }
                Ok(false) => {}
                Err(Blocked::Call(e)) => tracing::error!(monitor = m.name, "claiming a check: {e}"),
                Err(Blocked::Task(_)) => {}
            }
        }
        while checks.try_join_next().is_some() {}
        if pruned.is_none_or(|p| p.elapsed() > Duration::from_secs(3600)) {
            pruned = Some(Instant::now());
            let s = store.clone();
            let kept = blocking(move || -> Result<_, store::StoreError> {
                let now = store::now_ms();
                // Checks older than a day become hours (whole hours only), then what is
                // older than the 30-day chart goes.
                let folded = s.downsample_checks((now - RAW_MS) / HOUR_MS * HOUR_MS)?;
                Ok((folded, s.prune_checks(now - KEEP_MS)?))
            })
            .await;
            match kept {
                Ok((folded, dropped)) => {
                    tracing::debug!(folded, dropped, "monitor checks downsampled and pruned");
                }
                Err(Blocked::Call(e)) => tracing::error!("downsampling monitor checks: {e}"),
                Err(Blocked::Task(_)) => {}
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => break,
        }
    }
    checks.abort_all();
}

/// Fetches the monitor's URL: up when the answer has the expected status within the
/// timeout.
pub(crate) async fn check(http: &reqwest::Client, m: &Monitor) -> store::Check {
    let started = Instant::now();
    let answer = http.get(&m.url).timeout(m.timeout).send().await;
    let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match answer {
        Ok(r) if r.status().as_u16() == m.expect_status => store::Check {
            ok: true,
            ms: Some(ms),
            status: Some(i64::from(r.status().as_u16())),
            error: None,
        },
        Ok(r) => store::Check {
            ok: false,
            ms: Some(ms),
            status: Some(i64::from(r.status().as_u16())),
            error: Some(format!(
                "answered {} (expected {})",
                r.status().as_u16(),
                m.expect_status
            )),
        },
        Err(e) => store::Check {
            ok: false,
            ms: None,
            status: None,
            error: Some(if e.is_timeout() {
                format!("no answer within {}", humantime(m.timeout))
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                e.without_url().to_string()
            }),
        },
    }
}

fn humantime(d: Duration) -> String {
    workflow::duration::format_duration(d)
}

async fn record(
    store: &Arc<store::Store>,
    config: &Arc<crate::Config>,
    m: &Monitor,
    check: store::Check,
    alerts: &Notify,
) {
    let (s, config2, m2) = (store.clone(), config.clone(), m.clone());
    let recorded = blocking(move || {
        s.record_check(&m2.name, &check, m2.failures_before_alert, |change| {
            let (event, title, facts) = match change {
                store::Change::None => return Vec::new(),
                store::Change::Down { cause, .. } => (
                    AlertEvent::MonitorDown,
                    format!("{} is down: {cause}", m2.name),
                    vec![
                        ("Monitor".to_owned(), m2.name.clone()),
                        ("URL".to_owned(), m2.url.clone()),
                        ("Cause".to_owned(), cause.clone()),
                        (
                            "Failed checks".to_owned(),
                            m2.failures_before_alert.to_string(),
                        ),
                    ],
                ),
                store::Change::Up { down_ms, .. } => (
                    AlertEvent::MonitorUp,
                    format!("{} is up again", m2.name),
                    vec![
                        ("Monitor".to_owned(), m2.name.clone()),
                        ("URL".to_owned(), m2.url.clone()),
                        (
                            "Down for".to_owned(),
                            humantime(Duration::from_millis(
                                u64::try_from(*down_ms).unwrap_or(0) / 1000 * 1000,
                            )),
                        ),
                    ],
                ),
            };
            let mut facts = facts;
            if let Some(repo) = &m2.repo {
                facts.push(("Repository".to_owned(), repo.clone()));
            }
            if let Some(env) = &m2.environment {
                facts.push(("Environment".to_owned(), env.clone()));
            }
            let message = Message {
                event: event.as_str().to_owned(),
                title,
                facts,
                log: Vec::new(),
                link: Some(format!(
                    "{}/api/v1/monitors",
                    config2.public_url.trim_end_matches('/')
                )),
            };
            alerts_for(&config2.channels, event, Scope::Monitor, &message)
        })
    })
    .await;
    match recorded {
        Ok(store::Change::None) => {}
        Ok(change) => {
            tracing::warn!(monitor = m.name, ?change, "monitor changed");
            alerts.notify_one();
        }
        Err(Blocked::Call(e)) => tracing::error!(monitor = m.name, "recording a check: {e}"),
        Err(Blocked::Task(_)) => {}
    }
}
