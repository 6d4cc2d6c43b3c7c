-- Version 2: monitors of HTTP endpoints (their state, each check, their incidents) and the
-- alerts waiting to be sent, or sent, to notification channels.

-- One row per configured monitor: when it is next due (claimed by the server that checks
-- it, so servers sharing the database check it once), and what the checks said.
CREATE TABLE IF NOT EXISTS monitors (
    name TEXT PRIMARY KEY,
    next_at BIGINT NOT NULL DEFAULT 0,
    -- 1 up, 0 down (an incident is open), NULL not checked yet.
    up BIGINT,
    -- Consecutive failed checks.
    failures BIGINT NOT NULL DEFAULT 0,
    incident BIGINT,
    last_at BIGINT,
    last_ms BIGINT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS monitor_checks (
    id BIGSERIAL PRIMARY KEY,
    monitor TEXT NOT NULL,
    at BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    ms BIGINT,
    status BIGINT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS monitor_checks_by_monitor ON monitor_checks(monitor, at);
CREATE TABLE IF NOT EXISTS incidents (
    id BIGSERIAL PRIMARY KEY,
    monitor TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT,
    cause TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_monitor ON incidents(monitor, id);
-- An alert for one channel: queued with the change it tells of, sent by any server
-- (claimed for a while), retried with backoff, kept as a record.
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    -- pending, sent or failed (given up).
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX IF NOT EXISTS alerts_due ON alerts(status, next_at);
