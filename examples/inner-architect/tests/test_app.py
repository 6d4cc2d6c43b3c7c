import unittest

from inner_architect.app import health


class HealthTest(unittest.TestCase):
    def test_health_is_ok(self) -> None:
        self.assertEqual(health()["status"], "ok")


if __name__ == "__main__":
    unittest.main()
