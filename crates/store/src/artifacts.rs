//! Artifacts and caches as manifests: each file's path, mode, size and content hash. The
//! contents are blobs the caller keeps (the server's content-addressed store in its data
//! directory); the store only knows which manifests name which hashes, so that blobs no
//! manifest names can be collected.

use std::collections::HashSet;

use serde::Serialize;

use crate::db::{Db, Param, Row, params};
use crate::{Result, RunId, Store, now_ms};

/// One file of an artifact or a cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Relative, `/`-separated.
    pub path: String,
    /// Unix permission bits.
    pub mode: i64,
    pub size: i64,
    /// The content's hash: the blob's name.
    pub hash: String,
}

/// An artifact of a run, without its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactInfo {
    pub name: String,
    pub files: i64,
    pub size: i64,
    pub created_at: i64,
}

/// A cache entry found for a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: String,
    /// The lookup's key itself matched (not a restore key).
    pub exact: bool,
    pub files: Vec<FileEntry>,
}

/// What [`Store::expire_artifacts`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub artifacts: u64,
    pub caches: u64,
}

fn file_from_row(r: &Row) -> Result<FileEntry> {
    Ok(FileEntry {
        path: r.string("path")?,
        mode: r.i64("mode")?,
        size: r.i64("size")?,
        hash: r.string("hash")?,
    })
}

/// Files are inserted this many to a statement: a large artifact is few round trips.
const ROWS_PER_INSERT: usize = 200;

/// Inserts `files` into `table` (`artifact_files` or `cache_files`) under `owner_column`.
fn insert_files(
    c: &mut dyn Db,
    table: &str,
    owner_column: &str,
    owner: i64,
    files: &[FileEntry],
) -> Result<()> {
    for chunk in files.chunks(ROWS_PER_INSERT) {
        let mut sql =
            format!("INSERT INTO {table} ({owner_column}, path, mode, size, hash) VALUES ");
        let mut values: Vec<Param> = vec![Param::Int(owner)];
        for (i, f) in chunk.iter().enumerate() {
            let n = 2 + i * 4;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(?1, ?{}, ?{}, ?{}, ?{})", n, n + 1, n + 2, n + 3));
            values.extend([
                Param::Text(f.path.clone()),
                Param::Int(f.mode),
                Param::Int(f.size),
                Param::Text(f.hash.clone()),
            ]);
        }
        c.execute(&sql, &values)?;
    }
    Ok(())
}

const FILE_COLUMNS: &str = "path, mode, size, hash";

/// Copies the artifacts job `job` of run `from` uploaded into run `to` (a re-run that keeps
/// the job): the manifests only, the blobs are shared.
pub(crate) fn copy_job_artifacts(c: &mut dyn Db, from: RunId, to: RunId, job: &str) -> Result<()> {
    let old = c.query(
        "SELECT id, name, created_at FROM artifacts WHERE run_id = ?1 AND job = ?2",
        params![from, job],
    )?;
    for a in old {
        let Some(new) = c.query_opt(
            "INSERT INTO artifacts (run_id, name, job, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, name) DO NOTHING RETURNING id",
            params![to, a.string("name")?, job, a.i64("created_at")?],
        )?
        else {
            continue;
        };
        c.execute(
            "INSERT INTO artifact_files (artifact, path, mode, size, hash)
             SELECT ?1, path, mode, size, hash FROM artifact_files WHERE artifact = ?2",
            params![new.first_i64()?, a.i64("id")?],
        )?;
    }
    Ok(())
}

