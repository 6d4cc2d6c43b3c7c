//! `on.schedule`: at each minute, the cron entries of the default branch's workflows that
//! match it start runs (UTC, as GitHub). Each firing is claimed in the store first, so a
//! restarted server never runs the same minute twice; missed minutes are not caught up.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::blocking::blocking;
use crate::config::Config;
use crate::trigger::{self, Event};

pub(crate) async fn run(
    store: Arc<store::Store>,
    config: Arc<Config>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        // Sleep to just after the next minute boundary.
        let now = store::now_ms();
        let next = (now / 60_000 + 1) * 60_000;
        let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0) + 20);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        let minute = store::now_ms() / 60_000;
        let (store, config) = (store.clone(), config.clone());
        let fired = blocking(move || Ok::<_, Infallible>(tick(&store, &config, minute)))
            .await
            .unwrap_or(0);
        if fired > 0 {
            wake.notify_waiters();
        }
    }
}

/// Fires what matches `minute`; returns how many runs were queued.
fn tick(store: &store::Store, config: &Config, minute: i64) -> usize {
    let Some(at) = chrono::DateTime::from_timestamp(minute * 60, 0) else {
        return 0;
    };
    let mut fired = 0;
    for repo in &config.repos {
        let branch = format!("refs/heads/{}", repo.default_branch);
        let Ok(sha) = crate::git::resolve(&repo.path, &branch) else {
            continue; // an empty repository
        };
        let Ok(files) = crate::git::workflows_at(&repo.commits, &repo.path, &sha) else {
            continue;
        };
        for (path, text) in files.iter() {
            let Some(wf) = workflow::parse(text).valid() else {
                continue;
            };
            let Some(t) = wf.on.events.get("schedule") else {
                continue;
            };
            for cron in &t.crons {
                let matches = workflow::cron::parse(&cron.value)
                    .ok()
                    .and_then(|c| c.is_time_matching(&at).ok())
                    .unwrap_or(false);
                if !matches {
                    continue;
                }
                match store.claim_schedule(&repo.name, path, &cron.value, minute) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!("schedule claim: {e}");
                        continue;
                    }
                }
                let event = Event {
                    name: "schedule".into(),
                    git_ref: branch.clone(),
                    sha: sha.clone(),
                    workflow: Some(path.clone()),
                    payload: serde_json::json!({"schedule": cron.value}),
                    ..Event::default()
                };
                match trigger::enqueue(store, repo, &event) {
                    Ok(ids) => fired += ids.len(),
                    Err(e) => tracing::error!(repo = %repo.name, workflow = %path, "schedule: {e}"),
                }
            }
        }
    }
    fired
}
