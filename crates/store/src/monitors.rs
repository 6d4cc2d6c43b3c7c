//! Monitors: HTTP endpoints checked at an interval by whichever server claims the check
//! (once across servers sharing the database), each check recorded, an incident opened
//! after a number of consecutive failures and closed by the first success. The alerts an
//! opening or closing sends are queued in the same transaction as the change, so a change
//! is never told twice nor lost.

use serde::Serialize;

use crate::alerts::{NewAlert, insert_alerts};
use crate::db::{Row, params};
use crate::{Result, Store, now_ms, rows};

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub ok: bool,
    /// How long the answer took (none when there was none).
    pub ms: Option<i64>,
    /// The answer's HTTP status, if any came.
    pub status: Option<i64>,
    /// Why the check failed.
    pub error: Option<String>,
}

/// What a check changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Nothing to tell: still up, still down, or failing but not yet often enough.
    None,
    /// An incident opened: the monitor is down.
    Down { incident: i64, cause: String },
    /// The open incident closed: the monitor is up again after `down_ms`.
    Up { incident: i64, down_ms: i64 },
}

/// A monitor's checks over a span of time (a chart's point).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The bucket's start (ms).
    pub at: i64,
    pub checks: i64,
    /// Checks that passed.
    pub ok: i64,
    /// Mean and longest response time of the checks that had an answer.
    pub avg_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// A monitor as the checks left it, with its uptime over the last day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorState {
    pub name: String,
    /// `None` until checked; `false` while an incident is open.
    pub up: Option<bool>,
    /// Consecutive failed checks.
    pub failures: i64,
    /// The open incident.
    pub incident: Option<i64>,
    pub last_at: Option<i64>,
    pub last_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Checks in the last 24 hours, and how many succeeded.
    pub checks_24h: i64,
    pub ok_24h: i64,
}

/// One recorded check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRecord {
    pub at: i64,
    pub ok: bool,
    pub ms: Option<i64>,
    pub status: Option<i64>,
    pub error: Option<String>,
}

/// A time a monitor was down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: i64,
    pub monitor: String,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    pub cause: String,
}

const DAY_MS: i64 = 24 * HOUR_MS;
const HOUR_MS: i64 = 3600 * 1000;

