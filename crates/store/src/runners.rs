//! Runners: registered with one-time tokens, identified by their credential's hash, removed;
//! each server's in-process runner.

use crate::db::{Row, params};
use crate::queue::{Released, release_in};
use crate::{Result, RunnerId, Store, now_ms, rows};
use serde::Serialize;

/// A registered runner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runner {
    pub id: RunnerId,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: i64,
    pub created_at: i64,
    pub last_seen: i64,
    pub embedded: bool,
}

pub(crate) fn runner_from_row(r: &Row) -> Result<Runner> {
    Ok(Runner {
        id: RunnerId::from(r.i64("id")?),
        name: r.string("name")?,
        labels: serde_json::from_str(&r.string("labels")?).unwrap_or_default(),
        capacity: r.i64("capacity")?,
        created_at: r.i64("created_at")?,
        last_seen: r.i64("last_seen")?,
        embedded: r.i64("embedded")? != 0,
    })
}

impl Store {
    /// Stores a one-time registration token (its hash).
    pub fn add_runner_token(&self, hash: &str) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO runner_tokens (hash, created_at) VALUES (?1, ?2)",
                params![hash, now_ms()],
            )
            .map(drop)
        })
    }

    /// Registers a runner with a one-time token, which is used up; None if the token is
    /// unknown, was used before, or was made more than `ttl_ms` ago.
    pub fn register_runner(
        &self,
        token_hash: &str,
        name: &str,
        labels: &[String],
        capacity: i64,
        credential_hash: &str,
        ttl_ms: i64,
    ) -> Result<Option<RunnerId>> {
        let labels = serde_json::to_string(labels).unwrap_or_default();
        self.db.tx(|c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE runner_tokens SET used_at = ?2
                 WHERE hash = ?1 AND used_at IS NULL AND created_at >= ?3",
                params![token_hash, now, now - ttl_ms],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let id = c
                .query_one(
                    "INSERT INTO runners (name, labels, capacity, credential_hash, created_at, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING id",
                    params![name, &labels, capacity, credential_hash, now],
                )?
                .first_i64()?;
            Ok(Some(RunnerId::from(id)))
        })
    }

    /// Removes runner `id`: its credential stops working, its jobs are queued again (or
    /// failed when out of attempts). `None` if there is no such runner; the in-process
    /// runners are not removed (a server makes its own at each start).
    pub fn remove_runner(&self, id: RunnerId, max_attempts: i64) -> Result<Option<Released>> {
        let embedded = self.db.with(|c| {
            c.query_opt("SELECT embedded FROM runners WHERE id = ?1", params![id])?
                .map(|r| r.i64("embedded"))
                .transpose()
        })?;
        match embedded {
            None | Some(1) => return Ok(None),
            Some(_) => {}
        }
        // One transaction: no lease is taken between the release and the removal.
        self.db
            .tx(|c| {
                let released = release_in(
                    c,
                    "runner_id = ?1",
                    id.get(),
                    max_attempts,
                    "the runner was removed",
                )?;
                c.execute("DELETE FROM runners WHERE id = ?1", params![id])?;
                Ok(released)
            })
            .map(Some)
    }

    /// The in-process runner's row of server `server` (servers sharing the database have one
    /// each), with a new credential for this server process; made the first time.
    pub fn embedded_runner(
        &self,
        server: &str,
        labels: &[String],
        capacity: i64,
        credential_hash: &str,
    ) -> Result<RunnerId> {
        let labels = serde_json::to_string(labels).unwrap_or_default();
        let name = format!("embedded ({server})");
        self.db.tx(|c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE runners SET labels = ?1, capacity = ?2, credential_hash = ?3, last_seen = ?4
                 WHERE embedded = 1 AND name = ?5",
                params![&labels, capacity, credential_hash, now, &name],
            )?;
            if n == 0 {
                c.execute(
                    "INSERT INTO runners (name, labels, capacity, credential_hash, created_at, last_seen, embedded)
                     VALUES (?5, ?1, ?2, ?3, ?4, ?4, 1)",
                    params![&labels, capacity, credential_hash, now, &name],
                )?;
            }
            c.query_one(
                "SELECT id FROM runners WHERE embedded = 1 AND name = ?1",
                params![&name],
            )?
            .first_i64()
            .map(RunnerId::from)
        })
    }

    /// The runner with this credential (its hash), if any.
    pub fn runner_by_credential(&self, hash: &str) -> Result<Option<Runner>> {
        self.db.with(|c| {
            c.query_opt(
                "SELECT * FROM runners WHERE credential_hash = ?1",
                params![hash],
            )?
            .as_ref()
            .map(runner_from_row)
            .transpose()
        })
    }

    /// Notes that a runner asked for work now.
    pub fn touch_runner(&self, id: RunnerId) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE runners SET last_seen = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )
            .map(drop)
        })
    }

    pub fn runners(&self) -> Result<Vec<Runner>> {
        self.db.with(|c| {
            rows(
                c.query("SELECT * FROM runners ORDER BY id", &[])?,
                runner_from_row,
            )
        })
    }
}
