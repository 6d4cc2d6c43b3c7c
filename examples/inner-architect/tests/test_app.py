import json
import os
import tempfile
import unittest
from pathlib import Path
from typing import Any
from unittest import mock

from inner_architect import __version__
from inner_architect.app import application, health
from inner_architect.collect_static import collect


def get(path: str) -> tuple[str, dict, bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list) -> None:
        seen["status"] = status
        seen["headers"] = dict(headers)

    body = b"".join(application({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], seen["headers"], body


class AppTest(unittest.TestCase):
    def setUp(self) -> None:
        # Without a database: DatabaseHealthTest has the one the job's service gives.
        patcher = mock.patch.dict(os.environ)
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop("DATABASE_URL", None)

    def test_health_is_ok(self) -> None:
        self.assertEqual(health()["status"], "ok")

    def test_health_answers_the_version(self) -> None:
        status, headers, body = get("/health")
        self.assertEqual(status, "200 OK")
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body)["version"], __version__)

    def test_the_landing_page_links_its_stylesheet(self) -> None:
        status, _, body = get("/")
        self.assertEqual(status, "200 OK")
        self.assertIn(b"/static/style.css", body)
        self.assertIn(__version__.encode(), body)

    def test_static_assets_are_served_and_nothing_outside_them(self) -> None:
        status, headers, _ = get("/static/style.css")
        self.assertEqual(status, "200 OK")
        self.assertEqual(headers["Content-Type"], "text/css")
        self.assertEqual(get("/static/../app.py")[0], "404 Not Found")
        self.assertEqual(get("/nope")[0], "404 Not Found")

    def test_collect_static_replaces_the_target(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            target = Path(d) / "static"
            target.mkdir()
            (target / "stale.css").write_text("old")
            self.assertEqual(collect(target), ["style.css"])
            self.assertFalse((target / "stale.css").exists())


@unittest.skipUnless(
    os.environ.get("DATABASE_URL", "").startswith("postgres"), "needs DATABASE_URL (PostgreSQL)"
)
class DatabaseHealthTest(unittest.TestCase):
    def test_health_reports_the_database(self) -> None:
        from inner_architect import db
        from inner_architect.migrate import migrate

        conn = db.connect()
        try:
            migrate(conn)
        finally:
            conn.close()
        state = health()
        self.assertEqual(state["database"], "ok", state)
        self.assertIn("001_reflections.sql", state["schema"])


if __name__ == "__main__":
    unittest.main()