impl Store {
    /// Claims the check of monitor `name` that is due now, the next one `interval_ms` later;
    /// false if it is not due (another server claimed it, or it ran less than an interval
    /// ago). A monitor seen for the first time is due at once.
    pub fn claim_check(&self, name: &str, interval_ms: i64) -> Result<bool> {
        let now = now_ms();
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO monitors (name, next_at) VALUES (?1, 0) ON CONFLICT DO NOTHING",
                params![name],
            )?;
            Ok(c.execute(
                "UPDATE monitors SET next_at = ?2 WHERE name = ?1 AND next_at <= ?3",
                params![name, now.saturating_add(interval_ms), now],
            )? == 1)
        })
    }

    /// Records `check` of monitor `name`: an incident opens at the `failures_before_alert`th
    /// failure in a row (none open yet) and closes at the first success. The alerts `alerts`
    /// makes of the change are queued with it.
    pub fn record_check(
        &self,
        name: &str,
        check: &Check,
        failures_before_alert: i64,
        alerts: impl FnOnce(&Change) -> Vec<NewAlert>,
    ) -> Result<Change> {
        let now = now_ms();
        self.db.tx(|c| {
            // The row's lock (PostgreSQL) orders two servers' records of one monitor.
            c.execute(
                "INSERT INTO monitors (name, next_at) VALUES (?1, 0) ON CONFLICT DO NOTHING",
                params![name],
            )?;
            let row = c.query_one(
                "UPDATE monitors SET last_at = ?2 WHERE name = ?1
                 RETURNING failures, incident, up",
                params![name, now],
            )?;
            let (failures, incident, up) = (
                row.i64("failures")?,
                row.opt_i64("incident")?,
                row.opt_i64("up")?,
            );
            c.execute(
                "INSERT INTO monitor_checks (monitor, at, ok, ms, status, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    name,
                    now,
                    i64::from(check.ok),
                    check.ms,
                    check.status,
                    check.error.as_deref()
                ],
            )?;
            let (change, failures, incident, up) = if check.ok {
                let change = match incident {
                    Some(id) => {
                        let opened = c
                            .query_one(
                                "UPDATE incidents SET closed_at = ?2 WHERE id = ?1
                                 RETURNING opened_at",
                                params![id, now],
                            )?
                            .i64("opened_at")?;
                        Change::Up {
                            incident: id,
                            down_ms: now - opened,
                        }
                    }
                    None => Change::None,
                };
                (change, 0, None, Some(1))
            } else {
                let failures = failures + 1;
                if incident.is_none() && failures >= failures_before_alert.max(1) {
                    let cause = check.error.clone().unwrap_or_else(|| "failed".into());
                    let id = c
                        .query_one(
                            "INSERT INTO incidents (monitor, opened_at, cause) VALUES (?1, ?2, ?3)
                             RETURNING id",
                            params![name, now, cause.as_str()],
                        )?
                        .first_i64()?;
                    (
                        Change::Down {
                            incident: id,
                            cause,
                        },
                        failures,
                        Some(id),
                        Some(0),
                    )
                } else {
                    // Down while the incident is open; as it was until one opens.
                    let up = if incident.is_some() { Some(0) } else { up };
                    (Change::None, failures, incident, up)
                }
            };
            c.execute(
                "UPDATE monitors SET failures = ?2, incident = ?3, up = ?4, last_ms = ?5,
                     last_error = ?6
                 WHERE name = ?1",
                params![
                    name,
                    failures,
                    incident,
                    up,
                    check.ms,
                    check.error.as_deref()
                ],
            )?;
            insert_alerts(c, &alerts(&change), now)?;
            Ok(change)
        })
    }

    /// Every monitor checked so far, by name, with its last day's counts.
    pub fn monitors(&self) -> Result<Vec<MonitorState>> {
        let since = now_ms() - DAY_MS;
        self.db.with(|c| {
            rows(
                c.query(
                    "SELECT m.name, m.up, m.failures, m.incident, m.last_at, m.last_ms,
                         m.last_error,
                         (SELECT COUNT(*) FROM monitor_checks k
                             WHERE k.monitor = m.name AND k.at >= ?1) AS checks_24h,
                         (SELECT COUNT(*) FROM monitor_checks k
                             WHERE k.monitor = m.name AND k.at >= ?1 AND k.ok = 1) AS ok_24h
                     FROM monitors m ORDER BY m.name",
                    params![since],
                )?,
                state_from_row,
            )
        })
    }

    /// The checks of monitor `name` since `since` (ms), oldest first.
    pub fn monitor_checks(&self, name: &str, since: i64) -> Result<Vec<CheckRecord>> {
        self.db.with(|c| {
            rows(
                c.query(
                    "SELECT at, ok, ms, status, error FROM monitor_checks
                     WHERE monitor = ?1 AND at >= ?2 ORDER BY at",
                    params![name, since],
                )?,
                |r| {
                    Ok(CheckRecord {
                        at: r.i64("at")?,
                        ok: r.i64("ok")? != 0,
                        ms: r.opt_i64("ms")?,
                        status: r.opt_i64("status")?,
                        error: r.opt_string("error")?,
                    })
                },
            )
        })
    }

    /// The `limit` latest incidents, of monitor `name` or of all, newest first.
    pub fn incidents(&self, name: Option<&str>, limit: i64) -> Result<Vec<Incident>> {
        self.db.with(|c| {
            rows(
                c.query(
                    "SELECT id, monitor, opened_at, closed_at, cause FROM incidents
                     WHERE (CAST(?1 AS TEXT) IS NULL OR monitor = ?1) ORDER BY id DESC LIMIT ?2",
                    params![name, limit],
                )?,
                |r| {
                    Ok(Incident {
                        id: r.i64("id")?,
                        monitor: r.string("monitor")?,
                        opened_at: r.i64("opened_at")?,
                        closed_at: r.opt_i64("closed_at")?,
                        cause: r.string("cause")?,
                    })
                },
            )
        })
    }

    /// Monitor `name`'s checks since `since` (ms) in buckets of `bucket_ms`, oldest first:
    /// the checks of the last day and the hours older ones were downsampled to, together.
    pub fn monitor_buckets(&self, name: &str, since: i64, bucket_ms: i64) -> Result<Vec<Bucket>> {
        let bucket_ms = bucket_ms.max(1);
        self.db.with(|c| {
            rows(
                c.query(
                    "SELECT b, CAST(SUM(checks) AS BIGINT) AS checks, CAST(SUM(ok) AS BIGINT) AS ok,
                         CAST(SUM(ms_sum) AS BIGINT) AS ms_sum,
                         CAST(SUM(ms_count) AS BIGINT) AS ms_count, MAX(ms_max) AS ms_max
                     FROM (
                         SELECT (at / ?3) * ?3 AS b, COUNT(*) AS checks,
                             CAST(SUM(ok) AS BIGINT) AS ok,
                             CAST(COALESCE(SUM(ms), 0) AS BIGINT) AS ms_sum,
                             COUNT(ms) AS ms_count, MAX(ms) AS ms_max
                         FROM monitor_checks WHERE monitor = ?1 AND at >= ?2
                         GROUP BY (at / ?3) * ?3
                         UNION ALL
                         SELECT (hour / ?3) * ?3 AS b, CAST(SUM(checks) AS BIGINT) AS checks,
                             CAST(SUM(ok) AS BIGINT) AS ok, CAST(SUM(ms_sum) AS BIGINT) AS ms_sum,
                             CAST(SUM(ms_count) AS BIGINT) AS ms_count, MAX(ms_max) AS ms_max
                         FROM monitor_hours WHERE monitor = ?1 AND hour >= ?2
                         GROUP BY (hour / ?3) * ?3
                     ) x GROUP BY b ORDER BY b",
                    params![name, since, bucket_ms],
                )?,
                |r| {
                    let (sum, count) = (r.i64("ms_sum")?, r.i64("ms_count")?);
                    Ok(Bucket {
                        at: r.i64("b")?,
                        checks: r.i64("checks")?,
                        ok: r.i64("ok")?,
                        avg_ms: (count > 0).then(|| sum / count),
                        max_ms: r.opt_i64("ms_max")?,
                    })
                },
            )
        })
    }

    /// Folds the checks older than `before` (ms) into one row per monitor and hour, and
    /// deletes them; how many were folded. The checks are deleted first (locking them), so
    /// two servers doing this at once count each check once.
    pub fn downsample_checks(&self, before: i64) -> Result<u64> {
        self.db.tx(|c| {
            let gone = c.query(
                "DELETE FROM monitor_checks WHERE at < ?1 RETURNING monitor, at, ok, ms",
                params![before],
            )?;
            let mut hours: std::collections::BTreeMap<(String, i64), [i64; 4]> =
                std::collections::BTreeMap::new();
            let mut max: std::collections::BTreeMap<(String, i64), i64> =
                std::collections::BTreeMap::new();
            for r in &gone {
                let key = (r.string("monitor")?, r.i64("at")? / HOUR_MS * HOUR_MS);
                let ms = r.opt_i64("ms")?;
                let h = hours.entry(key.clone()).or_insert([0; 4]);
                h[0] += 1;
                h[1] += r.i64("ok")?;
                if let Some(ms) = ms {
                    h[2] += ms;
                    h[3] += 1;
                    let m = max.entry(key).or_insert(ms);
                    *m = (*m).max(ms);
                }
            }
            for ((monitor, hour), [checks, ok, ms_sum, ms_count]) in &hours {
                let ms_max = max.get(&(monitor.clone(), *hour)).copied();
                c.execute(
                    "INSERT INTO monitor_hours (monitor, hour, checks, ok, ms_sum, ms_count, ms_max)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (monitor, hour) DO UPDATE SET
                         checks = monitor_hours.checks + excluded.checks,
                         ok = monitor_hours.ok + excluded.ok,
                         ms_sum = monitor_hours.ms_sum + excluded.ms_sum,
                         ms_count = monitor_hours.ms_count + excluded.ms_count,
                         ms_max = CASE WHEN monitor_hours.ms_max IS NULL
                                         OR excluded.ms_max > monitor_hours.ms_max
                                       THEN excluded.ms_max ELSE monitor_hours.ms_max END",
                    params![monitor, *hour, *checks, *ok, *ms_sum, *ms_count, ms_max],
                )?;
            }
            Ok(gone.len() as u64)
        })
    }

    /// Deletes what is older than `before` (ms), checks and hours: what no chart shows.
    pub fn prune_checks(&self, before: i64) -> Result<u64> {
        self.db.tx(|c| {
            let hours = c.execute("DELETE FROM monitor_hours WHERE hour < ?1", params![before])?;
            Ok(hours + c.execute("DELETE FROM monitor_checks WHERE at < ?1", params![before])?)
        })
    }
}

