//! The schema, made and upgraded from numbered SQL files per backend
//! (`migrations/sqlite/NNN_name.sql`, `migrations/postgres/NNN_name.sql`), compiled into the
//! binary. The table `schema_migrations` records each one applied; at start the store applies
//! those it lacks, each in a transaction of its own with its record (all of it or nothing),
//! and refuses a database whose schema is newer than this binary knows.
//!
//! A database made before schema versions existed (releases up to 0.1) has no record: it
//! gets the columns those releases added one by one and loses what they replaced
//! ([`before_versions`]), then version 1, whose statements add only what is missing.
//!
//! A new migration is a new file with the next number in both directories, and a line in
//! [`SQLITE`] and [`POSTGRES`]; a test checks they agree.

#[cfg(test)]
use crate::Store;
use crate::db::{Db, Dialect};
use crate::{Result, StoreError, now_ms};

/// One numbered step of the schema.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/sqlite/001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "monitors_and_alerts",
        sql: include_str!("../migrations/sqlite/002_monitors_and_alerts.sql"),
    },
    Migration {
        version: 3,
        name: "deployments",
        sql: include_str!("../migrations/sqlite/003_deployments.sql"),
    },
    Migration {
        version: 4,
        name: "accounts",
        sql: include_str!("../migrations/sqlite/004_accounts.sql"),
    },
    Migration {
        version: 5,
        name: "monitor_hours",
        sql: include_str!("../migrations/sqlite/005_monitor_hours.sql"),
    },
    Migration {
        version: 6,
        name: "environment_monitors",
        sql: include_str!("../migrations/sqlite/006_environment_monitors.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/postgres/001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "monitors_and_alerts",
        sql: include_str!("../migrations/postgres/002_monitors_and_alerts.sql"),
    },
    Migration {
        version: 3,
        name: "deployments",
        sql: include_str!("../migrations/postgres/003_deployments.sql"),
    },
    Migration {
        version: 4,
        name: "accounts",
        sql: include_str!("../migrations/postgres/004_accounts.sql"),
    },
    Migration {
        version: 5,
        name: "monitor_hours",
        sql: include_str!("../migrations/postgres/005_monitor_hours.sql"),
    },
    Migration {
        version: 6,
        name: "environment_monitors",
        sql: include_str!("../migrations/postgres/006_environment_monitors.sql"),
    },
];

/// The migrations of `dialect`.
pub(crate) fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    SQLITE.last().map_or(0, |m| m.version)
}

/// Brings the database on `c` to the newest schema: the caller makes sure no one else does
/// at the same time (PostgreSQL: an advisory lock; SQLite: the transaction's write lock).
pub(crate) fn migrate(c: &mut dyn Db) -> Result<()> {
    let list = migrations(c.dialect());
    if let Some(from) = run(c, list, latest_version())? {
        tracing::info!(
            "database schema upgraded from version {from} to {}",
            latest_version()
        );
    }
    Ok(())
}

/// Applies the migrations of `list` the database lacks, each in a transaction of its own;
/// the version it had before, if any was applied.
fn run(c: &mut dyn Db, list: &[Migration], known: i64) -> Result<Option<i64>> {
    let begin = match c.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    let mut from = None;
    for m in list {
        c.batch(begin)?;
        match apply(c, m, known) {
            Ok(applied) => {
                c.batch("COMMIT")?;
                if let Some(current) = applied {
                    from.get_or_insert(current);
                }
            }
            Err(e) => {
                let _ = c.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(from)
}

/// Applies `m` unless the database has it: the version the database had before, if it was
/// applied.
fn apply(c: &mut dyn Db, m: &Migration, known: i64) -> Result<Option<i64>> {
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at BIGINT NOT NULL
         )",
    )?;
    let current = c
        .query_one(
            "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations",
            &[],
        )?
        .i64("v")?;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    if current >= m.version {
        return Ok(None);
    }
    let failed = |e: StoreError| StoreError::Migration {
        migration: format!("{:03}_{}", m.version, m.name),
        source: Box::new(e),
    };
    if current == 0 && table_exists(c, "runs")? {
        before_versions(c).map_err(failed)?;
    }
    c.batch(m.sql).map_err(failed)?;
    c.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
        crate::db::params![m.version, m.name, now_ms()],
    )?;
    Ok(Some(current))
}

fn table_exists(c: &mut dyn Db, table: &str) -> Result<bool> {
    let sql = match c.dialect() {
        Dialect::Sqlite => "SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = ?1",
        Dialect::Postgres => {
            "SELECT 1 AS one FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = ?1"
        }
    };
    Ok(c.query_opt(sql, crate::db::params![table])?.is_some())
}

