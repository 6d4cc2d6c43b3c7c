//! PostgreSQL's own statements of the queue.

use super::{COMPLETE, Leased, PAGE, Want, leased, take_from, take_returning, take_set};
use crate::db::{Db, Param, Row};
use crate::jobs::{JOB_FIELDS, Job, job_from_row};
use crate::logs::{insert_rows_sql, value_rows};
use crate::{JobId, Result, RunnerId, StoreError};

/// PostgreSQL's report of held job `job` in one statement, with its last `lines` (at most 64)
/// and, for `next` (runner, what it wants), a lease of the first page as [`pg_take_ctes`]
/// takes it: the completed job and the statement's row.
pub(crate) fn pg_complete(
    c: &mut dyn Db,
    job: JobId,
    end: &[Param],
    lines: &[(i64, String)],
    next: Option<(RunnerId, &Want<'_>)>,
) -> Result<(Job, Row)> {
    let mut values = end.to_vec();
    let mut ctes = format!("done AS ({COMPLETE} RETURNING {JOB_FIELDS})");
    if !lines.is_empty() {
        let rows = value_rows(&mut values, lines);
        let insert = insert_rows_sql(&rows, " AND EXISTS (SELECT 1 FROM done)");
        ctes.push_str(&format!(", lines AS ({insert})"));
    }
    let sql = match next {
        Some((runner, want)) => {
            let take = pg_take_ctes(
                &mut values,
                runner,
                want,
                " AND EXISTS (SELECT 1 FROM done)",
            );
            format!(
                "WITH {ctes}, {take}
                 SELECT done.*, taken.*, (SELECT count(*) FROM page) AS next_seen
                 FROM done LEFT JOIN taken ON true"
            )
        }
        None => format!("WITH {ctes} SELECT * FROM done"),
    };
    let row = c
        .query_opt(&sql, &values)?
        .ok_or(StoreError::NotHeld(job))?;
    Ok((job_from_row(&row)?, row))
}

/// PostgreSQL's lease of the first page, as two `WITH` queries: `page`, the oldest queued
/// jobs, and `taken`, the oldest of them the runner matches that nobody else is taking right
/// now (runners asking at once skip each other's rows instead of queueing on one row's lock,
/// which took six attempts per lease with fifty runners), its columns prefixed `next_`.
/// `only_if` is a further condition of the lease. Labels are compared as [`Want::matches`]
/// does, folding ASCII letters only (`lower` under the "C" collation, whatever the
/// database's locale). Its limits are constants, so PostgreSQL
/// plans it once per connection, not at every lease (as it did with a `LIMIT` parameter).
pub(crate) fn pg_take_ctes(
    values: &mut Vec<Param>,
    runner: RunnerId,
    want: &Want<'_>,
    only_if: &str,
) -> String {
    let n = values.len();
    values.push(Param::from(i64::from(want.any())));
    values.push(Param::from(
        serde_json::to_string(want.labels).unwrap_or_default(),
    ));
    let set = take_set(values, runner, want);
    let returning = take_returning("next_");
    format!(
        "page AS (SELECT id, labels FROM jobs WHERE status = 'queued' AND payload IS NOT NULL
             ORDER BY id LIMIT {PAGE}),
         taken AS (UPDATE jobs SET {set} WHERE id = (SELECT j.id FROM jobs j
             WHERE j.id IN (SELECT page.id FROM page
                 WHERE CAST(?{any} AS BIGINT) = 1 OR NOT EXISTS (
                     SELECT 1 FROM json_array_elements_text(page.labels::json) w(l)
                     WHERE lower(w.l COLLATE \"C\") NOT IN (SELECT lower(h.l COLLATE \"C\")
                         FROM json_array_elements_text(CAST(?{has} AS TEXT)::json) h(l))))
             AND j.status = 'queued'{only_if}
             ORDER BY j.id LIMIT 1 FOR UPDATE SKIP LOCKED)
         {returning})",
        any = n + 1,
        has = n + 2,
    )
}

/// The lease a row of [`pg_take_ctes`] (with `next_seen`, how many jobs its page held)
/// took; if it took none from a full page, the lease goes on on the next pages.
pub(crate) fn first_page_taken(
    c: &mut dyn Db,
    r: &Row,
    runner: RunnerId,
    want: &Want<'_>,
) -> Result<Option<Leased>> {
    if r.opt_i64("next_id")?.is_some() {
        return leased(c, &r.sub("next_"), want.lease).map(Some);
    }
    if r.i64("next_seen")? < PAGE {
        return Ok(None);
    }
    take_from(c, PAGE, runner, want)
}
