//! The deploy state machine on the host: UPLOAD, PREPARE, BACKUP, MIGRATE, SWITCH, RESTART,
//! HEALTHCHECK, FINALIZE, each recorded in the journal before the next begins, and the
//! rollbacks (after a failure, on request, and when repairing an interrupted deploy).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::Channel;
use super::lock::Lock;
use crate::config::{RestoreDatabase, Settings};
use crate::error::{Error, Result};
use crate::health;
use crate::manifest::{self, Entry, Manifest};
use crate::protocol::{Control, Event, Outcome, Upload, recv};
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

    /// Runs a hook with `sh -c` in a release's directory; its output goes to the release's
    /// log (not a pipe, so a server it starts in the background cannot hold the step open)
    /// and is then forwarded to the deployer.
    fn hook(&mut self, name: &str, cmd: &str, release: &str, backup: Option<&str>) -> Result<()> {
        let dir = self.layout.release(release);
        let log_path = self.layout.log(release);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(Error::io("cannot open the log", &log_path))?;
        let start = log.metadata().map_or(0, |m| m.len());
        let err = log
            .try_clone()
            .map_err(Error::io("cannot open the log", &log_path))?;
        let previous = self
            .layout
            .read_journal()
            .and_then(|j| j.previous)
            .filter(|p| p != release)
            .map(|p| self.layout.release(&p));
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .envs(&self.s.env)
            .env("PIPEWRIGHT_ENVIRONMENT", &self.s.environment)
            .env("PIPEWRIGHT_RELEASE", release)
            .env("PIPEWRIGHT_RELEASE_DIR", &dir)
            .env("PIPEWRIGHT_DEPLOY_PATH", &self.layout.root)
            .env("PIPEWRIGHT_SHARED_DIR", self.layout.shared())
            .env(
                "PIPEWRIGHT_PREVIOUS_RELEASE_DIR",
                previous.unwrap_or_default(),
            )
            .env(
                "PIPEWRIGHT_BACKUP_DIR",
                backup.map(|b| self.layout.backup(b)).unwrap_or_default(),
            );
        let status = run_with_timeout(&mut c, self.s.hooks.timeout())
            .map_err(Error::io("cannot run the hook in", &dir))?;
        if let Ok(mut f) = fs::File::open(&log_path) {
            let mut text = String::new();
            let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start));
            let _ = f.read_to_string(&mut text);
            for line in text.lines() {
                self.ch.emit(&Event::Output {
                    line: format!("[{name}] {line}"),
                });
            }
        }
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(Error::Hook {
                hook: name.to_owned(),
                status: status.to_string(),
            }),
            None => Err(Error::HookTimedOut {
                hook: name.to_owned(),
                after: crate::config::format_duration(self.s.hooks.timeout()),
            }),
        }
    }

    fn health(&mut self) -> Result<()> {
        let Some(mut h) = self.s.health.clone() else {
            return Ok(());
        };
        let env = &self.s.env;
        h.url = health::expand(&h.url, &|k| env.get(k).cloned());
        health::wait_healthy(&h, |_| {}).map_err(Error::Unhealthy)
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

    fn restart(&mut self, id: &str) -> Result<()> {
        match self.s.hooks.restart.clone() {
            Some(cmd) => self.phase("RESTART", |s| s.hook("restart", &cmd, id, None)),
            None => Ok(()),
        }
    }

    /// Removes a release that never went live, and its record.
    fn discard(&mut self, id: &str) {
        if self.layout.current_id().as_deref() != Some(id) {
            let _ = fs::remove_dir_all(self.layout.release(id));
            let _ = fs::remove_dir_all(self.layout.backup(id));
        }
        let _ = fs::remove_dir_all(self.layout.partial(id));
        let mut r = self.layout.records();
        r.remove(id);
        let _ = self.layout.save_records(&r);
        self.layout.clear_journal();
    }

    /// Receives the release into `releases/<id>.partial`, hard-linking files that an earlier
    /// release already has, verifies every received file against the manifest and renames
    /// the directory into place.
    fn upload(&mut self, id: &str) -> Result<()> {
        let partial = self.layout.partial(id);
        fs::create_dir_all(&partial).map_err(Error::io("cannot create", &partial))?;
        let manifest = match recv::<Upload>(&mut self.ch.input) {
            Ok(Some(Upload::Manifest { manifest })) => manifest,
            Ok(None) => return Err(Error::Disconnected),
            Ok(Some(_)) => return Err(Error::Protocol("expected the manifest".into())),
            Err(e) => return Err(Error::Protocol(e.to_string())),
        };
        // Files of earlier releases by content, the current release first.
        let mut known: HashMap<(String, u32), PathBuf> = HashMap::new();
        let mut ids = self.layout.release_ids();
        if let Some(cur) = self.layout.current_id() {
            ids.retain(|i| *i != cur);
            ids.push(cur);
        }
        for rid in ids.iter().rev() {
            let dir = self.layout.release(rid);
            if let Some(m) = Manifest::read_from_release(&dir) {
                for e in m.entries {
                    if let Entry::File {
                        path, mode, hash, ..
                    } = e
                    {
                        known.entry((hash, mode)).or_insert_with(|| dir.join(path));
                    }
                }
            }
        }
        let mut need: HashMap<String, (String, u32)> = HashMap::new();
        let mut dirs = Vec::new();
        let mut linked = 0;
        for e in &manifest.entries {
            if !manifest::is_safe_path(e.path()) {
                return Err(Error::Protocol(format!("unsafe path `{}`", e.path())));
            }
            let dst = partial.join(e.path());
            match e {
                Entry::Dir { mode, .. } => {
                    fs::create_dir_all(&dst).map_err(Error::io("cannot create", &dst))?;
                    dirs.push((dst, *mode));
                }
                Entry::Symlink { target, .. } => {
                    std::os::unix::fs::symlink(target, &dst)
                        .map_err(Error::io("cannot create", &dst))?;
                }
                Entry::File {
                    path, mode, hash, ..
                } => {
                    if let Some(src) = known.get(&(hash.clone(), *mode))
                        && fs::hard_link(src, &dst).is_ok()
                    {
                        linked += 1;
                    } else {
                        need.insert(path.clone(), (hash.clone(), *mode));
                    }
                }
            }
        }
        let mut paths: Vec<String> = need.keys().cloned().collect();
        paths.sort();
        self.ch.emit(&Event::Need { paths, linked });
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match recv::<Upload>(&mut self.ch.input) {
                Ok(Some(Upload::File { path, size })) => {
                    let Some((hash, mode)) = need.remove(&path) else {
                        return Err(Error::Protocol(format!("unexpected file `{path}`")));
                    };
                    let dst = partial.join(&path);
                    let f = fs::File::create(&dst).map_err(Error::io("cannot create", &dst))?;
                    let mut w = BufWriter::with_capacity(1 << 16, f);
                    let mut h = blake3::Hasher::new();
                    let mut left = size;
                    while left > 0 {
                        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                        let n = self
                            .ch
                            .input
                            .read(&mut buf[..want])
                            .map_err(|_| Error::Disconnected)?;
                        if n == 0 {
                            return Err(Error::Disconnected);
                        }
                        h.update(&buf[..n]);
                        w.write_all(&buf[..n])
                            .map_err(Error::io("cannot write", &dst))?;
                        left -= n as u64;
                    }
                    let f = w.into_inner().map_err(|e| Error::Io {
                        what: "cannot write",
                        path: dst.clone(),
                        source: e.into_error(),
                    })?;
                    drop(f);
                    if h.finalize().to_hex().as_str() != hash {
                        return Err(Error::Checksum { path });
                    }
                    fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
                        .map_err(Error::io("cannot set the mode of", &dst))?;
                }
                Ok(Some(Upload::Commit)) => break,
                Ok(Some(Upload::Manifest { .. })) => {
                    return Err(Error::Protocol("a second manifest".into()));
                }
                Ok(None) | Err(_) => return Err(Error::Disconnected),
            }
        }
        if let Some(missing) = need.keys().next() {
            return Err(Error::Protocol(format!("`{missing}` was never sent")));
        }
        for (d, mode) in dirs.iter().rev() {
            fs::set_permissions(d, fs::Permissions::from_mode(*mode))
                .map_err(Error::io("cannot set the mode of", d))?;
        }
        let mbytes = serde_json::to_vec(&manifest).unwrap_or_default();
        let mpath = partial.join(manifest::FILE_NAME);
        fs::write(&mpath, mbytes).map_err(Error::io("cannot write", &mpath))?;
        // One sync of the whole filesystem rather than one per file: the release must be on
        // disk before its name says it is complete.
        let dirf = fs::File::open(&partial).map_err(Error::io("cannot open", &partial))?;
        rustix::fs::syncfs(&dirf).map_err(|e| Error::Io {
            what: "cannot sync",
            path: partial.clone(),
            source: e.into(),
        })?;
        let dst = self.layout.release(id);
        fs::rename(&partial, &dst).map_err(Error::io("cannot rename", &dst))
    }

    /// Links the shared files and directories into the release, then runs `install` and
    /// `assets`.
    fn prepare(&mut self, id: &str) -> Result<()> {
        let dir = self.layout.release(id);
        for rel in &self.s.shared {
            let shared = self.layout.shared().join(rel);
            let inside = dir.join(rel);
            if fs::symlink_metadata(&shared).is_err() {
                if let Some(p) = shared.parent() {
                    fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
                }
                // The first release seeds what it ships; otherwise a directory.
                if fs::symlink_metadata(&inside).is_ok() {
                    copy_tree(&inside, &shared)?;
                } else {
                    fs::create_dir_all(&shared).map_err(Error::io("cannot create", &shared))?;
                }
            }
            if let Ok(m) = fs::symlink_metadata(&inside) {
                if m.is_dir() {
                    fs::remove_dir_all(&inside)
                } else {
                    fs::remove_file(&inside)
                }
                .map_err(Error::io("cannot replace", &inside))?;
            }
            if let Some(p) = inside.parent() {
                fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
            }
            std::os::unix::fs::symlink(&shared, &inside)
                .map_err(Error::io("cannot link", &inside))?;
        }
        if let Some(cmd) = self.s.hooks.install.clone() {
            self.hook("install", &cmd, id, None)?;
        }
        if let Some(cmd) = self.s.hooks.assets.clone() {
            self.hook("assets", &cmd, id, None)?;
        }
        Ok(())
    }

    /// Copies `backup.paths` from `shared/` and dumps the database into `backups/<id>/`.
    fn backup(&mut self, id: &str, previous: Option<&str>, migrate: bool) -> Result<()> {
        let dir = self.layout.backup(id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(Error::io("cannot create", &dir))?;
        for rel in &self.s.backup.paths {
            let src = self.layout.shared().join(rel);
            if fs::symlink_metadata(&src).is_ok() {
                copy_tree(&src, &dir.join("paths").join(rel))?;
            }
        }
        if migrate && let Some(cmd) = self.s.backup.database_dump.clone() {
            self.hook("database_dump", &cmd, id, Some(id))?;
            let marker = dir.join(".database-dumped");
            fs::write(&marker, b"").map_err(Error::io("cannot write", &marker))?;
        }
        let p = dir.join("previous-release");
        fs::write(&p, previous.unwrap_or_default()).map_err(Error::io("cannot write", &p))
    }

    /// Puts back what `backup` saved for the deploy of `id`.
    fn restore_db(&mut self, id: &str) -> Result<()> {
        let dir = self.layout.backup(id);
        if !dir.is_dir() {
            return Ok(());
        }
        for rel in &self.s.backup.paths {
            let saved = dir.join("paths").join(rel);
            let live = self.layout.shared().join(rel);
            if fs::symlink_metadata(&saved).is_ok() {
                if let Ok(m) = fs::symlink_metadata(&live) {
                    if m.is_dir() {
                        fs::remove_dir_all(&live)
                    } else {
                        fs::remove_file(&live)
                    }
                    .map_err(Error::io("cannot replace", &live))?;
                }
                copy_tree(&saved, &live)?;
            }
        }
        if dir.join(".database-dumped").exists()
            && let Some(cmd) = self.s.backup.database_restore.clone()
        {
            // Run where a release exists: the failed one if it is still there, else current.
            let run_in = if self.layout.release(id).is_dir() {
                id.to_owned()
            } else {
                self.layout.current_id().unwrap_or_else(|| id.to_owned())
            };
            self.hook("database_restore", &cmd, &run_in, Some(id))?;
        }
        Ok(())
    }

    /// After a failure at or after SWITCH: back to the previous release, database as the
    /// policy says, restart, health check.
    fn roll_back_from(
        &mut self,
        id: &str,
        previous: Option<&str>,
        migrated: bool,
        why: &str,
    ) -> Done {
        let _ = self.layout.set_status(id, "bad");
        let result = match previous {
            None => {
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

    /// Keeps the newest `keep_releases` (and always the current and previous ones).
    fn prune(&mut self, current: &str, previous: Option<&str>) {
        let ids = self.layout.release_ids();
        let excess = ids.len().saturating_sub(self.s.keep_releases);
        let mut records = self.layout.records();
        for id in ids.iter().take(excess) {
            if id == current || Some(id.as_str()) == previous {
                continue;
            }
            let _ = fs::remove_dir_all(self.layout.release(id));
            let _ = fs::remove_dir_all(self.layout.backup(id));
            let _ = fs::remove_file(self.layout.log(id));
            records.remove(id);
        }
        let kept: HashSet<&String> = ids.iter().collect();
        records.retain(|k, _| kept.contains(k) || self.layout.release(k).is_dir());
        let _ = self.layout.save_records(&records);
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

/// Runs `c` in a process group of its own; if it has not exited after `timeout`, the whole
/// group (what the command started too) is sent SIGTERM, then SIGKILL if any of it is still
/// there 5 s later, and the answer is `None`.
fn run_with_timeout(
    c: &mut Command,
    timeout: std::time::Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc::RecvTimeoutError;
    let mut child = c.process_group(0).spawn()?;
    let group = rustix::process::Pid::from_raw(child.id().cast_signed());
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("hook-wait".into())
        .spawn(move || {
            let _ = tx.send(child.wait());
        });
    if let Err(e) = waiter {
        // No thread for the waiter: the child was moved into the closure that failed to
        // start, and is dropped (not killed) with it. Its group is stopped here.
        if let Some(g) = group {
            let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
        }
        return Err(e);
    }
    match rx.recv_timeout(timeout) {
        Ok(status) => return status.map(Some),
        Err(RecvTimeoutError::Disconnected) => {
            return Err(std::io::Error::other("the hook's waiter went away"));
        }
        Err(RecvTimeoutError::Timeout) => {}
    }
    let Some(group) = group else {
        return Ok(None);
    };
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    // The shell usually ends at once; what it started may take its time, or ignore SIGTERM.
    let grace = Instant::now() + std::time::Duration::from_secs(5);
    while rustix::process::test_kill_process_group(group).is_ok() && Instant::now() < grace {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if rustix::process::test_kill_process_group(group).is_ok() {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = rx.recv();
    Ok(None)
}

/// `cp -a`: the copy keeps modes, links and times, which a hand-written copy would not all.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
    }
    let out = Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .output()
        .map_err(Error::io("cannot run cp for", src))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Io {
            what: "cannot copy",
            path: src.to_owned(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        })
    }
}
