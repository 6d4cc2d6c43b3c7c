"""The application's database: PostgreSQL when DATABASE_URL says so, SQLite otherwise."""

import os
import sqlite3
from typing import Any


def url() -> str:
    """The database's URL: DATABASE_URL, or an SQLite file in the working directory."""
    return os.environ.get("DATABASE_URL", "sqlite:///inner_architect.sqlite3")


def connect(database_url: str | None = None) -> Any:
    """A DB-API connection to the database."""
    target = database_url or url()
    if target.startswith(("postgresql://", "postgres://")):
        import psycopg2

        return psycopg2.connect(target, connect_timeout=3)
    if target.startswith("sqlite:///"):
        return sqlite3.connect(target[len("sqlite:///") :])
    raise ValueError(f"DATABASE_URL {target!r} is neither postgresql:// nor sqlite:///")


def applied(conn: Any) -> list[str]:
    """The migrations applied so far, oldest first."""
    cur = conn.cursor()
    cur.execute("SELECT name FROM schema_migrations ORDER BY name")
    return [row[0] for row in cur.fetchall()]
