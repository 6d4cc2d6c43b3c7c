//! The webhook intake.

use crate::db::params;
use crate::runs::{NewRun, insert_run};
use crate::{Result, RunId, Store, now_ms};

/// A webhook delivery accepted for the intake: its id (forge and delivery id, when the forge
/// sent one), repository and event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub key: Option<String>,
    pub repo: String,
    pub event_json: String,
}

/// A delivery accepted but not yet turned into runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub id: i64,
    pub repo: String,
    pub event_json: String,
    pub attempts: i64,
}

/// The webhook intake: deliveries are stored as they arrive (answered at once), then turned
/// into runs by a task; a delivery and the runs it fired are one transaction, so each is
/// queued exactly once, across restarts and servers.
impl Store {
    /// Stores a batch of deliveries in one transaction; for each, its pending id, or `None`
    /// when its key was seen before (a redelivery).
    pub fn accept_deliveries(&self, batch: &[NewDelivery]) -> Result<Vec<Option<i64>>> {
        let now = now_ms();
        self.db.tx(|c| {
            batch
                .iter()
                .map(|d| {
                    if let Some(key) = &d.key
                        && c.execute(
                            "INSERT INTO deliveries (id, received_at) VALUES (?1, ?2)
                             ON CONFLICT DO NOTHING",
                            params![key, now],
                        )? == 0
                    {
                        return Ok(None);
                    }
                    c.query_one(
                        "INSERT INTO pending_deliveries (repo, event_json, received_at)
                         VALUES (?1, ?2, ?3) RETURNING id",
                        params![&d.repo, &d.event_json, now],
                    )?
                    .first_i64()
                    .map(Some)
                })
                .collect()
        })
    }

    /// Up to `limit` deliveries waiting to be turned into runs, oldest first (those waiting
    /// for a retry after `now` excepted).
    pub fn pending_deliveries(&self, limit: i64) -> Result<Vec<PendingDelivery>> {
        self.db.with(|c| {
            c.query(
                "SELECT id, repo, event_json, attempts FROM pending_deliveries
                 WHERE not_before <= ?1 ORDER BY id LIMIT ?2",
                params![now_ms(), limit],
            )?
            .iter()
            .map(|r| {
                Ok(PendingDelivery {
                    id: r.i64("id")?,
                    repo: r.string("repo")?,
                    event_json: r.string("event_json")?,
                    attempts: r.i64("attempts")?,
                })
            })
            .collect()
        })
    }

    /// Deliveries not yet turned into runs.
    pub fn pending_count(&self) -> Result<i64> {
        self.db.with(|c| {
            c.query_one("SELECT count(*) AS n FROM pending_deliveries", &[])?
                .i64("n")
        })
    }

    /// Turns deliveries into their runs in one transaction: each delivery is removed and its
    /// runs created together. A delivery another server resolved first creates nothing.
    /// Returns the runs created.
    pub fn resolve_deliveries(&self, resolved: &[(i64, Vec<NewRun>)]) -> Result<Vec<RunId>> {
        self.db.tx(|c| {
            let mut ids = Vec::new();
            for (delivery, runs) in resolved {
                if c.execute(
                    "DELETE FROM pending_deliveries WHERE id = ?1",
                    params![*delivery],
                )? == 0
                {
                    continue;
                }
                for run in runs {
                    ids.push(insert_run(c, run)?);
                }
            }
            Ok(ids)
        })
    }

    /// A delivery that could not be read now (git failed): tried again after `delay_ms`.
    pub fn retry_delivery(&self, id: i64, delay_ms: i64) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE pending_deliveries SET attempts = attempts + 1, not_before = ?2 WHERE id = ?1",
                params![id, now_ms() + delay_ms],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::*;

    #[test]
    fn deliveries_become_runs_exactly_once() {
        for s in stores() {
            let delivery = |key: Option<&str>| NewDelivery {
                key: key.map(str::to_owned),
                repo: "r".into(),
                event_json: "{}".into(),
            };
            let ids = s
                .accept_deliveries(&[delivery(Some("a")), delivery(Some("a")), delivery(None)])
                .unwrap();
            assert!(ids[0].is_some() && ids[1].is_none() && ids[2].is_some());
            assert_eq!(s.accept_deliveries(&[delivery(Some("a"))]).unwrap(), [None]);
            let pending = s.pending_deliveries(10).unwrap();
            assert_eq!(pending.len(), 2);
            // One delivery waits for a retry: not handed out before its time.
            s.retry_delivery(pending[1].id, 60_000).unwrap();
            assert_eq!(s.pending_deliveries(10).unwrap().len(), 1);
            let resolved = [(pending[0].id, vec![new_run("r"), new_run("r")])];
            assert_eq!(s.resolve_deliveries(&resolved).unwrap().len(), 2);
            // Resolved again (another server, a retried batch): nothing more.
            assert!(s.resolve_deliveries(&resolved).unwrap().is_empty());
            assert_eq!(s.runs(Some("r"), 10).unwrap().len(), 2);
            assert_eq!(s.pending_count().unwrap(), 1);
            // A failed run is recorded completed, with its reason.
            let mut bad = new_run("r");
            bad.failure = Some("invalid workflow".into());
            let id = s.create_run(&bad).unwrap();
            let run = s.run(id).unwrap();
            assert_eq!(
                (
                    run.status.as_str(),
                    run.conclusion.map(crate::Conclusion::as_str),
                    run.reason.as_deref()
                ),
                ("completed", Some("failure"), Some("invalid workflow"))
            );
        }
    }
}
