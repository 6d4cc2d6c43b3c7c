import os
import tempfile
import unittest

from inner_architect import db
from inner_architect.migrate import migrate


class MigrateTest(unittest.TestCase):
    def test_each_migration_is_applied_once(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            conn = db.connect("sqlite:///" + os.path.join(d, "app.sqlite3"))
            self.assertEqual(migrate(conn), ["001_reflections.sql"])
            self.assertEqual(migrate(conn), [])
            self.assertEqual(db.applied(conn), ["001_reflections.sql"])
            conn.close()


if __name__ == "__main__":
    unittest.main()
