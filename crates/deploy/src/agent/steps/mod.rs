//! The deploy state machine on the host: UPLOAD, PREPARE, BACKUP, MIGRATE, SWITCH, RESTART,
//! HEALTHCHECK, FINALIZE, each recorded in the journal before the next begins, and the
//! reporting of every command (its phases, its outcome, the history). The steps' work is in
//! `upload` (receiving a release), `files` (shared links, backups and their restore,
//! pruning) and `hook` (the configured commands, within their time limit); the rollbacks
//! (after a failure, on request, and when repairing an interrupted deploy) in `rollback`.

mod compose;
mod files;
mod hook;
mod rollback;
mod upload;

use std::fs;
use std::io::{BufRead, Write};
use std::time::Instant;

use super::Channel;
use super::lock::Lock;
use crate::config::Settings;
use crate::error::Result;
use crate::health;
use crate::protocol::{Control, Event, Outcome, recv};
use crate::release::{Journal, Layout, Record, new_release_id, now_rfc3339};

/// How a command ended, before it is reported.
pub(crate) struct Done {
    outcome: Outcome,
    message: String,
    release: Option<String>,
    operation: &'static str,
    /// Set when the lock must outlive the process.
    keep_lock: Option<String>,
}

pub(crate) struct Steps<'a, R, W> {
    ch: &'a mut Channel<R, W>,
    s: &'a Settings,
    layout: Layout,
    who: String,
    fault: Option<String>,
    phases: Vec<serde_json::Value>,
    version: String,
    repaired: Option<Done>,
    /// The host's Compose command, once found.
    compose_cmd: Option<String>,
}

impl<'a, R: BufRead, W: Write> Steps<'a, R, W> {
    pub(crate) fn new(
        ch: &'a mut Channel<R, W>,
        s: &'a Settings,
        who: &str,
        fault: Option<String>,
    ) -> Self {
        Steps {
            ch,
            s,
            layout: Layout::new(&s.path),
            who: who.to_owned(),
            fault,
            phases: Vec::new(),
            version: String::new(),
            repaired: None,
            compose_cmd: None,
        }
    }

