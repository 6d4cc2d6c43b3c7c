//! Database backup and restore with a real PostgreSQL: `backup.database_dump` (pg_dump) before
//! migrating, `database_restore` (pg_restore) when a migration fails or a rollback's
//! `restore_database` policy says so.

mod deploy_support;

use deploy_support::{App, PG_BIN, Postgres};

fn sections() -> String {
    format!(
        "    env_file: deploy/env\n    hooks:\n      migrate: sh bin/pg-migrate.sh\n      restart: sh bin/restart.sh\n    backup:\n      database_dump: {PG_BIN}/pg_dump -Fc -d \"$DATABASE_URL\" -f \"$PIPEWRIGHT_BACKUP_DIR/db.dump\"\n      database_restore: {PG_BIN}/pg_restore --clean --if-exists -d \"$DATABASE_URL\" \"$PIPEWRIGHT_BACKUP_DIR/db.dump\"\n"
    )
}

/// An app whose migration is `sql` run by psql, one statement per psql call (so earlier
/// statements commit before a later one fails).
fn with_migration(app: &App, version: &str, statements: &[&str]) -> std::path::PathBuf {
    let script: String = std::iter::once("set -e\n".to_owned())
        .chain(statements.iter().map(|s| {
            format!("{PG_BIN}/psql -X -v ON_ERROR_STOP=1 -d \"$DATABASE_URL\" -c \"{s}\"\n")
        }))
        .collect();
    app.artifact(version, |d| {
        std::fs::write(d.join("bin/pg-migrate.sh"), script).unwrap()
    })
}

fn setup(policy: &str) -> (App, Postgres) {
    let pg = Postgres::start();
    let app = App::with_sections(
        &sections(),
        &format!("    rollback:\n      restore_database: {policy}\n"),
    );
    std::fs::write(
        app.repo.path().join("deploy/env"),
        format!("DATABASE_URL={}\n", pg.url()),
    )
    .unwrap();
    (app, pg)
}

#[test]
fn a_failed_migration_is_undone_with_pg_restore() {
    let (app, pg) = setup("on_migration");
    app.deploy(&with_migration(
        &app,
        "1.0.0",
        &[
            "CREATE TABLE notes (id serial PRIMARY KEY, body text)",
            "INSERT INTO notes (body) VALUES ('first')",
        ],
    ))
    .code(0);
    let d = app.deploy(&with_migration(
        &app,
        "2.0.0",
        &[
            "INSERT INTO notes (body) VALUES ('second')",
            "ALTER TABLE nowhere ADD COLUMN x int",
        ],
    ));
    d.code(1);
    assert!(d.stderr.contains("database restored"), "{}", d.stderr);
    assert_eq!(
        pg.query("SELECT string_agg(body, ',' ORDER BY id) FROM notes"),
        "first"
    );
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
}

#[test]
fn a_health_check_failure_after_a_migration_restores_the_database_on_migration() {
    let (app, pg) = setup("on_migration");
    app.deploy(&with_migration(
        &app,
        "1.0.0",
        &["CREATE TABLE notes (body text)"],
    ))
    .code(0);
    let v2 = with_migration(&app, "2.0.0", &["INSERT INTO notes VALUES ('from 2.0.0')"]);
    std::fs::write(
        v2.join("inner_architect/__main__.py"),
        "raise SystemExit(1)\n",
    )
    .unwrap();
    app.deploy(&v2).code(3);
    assert_eq!(pg.query("SELECT count(*) FROM notes"), "0");
    assert_eq!(app.live_version().as_deref(), Some("1.0.0"));
}

#[test]
fn restore_database_never_keeps_the_migrated_data_on_rollback() {
    let (app, pg) = setup("never");
    app.deploy(&with_migration(
        &app,
        "1.0.0",
        &["CREATE TABLE notes (body text)"],
    ))
    .code(0);
    let v2 = with_migration(&app, "2.0.0", &["INSERT INTO notes VALUES ('from 2.0.0')"]);
    std::fs::write(
        v2.join("inner_architect/__main__.py"),
        "raise SystemExit(1)\n",
    )
    .unwrap();
    app.deploy(&v2).code(3);
    assert_eq!(pg.query("SELECT count(*) FROM notes"), "1");
}
