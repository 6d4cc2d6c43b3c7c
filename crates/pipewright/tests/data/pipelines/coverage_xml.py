"""Runs the unit tests under a line tracer and writes a Cobertura-style coverage.xml.

A stand-in for `coverage run` + `coverage xml` that needs nothing beyond the standard library,
so the seed-shaped pipeline test runs without network access.
"""

import ast
import os
import sys
import unittest

PACKAGE = "inner_architect"
executed = set()


def tracer(frame, event, arg):
    path = os.path.abspath(frame.f_code.co_filename)
    if f"{os.sep}{PACKAGE}{os.sep}" in path:
        executed.add((path, frame.f_lineno))
    return tracer


def statement_lines(path):
    tree = ast.parse(open(path).read())
    return {n.lineno for n in ast.walk(tree) if isinstance(n, ast.stmt)}


sys.path.insert(0, os.getcwd())
sys.settrace(tracer)
result = unittest.main(module=None, argv=["x", "discover", "-s", "tests"], exit=False).result
sys.settrace(None)
valid = covered = 0
for name in sorted(os.listdir(PACKAGE)):
    if name.endswith(".py"):
        path = os.path.abspath(os.path.join(PACKAGE, name))
        lines = statement_lines(path)
        valid += len(lines)
        covered += len({line for (p, line) in executed if p == path} & lines)
with open("coverage.xml", "w") as f:
    f.write(f'<?xml version="1.0" ?>\n<coverage lines-valid="{valid}" lines-covered="{covered}" line-rate="{covered / max(valid, 1):.4f}"></coverage>\n')
print(f"coverage: {covered}/{valid} lines")
sys.exit(0 if result.wasSuccessful() else 1)
