//! Counters for `/metrics`, kept by the database itself: a trigger counts each run and job
//! as it completes (by conclusion) and each job's duration into the buckets of a
//! histogram, so reading the metrics costs the same with ten jobs or ten million (it read
//! every job's duration before). Counters are spread over a few shards per label (by row
//! id), so that jobs completing at once on many runners do not all wait for one row's lock.
//!
//! A database made before the counters existed is counted once when they are created.

use crate::db::params;
use crate::{Result, Store};

/// Shards per counter.
const SHARDS: i64 = 8;

/// The histogram's buckets: `le` (seconds, as Prometheus names them) and milliseconds.
pub(crate) const BUCKETS: &[(&str, i64)] = &[
    ("0.1", 100),
    ("0.5", 500),
    ("1", 1_000),
    ("5", 5_000),
    ("10", 10_000),
    ("30", 30_000),
    ("60", 60_000),
    ("300", 300_000),
    ("900", 900_000),
    ("3600", 3_600_000),
    ("+Inf", i64::MAX),
];

/// The tables, written once for both databases. Durations are summed in milliseconds:
/// every value is a whole number.
const TABLES: &str = "CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    shard BIGINT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (name, label, shard)
);
CREATE TABLE IF NOT EXISTS duration_buckets (le TEXT PRIMARY KEY, ms BIGINT NOT NULL);
";

/// What a completed job adds to the counters (`NEW` is the job's row).
fn count_job(shard: &str) -> String {
    format!(
        "INSERT INTO counters (name, label, shard, value)
    VALUES ('jobs', COALESCE(NEW.conclusion, ''), {shard}, 1)
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
  INSERT INTO counters (name, label, shard, value)
    SELECT 'job_seconds_le', le, {shard}, 1 FROM duration_buckets
    WHERE NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
      AND NEW.finished_at - NEW.started_at <= ms
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;
  INSERT INTO counters (name, label, shard, value)
    SELECT 'job_ms_sum', '', {shard}, NEW.finished_at - NEW.started_at
    FROM duration_buckets WHERE le = '+Inf'
      AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value;"
    )
}

fn count_run(shard: &str) -> String {
    format!(
        "INSERT INTO counters (name, label, shard, value)
    VALUES ('runs', COALESCE(NEW.conclusion, ''), {shard}, 1)
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + 1;"
    )
}

/// The counts of what completed before the counters existed, once (the `initialized`
/// counter says it was done).
const BACKFILL: &str = "
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
";

fn buckets() -> String {
    BUCKETS
        .iter()
        .map(|(le, ms)| {
            format!("INSERT INTO duration_buckets (le, ms) VALUES ('{le}', {ms}) ON CONFLICT (le) DO NOTHING;\n")
        })
        .collect()
}

/// SQLite: the tables, a trigger per table and kind of change (SQLite has no `INSERT OR
/// UPDATE` trigger), the backfill. Run in one transaction.
pub(crate) fn sqlite_schema() -> String {
    let shard = format!("NEW.id % {SHARDS}");
    let mut s = String::from("BEGIN IMMEDIATE;\n");
    s.push_str(TABLES);
    s.push_str(&buckets());
    for (table, body) in [("jobs", count_job(&shard)), ("runs", count_run(&shard))] {
        s.push_str(&format!(
            "CREATE TRIGGER IF NOT EXISTS count_{table}_inserted AFTER INSERT ON {table}
WHEN NEW.status = 'completed'
BEGIN
  {body}
END;
CREATE TRIGGER IF NOT EXISTS count_{table}_completed AFTER UPDATE OF status ON {table}
WHEN NEW.status = 'completed' AND OLD.status <> 'completed'
BEGIN
  {body}
END;
"
        ));
    }
    s.push_str(BACKFILL);
    s.push_str("COMMIT;\n");
    s
}

/// PostgreSQL: the tables, a trigger function per table, the backfill. Run under the
/// schema's advisory lock.
pub(crate) fn postgres_schema() -> String {
    let shard = format!("NEW.id % {SHARDS}");
    let mut s = String::from("BEGIN;\n");
    s.push_str(TABLES);
    s.push_str(&buckets());
    for (table, body) in [("jobs", count_job(&shard)), ("runs", count_run(&shard))] {
        s.push_str(&format!(
            "CREATE OR REPLACE FUNCTION pipewright_count_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'completed' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'completed') THEN
  {body}
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS count_{table} ON {table};
CREATE TRIGGER count_{table} AFTER INSERT OR UPDATE OF status ON {table}
  FOR EACH ROW EXECUTE FUNCTION pipewright_count_{table}();
"
        ));
    }
    s.push_str(BACKFILL);
    s.push_str("COMMIT;\n");
    s
}

