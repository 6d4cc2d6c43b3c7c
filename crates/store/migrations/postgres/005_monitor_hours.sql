-- Version 5: a monitor's checks older than a day, downsampled to one row per hour (what the
-- 30-day chart and uptime read); the checks themselves are kept for a day.

CREATE TABLE IF NOT EXISTS monitor_hours (
    monitor TEXT NOT NULL,
    -- The hour's start (ms).
    hour BIGINT NOT NULL,
    checks BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    -- Response times of the checks that had one: their sum, count and longest.
    ms_sum BIGINT NOT NULL,
    ms_count BIGINT NOT NULL,
    ms_max BIGINT,
    PRIMARY KEY (monitor, hour)
);
