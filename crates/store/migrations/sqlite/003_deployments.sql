-- Version 3: deployments the server knows of (reported by `pipewright/deploy` in a job):
-- where, what, who, each host's phases, and how it ended.

CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    environment TEXT NOT NULL,
    -- The release id on the hosts (known once a host is ready).
    release TEXT,
    version TEXT NOT NULL,
    sha TEXT NOT NULL,
    run_id INTEGER,
    job_id INTEGER,
    who TEXT NOT NULL,
    -- running, deployed, failed, rolled_back, rollback_failed or locked.
    status TEXT NOT NULL,
    message TEXT,
    -- JSON: the hosts, and each host's phases ({host, phase, status, ms, message}).
    hosts TEXT NOT NULL DEFAULT '[]',
    phases TEXT NOT NULL DEFAULT '[]',
    started_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS deployments_by_environment ON deployments(repo, environment, id);
