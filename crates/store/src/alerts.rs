//! Alerts: messages for notification channels, queued in the transaction of the change they
//! tell of (a run's end, a monitor's incident), sent by any server that claims them for a
//! while, retried with backoff until given up, and kept as the record of what was sent.

use serde::Serialize;

use crate::db::{Db, Row, params};
use crate::{Result, Store, now_ms, rows};

/// An alert to queue for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The channel's name in the server's configuration.
    pub channel: String,
    /// What happened: `run_failed`, `monitor_down`, ...
    pub event: String,
    pub subject: String,
    /// The message's details (JSON), rendered for the channel when sent.
    pub body: String,
}

/// A queued, sent or given-up alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: i64,
    pub channel: String,
    pub event: String,
    pub subject: String,
    #[serde(skip)]
    pub body: String,
    /// `pending`, `sent` or `failed` (given up).
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// How many alerts are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AlertCounts {
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
}

const ALERT_FIELDS: &str =
    "id, channel, event, subject, body, status, attempts, next_at, last_error, created_at, sent_at";

pub(crate) fn insert_alerts(c: &mut dyn Db, alerts: &[NewAlert], now: i64) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(alerts.len());
    for a in alerts {
        ids.push(
            c.query_one(
                "INSERT INTO alerts (channel, event, subject, body, status, next_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5) RETURNING id",
                params![&a.channel, &a.event, &a.subject, &a.body, now],
            )?
            .first_i64()?,
        );
    }
    Ok(ids)
}

fn alert_from_row(r: &Row) -> Result<Alert> {
    Ok(Alert {
        id: r.i64("id")?,
        channel: r.string("channel")?,
        event: r.string("event")?,
        subject: r.string("subject")?,
        body: r.string("body")?,
        status: r.string("status")?,
        attempts: r.i64("attempts")?,
        next_at: r.i64("next_at")?,
        last_error: r.opt_string("last_error")?,
        created_at: r.i64("created_at")?,
        sent_at: r.opt_i64("sent_at")?,
    })
}

impl Store {
    /// Queues `alerts`, due now; their ids.
    pub fn queue_alerts(&self, alerts: &[NewAlert]) -> Result<Vec<i64>> {
        self.db.tx(|c| insert_alerts(c, alerts, now_ms()))
    }

    /// Claims up to `limit` due alerts for `me` for `claim_ms` (another server takes them up
    /// after that if `me` never says how sending went), counting the attempt.
    pub fn claim_alerts(&self, me: &str, claim_ms: i64, limit: i64) -> Result<Vec<Alert>> {
        let now = now_ms();
        // The outer conditions again: on PostgreSQL a row another server claimed between the
        // inner select and this update is re-read, and skipped.
        let due = "status = 'pending' AND next_at <= ?2
                   AND (claimed_until IS NULL OR claimed_until < ?2)";
        self.db.with(|c| {
            rows(
                c.query(
                    &format!(
                        "UPDATE alerts SET claimed_by = ?1, claimed_until = ?3,
                             attempts = attempts + 1
                         WHERE id IN (SELECT id FROM alerts WHERE {due} ORDER BY id LIMIT ?4)
                           AND {due}
                         RETURNING {ALERT_FIELDS}"
                    ),
                    params![me, now, now.saturating_add(claim_ms), limit],
                )?,
                alert_from_row,
            )
        })
    }

    /// Alert `id` was sent.
    pub fn alert_sent(&self, id: i64) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE alerts SET status = 'sent', sent_at = ?2, claimed_until = NULL,
                     last_error = NULL
                 WHERE id = ?1",
                params![id, now_ms()],
            )
            .map(drop)
        })
    }

    /// Sending alert `id` failed with `error`: tried again at `retry_at` (ms), or given up
    /// when that is `None`.
    pub fn alert_failed(&self, id: i64, error: &str, retry_at: Option<i64>) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE alerts SET status = ?2, next_at = COALESCE(?3, next_at),
                     claimed_until = NULL, last_error = ?4
                 WHERE id = ?1",
                params![
                    id,
                    if retry_at.is_some() {
                        "pending"
                    } else {
                        "failed"
                    },
                    retry_at,
                    error
                ],
            )
            .map(drop)
        })
    }

    /// The `limit` latest alerts, newest first.
    pub fn alerts(&self, limit: i64) -> Result<Vec<Alert>> {
        self.db.with(|c| {
            rows(
                c.query(
                    &format!("SELECT {ALERT_FIELDS} FROM alerts ORDER BY id DESC LIMIT ?1"),
                    params![limit],
                )?,
                alert_from_row,
            )
        })
    }

    /// How many alerts are pending, sent and given up.
    pub fn alert_counts(&self) -> Result<AlertCounts> {
        self.db.with(|c| {
            let mut counts = AlertCounts::default();
            for r in c.query(
                "SELECT status, COUNT(*) AS n FROM alerts GROUP BY status",
                &[],
            )? {
                let n = r.i64("n")?;
                match r.string("status")?.as_str() {
                    "pending" => counts.pending = n,
                    "sent" => counts.sent = n,
                    _ => counts.failed += n,
                }
            }
            Ok(counts)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::stores;

    fn new(event: &str) -> NewAlert {
        NewAlert {
            channel: "ops".into(),
            event: event.into(),
            subject: "s".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn alerts_are_claimed_once_retried_and_given_up() {
        for s in stores() {
            let backend = s.backend();
            s.queue_alerts(&[new("run_failed"), new("monitor_down")])
                .unwrap();
            let a = s.claim_alerts("one", 60_000, 10).unwrap();
            assert_eq!(a.len(), 2, "{backend}");
            assert!(
                s.claim_alerts("two", 60_000, 10).unwrap().is_empty(),
                "{backend}"
            );
            s.alert_sent(a[0].id).unwrap();
            // Retried at once, then given up.
            s.alert_failed(a[1].id, "refused", Some(now_ms() - 1))
                .unwrap();
            let again = s.claim_alerts("two", 60_000, 10).unwrap();
            assert_eq!(
                (
                    again.len(),
                    again[0].attempts,
                    again[0].last_error.as_deref()
                ),
                (1, 2, Some("refused")),
                "{backend}"
            );
            s.alert_failed(again[0].id, "refused again", None).unwrap();
            assert!(
                s.claim_alerts("two", 60_000, 10).unwrap().is_empty(),
                "{backend}"
            );
            assert_eq!(
                s.alert_counts().unwrap(),
                AlertCounts {
                    pending: 0,
                    sent: 1,
                    failed: 1
                },
                "{backend}"
            );
            let all = s.alerts(10).unwrap();
            assert_eq!(all[0].status, "failed", "{backend}");
            assert_eq!(all[1].status, "sent", "{backend}");
        }
    }

    #[test]
    fn a_claim_that_lapsed_is_taken_up_by_another_server() {
        for s in stores() {
            let backend = s.backend();
            s.queue_alerts(&[new("run_failed")]).unwrap();
            assert_eq!(s.claim_alerts("one", -1, 10).unwrap().len(), 1, "{backend}");
            assert_eq!(
                s.claim_alerts("two", 60_000, 10).unwrap().len(),
                1,
                "{backend}"
            );
        }
    }
}
