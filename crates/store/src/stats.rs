//! Counters for `/metrics`, kept by the database itself: a trigger counts each run and job
//! as it completes (by conclusion) and each job's duration into the buckets of a
//! histogram, so reading the metrics costs the same with ten jobs or ten million (it read
//! every job's duration before). Counters are spread over a few shards per label (by row
//! id), so that jobs completing at once on many runners do not all wait for one row's lock.
//!
//! The tables and triggers are in the schema (`migrations/*/001_initial.sql`); a database
//! made before the counters existed was counted once when they were created.

use crate::db::params;
use crate::{Result, Store};

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
    use crate::tests::{Place, new_run, stores};
    use crate::{Conclusion, Store};

    /// Completed runs and jobs by conclusion.
    type Counts = (Vec<(String, i64)>, Vec<(String, i64)>);

    fn counts(s: &Store) -> Counts {
        let st = s.stats().unwrap();
        (st.runs_by_conclusion, st.jobs_by_conclusion)
    }

    #[test]
    fn counters_follow_completions_and_an_older_database_is_counted_once() {
        for mut s in stores() {
            let backend = s.backend();
            let run = s.create_run(&new_run("r")).unwrap();
            s.finish_run_alerting(
                run,
                Conclusion::Success,
                None,
                &[
                    ("a".into(), "a".into(), Conclusion::Success),
                    ("b".into(), "b".into(), Conclusion::Skipped),
                ],
                |_, _| Vec::new(),
            )
            .unwrap();
            let want = (
                vec![("success".to_owned(), 1)],
                vec![("skipped".to_owned(), 1), ("success".to_owned(), 1)],
            );
            assert_eq!(counts(&s), want, "{backend}");
            // A database made before the counters (and before schema versions): none, no
            // triggers, one more job done.
            let triggers = match s.place {
                Place::Sqlite(_) => {
                    "DROP TRIGGER count_jobs_inserted; DROP TRIGGER count_jobs_completed;
                     DROP TRIGGER count_runs_inserted; DROP TRIGGER count_runs_completed;"
                }
                Place::Postgres { .. } => {
                    "DROP TRIGGER count_jobs ON jobs; DROP TRIGGER count_runs ON runs;"
                }
            };
            s.alter(&format!(
                "DROP TABLE counters; DROP TABLE schema_migrations; {triggers}
                 INSERT INTO jobs (run_id, name, job_id, status, conclusion, started_at, finished_at)
                   VALUES ({run}, 'c', 'c', 'completed', 'failure', 1000, 3500);"
            ));
            let want = (
                vec![("success".to_owned(), 1)],
                vec![
                    ("failure".to_owned(), 1),
                    ("skipped".to_owned(), 1),
                    ("success".to_owned(), 1),
                ],
            );
            for _ in 0..2 {
                s.reopen();
                assert_eq!(
                    counts(&s),
                    want,
                    "{backend}: counted once, however often opened"
                );
                let st = s.stats().unwrap();
                assert_eq!(st.duration_sum_ms, 2500, "{backend}");
                assert!(st.duration_buckets.contains(&("5".to_owned(), 1)));
                assert!(st.duration_buckets.contains(&("+Inf".to_owned(), 1)));
                assert!(!st.duration_buckets.iter().any(|(le, _)| le == "1"));
            }
        }
    }
}
