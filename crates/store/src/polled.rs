//! Polled repositories.

use crate::db::params;
use crate::runs::{NewRun, insert_run};
use crate::{Result, RunId, Store};

/// Polled repositories: which commit of each ref has been turned into pushes. A ref's new
/// commit and the runs its push fires are stored in one transaction, so a push is queued
/// exactly once, whenever the server stops.
impl Store {
    /// The refs of `repo` seen when fetched from `url`; `None` when nothing was (a new
    /// mirror, or one fetched from another URL before).
    pub fn polled_refs(
        &self,
        repo: &str,
        url: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        self.db.with(|c| {
            let rows = c.query(
                "SELECT url, git_ref, sha FROM polled_refs WHERE repo = ?1",
                params![repo],
            )?;
            if rows.is_empty()
                || rows
                    .iter()
                    .any(|r| r.string("url").ok().as_deref() != Some(url))
            {
                return Ok(None);
            }
            rows.iter()
                .filter(|r| r.string("git_ref").is_ok_and(|g| !g.is_empty()))
                .map(|r| Ok((r.string("git_ref")?, r.string("sha")?)))
                .collect::<Result<_>>()
                .map(Some)
        })
    }

    /// Makes `refs` the baseline of `repo` as fetched from `url` (an empty ref name marks a
    /// baseline with no refs).
    pub fn set_polled_baseline(
        &self,
        repo: &str,
        url: &str,
        refs: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        self.db.tx(|c| {
            c.execute("DELETE FROM polled_refs WHERE repo = ?1", params![repo])?;
            c.execute(
                "INSERT INTO polled_refs (repo, url, git_ref, sha) VALUES (?1, ?2, '', '')",
                params![repo, url],
            )?;
            for (git_ref, sha) in refs {
                c.execute(
                    "INSERT INTO polled_refs (repo, url, git_ref, sha) VALUES (?1, ?2, ?3, ?4)",
                    params![repo, url, git_ref, sha],
                )?;
            }
            Ok(())
        })
    }

    /// Records `git_ref` of `repo` at `sha` and creates the runs its push fires, together.
    pub fn queue_polled_push(
        &self,
        repo: &str,
        url: &str,
        git_ref: &str,
        sha: &str,
        runs: &[NewRun],
    ) -> Result<Vec<RunId>> {
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO polled_refs (repo, url, git_ref, sha) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo, git_ref) DO UPDATE SET sha = excluded.sha, url = excluded.url",
                params![repo, url, git_ref, sha],
            )?;
            runs.iter().map(|r| insert_run(c, r)).collect()
        })
    }

    /// Forgets refs of `repo` that no longer exist.
    pub fn forget_polled_ref(&self, repo: &str, git_ref: &str) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "DELETE FROM polled_refs WHERE repo = ?1 AND git_ref = ?2",
                params![repo, git_ref],
            )
            .map(drop)
        })
    }
}
