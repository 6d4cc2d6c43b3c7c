-- Version 4: accounts of the dashboard (a role each, the password's argon2 hash, wrong
-- passwords counted for the lockout) and their sessions (the cookie's hash, the CSRF token
-- of the session's forms).

CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    -- admin, operator or viewer.
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_name);
