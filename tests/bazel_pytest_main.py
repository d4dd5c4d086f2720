"""Main of every py_test in BUILD: runs pytest on the test files it is given.

Bazel runs a py_test's main as a script; the test modules are pytest modules
with no __main__, so BUILD points each py_test here with its test file in
`args` (extra `bazel test --test_arg=...` options are passed on to pytest).
"""

import os
import sys

import pytest


def main(argv):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  args = [a if a.startswith("-") or os.path.exists(a)
          else os.path.join(root, a) for a in argv]
  # Runfiles are read-only: no .pytest_cache. Bazel collects test.xml.
  # pytest.ini's addopts are for the whole suite in one command (workers per
  # core); Bazel runs one file per test target, its targets side by side.
  args += ["-q", "-p", "no:cacheprovider", "-o", "addopts="]
  if os.environ.get("XML_OUTPUT_FILE"):
    args.append("--junitxml=" + os.environ["XML_OUTPUT_FILE"])
  return int(pytest.main(args))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