    /// Runs one step, reporting its start, end and duration.
    fn phase<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.ch.emit(&Event::Phase {
            phase: name.to_owned(),
            status: "start".into(),
            ms: 0,
            message: None,
        });
        let t = Instant::now();
        let r = f(self);
        let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, message) = match &r {
            Ok(_) => ("ok", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        self.phases
            .push(serde_json::json!({"phase": name, "ms": ms, "ok": r.is_ok()}));
        self.ch.emit(&Event::Phase {
            phase: name.to_owned(),
            status: status.into(),
            ms,
            message,
        });
        r
    }

    fn fault_after(&self, phase: &str) {
        if self.fault.as_deref() == Some(&format!("exit-after:{phase}")) {
            // Tests only: die as a killed process would, without clean-up.
            std::process::exit(137);
        }
    }

    /// HEALTHCHECK: a Compose stack up and healthy, then the HTTP check.
    fn health(&mut self) -> Result<()> {
        if let Some(id) = self.layout.current_id() {
            self.compose_healthy(&id)?;
        }
        let Some(mut h) = self.s.health.clone() else {
            return Ok(());
        };
        let env = &self.s.env;
        h.url = health::expand(&h.url, &|k| env.get(k).cloned());
        Ok(health::wait_healthy(&h, |_| {})?)
    }

    fn journal(&self, j: &Journal) -> Result<()> {
        self.layout.write_journal(j)
    }

    /// Deploys the release the deployer uploads.
    pub(crate) fn deploy(&mut self, version: &str, migrate: bool, coordinated: bool) -> Done {
        self.version = version.to_owned();
        let previous = self.layout.current_id();
        let mut id = new_release_id();
        let mut n = 1;
        while self.layout.release(&id).exists() || self.layout.partial(&id).exists() {
            n += 1;
            id = format!("{}-{n}", new_release_id());
        }
        let mut j = Journal {
            release: id.clone(),
            previous: previous.clone(),
            version: version.to_owned(),
            who: self.who.clone(),
            started: now_rfc3339(),
            phase: "LOCK".into(),
            ..Journal::default()
        };
        let failed = |message: String, id: &str| Done {
            outcome: Outcome::Failed,
            message,
            release: Some(id.to_owned()),
            operation: "deploy",
            keep_lock: None,
        };
        if let Err(e) = self.journal(&j) {
            return failed(e.to_string(), &id);
        }
        self.ch.emit(&Event::Ready {
            release: id.clone(),
            previous: previous.clone(),
        });
        if let Err(e) = self.phase("UPLOAD", |s| s.upload(&id)) {
            let _ = fs::remove_dir_all(self.layout.partial(&id));
            self.layout.clear_journal();
            return failed(format!("upload failed: {e}"), &id);
        }
        let mut records = self.layout.records();
        records.insert(
            id.clone(),
            Record {
                version: version.to_owned(),
                created: now_rfc3339(),
                deployed_by: self.who.clone(),
                status: "pending".into(),
            },
        );
        let before_switch = |s: &mut Self, step: &str, j: &mut Journal| -> Result<()> {
            j.phase = step.to_owned();
            s.journal(j)?;
            s.fault_after(step);
            Ok(())
        };
        let r = self
            .layout
            .save_records(&records)
            .and_then(|()| before_switch(self, "UPLOAD", &mut j))
            .and_then(|()| self.phase("PREPARE", |s| s.prepare(&id)))
            .and_then(|()| before_switch(self, "PREPARE", &mut j));
        if let Err(e) = r {
            self.discard(&id);
            return failed(format!("prepare failed: {e}"), &id);
        }
        let wants_backup =
            !self.s.backup.paths.is_empty() || (migrate && self.s.backup.database_dump.is_some());
        if wants_backup {
            j.backed_up = true;
            let r = self
                .phase("BACKUP", |s| s.backup(&id, previous.as_deref(), migrate))
                .and_then(|()| before_switch(self, "BACKUP", &mut j));
            if let Err(e) = r {
                self.discard(&id);
                return failed(format!("backup failed: {e}"), &id);
            }
        }
        if migrate && let Some(cmd) = self.s.hooks.migrate.clone() {
            j.migrated = true;
            let r = self
                .journal(&j)
                .and_then(|()| self.phase("MIGRATE", |s| s.hook("migrate", &cmd, &id, Some(&id))))
                .and_then(|()| before_switch(self, "MIGRATE", &mut j));
            if let Err(e) = r {
                let restored = if j.backed_up {
                    self.phase("RESTORE", |s| s.restore_db(&id))
                } else {
                    Ok(())
                };
                self.discard(&id);
                return match restored {
                    Ok(()) => failed(format!("migration failed, database restored: {e}"), &id),
                    Err(re) => Done {
                        outcome: Outcome::RollbackFailed,
                        message: format!(
                            "migration failed ({e}) and restoring the database failed: {re}"
                        ),
                        release: Some(id.clone()),
                        operation: "deploy",
                        keep_lock: Some(format!("database restore failed: {re}")),
                    },
                };
            }
        }
        if coordinated {
            self.ch.emit(&Event::Prepared);
            if self.control() != Some(Control::Switch) {
                let restored = if j.migrated && j.backed_up {
                    self.phase("RESTORE", |s| s.restore_db(&id))
                } else {
                    Ok(())
                };
                self.discard(&id);
                let mut done = failed("aborted before the switch".into(), &id);
                if let Err(e) = restored {
                    done.outcome = Outcome::RollbackFailed;
                    done.message = format!("aborted, and restoring the database failed: {e}");
                    done.keep_lock = Some(done.message.clone());
                }
                return done;
            }
        }
        j.switched = true;
        let r = self
            .journal(&j)
            .and_then(|()| self.phase("SWITCH", |s| s.layout.switch(&id)))
            .and_then(|()| before_switch(self, "SWITCH", &mut j))
            .and_then(|()| self.restart(&id))
            .and_then(|()| before_switch(self, "RESTART", &mut j))
            .and_then(|()| self.phase("HEALTHCHECK", Self::health));
        if let Err(e) = r {
            let mut done =
                self.roll_back_from(&id, previous.as_deref(), j.migrated, &e.to_string());
            done.operation = "deploy";
            return done;
        }
        if coordinated {
            self.ch.emit(&Event::Switched);
            if self.control() != Some(Control::Finalize) {
                let mut done = self.roll_back_from(
                    &id,
                    previous.as_deref(),
                    j.migrated,
                    "another host failed",
                );
                done.operation = "deploy";
                return done;
            }
        }
        let _ = self.phase("FINALIZE", |s| {
            s.layout.set_status(&id, "ok")?;
            s.prune(&id, previous.as_deref());
            Ok(())
        });
        self.layout.clear_journal();
        Done {
            outcome: Outcome::Ok,
            message: format!("deployed {id} ({version}), healthy"),
            release: Some(id),
            operation: "deploy",
            keep_lock: None,
        }
    }

    /// The deployer's next word; `None` if the connection is gone.
    fn control(&mut self) -> Option<Control> {
        recv::<Control>(&mut self.ch.input).ok().flatten()
    }

    /// RESTART: a Compose release's stack brought up, then the `restart` hook.
    fn restart(&mut self, id: &str) -> Result<()> {
        let hook = self.s.hooks.restart.clone();
        if self.s.compose.is_none() && hook.is_none() {
            return Ok(());
        }
        self.phase("RESTART", |s| {
            if s.s.compose.is_some() {
                s.compose_up(id)?;
            }
            match hook {
                Some(cmd) => s.hook("restart", &cmd, id, None),
                None => Ok(()),
            }
        })
    }

    fn history_entry(&self, d: &Done, operation: &str) -> serde_json::Value {
        serde_json::json!({
            "at": now_rfc3339(),
            "who": self.who,
            "operation": operation,
            "environment": self.s.environment,
            "release": d.release,
            "version": self.version,
            "phases": self.phases,
            "result": d.outcome,
            "message": d.message,
        })
    }

    /// Records the outcome in the history, reports it and releases (or keeps) the lock.
    pub(crate) fn finish(&mut self, lock: Lock, d: Done) -> Result<Outcome> {
        if !d.operation.is_empty() {
            let entry = self.history_entry(&d, d.operation);
            if let Err(e) = self.layout.append_history(&entry) {
                self.ch.message(format!("cannot record the history: {e}"));
            }
        }
        if d.outcome == Outcome::Ok && matches!(d.operation, "deploy" | "rollback") {
            // The host's own entry point, with the settings that just proved healthy.
            let left = std::env::current_exe()
                .map_err(crate::error::Error::io("cannot find", "the agent's binary"))
                .and_then(|exe| super::entry::write(self.s, &exe));
            if let Err(e) = left {
                self.ch
                    .message(format!("cannot leave {}: {e}", super::entry::SCRIPT));
            }
        }
        self.ch.emit(&Event::Result {
            outcome: d.outcome,
            message: d.message.clone(),
            release: d.release.clone(),
        });
        match d.keep_lock {
            Some(reason) => lock.keep(&reason),
            None => drop(lock),
        }
        Ok(d.outcome)
    }
}