impl Store {
    /// Records (or replaces) artifact `name` of run `run`, uploaded by its job `job` (the
    /// job's name in the run), with its files.
    pub fn put_artifact(
        &self,
        run: RunId,
        job: &str,
        name: &str,
        files: &[FileEntry],
    ) -> Result<()> {
        self.db.tx(|c| {
            c.execute(
                "DELETE FROM artifact_files WHERE artifact IN
                 (SELECT id FROM artifacts WHERE run_id = ?1 AND name = ?2)",
                params![run, name],
            )?;
            c.execute(
                "DELETE FROM artifacts WHERE run_id = ?1 AND name = ?2",
                params![run, name],
            )?;
            let id = c
                .query_one(
                    "INSERT INTO artifacts (run_id, name, job, created_at) VALUES (?1, ?2, ?3, ?4)
                     RETURNING id",
                    params![run, name, job, now_ms()],
                )?
                .first_i64()?;
            insert_files(c, "artifact_files", "artifact", id, files)
        })
    }

    /// The artifacts of a run, by name.
    pub fn artifacts(&self, run: RunId) -> Result<Vec<ArtifactInfo>> {
        self.db.with(|c| {
            c.query(
                "SELECT a.name AS name, a.created_at AS created_at,
                        (SELECT count(*) FROM artifact_files f WHERE f.artifact = a.id) AS files,
                        (SELECT CAST(COALESCE(sum(f.size), 0) AS BIGINT) FROM artifact_files f WHERE f.artifact = a.id) AS size
                 FROM artifacts a WHERE a.run_id = ?1 ORDER BY a.name",
                params![run],
            )?
            .iter()
            .map(|r| {
                Ok(ArtifactInfo {
                    name: r.string("name")?,
                    files: r.i64("files")?,
                    size: r.i64("size")?,
                    created_at: r.i64("created_at")?,
                })
            })
            .collect()
        })
    }

    /// The files of artifact `name` of run `run`, by path; `None` if there is no such
    /// artifact.
    pub fn artifact_files(&self, run: RunId, name: &str) -> Result<Option<Vec<FileEntry>>> {
        self.db.with(|c| {
            let Some(id) = c.query_opt(
                "SELECT id FROM artifacts WHERE run_id = ?1 AND name = ?2",
                params![run, name],
            )?
            else {
                return Ok(None);
            };
            let id = id.first_i64()?;
            let files = c
                .query(
                    &format!(
                        "SELECT {FILE_COLUMNS} FROM artifact_files WHERE artifact = ?1 ORDER BY path"
                    ),
                    params![id],
                )?
                .iter()
                .map(file_from_row)
                .collect::<Result<_>>()?;
            Ok(Some(files))
        })
    }

