"""The Inner Architect's web application: a WSGI app served by gunicorn."""

import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from inner_architect import __version__, db

STATIC = Path(__file__).parent / "static"

StartResponse = Callable[..., Any]

# The services' keys the application reads from its environment: /health names those set
# (never their values), so a deploy shows that its secrets arrived.
KEYS = ("ANTHROPIC_API_KEY", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "SENDGRID_API_KEY")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>The Inner Architect</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main>
<h1>The Inner Architect</h1>
<p>Reflect, reframe, rebuild.</p>
<p class="version">Version {version}</p>
</main>
</body>
</html>
"""


def health() -> dict:
    """What /health answers: the version and, with DATABASE_URL, the database's state."""
    answer: dict = {"status": "ok", "version": __version__}
    answer["keys"] = [k for k in KEYS if os.environ.get(k)]
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


def static_file(name: str) -> Path | None:
    """A file under static/, or None (also for a name that climbs out of it)."""
    path = (STATIC / name).resolve()
    if STATIC.resolve() not in path.parents or not path.is_file():
        return None
    return path


def application(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point: /, /health and /static/."""
    path = environ.get("PATH_INFO", "/")
    status = "200 OK"
    if path == "/health":
        state = health()
        body = json.dumps(state).encode()
        if state["status"] != "ok":
            status = "503 Service Unavailable"
        kind = "application/json"
    elif path == "/":
        body = PAGE.format(version=__version__).encode()
        kind = "text/html; charset=utf-8"
    elif path.startswith("/static/") and (found := static_file(path[len("/static/") :])):
        body = found.read_bytes()
        kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    else:
        status = "404 Not Found"
        body = b"not found\n"
        kind = "text/plain"
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def main() -> None:
    """Serves the app with gunicorn on HOST:PORT (default 127.0.0.1:8000)."""
    from gunicorn.app.wsgiapp import run

    bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
    workers = os.environ.get("WEB_CONCURRENCY", "2")
    argv = ["gunicorn", "--bind", bind, "--workers", workers, "--access-logfile", "-"]
    sys.argv = argv + ["inner_architect.app:application"]
    run()


if __name__ == "__main__":
    main()
