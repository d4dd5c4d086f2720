"""BUILD covers every module and every test file (Bazel targets stay true)."""

import ast
import glob
import os

from conftest import REPO_ROOT


def _targets():
  """Parses BUILD (Starlark is Python syntax here) into rule calls."""
  with open(os.path.join(REPO_ROOT, "BUILD"), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  rules = []
  for node in tree.body:
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
      call = node.value
      kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                if k.arg in ("name", "srcs")}
      rules.append((call.func.id, kwargs))
  return rules


def test_every_module_is_in_a_py_library():
  covered = set()
  for kind, kw in _targets():
    if kind == "py_library":
      covered.update(kw.get("srcs", []))
  modules = {os.path.relpath(p, REPO_ROOT) for p in glob.glob(
      os.path.join(REPO_ROOT, "bam_tf", "**", "*.py"), recursive=True)}
  missing = sorted(modules - covered)
  assert not missing, f"modules not in any py_library of BUILD: {missing}"
  stale = sorted(s for s in covered if not os.path.exists(
      os.path.join(REPO_ROOT, s)))
  assert not stale, f"BUILD lists files that do not exist: {stale}"


def test_every_test_file_has_a_py_test():
  tests = {kw["srcs"][0] for kind, kw in _targets() if kind == "py_test"}
  files = {os.path.relpath(p, REPO_ROOT) for p in glob.glob(
      os.path.join(REPO_ROOT, "tests", "test_*.py"))}
  assert files - tests == set(), f"test files without py_test: {files - tests}"
  assert tests - files == set(), f"py_test of missing files: {tests - files}"


def test_binary_and_library_per_package_folder():
  rules = _targets()
  binaries = [kw for kind, kw in rules if kind == "py_binary"]
  assert any(kw["srcs"] == ["run_classifier.py"] for kw in binaries)
  libs = {kw["name"] for kind, kw in rules if kind == "py_library"}
  folders = {os.path.basename(os.path.dirname(p)) for p in glob.glob(
      os.path.join(REPO_ROOT, "bam_tf", "*", "__init__.py"))}
  assert folders <= libs, f"package folders without a py_library: " \
      f"{folders - libs}"


def test_every_benchmark_script_is_a_py_binary():
  binaries = {kw["srcs"][0] for kind, kw in _targets() if kind == "py_binary"}
  scripts = {os.path.relpath(p, REPO_ROOT) for p in glob.glob(
      os.path.join(REPO_ROOT, "benchmarks", "*.py"))}
  assert scripts and scripts <= binaries, scripts - binaries
