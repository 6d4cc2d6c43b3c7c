"""A standard-library HTTP server with a health endpoint."""

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from inner_architect import __version__


def health() -> dict:
    """What /health answers."""
    return {"status": "ok", "version": __version__}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/health":
            body = json.dumps(health()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b"The Inner Architect\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
