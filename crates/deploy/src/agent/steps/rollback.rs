//! Going back: after a failure at or after SWITCH, `pipewright rollback`, and the repair of
//! a deploy a killed process left behind.

use std::fs;
use std::io::{BufRead, Write};

use super::{Done, Steps};
use crate::config::RestoreDatabase;
use crate::error::Result;
use crate::protocol::Outcome;

impl<R: BufRead, W: Write> Steps<'_, R, W> {
    /// After a failure at or after SWITCH: back to the previous release, database as the
    /// policy says, restart, health check.
    pub(super) fn roll_back_from(
        &mut self,
        id: &str,
        previous: Option<&str>,
        migrated: bool,
        why: &str,
    ) -> Done {
        let _ = self.layout.set_status(id, "bad");
        let result = match previous {
            None => {
                self.compose_down(id);
                let _ = fs::remove_file(self.layout.current());
                self.layout.clear_journal();
                return Done {
                    outcome: Outcome::RolledBack,
                    message: format!("{why}; there was no previous release, `current` removed"),
                    release: Some(id.to_owned()),
                    operation: "rollback",
                    keep_lock: None,
                };
            }
            Some(prev) => {
                let restore = match self.s.restore_database {
                    RestoreDatabase::Always => true,
                    RestoreDatabase::OnMigration => migrated,
                    RestoreDatabase::Never => false,
                };
                self.phase("ROLLBACK", |s| s.layout.switch(prev))
                    .and_then(|()| {
                        if restore {
                            self.phase("RESTORE", |s| s.restore_db(id))
                        } else {
                            Ok(())
                        }
                    })
                    .and_then(|()| self.restart(prev))
                    .and_then(|()| self.phase("HEALTHCHECK", Self::health))
            }
        };
        self.layout.clear_journal();
        let prev = previous.unwrap_or_default();
        match result {
            Ok(()) => Done {
                outcome: Outcome::RolledBack,
                message: format!("{why}; rolled back to {prev}, which is healthy"),
                release: Some(id.to_owned()),
                operation: "rollback",
                keep_lock: None,
            },
            Err(e) => Done {
                outcome: Outcome::RollbackFailed,
                message: format!("{why}; the rollback to {prev} failed too: {e}"),
                release: Some(id.to_owned()),
                operation: "rollback",
                keep_lock: Some(format!("rollback to {prev} failed: {e}")),
            },
        }
    }

    /// Finishes or reverts a deploy a killed process left behind. Returns whether there was
    /// one.
    pub(crate) fn repair(&mut self) -> Result<bool> {
        let journal = self.layout.read_journal();
        // Partial uploads are never resumed: we hold the lock, nobody is writing them.
        for e in fs::read_dir(self.layout.releases())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().ends_with(".partial") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let Some(j) = journal else {
            return Ok(false);
        };
        self.ch.message(format!(
            "repairing the interrupted deploy of {} (last step {})",
            j.release, j.phase
        ));
        self.version = j.version.clone();
        let done = if j.switched {
            self.roll_back_from(
                &j.release,
                j.previous.as_deref(),
                j.migrated,
                &format!(
                    "the deploy of {} was interrupted after {}",
                    j.release, j.phase
                ),
            )
        } else {
            let restored = if j.migrated && j.backed_up {
                self.phase("RESTORE", |s| s.restore_db(&j.release))
            } else {
                Ok(())
            };
            self.discard(&j.release);
            match restored {
                Ok(()) => Done {
                    outcome: Outcome::RolledBack,
                    message: format!(
                        "the deploy of {} was interrupted before going live; removed",
                        j.release
                    ),
                    release: Some(j.release.clone()),
                    operation: "repair",
                    keep_lock: None,
                },
                Err(e) => Done {
                    outcome: Outcome::RollbackFailed,
                    message: format!("restoring the database failed: {e}"),
                    release: Some(j.release.clone()),
                    operation: "repair",
                    keep_lock: Some(format!("database restore failed: {e}")),
                },
            }
        };
        self.ch.message(done.message.clone());
        let entry = self.history_entry(&done, "repair");
        self.layout.append_history(&entry)?;
        self.phases.clear();
        self.repaired = Some(done);
        Ok(true)
    }

    pub(crate) fn result_from_repair(&mut self) -> Done {
        let mut d = self.repaired.take().unwrap_or(Done {
            outcome: Outcome::Ok,
            message: "nothing to repair".into(),
            release: None,
            operation: "rollback",
            keep_lock: None,
        });
        if d.outcome == Outcome::RolledBack {
            d.outcome = Outcome::Ok;
        }
        // Already in the history as the repair.
        d.operation = "";
        d
    }

    /// `pipewright rollback`: back to `to`, or the newest healthy release before the current.
    pub(crate) fn rollback(&mut self, to: Option<&str>, with_db: bool) -> Done {
        let fail = |message: String| Done {
            outcome: Outcome::Failed,
            message,
            release: None,
            operation: "rollback",
            keep_lock: None,
        };
        let Some(current) = self.layout.current_id() else {
            return fail("nothing is deployed".into());
        };
        let ids = self.layout.release_ids();
        let records = self.layout.records();
        let target = match to {
            Some(t) => {
                if !ids.iter().any(|i| i == t) {
                    return fail(format!("there is no release {t}"));
                }
                t.to_owned()
            }
            None => {
                let found = ids.iter().rev().find(|i| {
                    **i < current
                        && !matches!(
                            records.get(*i).map(|r| r.status.as_str()),
                            Some("bad" | "rolled_back" | "pending")
                        )
                });
                match found {
                    Some(t) => t.clone(),
                    None => return fail(format!("no healthy release before {current}")),
                }
            }
        };
        if target == current {
            return fail(format!("{target} is already the current release"));
        }
        self.version = records
            .get(&target)
            .map(|r| r.version.clone())
            .unwrap_or_default();
        let r = self
            .phase("SWITCH", |s| s.layout.switch(&target))
            .and_then(|()| {
                if !with_db {
                    return Ok(());
                }
                // The backup taken when the release after the target was deployed holds
                // the data as the target left it.
                let after = ids
                    .iter()
                    .find(|i| **i > target && self.layout.backup(i).is_dir())
                    .cloned();
                match after {
                    Some(b) => self.phase("RESTORE", |s| s.restore_db(&b)),
                    None => {
                        self.ch
                            .message("no backup newer than the target: database left as it is");
                        Ok(())
                    }
                }
            })
            .and_then(|()| self.restart(&target))
            .and_then(|()| self.phase("HEALTHCHECK", Self::health));
        match r {
            Ok(()) => {
                let _ = self.layout.set_status(&current, "rolled_back");
                let _ = self.layout.set_status(&target, "ok");
                Done {
                    outcome: Outcome::Ok,
                    message: format!("rolled back from {current} to {target}, which is healthy"),
                    release: Some(target),
                    operation: "rollback",
                    keep_lock: None,
                }
            }
            Err(e) => Done {
                outcome: Outcome::RollbackFailed,
                message: format!("the rollback to {target} failed: {e}"),
                release: Some(target.clone()),
                operation: "rollback",
                keep_lock: Some(format!("rollback to {target} failed: {e}")),
            },
        }
    }
}