fn columns(c: &mut dyn Db, table: &str) -> Result<Vec<String>> {
    let sql = match c.dialect() {
        Dialect::Sqlite => "SELECT name FROM pragma_table_info(?1)",
        Dialect::Postgres => {
            "SELECT column_name AS name FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1"
        }
    };
    c.query(sql, crate::db::params![table])?
        .iter()
        .map(|r| r.string("name"))
        .collect()
}

/// Columns releases before schema versions added to `runs` (re-runs, orchestration).
const RUN_COLUMNS: &[(&str, &str)] = &[
    ("rerun_of", "BIGINT"),
    ("rerun_failed", "BIGINT NOT NULL DEFAULT 0"),
    ("workflow_text", "TEXT"),
    ("orchestrator", "TEXT"),
    ("orchestrator_until", "BIGINT"),
];

/// Columns releases before schema versions added to `jobs` (jobs as units of scheduling,
/// log archives).
const JOB_COLUMNS: &[(&str, &str)] = &[
    ("labels", "TEXT NOT NULL DEFAULT '[]'"),
    ("payload", "TEXT"),
    ("sealed", "BLOB"),
    ("runner_id", "BIGINT"),
    ("lease", "TEXT"),
    ("lease_until", "BIGINT"),
    ("attempt", "BIGINT NOT NULL DEFAULT 1"),
    ("report", "TEXT"),
    ("reason", "TEXT"),
    ("cancel_requested", "BIGINT NOT NULL DEFAULT 0"),
    ("queued_at", "BIGINT"),
    ("log_archived", "BIGINT NOT NULL DEFAULT 0"),
    ("reported_by", "TEXT"),
    ("log_job", "BIGINT"),
];