fn state_from_row(r: &Row) -> Result<MonitorState> {
    Ok(MonitorState {
        name: r.string("name")?,
        up: r.opt_i64("up")?.map(|u| u != 0),
        failures: r.i64("failures")?,
        incident: r.opt_i64("incident")?,
        last_at: r.opt_i64("last_at")?,
        last_ms: r.opt_i64("last_ms")?,
        last_error: r.opt_string("last_error")?,
        checks_24h: r.i64("checks_24h")?,
        ok_24h: r.i64("ok_24h")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::stores;

    fn alert(change: &Change) -> Vec<NewAlert> {
        let event = match change {
            Change::None => return Vec::new(),
            Change::Down { .. } => "monitor_down",
            Change::Up { .. } => "monitor_up",
        };
        vec![NewAlert {
            channel: "ops".into(),
            event: event.into(),
            subject: event.into(),
            body: "{}".into(),
        }]
    }

    fn check(ok: bool) -> Check {
        Check {
            ok,
            ms: Some(3),
            status: ok.then_some(200),
            error: (!ok).then(|| "connection refused".to_owned()),
        }
    }

    #[test]
    fn a_check_is_claimed_once_per_interval() {
        for s in stores() {
            let backend = s.backend();
            assert!(s.claim_check("web", 60_000).unwrap(), "{backend}");
            assert!(!s.claim_check("web", 60_000).unwrap(), "{backend}");
            assert!(s.claim_check("api", 60_000).unwrap(), "{backend}");
        }
    }

    #[test]
    fn an_incident_opens_after_the_failures_asked_and_closes_once() {
        for s in stores() {
            let backend = s.backend();
            let rec = |ok| s.record_check("web", &check(ok), 2, alert).unwrap();
            assert_eq!(rec(true), Change::None, "{backend}");
            assert_eq!(rec(false), Change::None, "{backend}");
            assert_eq!(s.monitors().unwrap()[0].up, Some(true), "{backend}");
            let Change::Down { incident, cause } = rec(false) else {
                panic!("{backend}: no incident opened");
            };
            assert_eq!(cause, "connection refused");
            assert_eq!(
                rec(false),
                Change::None,
                "{backend}: one incident, told once"
            );
            let m = &s.monitors().unwrap()[0];
            assert_eq!(
                (m.up, m.failures, m.incident, m.checks_24h, m.ok_24h),
                (Some(false), 3, Some(incident), 4, 1),
                "{backend}"
            );
            assert!(
                matches!(rec(true), Change::Up { incident: i, .. } if i == incident),
                "{backend}"
            );
            assert_eq!(rec(true), Change::None, "{backend}");
            let events: Vec<String> = s
                .alerts(10)
                .unwrap()
                .into_iter()
                .rev()
                .map(|a| a.event)
                .collect();
            assert_eq!(events, ["monitor_down", "monitor_up"], "{backend}");
            let inc = s.incidents(Some("web"), 10).unwrap();
            assert_eq!(inc.len(), 1, "{backend}");
            assert!(inc[0].closed_at.is_some(), "{backend}");
            assert_eq!(s.monitor_checks("web", 0).unwrap().len(), 6, "{backend}");
            assert_eq!(s.prune_checks(now_ms() + 1).unwrap(), 6, "{backend}");
        }
    }

    fn insert_check(s: &Store, monitor: &str, at: i64, ok: bool, ms: Option<i64>) {
        s.db.with(|c| {
            c.execute(
                "INSERT INTO monitor_checks (monitor, at, ok, ms) VALUES (?1, ?2, ?3, ?4)",
                params![monitor, at, i64::from(ok), ms],
            )
        })
        .unwrap();
    }

    #[test]
    fn old_checks_fold_into_hours_that_charts_read_with_the_recent_checks() {
        for s in stores() {
            let backend = s.backend();
            let h = HOUR_MS;
            // Hour 10: three checks (one failed, one without an answer); hour 11: one;
            // another monitor's check in hour 10; a recent check in hour 30.
            insert_check(&s, "api", 10 * h + 1, true, Some(100));
            insert_check(&s, "api", 10 * h + 2, false, Some(300));
            insert_check(&s, "api", 10 * h + 3, false, None);
            insert_check(&s, "api", 11 * h, true, Some(50));
            insert_check(&s, "web", 10 * h + 5, true, Some(7));
            insert_check(&s, "api", 30 * h, true, Some(20));
            let before = s.monitor_buckets("api", 0, h).unwrap();
            assert_eq!(s.downsample_checks(12 * h).unwrap(), 5, "{backend}");
            // Nothing left to fold; folding again changes nothing.
            assert_eq!(s.downsample_checks(12 * h).unwrap(), 0, "{backend}");
            let after = s.monitor_buckets("api", 0, h).unwrap();
            assert_eq!(before, after, "{backend}");
            assert_eq!(
                after[0],
                Bucket {
                    at: 10 * h,
                    checks: 3,
                    ok: 1,
                    avg_ms: Some(200),
                    max_ms: Some(300)
                },
                "{backend}"
            );
            assert_eq!((after[1].at, after[1].checks), (11 * h, 1), "{backend}");
            assert_eq!((after[2].at, after[2].ok), (30 * h, 1), "{backend}");
            // A late check of a folded hour adds to it.
            insert_check(&s, "api", 10 * h + 9, true, Some(900));
            s.downsample_checks(12 * h).unwrap();
            let day = s.monitor_buckets("api", 0, 24 * h).unwrap();
            assert_eq!(
                day[0],
                Bucket {
                    at: 0,
                    checks: 5,
                    ok: 3,
                    avg_ms: Some((100 + 300 + 50 + 900) / 4),
                    max_ms: Some(900)
                },
                "{backend}"
            );
            assert_eq!(
                s.monitor_buckets("web", 0, h).unwrap()[0].checks,
                1,
                "{backend}"
            );
            // Pruning drops hours and checks older than the bound.
            assert_eq!(s.prune_checks(11 * h + 1).unwrap(), 3, "{backend}");
            let left = s.monitor_buckets("api", 0, h).unwrap();
            assert_eq!(
                left.iter().map(|b| b.at).collect::<Vec<_>>(),
                [30 * h],
                "{backend}"
            );
        }
    }
}
