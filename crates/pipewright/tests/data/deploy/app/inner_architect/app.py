"""A standard-library HTTP server with a health endpoint (examples/inner-architect's, plus the
database's schema version, so tests see which release and which migrations are live)."""

import json
import os
import sqlite3
from http.server import BaseHTTPRequestHandler, HTTPServer

from inner_architect import __version__


def schema() -> list:
    """The migrations applied to the shared SQLite database."""
    path = os.path.join(os.environ.get("PIPEWRIGHT_SHARED_DIR", "."), "data", "app.db")
    try:
        with sqlite3.connect(path) as db:
            return [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY name")]
    except sqlite3.Error:
        return []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/health":
            body = json.dumps({"status": "ok", "version": __version__, "schema": schema()})
            body = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = f"The Inner Architect {__version__}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
