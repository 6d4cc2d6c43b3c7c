//! Secrets, sealed by the caller: this crate never sees a plaintext.

use crate::db::params;
use crate::{Result, Store, now_ms};

/// A secret as stored: its scope (empty strings for the wider scopes) and sealed value.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    pub repo: String,
    pub environment: String,
    pub name: String,
    pub sealed: Vec<u8>,
}

impl Store {
    /// Stores a secret, sealed by the caller (this crate never sees plaintext). `repo` and
    /// `environment` are empty for the wider scopes.
    pub fn put_secret(
        &self,
        repo: &str,
        environment: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO secrets (repo, environment, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(repo, environment, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![repo, environment, name, sealed, now_ms()],
            )
            .map(drop)
        })
    }

    pub fn delete_secret(&self, repo: &str, environment: &str, name: &str) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.execute(
                "DELETE FROM secrets WHERE repo = ?1 AND environment = ?2 AND name = ?3",
                params![repo, environment, name],
            )? == 1)
        })
    }

    /// Secrets that apply to `repo`: the global ones first, then its own.
    pub fn secrets_for(&self, repo: &str) -> Result<Vec<SealedSecret>> {
        self.db.with(|c| {
            c.query(
                "SELECT repo, environment, name, sealed FROM secrets WHERE repo = ?1 OR repo = '' ORDER BY repo, environment, name",
                params![repo],
            )?
            .iter()
            .map(|r| {
                Ok(SealedSecret {
                    repo: r.string("repo")?,
                    environment: r.string("environment")?,
                    name: r.string("name")?,
                    sealed: r.bytes("sealed")?,
                })
            })
            .collect()
        })
    }

    /// Names only: (repo, environment, name, updated_at).
    pub fn secret_names(&self) -> Result<Vec<(String, String, String, i64)>> {
        self.db.with(|c| {
            c.query(
                "SELECT repo, environment, name, updated_at FROM secrets ORDER BY repo, environment, name",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.string("repo")?,
                    r.string("environment")?,
                    r.string("name")?,
                    r.i64("updated_at")?,
                ))
            })
            .collect()
        })
    }
}
