//! Accounts of the dashboard and their sessions. The store keeps what it is given: a
//! password's hash (argon2, made by the server), a session cookie's hash (the cookie itself
//! is never stored), and counts wrong passwords so the server can lock an account out for a
//! while.

use serde::Serialize;

use crate::db::{Row, params};
use crate::{Result, Store, now_ms, rows};

/// An account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
    /// Wrong passwords in a row.
    pub failed_logins: i64,
    /// No sign-in is taken before this (ms), after too many wrong passwords.
    pub locked_until: Option<i64>,
}

fn user_from_row(r: &Row) -> Result<User> {
    Ok(User {
        name: r.string("name")?,
        role: r.string("role")?,
        password_hash: r.string("password_hash")?,
        created_at: r.i64("created_at")?,
        failed_logins: r.i64("failed_logins")?,
        locked_until: r.opt_i64("locked_until")?,
    })
}

const USER_FIELDS: &str = "name, role, password_hash, created_at, failed_logins, locked_until";

impl Store {
    /// Adds an account; false if the name is taken.
    pub fn create_user(&self, name: &str, role: &str, password_hash: &str) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![name, role, password_hash, now_ms()],
            )? == 1)
        })
    }

    /// Changes an account's role and, if given, its password (its sessions end: they were
    /// given under the old ones); false if there is no such account.
    pub fn update_user(&self, name: &str, role: &str, password_hash: Option<&str>) -> Result<bool> {
        self.db.tx(|c| {
            let n = c.execute(
                "UPDATE users SET role = ?2, password_hash = COALESCE(?3, password_hash),
                     failed_logins = 0, locked_until = NULL
                 WHERE name = ?1",
                params![name, role, password_hash],
            )?;
            c.execute("DELETE FROM sessions WHERE user_name = ?1", params![name])?;
            Ok(n == 1)
        })
    }

    pub fn user(&self, name: &str) -> Result<Option<User>> {
        self.db.with(|c| {
            c.query_opt(
                &format!("SELECT {USER_FIELDS} FROM users WHERE name = ?1"),
                params![name],
            )?
            .as_ref()
            .map(user_from_row)
            .transpose()
        })
    }

    /// Every account, by name.
    pub fn users(&self) -> Result<Vec<User>> {
        self.db.with(|c| {
            rows(
                c.query(
                    &format!("SELECT {USER_FIELDS} FROM users ORDER BY name"),
                    &[],
                )?,
                user_from_row,
            )
        })
    }

    /// Records a sign-in of `name`: a right password clears the count of wrong ones; a
    /// wrong one counts, and the `max`th in a row locks the account for `lock_ms`.
    pub fn record_login(&self, name: &str, ok: bool, max: i64, lock_ms: i64) -> Result<()> {
        let now = now_ms();
        self.db.with(|c| {
            if ok {
                c.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE name = ?1",
                    params![name],
                )?;
            } else {
                c.execute(
                    "UPDATE users SET failed_logins = failed_logins + 1,
                         locked_until = CASE WHEN failed_logins + 1 >= ?2 THEN ?3 ELSE locked_until END
                     WHERE name = ?1",
                    params![name, max, now.saturating_add(lock_ms)],
                )?;
            }
            Ok(())
        })
    }

    /// Starts a session of `user` (its cookie's hash, its forms' CSRF token) lasting `ttl_ms`.
    pub fn create_session(
        &self,
        token_hash: &str,
        user: &str,
        csrf: &str,
        ttl_ms: i64,
    ) -> Result<()> {
        let now = now_ms();
        self.db.with(|c| {
            // Old sessions go as new ones come.
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", params![now])?;
            c.execute(
                "INSERT INTO sessions (token_hash, user_name, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token_hash, user, csrf, now, now.saturating_add(ttl_ms)],
            )
            .map(drop)
        })
    }

    /// The account and CSRF token of the unexpired session whose cookie hashes to
    /// `token_hash`.
    pub fn session(&self, token_hash: &str) -> Result<Option<(User, String)>> {
        self.db.with(|c| {
            let Some(r) = c.query_opt(
                &format!(
                    "SELECT s.csrf, {} FROM sessions s JOIN users u ON u.name = s.user_name
                     WHERE s.token_hash = ?1 AND s.expires_at >= ?2",
                    USER_FIELDS
                        .split(", ")
                        .map(|f| format!("u.{f}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                params![token_hash, now_ms()],
            )?
            else {
                return Ok(None);
            };
            Ok(Some((user_from_row(&r)?, r.string("csrf")?)))
        })
    }

    pub fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                params![token_hash],
            )
            .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::stores;

    #[test]
    fn sessions_expire_and_wrong_passwords_lock_an_account() {
        for s in stores() {
            let backend = s.backend();
            assert!(s.create_user("ada", "operator", "h1").unwrap(), "{backend}");
            assert!(!s.create_user("ada", "viewer", "h2").unwrap(), "{backend}");
            s.create_session("t1", "ada", "c1", 60_000).unwrap();
            s.create_session("t2", "ada", "c2", -1).unwrap();
            let (u, csrf) = s.session("t1").unwrap().unwrap();
            assert_eq!(
                (u.name.as_str(), u.role.as_str(), csrf.as_str()),
                ("ada", "operator", "c1")
            );
            assert!(s.session("t2").unwrap().is_none(), "{backend}: expired");
            for _ in 0..3 {
                s.record_login("ada", false, 3, 60_000).unwrap();
            }
            let u = s.user("ada").unwrap().unwrap();
            assert_eq!(u.failed_logins, 3, "{backend}");
            assert!(u.locked_until.unwrap() > crate::now_ms(), "{backend}");
            s.record_login("ada", true, 3, 60_000).unwrap();
            assert_eq!(s.user("ada").unwrap().unwrap().locked_until, None);
            // A new password ends the sessions given under the old one.
            assert!(s.update_user("ada", "viewer", Some("h3")).unwrap());
            assert!(s.session("t1").unwrap().is_none(), "{backend}");
            assert_eq!(s.user("ada").unwrap().unwrap().role, "viewer");
            s.delete_session("t1").unwrap();
            assert_eq!(s.users().unwrap().len(), 1);
        }
    }
}
