//! API tokens, kept by their hash.

use crate::db::params;
use crate::{Result, Store, TokenId, now_ms};

impl Store {
    /// Stores an API token by its hash (the token itself is never stored).
    pub fn add_token(&self, name: &str, hash: &str) -> Result<TokenId> {
        self.db.with(|c| {
            c.query_one(
                "INSERT INTO api_tokens (name, hash, created_at) VALUES (?1, ?2, ?3) RETURNING id",
                params![name, hash, now_ms()],
            )?
            .first_i64()
            .map(TokenId::from)
        })
    }

    /// The API tokens: id, name, when made (never the token: only its hash is kept).
    pub fn tokens(&self) -> Result<Vec<(TokenId, String, i64)>> {
        self.db.with(|c| {
            c.query(
                "SELECT id, name, created_at FROM api_tokens ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    TokenId::from(r.i64("id")?),
                    r.string("name")?,
                    r.i64("created_at")?,
                ))
            })
            .collect()
        })
    }

    /// Revokes API token `id`; false if there is none.
    pub fn revoke_token(&self, id: TokenId) -> Result<bool> {
        self.db
            .with(|c| Ok(c.execute("DELETE FROM api_tokens WHERE id = ?1", params![id])? > 0))
    }

    /// The name of the token with this hash, if any.
    pub fn token_name(&self, hash: &str) -> Result<Option<String>> {
        self.db.with(|c| {
            c.query_opt("SELECT name FROM api_tokens WHERE hash = ?1", params![hash])?
                .map(|r| r.string("name"))
                .transpose()
        })
    }
}
