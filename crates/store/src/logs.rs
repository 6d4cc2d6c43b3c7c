//! Log lines of jobs: stored as rows while a run goes on, archived to files by the server
//! once it completed (the rows then go).

use crate::db::{Db, Param, params};
use crate::jobs::{JOB_FIELDS, Job, job_from_row};
use crate::{JobId, Result, RunnerId, Store, rows};

impl Store {
    /// Up to `limit` lines of `job` after sequence `after`, from the rows (a job whose log is
    /// archived has none).
    pub fn job_log_page(&self, job: JobId, after: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        self.db.with(|c| {
            c.query(
                "SELECT seq, text FROM log_lines WHERE job = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                params![job, after, limit],
            )?
            .iter()
            .map(|r| Ok((r.i64("seq")?, r.string("text")?)))
            .collect()
        })
    }

    /// The sequence number of `job`'s last line in the rows (0 if none): where a follower
    /// that wants only the last lines starts.
    pub fn job_log_last_seq(&self, job: JobId) -> Result<i64> {
        self.db.with(|c| {
            c.query_one(
                "SELECT COALESCE(MAX(seq), 0) AS n FROM log_lines WHERE job = ?1",
                params![job],
            )?
            .i64("n")
        })
    }

    /// Jobs of completed runs whose logs are still rows: to be written to files.
    pub fn logs_to_archive(&self, limit: i64) -> Result<Vec<Job>> {
        self.db.with(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {JOB_FIELDS} FROM jobs WHERE log_archived = 0 AND run_id IN
                         (SELECT id FROM runs WHERE status = 'completed') ORDER BY id LIMIT ?1"
                    ),
                    params![limit],
                )?,
                job_from_row,
            )
        })
    }

    /// The job's log is now in its files (readers go there from now on): its rows go.
    pub fn log_archived(&self, job: JobId) -> Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE jobs SET log_archived = 1, log_job = COALESCE(log_job, id) WHERE id = ?1",
                params![job],
            )
            .map(drop)
        })?;
        self.purge_log_rows(job)
    }

    /// Deletes the rows of an archived job's log, some thousands per transaction: one delete
    /// of a million rows kept every page it touched in memory (SQLite) and the write lock
    /// for seconds.
    pub fn purge_log_rows(&self, job: JobId) -> Result<()> {
        loop {
            let n = self.db.with(|c| {
                c.execute(
                    "DELETE FROM log_lines WHERE job = ?1 AND seq IN
                         (SELECT seq FROM log_lines WHERE job = ?1 ORDER BY seq LIMIT 10000)",
                    params![job],
                )
            })?;
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Archived jobs that still have log rows (a server stopped while deleting them).
    pub fn archived_with_rows(&self) -> Result<Vec<JobId>> {
        self.db.with(|c| {
            c.query(
                "SELECT id FROM jobs j WHERE log_archived = 1
                     AND EXISTS (SELECT 1 FROM log_lines l WHERE l.job = j.id)",
                &[],
            )?
            .iter()
            .map(|r| r.first_i64().map(JobId::from))
            .collect()
        })
    }
}

/// The insert of `rows` (from [`value_rows`]) as lines of job `?1`, each `seq` once, where
/// `condition` (`" AND ..."`, or empty) holds.
pub(crate) fn insert_rows_sql(rows: &str, condition: &str) -> String {
    // `WHERE` before `ON CONFLICT` also keeps SQLite's parser from reading the upsert as a
    // join.
    format!(
        "INSERT INTO log_lines (job, seq, text)
         SELECT CAST(?1 AS BIGINT), v.column1, v.column2 FROM (VALUES {rows}) AS v
         WHERE 1 = 1{condition}
         ON CONFLICT DO NOTHING"
    )
}

/// `(seq, text)` rows of a `VALUES` list for `lines`, their parameters appended to `values`
/// (numbered after those already there).
pub(crate) fn value_rows(values: &mut Vec<Param>, lines: &[(i64, String)]) -> String {
    let first = values.len() + 1;
    let mut rows = String::new();
    for (i, (seq, text)) in lines.iter().enumerate() {
        if i > 0 {
            rows.push_str(", ");
        }
        let p = first + 2 * i;
        rows.push_str(&format!("(CAST(?{p} AS BIGINT), ?{})", p + 1));
        values.push(Param::from(*seq));
        values.push(Param::from(text));
    }
    rows
}

/// Stores a job's log lines, each sequence number once; with `held` (runner, lease), only
/// while that runner holds the job under that lease.
pub(crate) fn insert_lines(
    c: &mut dyn Db,
    job: JobId,
    lines: &[(i64, String)],
    held: Option<(RunnerId, &str)>,
) -> Result<()> {
    // Up to 64 rows per statement (one round trip each on PostgreSQL; at most 64 shapes of
    // statement to prepare).
    let mut rest = lines;
    while !rest.is_empty() {
        let n = rest.len().min(64);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut values = Vec::with_capacity(3 + 2 * n);
        values.push(Param::from(job));
        let guard = match held {
            Some((runner, lease)) => {
                values.push(Param::from(runner));
                values.push(Param::from(lease));
                " AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND runner_id = ?2 AND lease = ?3
                     AND status = 'running')"
            }
            None => "",
        };
        let rows = value_rows(&mut values, chunk);
        c.execute(&insert_rows_sql(&rows, guard), &values)?;
    }
    Ok(())
}
