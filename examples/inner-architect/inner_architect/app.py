"""A standard-library HTTP server with a health endpoint."""

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

from inner_architect import __version__, db


def health() -> dict:
    """What /health answers: the version and, with DATABASE_URL, the database's state."""
    answer: dict = {"status": "ok", "version": __version__}
    if "DATABASE_URL" in os.environ:
        try:
            conn = db.connect()
            try:
                answer["schema"] = db.applied(conn)
            finally:
                conn.close()
            answer["database"] = "ok"
        except Exception as e:  # noqa: BLE001 (any failure is the answer)
            answer["status"] = "error"
            answer["database"] = str(e).strip()
    return answer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/health":
            state = health()
            body = json.dumps(state).encode()
            self.send_response(200 if state["status"] == "ok" else 503)
            self.send_header("Content-Type", "application/json")
        else:
            body = b"The Inner Architect\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    server: HTTPServer = ThreadingHTTPServer((host, port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