/// Counts for `/metrics` (see `stats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub runs_by_conclusion: Vec<(String, i64)>,
    pub jobs_by_conclusion: Vec<(String, i64)>,
    /// Completed jobs by duration: (bucket's upper bound in seconds, `+Inf` last; jobs
    /// that took at most that long).
    pub duration_buckets: Vec<(String, i64)>,
    /// The completed jobs' durations, added up.
    pub duration_sum_ms: i64,
    pub runs_running: i64,
}

impl Store {
    /// What `/metrics` shows: counters read whole (a few rows per label), and the gauges
    /// of what is in flight (each read through an index of the rows it counts).
    pub fn stats(&self) -> Result<Stats> {
        self.db.with(|c| {
            let rows = c.query(
                "SELECT name, label, CAST(sum(value) AS BIGINT) AS n FROM counters
                 GROUP BY name, label ORDER BY name, label",
                &[],
            )?;
            let mut stats = Stats::default();
            for r in &rows {
                let (name, label, n) = (r.string("name")?, r.string("label")?, r.i64("n")?);
                match name.as_str() {
                    "runs" => stats.runs_by_conclusion.push((label, n)),
                    "jobs" => stats.jobs_by_conclusion.push((label, n)),
                    "job_seconds_le" => stats.duration_buckets.push((label, n)),
                    "job_ms_sum" => stats.duration_sum_ms = n,
                    _ => {}
                }
            }
            // In the order of the buckets, not of their names.
            stats.duration_buckets.sort_by_key(|(le, _)| {
                BUCKETS
                    .iter()
                    .position(|(b, _)| b == le)
                    .unwrap_or(usize::MAX)
            });
            stats.runs_running = c
                .query_one(
                    "SELECT count(*) AS n FROM runs WHERE status = ?1",
                    params!["running"],
                )?
                .i64("n")?;
            Ok(stats)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::tests::new_run;

    /// Completed runs and jobs by conclusion.
    type Counts = (Vec<(String, i64)>, Vec<(String, i64)>);

    fn counts(s: &Store) -> Counts {
        let st = s.stats().unwrap();
        (st.runs_by_conclusion, st.jobs_by_conclusion)
    }

    #[test]
    fn counters_follow_completions_and_an_older_database_is_counted_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db.sqlite");
        let s = Store::open(&path).unwrap();
        let run = s.create_run(&new_run("r")).unwrap();
        s.jobs_not_run(
            run,
            &[
                ("a".into(), "a".into(), "success".into()),
                ("b".into(), "b".into(), "skipped".into()),
            ],
        )
        .unwrap();
        s.finish_run(run, "success", None).unwrap();
        let want = (
            vec![("success".to_owned(), 1)],
            vec![("skipped".to_owned(), 1), ("success".to_owned(), 1)],
        );
        assert_eq!(counts(&s), want);
        drop(s);
        // A database made before the counters: none, no triggers, one more job done.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TABLE counters;
             DROP TRIGGER count_jobs_inserted; DROP TRIGGER count_jobs_completed;
             DROP TRIGGER count_runs_inserted; DROP TRIGGER count_runs_completed;
             INSERT INTO jobs (run_id, name, job_id, status, conclusion, started_at, finished_at)
               VALUES (1, 'c', 'c', 'completed', 'failure', 1000, 3500);",
        )
        .unwrap();
        drop(c);
        let want = (
            vec![("success".to_owned(), 1)],
            vec![
                ("failure".to_owned(), 1),
                ("skipped".to_owned(), 1),
                ("success".to_owned(), 1),
            ],
        );
        for _ in 0..2 {
            let s = Store::open(&path).unwrap();
            assert_eq!(counts(&s), want, "counted once, however often opened");
            let st = s.stats().unwrap();
            assert_eq!(st.duration_sum_ms, 2500);
            assert!(st.duration_buckets.contains(&("5".to_owned(), 1)));
            assert!(st.duration_buckets.contains(&("+Inf".to_owned(), 1)));
            assert!(!st.duration_buckets.iter().any(|(le, _)| le == "1"));
        }
    }
}
