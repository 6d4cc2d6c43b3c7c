-- Version 5: a monitor's checks older than a day, downsampled to one row per hour (what the
-- 30-day chart and uptime read); the checks themselves are kept for a day.

CREATE TABLE IF NOT EXISTS monitor_hours (
    monitor TEXT NOT NULL,
    -- The hour's start (ms).
    hour INTEGER NOT NULL,
    checks INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    -- Response times of the checks that had one: their sum, count and longest.
    ms_sum INTEGER NOT NULL,
    ms_count INTEGER NOT NULL,
    ms_max INTEGER,
    PRIMARY KEY (monitor, hour)
);
