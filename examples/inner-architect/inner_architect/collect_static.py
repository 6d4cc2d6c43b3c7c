"""Copies the package's static assets to a directory Nginx (or the app) serves.

Run as `python -m inner_architect.collect_static DIR` (the deploy's assets hook). The copy
is made beside DIR and renamed over it, so a reader never sees half of a release's assets.
"""

import shutil
import sys
from pathlib import Path

from inner_architect.app import STATIC


def collect(target: Path) -> list[str]:
    """Replaces `target` with a copy of static/; returns the files' names."""
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(STATIC, staging)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return sorted(p.name for p in target.rglob("*") if p.is_file())


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m inner_architect.collect_static DIR", file=sys.stderr)
        return 2
    for name in collect(Path(sys.argv[1])):
        print(f"static: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