/// What releases before schema versions did at each start to upgrade the databases of the
/// releases before them, done once before version 1: the columns they added, cache entries
/// made before caches had scopes dropped (they are caches: the next runs make them again,
/// each in its own scope), the jobs' indexes of before dropped (version 1 makes those that
/// hold only the rows they are for).
fn before_versions(c: &mut dyn Db) -> Result<()> {
    let sqlite = c.dialect() == Dialect::Sqlite;
    for (table, added) in [("runs", RUN_COLUMNS), ("jobs", JOB_COLUMNS)] {
        let have = columns(c, table)?;
        for (name, decl) in added {
            if !have.iter().any(|h| h == name) {
                // SQLite's BIGINT is its INTEGER (same affinity).
                let decl = if sqlite {
                    decl.to_string()
                } else {
                    decl.replace("BLOB", "BYTEA")
                };
                c.batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {decl}"))?;
            }
        }
    }
    let cache_columns = columns(c, "caches")?;
    if !cache_columns.is_empty() && !cache_columns.iter().any(|c| c == "scope") {
        c.batch("DROP TABLE IF EXISTS cache_files; DROP TABLE caches;")?;
    }
    c.batch(
        "DROP INDEX IF EXISTS jobs_queue;
         DROP INDEX IF EXISTS jobs_runner;
         DROP INDEX IF EXISTS jobs_finished;",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conclusion;
    use crate::tests::{Place, TestStore, stores, unopened};

    /// The tables of the database and their columns, sorted.
    fn shape(s: &Store) -> Vec<(String, Vec<String>)> {
        s.db.with(|c| {
            let sql = match c.dialect() {
                Dialect::Sqlite => {
                    "SELECT name FROM sqlite_master WHERE type = 'table'
                     AND name NOT LIKE 'sqlite_%' ORDER BY name"
                }
                Dialect::Postgres => {
                    "SELECT table_name AS name FROM information_schema.tables
                     WHERE table_schema = current_schema() ORDER BY table_name"
                }
            };
            let tables: Vec<String> = c
                .query(sql, &[])?
                .iter()
                .map(|r| r.string("name"))
                .collect::<Result<_>>()?;
            tables
                .into_iter()
                .map(|t| {
                    let mut cols = columns(c, &t)?;
                    cols.sort();
                    Ok((t, cols))
                })
                .collect()
        })
        .unwrap()
    }

    fn fixture(s: &TestStore) -> &'static str {
        match s.place {
            Place::Sqlite(_) => include_str!("../fixtures/release-0.1.sqlite.sql"),
            Place::Postgres { .. } => include_str!("../fixtures/release-0.1.postgres.sql"),
        }
    }

    #[test]
    fn a_database_made_by_the_last_release_is_upgraded_in_place() {
        let fresh = stores();
        for (mut s, fresh) in unopened().into_iter().zip(fresh) {
            let backend = s.backend();
            s.alter(fixture(&s));
            s.try_open().unwrap();
            let versions = |s: &Store| {
                s.db.with(|c| {
                    c.query(
                        "SELECT version FROM schema_migrations ORDER BY version",
                        &[],
                    )?
                    .iter()
                    .map(crate::db::Row::first_i64)
                    .collect::<Result<Vec<_>>>()
                })
                .unwrap()
            };
            let all: Vec<i64> = (1..=latest_version()).collect();
            assert_eq!(versions(&s), all, "{backend}");
            assert_eq!(
                shape(&s),
                shape(&fresh),
                "{backend}: the same tables as a new one"
            );
            // What the release stored reads as it did.
            let runs = s.runs(None, 10).unwrap();
            assert_eq!(runs.len(), 4, "{backend}");
            let done = runs.iter().find(|r| r.conclusion.is_some()).unwrap();
            assert_eq!(done.conclusion, Some(Conclusion::Success), "{backend}");
            let jobs = s.jobs(done.id).unwrap();
            let lines = s.job_log_page(jobs[0].id, 0, 10).unwrap();
            assert_eq!(lines.len(), 3, "{backend}");
            assert_eq!(s.secrets_for("acme/app").unwrap().len(), 2, "{backend}");
            assert_eq!(s.runners().unwrap().len(), 2, "{backend}");
            assert_eq!(s.artifacts(done.id).unwrap().len(), 1, "{backend}");
            assert_eq!(s.pending_count().unwrap(), 1, "{backend}");
            let st = s.stats().unwrap();
            assert_eq!(st.jobs_by_conclusion, [("success".into(), 1)], "{backend}");
            // The queue goes on: the release's queued job is leased by its runner.
            let runner = s.runner_by_credential("credhash").unwrap().unwrap();
            let labels = ["linux".to_owned()];
            let want = crate::tests::want(&labels, "L2", 60_000);
            let leased = s.take_job(runner.id, &want).unwrap().unwrap();
            assert_eq!(leased.job.name, "build", "{backend}");
            // Opened again, nothing is applied twice.
            s.reopen();
            let all: Vec<i64> = (1..=latest_version()).collect();
            assert_eq!(versions(&s), all, "{backend}");
        }
    }

    #[test]
    fn a_database_newer_than_the_binary_is_refused() {
        for mut s in stores() {
            let backend = s.backend();
            let next = latest_version() + 1;
            s.alter(&format!(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ({next}, 'x', 0)"
            ));
            let e = s.try_open().expect_err(backend);
            assert!(
                matches!(e, StoreError::SchemaTooNew { found, known } if found == next && known == next - 1),
                "{backend}: {e}"
            );
            assert!(
                e.to_string().contains("newer than this pipewright knows"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_failed_migration_applies_nothing() {
        for s in stores() {
            let backend = s.backend();
            let next = latest_version() + 1;
            let bad = [Migration {
                version: next,
                name: "broken",
                sql: "CREATE TABLE half (a BIGINT); SELECT * FROM no_such_table;",
            }];
            let e = s.db.with(|c| run(c, &bad, next)).expect_err(backend);
            assert!(
                e.to_string()
                    .starts_with(&format!("schema migration {next:03}_broken failed")),
                "{backend}: {e}"
            );
            let (half, version) =
                s.db.with(|c| {
                    let half = table_exists(c, "half")?;
                    let v = c
                        .query_one("SELECT MAX(version) AS v FROM schema_migrations", &[])?
                        .i64("v")?;
                    Ok((half, v))
                })
                .unwrap();
            assert_eq!((half, version), (false, next - 1), "{backend}");
        }
    }

    /// Each backend's directory holds the files its list names, numbered from 1 without
    /// gaps, and the two lists are the same steps.
    #[test]
    fn migrations_are_numbered_files_listed_for_both_backends() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for (backend, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let mut files: Vec<String> = std::fs::read_dir(dir.join(backend))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<String> = list
                .iter()
                .map(|m| format!("{:03}_{}.sql", m.version, m.name))
                .collect();
            assert_eq!(files, listed, "{backend}");
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{backend}");
                let text = std::fs::read_to_string(dir.join(backend).join(&listed[i])).unwrap();
                assert_eq!(m.sql, text, "{backend}: {}", listed[i]);
            }
        }
        let steps = |l: &[Migration]| l.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(steps(SQLITE), steps(POSTGRES));
    }

    /// The histogram's buckets in the schema are those `/metrics` sorts by.
    #[test]
    fn the_schema_s_buckets_are_the_metrics_buckets() {
        for s in stores() {
            let rows =
                s.db.with(|c| c.query("SELECT le, ms FROM duration_buckets ORDER BY ms", &[]))
                    .unwrap();
            let got: Vec<(String, i64)> = rows
                .iter()
                .map(|r| (r.string("le").unwrap(), r.i64("ms").unwrap()))
                .collect();
            let want: Vec<(String, i64)> = crate::stats::BUCKETS
                .iter()
                .map(|(le, ms)| ((*le).to_owned(), *ms))
                .collect();
            assert_eq!(got, want, "{}", s.backend());
        }
    }
}
