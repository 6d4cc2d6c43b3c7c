-- pipewright's schema, version 1: the tables of release 0.1 (runs, jobs and their log lines,
-- secrets, schedules, API tokens, webhook deliveries, polled refs, runners, artifacts and
-- caches, concurrency groups, the counters of /metrics). Every statement may run again over
-- a database made before schema versions existed (see migrate.rs): it adds what is missing.

CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    workflow TEXT NOT NULL,
    event TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT,
    reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    event_json TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    rerun_of INTEGER,
    rerun_failed INTEGER NOT NULL DEFAULT 0,
    workflow_text TEXT,
    orchestrator TEXT,
    orchestrator_until INTEGER
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, id);
CREATE INDEX IF NOT EXISTS runs_repo ON runs(repo, id);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    job_id TEXT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    labels TEXT NOT NULL DEFAULT '[]',
    payload TEXT,
    sealed BLOB,
    runner_id INTEGER,
    lease TEXT,
    lease_until INTEGER,
    attempt INTEGER NOT NULL DEFAULT 1,
    report TEXT,
    reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    queued_at INTEGER,
    log_archived INTEGER NOT NULL DEFAULT 0,
    reported_by TEXT,
    log_job INTEGER,
    UNIQUE(run_id, name)
);
CREATE TABLE IF NOT EXISTS log_lines (
    job INTEGER NOT NULL REFERENCES jobs(id),
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (job, seq)
);
CREATE TABLE IF NOT EXISTS secrets (
    repo TEXT NOT NULL,
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, environment, name)
);
CREATE TABLE IF NOT EXISTS schedule_fires (
    repo TEXT NOT NULL,
    workflow TEXT NOT NULL,
    cron TEXT NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (repo, workflow, cron, minute)
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS polled_refs (
    repo TEXT NOT NULL,
    url TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repo, git_ref)
);
CREATE TABLE IF NOT EXISTS pending_deliveries (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    event_json TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runners (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    embedded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runner_tokens (
    hash TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);
-- Artifacts and caches (artifacts.rs): manifests of files whose contents are blobs in the
-- data directory, named by their BLAKE3 hash.
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    job TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE(run_id, name)
);
CREATE TABLE IF NOT EXISTS artifact_files (
    artifact INTEGER NOT NULL REFERENCES artifacts(id),
    path TEXT NOT NULL,
    mode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (artifact, path)
);
CREATE INDEX IF NOT EXISTS artifact_files_hash ON artifact_files(hash);
-- A cache entry belongs to a scope: the ref of the run that saved it (GitHub's rule: a run
-- reads its own ref's entries, then its base branch's, then the default branch's).
CREATE TABLE IF NOT EXISTS caches (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    scope TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER NOT NULL,
    UNIQUE(repo, scope, cache_key)
);
CREATE TABLE IF NOT EXISTS cache_files (
    cache INTEGER NOT NULL REFERENCES caches(id),
    path TEXT NOT NULL,
    mode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (cache, path)
);
CREATE INDEX IF NOT EXISTS cache_files_hash ON cache_files(hash);

-- The jobs' indexes hold only the rows they are for: a job moving from queued to running to
-- completed is entered in one of them at each step, not in all three.
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_running ON jobs(runner_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs(finished_at) WHERE finished_at IS NOT NULL;

-- Concurrency groups (concurrency.rs).
CREATE TABLE IF NOT EXISTS concurrency_slots (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    holder_run BIGINT,
    holder_key TEXT,
    holder_server TEXT,
    cancel_holder BIGINT NOT NULL DEFAULT 0,
    pending_run BIGINT,
    pending_key TEXT,
    pending_server TEXT,
    PRIMARY KEY (scope, name)
);
-- Claimants replaced while waiting, until their run completes: taken up again (by a server
-- that restarted, or another one) they learn it instead of claiming anew.
CREATE TABLE IF NOT EXISTS concurrency_replaced (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    run BIGINT NOT NULL,
    claim_key TEXT NOT NULL,
    PRIMARY KEY (scope, name, run, claim_key)
);

-- Counters for /metrics, kept by triggers (stats.rs).
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    shard BIGINT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (name, label, shard)
);
CREATE TABLE IF NOT EXISTS duration_buckets (le TEXT PRIMARY KEY, ms BIGINT NOT NULL);
INSERT INTO duration_buckets (le, ms) VALUES ('0.1', 100) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('0.5', 500) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('1', 1000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('5', 5000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('10', 10000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('30', 30000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('60', 60000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('300', 300000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('900', 900000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('3600', 3600000) ON CONFLICT (le) DO NOTHING;
INSERT INTO duration_buckets (le, ms) VALUES ('+Inf', 9223372036854775807) ON CONFLICT (le) DO NOTHING;
CREATE TRIGGER IF NOT EXISTS count_jobs_inserted AFTER INSERT ON jobs
WHEN NEW.status = 'completed'
BEGIN
  INSERT INTO counters (name, label, shard, value)
    VALUES ('jobs', COALESCE(NEW.conclusion, ''), NEW.id % 8, 1)
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
  INSERT INTO counters (name, label, shard, value)
    SELECT 'job_seconds_le', le, NEW.id % 8, 1 FROM duration_buckets
    WHERE NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
      AND NEW.finished_at - NEW.started_at <= ms
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
  INSERT INTO counters (name, label, shard, value)
    SELECT 'job_ms_sum', '', NEW.id % 8, NEW.finished_at - NEW.started_at
    FROM duration_buckets WHERE le = '+Inf'
      AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value;
END;
CREATE TRIGGER IF NOT EXISTS count_jobs_completed AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'completed' AND OLD.status <> 'completed'
BEGIN
  INSERT INTO counters (name, label, shard, value)
    VALUES ('jobs', COALESCE(NEW.conclusion, ''), NEW.id % 8, 1)
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
  INSERT INTO counters (name, label, shard, value)
    SELECT 'job_seconds_le', le, NEW.id % 8, 1 FROM duration_buckets
    WHERE NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
      AND NEW.finished_at - NEW.started_at <= ms
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
  INSERT INTO counters (name, label, shard, value)
    SELECT 'job_ms_sum', '', NEW.id % 8, NEW.finished_at - NEW.started_at
    FROM duration_buckets WHERE le = '+Inf'
      AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value;
END;
CREATE TRIGGER IF NOT EXISTS count_runs_inserted AFTER INSERT ON runs
WHEN NEW.status = 'completed'
BEGIN
  INSERT INTO counters (name, label, shard, value)
    VALUES ('runs', COALESCE(NEW.conclusion, ''), NEW.id % 8, 1)
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
END;
CREATE TRIGGER IF NOT EXISTS count_runs_completed AFTER UPDATE OF status ON runs
WHEN NEW.status = 'completed' AND OLD.status <> 'completed'
BEGIN
  INSERT INTO counters (name, label, shard, value)
    VALUES ('runs', COALESCE(NEW.conclusion, ''), NEW.id % 8, 1)
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
END;

INSERT INTO counters (name, label, shard, value)
  SELECT 'jobs', COALESCE(conclusion, ''), 0, count(*) FROM jobs
  WHERE status = 'completed' AND NOT EXISTS (SELECT 1 FROM counters WHERE name = 'initialized')
  GROUP BY COALESCE(conclusion, '');
INSERT INTO counters (name, label, shard, value)
  SELECT 'runs', COALESCE(conclusion, ''), 0, count(*) FROM runs
  WHERE status = 'completed' AND NOT EXISTS (SELECT 1 FROM counters WHERE name = 'initialized')
  GROUP BY COALESCE(conclusion, '');
INSERT INTO counters (name, label, shard, value)
  SELECT 'job_seconds_le', b.le, 0, count(*) FROM duration_buckets b JOIN jobs j
    ON j.status = 'completed' AND j.started_at IS NOT NULL AND j.finished_at IS NOT NULL
    AND j.finished_at - j.started_at <= b.ms
  WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = 'initialized')
  GROUP BY b.le;
INSERT INTO counters (name, label, shard, value)
  SELECT 'job_ms_sum', '', 0,
    (SELECT COALESCE(sum(finished_at - started_at), 0) FROM jobs
     WHERE status = 'completed' AND started_at IS NOT NULL AND finished_at IS NOT NULL)
  WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = 'initialized');
INSERT INTO counters (name, label, shard, value)
  SELECT 'initialized', '', 0, 1 WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = 'initialized');
