-- Version 2: monitors of HTTP endpoints (their state, each check, their incidents) and the
-- alerts waiting to be sent, or sent, to notification channels.

-- One row per configured monitor: when it is next due (claimed by the server that checks
-- it, so servers sharing the database check it once), and what the checks said.
CREATE TABLE IF NOT EXISTS monitors (
    name TEXT PRIMARY KEY,
    next_at INTEGER NOT NULL DEFAULT 0,
    -- 1 up, 0 down (an incident is open), NULL not checked yet.
    up INTEGER,
    -- Consecutive failed checks.
    failures INTEGER NOT NULL DEFAULT 0,
    incident INTEGER,
    last_at INTEGER,
    last_ms INTEGER,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS monitor_checks (
    id INTEGER PRIMARY KEY,
    monitor TEXT NOT NULL,
    at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    ms INTEGER,
    status INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS monitor_checks_by_monitor ON monitor_checks(monitor, at);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    monitor TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER,
    cause TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_monitor ON incidents(monitor, id);
-- An alert for one channel: queued with the change it tells of, sent by any server
-- (claimed for a while), retried with backoff, kept as a record.
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    -- pending, sent or failed (given up).
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_due ON alerts(status, next_at);
