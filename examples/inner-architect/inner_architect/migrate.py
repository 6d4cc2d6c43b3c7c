"""Applies the SQL files of inner_architect/migrations in order, each once.

Run as `python -m inner_architect.migrate` (the deploy's migrate hook)."""

import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from inner_architect import db

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(conn: Any) -> list[str]:
    """Applies the migrations not yet applied; returns their names."""
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)")
    conn.commit()
    done = set(db.applied(conn))
    mark = "?" if isinstance(conn, sqlite3.Connection) else "%s"
    new = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name in done:
            continue
        for statement in path.read_text().split(";"):
            if statement.strip():
                cur.execute(statement)
        cur.execute(f"INSERT INTO schema_migrations (name) VALUES ({mark})", (path.name,))
        conn.commit()
        new.append(path.name)
    return new


def main() -> int:
    # A database started with the deploy may take a few seconds to accept connections.
    for attempt in range(30):
        try:
            conn = db.connect()
            break
        except Exception as e:  # noqa: BLE001 (whatever the driver raises)
            if attempt == 29:
                raise
            print(f"waiting for the database: {str(e).strip()}", file=sys.stderr)
            time.sleep(1)
    try:
        for name in migrate(conn):
            print(f"applied {name}")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
