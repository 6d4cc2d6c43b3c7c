//! What the steps do to a deploy path's files besides receiving a release: the shared
//! files linked into a release (PREPARE), the backup of `backup.paths` and the database
//! (BACKUP) and its restore, the removal of a release that never went live, and the pruning
//! of old releases (FINALIZE).

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::Steps;
use crate::error::{Error, Result};

impl<R: BufRead, W: Write> Steps<'_, R, W> {
    /// Removes a release that never went live, and its record.
    pub(super) fn discard(&mut self, id: &str) {
        if self.layout.current_id().as_deref() != Some(id) {
            // The images only it brought (a Compose release) go with it.
            let kept: Vec<String> = self
                .layout
                .release_ids()
                .into_iter()
                .filter(|r| r != id)
                .collect();
            self.compose_prune_images(&[id.to_owned()], &kept);
            let _ = fs::remove_dir_all(self.layout.release(id));
            let _ = fs::remove_dir_all(self.layout.backup(id));
        }
        let _ = fs::remove_dir_all(self.layout.partial(id));
        let mut r = self.layout.records();
        r.remove(id);
        let _ = self.layout.save_records(&r);
        self.layout.clear_journal();
    }

    /// Links the shared files and directories into the release, then runs `install` and
    /// `assets`.
    pub(super) fn prepare(&mut self, id: &str) -> Result<()> {
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
        self.compose_prepare(id)?;
        if let Some(cmd) = self.s.hooks.install.clone() {
            self.hook("install", &cmd, id, None)?;
        }
        if let Some(cmd) = self.s.hooks.assets.clone() {
            self.hook("assets", &cmd, id, None)?;
        }
        Ok(())
    }

    /// Copies `backup.paths` from `shared/` and dumps the database into `backups/<id>/`.
    pub(super) fn backup(&mut self, id: &str, previous: Option<&str>, migrate: bool) -> Result<()> {
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
    pub(super) fn restore_db(&mut self, id: &str) -> Result<()> {
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

    /// Keeps the newest `keep_releases` (and always the current and previous ones).
    pub(super) fn prune(&mut self, current: &str, previous: Option<&str>) {
        let ids = self.layout.release_ids();
        let excess = ids.len().saturating_sub(self.s.keep_releases);
        let mut records = self.layout.records();
        let removed: Vec<String> = ids
            .iter()
            .take(excess)
            .filter(|id| *id != current && Some(id.as_str()) != previous)
            .cloned()
            .collect();
        let kept: Vec<String> = ids
            .iter()
            .filter(|id| !removed.contains(id))
            .cloned()
            .collect();
        self.compose_prune_images(&removed, &kept);
        for id in &removed {
            let _ = fs::remove_dir_all(self.layout.release(id));
            let _ = fs::remove_dir_all(self.layout.backup(id));
            let _ = fs::remove_file(self.layout.log(id));
            records.remove(id);
        }
        let kept: HashSet<&String> = ids.iter().collect();
        records.retain(|k, _| kept.contains(k) || self.layout.release(k).is_dir());
        let _ = self.layout.save_records(&records);
    }
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