    /// The cache entry for `key`, looked for in each of `scopes` in turn (GitHub's order:
    /// the run's own ref, then its pull request's base branch, then the default branch):
    /// within a scope, the entry of `key` itself, else the newest whose key starts with the
    /// first of `restore_keys` that any key starts with. Marks it used.
    pub fn lookup_cache(
        &self,
        repo: &str,
        scopes: &[String],
        key: &str,
        restore_keys: &[String],
    ) -> Result<Option<CacheEntry>> {
        self.db.with(|c| {
            let mut found = None;
            for scope in scopes {
                found = c
                    .query_opt(
                        "SELECT id, cache_key FROM caches
                         WHERE repo = ?1 AND scope = ?2 AND cache_key = ?3",
                        params![repo, scope, key],
                    )?
                    .map(|r| (r, true));
                for prefix in restore_keys {
                    if found.is_some() {
                        break;
                    }
                    found = c
                        .query_opt(
                            "SELECT id, cache_key FROM caches
                             WHERE repo = ?1 AND scope = ?2
                               AND substr(cache_key, 1, length(CAST(?3 AS TEXT))) = CAST(?3 AS TEXT)
                             ORDER BY created_at DESC, id DESC LIMIT 1",
                            params![repo, scope, prefix.as_str()],
                        )?
                        .map(|r| (r, false));
                }
                if found.is_some() {
                    break;
                }
            }
            let Some((row, exact)) = found else {
                return Ok(None);
            };
            let id = row.i64("id")?;
            c.execute(
                "UPDATE caches SET used_at = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            let files = c
                .query(
                    &format!(
                        "SELECT {FILE_COLUMNS} FROM cache_files WHERE cache = ?1 ORDER BY path"
                    ),
                    params![id],
                )?
                .iter()
                .map(file_from_row)
                .collect::<Result<_>>()?;
            Ok(Some(CacheEntry {
                key: row.string("cache_key")?,
                exact,
                files,
            }))
        })
    }

    /// Records cache entry `key` of `repo` in `scope` (the ref of the run that saves it)
    /// unless it exists there: entries are never overwritten. Whether it was recorded.
    pub fn put_cache(
        &self,
        repo: &str,
        scope: &str,
        key: &str,
        files: &[FileEntry],
    ) -> Result<bool> {
        self.db.tx(|c| {
            let now = now_ms();
            let Some(id) = c.query_opt(
                "INSERT INTO caches (repo, scope, cache_key, created_at, used_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (repo, scope, cache_key) DO NOTHING RETURNING id",
                params![repo, scope, key, now],
            )?
            else {
                return Ok(false);
            };
            insert_files(c, "cache_files", "cache", id.first_i64()?, files)?;
            Ok(true)
        })
    }

    /// Deletes the artifacts of runs created before `before` (ms since the epoch) and the
    /// cache entries last used before it.
    pub fn expire_artifacts(&self, before: i64) -> Result<Expired> {
        self.db.tx(|c| {
            c.execute(
                "DELETE FROM artifact_files WHERE artifact IN
                 (SELECT a.id FROM artifacts a JOIN runs r ON r.id = a.run_id WHERE r.created_at < ?1)",
                params![before],
            )?;
            let artifacts = c.execute(
                "DELETE FROM artifacts WHERE run_id IN (SELECT id FROM runs WHERE created_at < ?1)",
                params![before],
            )?;
            c.execute(
                "DELETE FROM cache_files WHERE cache IN (SELECT id FROM caches WHERE used_at < ?1)",
                params![before],
            )?;
            let caches = c.execute("DELETE FROM caches WHERE used_at < ?1", params![before])?;
            Ok(Expired { artifacts, caches })
        })
    }

    /// Every hash an artifact or a cache entry names.
    pub fn referenced_blobs(&self) -> Result<HashSet<String>> {
        self.db.with(|c| {
            c.query(
                "SELECT hash FROM artifact_files UNION SELECT hash FROM cache_files",
                &[],
            )?
            .iter()
            .map(|r| r.string("hash"))
            .collect()
        })
    }

    /// Whether blob `hash` belongs to an artifact of run `run` or a cache entry of `repo`:
    /// what a job of that run may read.
    pub fn blob_visible(&self, hash: &str, run: RunId, repo: &str) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.query_opt(
                "SELECT 1 AS hit FROM artifact_files f JOIN artifacts a ON a.id = f.artifact
                 WHERE f.hash = ?1 AND a.run_id = ?2
                 UNION ALL
                 SELECT 1 AS hit FROM cache_files f JOIN caches k ON k.id = f.cache
                 WHERE f.hash = ?1 AND k.repo = ?3
                 LIMIT 1",
                params![hash, run, repo],
            )?
            .is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::stores;

    fn file(path: &str, hash: char) -> FileEntry {
        FileEntry {
            path: path.into(),
            mode: 0o100_644,
            size: 1,
            hash: hash.to_string().repeat(64),
        }
    }

    #[test]
    fn artifacts_are_replaced_by_name_and_expire_with_their_run() {
        for s in stores() {
            let run = s.create_run(&crate::tests::new_run("r")).unwrap();
            s.put_artifact(run, "build", "dist", &[file("a", 'a'), file("b/c", 'b')])
                .unwrap();
            s.put_artifact(run, "build", "dist", &[file("a", 'c')])
                .unwrap();
            assert_eq!(
                s.artifact_files(run, "dist").unwrap(),
                Some(vec![file("a", 'c')])
            );
            assert_eq!(s.artifact_files(run, "other").unwrap(), None);
            let list = s.artifacts(run).unwrap();
            assert_eq!(
                (list[0].name.as_str(), list[0].files, list[0].size),
                ("dist", 1, 1)
            );
            assert!(s.blob_visible(&"c".repeat(64), run, "x").unwrap());
            assert!(!s.blob_visible(&"a".repeat(64), run, "x").unwrap());
            assert_eq!(
                s.referenced_blobs().unwrap(),
                HashSet::from(["c".repeat(64)])
            );
            assert_eq!(s.expire_artifacts(0).unwrap(), Expired::default());
            let expired = s.expire_artifacts(now_ms() + 1).unwrap();
            assert_eq!(
                expired,
                Expired {
                    artifacts: 1,
                    caches: 0
                }
            );
            assert!(s.artifacts(run).unwrap().is_empty());
            assert!(s.referenced_blobs().unwrap().is_empty());
        }
    }

    #[test]
    fn caches_match_the_key_then_each_restore_key_newest_first_and_are_never_overwritten() {
        for s in stores() {
            let main = ["refs/heads/main".to_owned()];
            let put = |repo: &str, key: &str, hash: char| {
                s.put_cache(repo, &main[0], key, &[file("x", hash)])
                    .unwrap()
            };
            assert!(put("r", "deps-linux-1", 'a'));
            std::thread::sleep(std::time::Duration::from_millis(2));
            assert!(put("r", "deps-linux-2", 'b'));
            assert!(put("r", "deps-mac-1", 'c'));
            assert!(!put("r", "deps-linux-1", 'd'));
            assert!(put("other", "deps-linux-9", 'e'));
            let hit = s
                .lookup_cache("r", &main, "deps-linux-1", &[])
                .unwrap()
                .unwrap();
            assert_eq!((hit.key.as_str(), hit.exact), ("deps-linux-1", true));
            assert_eq!(hit.files, vec![file("x", 'a')]);
            let keys = ["deps-linux-".to_owned(), "deps-".to_owned()];
            let hit = s
                .lookup_cache("r", &main, "deps-linux-3", &keys)
                .unwrap()
                .unwrap();
            assert_eq!((hit.key.as_str(), hit.exact), ("deps-linux-2", false));
            let keys = ["nope-".to_owned(), "deps-m".to_owned()];
            let hit = s.lookup_cache("r", &main, "x", &keys).unwrap().unwrap();
            assert_eq!(hit.key, "deps-mac-1");
            assert!(
                s.lookup_cache("r", &main, "x", &["z".to_owned()])
                    .unwrap()
                    .is_none()
            );
            assert!(
                s.lookup_cache("r", &main, "deps-linux-9", &[])
                    .unwrap()
                    .is_none()
            );
            let expired = s.expire_artifacts(now_ms() + 1).unwrap();
            assert_eq!(expired.caches, 4);
        }
    }

    #[test]
    fn a_cache_is_read_from_its_own_scope_then_the_next_and_written_to_its_own_only() {
        for s in stores() {
            let pr = "refs/pull/7/merge".to_owned();
            let main = "refs/heads/main".to_owned();
            let feature = "refs/heads/feature".to_owned();
            // A pull request's run saves in its own scope; a run of main does not see it.
            assert!(s.put_cache("r", &pr, "deps", &[file("x", 'p')]).unwrap());
            assert!(
                s.lookup_cache("r", std::slice::from_ref(&main), "deps", &[])
                    .unwrap()
                    .is_none()
            );
            // The same key in another scope is another entry.
            assert!(s.put_cache("r", &main, "deps", &[file("x", 'm')]).unwrap());
            // A run of the pull request reads its own first, then main's.
            let scopes = [pr.clone(), main.clone()];
            let hit = s.lookup_cache("r", &scopes, "deps", &[]).unwrap().unwrap();
            assert_eq!(hit.files, vec![file("x", 'p')]);
            let scopes = [feature, main];
            let hit = s.lookup_cache("r", &scopes, "deps", &[]).unwrap().unwrap();
            assert_eq!(hit.files, vec![file("x", 'm')]);
        }
    }
}
