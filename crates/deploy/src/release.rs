//! The layout of a deploy path on the host, and the records kept there:
//! `releases/<id>/`, `current -> releases/<id>`, `shared/`, `backups/<id>/`, and under
//! `.pipewright/`: `lock`, `lock.json`, `journal.json`, `releases.json`, `history.jsonl`,
//! `logs/<id>.log`, `bin/`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A release as `pipewright releases` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub id: String,
    pub version: String,
    pub created: String,
    /// `current`, `ok`, `bad`, `rolled_back` (or `pending` while a deploy runs).
    pub status: String,
    pub deployed_by: String,
}

/// What is recorded of a release beside its directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: String,
    pub created: String,
    pub deployed_by: String,
    pub status: String,
}

/// The deploy in progress, rewritten after every step so that a later run can finish or
/// revert it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub release: String,
    pub previous: Option<String>,
    pub version: String,
    pub who: String,
    pub started: String,
    /// The last step completed.
    pub phase: String,
    pub backed_up: bool,
    pub migrated: bool,
    pub switched: bool,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
    pub fn release(&self, id: &str) -> PathBuf {
        self.releases().join(id)
    }
    pub fn partial(&self, id: &str) -> PathBuf {
        self.releases().join(format!("{id}.partial"))
    }
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }
    pub fn shared(&self) -> PathBuf {
        self.root.join("shared")
    }
    pub fn backup(&self, id: &str) -> PathBuf {
        self.root.join("backups").join(id)
    }
    pub fn meta(&self) -> PathBuf {
        self.root.join(".pipewright")
    }
    pub fn journal(&self) -> PathBuf {
        self.meta().join("journal.json")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.meta().join("logs").join(format!("{id}.log"))
    }

    pub fn create_dirs(&self) -> Result<()> {
        for d in [
            self.releases(),
            self.shared(),
            self.root.join("backups"),
            self.meta().join("logs"),
        ] {
            fs::create_dir_all(&d).map_err(Error::io("cannot create", &d))?;
        }
        Ok(())
    }

    /// The release `current` points at.
    pub fn current_id(&self) -> Option<String> {
        let target = fs::read_link(self.current()).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Points `current` at a release atomically: a new symlink renamed over the old one.
    pub fn switch(&self, id: &str) -> Result<()> {
        let tmp = self.root.join(format!(".current.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("releases").join(id), &tmp)
            .map_err(Error::io("cannot create the symlink", &tmp))?;
        fs::rename(&tmp, self.current()).map_err(Error::io("cannot switch", self.current()))
    }

    /// Complete release ids, oldest first (ids sort by time).
    pub fn release_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.releases())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".partial") && !n.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }

    pub fn records(&self) -> BTreeMap<String, Record> {
        fs::read(self.meta().join("releases.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_records(&self, records: &BTreeMap<String, Record>) -> Result<()> {
        write_atomic(
            &self.meta().join("releases.json"),
            &serde_json::to_vec_pretty(records).unwrap_or_default(),
        )
    }

    pub fn set_status(&self, id: &str, status: &str) -> Result<()> {
        let mut r = self.records();
        r.entry(id.to_owned()).or_default().status = status.to_owned();
        self.save_records(&r)
    }

    pub fn read_journal(&self) -> Option<Journal> {
        let b = fs::read(self.journal()).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub fn write_journal(&self, j: &Journal) -> Result<()> {
        write_atomic(
            &self.journal(),
            &serde_json::to_vec_pretty(j).unwrap_or_default(),
        )
    }

    pub fn clear_journal(&self) {
        let _ = fs::remove_file(self.journal());
    }

    pub fn append_history(&self, entry: &serde_json::Value) -> Result<()> {
        let p = self.meta().join("history.jsonl");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(Error::io("cannot open", &p))?;
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        f.write_all(&line).map_err(Error::io("cannot write", &p))
    }

    /// Every release with its status, newest first.
    pub fn list(&self) -> Vec<ReleaseInfo> {
        let records = self.records();
        let current = self.current_id();
        let mut out: Vec<ReleaseInfo> = self
            .release_ids()
            .into_iter()
            .map(|id| {
                let r = records.get(&id).cloned().unwrap_or_default();
                let status = if current.as_deref() == Some(id.as_str()) {
                    "current".to_owned()
                } else if r.status.is_empty() {
                    "ok".to_owned()
                } else {
                    r.status
                };
                ReleaseInfo {
                    id,
                    version: r.version,
                    created: r.created,
                    status,
                    deployed_by: r.deployed_by,
                }
            })
            .collect();
        out.reverse();
        out
    }
}

/// Writes a file by renaming a complete temporary one over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(Error::io("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(Error::io("cannot rename", path))
}

/// Now as `2026-11-28T08:05:50Z`.
pub fn now_rfc3339() -> String {
    let (y, mo, d, h, mi, s) = civil(SystemTime::now());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A new release id: `20261128T080550Z`, sortable by time.
pub fn new_release_id() -> String {
    let (y, mo, d, h, mi, s) = civil(SystemTime::now());
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// UTC calendar fields (Howard Hinnant's days-to-civil).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_766_750);
        assert_eq!(civil(t), (2026, 11, 27, 8, 5, 50));
    }
}
