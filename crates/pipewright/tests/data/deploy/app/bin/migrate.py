"""Applies migrations/*.sql in name order to the shared SQLite database, each once, each in
a transaction; stops at the first that fails."""

import os
import pathlib
import sqlite3
import sys

db_path = pathlib.Path(os.environ["PIPEWRIGHT_SHARED_DIR"]) / "data" / "app.db"
db_path.parent.mkdir(parents=True, exist_ok=True)
db = sqlite3.connect(db_path, isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)")
done = {r[0] for r in db.execute("SELECT name FROM schema_migrations")}
for sql in sorted(pathlib.Path("migrations").glob("*.sql")):
    if sql.name in done:
        continue
    print(f"applying {sql.name}")
    try:
        db.executescript(
            "BEGIN;\n" + sql.read_text()
            + f"\nINSERT INTO schema_migrations VALUES ('{sql.name}');\nCOMMIT;"
        )
    except sqlite3.Error as e:
        db.execute("ROLLBACK") if db.in_transaction else None
        print(f"{sql.name} failed: {e}", file=sys.stderr)
        sys.exit(1)
