//! Cron firings, claimed once per minute across restarts and servers.

use crate::db::params;
use crate::{Result, Store};

impl Store {
    /// Claims the firing of a cron entry for one minute (Unix minutes); false if it was
    /// already claimed, so a restarted server (or a second one) never fires it twice.
    pub fn claim_schedule(
        &self,
        repo: &str,
        workflow: &str,
        cron: &str,
        minute: i64,
    ) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.execute(
                "INSERT INTO schedule_fires (repo, workflow, cron, minute) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![repo, workflow, cron, minute],
            )? == 1)
        })
    }
}
