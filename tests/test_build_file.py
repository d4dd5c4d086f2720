"""BUILD is what tools/generate_build.py makes of the imports; MODULE.bazel
declares what BUILD loads. Bazel cannot run here, so these keep both true."""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
import generate_build as gb  # noqa: E402  pylint: disable=g-import-not-at-top

ROOT = gb.default_root()
TEST_MAIN = "tests/bazel_pytest_main.py"


def _value(node):
  """A Starlark value as Python: lists, strings, bools; calls as text."""
  if isinstance(node, ast.List):
    return [_value(e) for e in node.elts]
  if isinstance(node, ast.Constant):
    return node.value
  return ast.unparse(node).replace("'", '"')


def _calls(path):
  """[(function, {kwarg: value}, [positional values])] of a Starlark file
  (the subset BUILD and MODULE.bazel use is Python syntax)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  calls = []
  for node in tree.body:
    call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
    if isinstance(call, ast.Call):
      calls.append((ast.unparse(call.func),
                    {k.arg: _value(k.value) for k in call.keywords},
                    [_value(a) for a in call.args]))
  return calls


@pytest.fixture(scope="module")
def rules():
  """{name: (kind, kwargs)} of BUILD's rules."""
  return {kw["name"]: (kind, kw) for kind, kw, _ in
          _calls(os.path.join(ROOT, "BUILD")) if "name" in kw}


def test_build_is_the_generators_output():
  ok, diff = gb.check(ROOT)
  assert ok, ("BUILD is stale; run .venv/bin/python tools/generate_build.py"
              "\n" + diff[-6000:])


def _graph(rules):
  return {name: {d[1:] for d in kw.get("deps", []) if d.startswith(":")}
          for name, (_, kw) in rules.items()}


def test_no_dependency_cycle(rules):
  assert gb.find_cycle(_graph(rules)) is None
  # Nothing is left out to avoid one: no note, no mechanism.
  with open(os.path.join(ROOT, "BUILD"), encoding="utf-8") as f:
    assert "function-level import" not in f.read()
  assert not hasattr(gb, "_break_cycles")


def test_concrete_targets(rules):
  assert rules["modeling"][0] == "py_library"
  assert {":common", ":tasks"} <= set(rules["modeling"][1]["deps"])
  assert 'requirement("tensorflow")' in rules["modeling"][1]["deps"]
  assert rules["bam_tf_init"][1]["srcs"] == ["bam_tf/__init__.py"]
  # Top-level modules of bam_tf (a package with subpackages): a target each.
  assert rules["configure"][1]["srcs"] == ["bam_tf/configure.py"]
  assert rules["runner"][1]["srcs"] == ["bam_tf/runner.py"]
  assert ":configure" in rules["serving"][1]["deps"]
  assert ":serving" in rules["runner"][1]["deps"]
  assert ":runner" not in rules["serving"][1]["deps"]
  assert ":runner" not in rules["configure"][1]["deps"]
  kind, binary = rules["run_classifier"]
  assert kind == "py_binary" and binary["main"] == "run_classifier.py"
  assert {":runner", ":configure"} <= set(binary["deps"])
  # :bam_tf is "all of bam_tf": no srcs, reaches every bam_tf library, and
  # no target of this file depends on it.
  kind, everything = rules["bam_tf"]
  assert kind == "py_library" and "srcs" not in everything
  libs = {name for name, (k, kw) in rules.items() if k == "py_library"
          and any(s.startswith("bam_tf/") for s in kw.get("srcs", []))}
  graph = _graph(rules)
  reach, todo = set(), ["bam_tf"]
  while todo:
    for d in graph[todo.pop()] - reach:
      reach.add(d)
      todo.append(d)
  assert libs <= reach and {"configure", "runner", "bam_tf_init"} <= {
      d[1:] for d in everything["deps"]}
  assert not [n for n, deps in graph.items() if "bam_tf" in deps]
  tests = {kw["srcs"][0]: kw for kind, kw in rules.values()
           if kind == "py_test"}
  files = {os.path.relpath(os.path.join(dp, f), ROOT)
           for dp, _, fs in os.walk(os.path.join(ROOT, "tests"))
           for f in fs if f.startswith("test_") and f.endswith(".py")}
  assert set(tests) == files
  for src, kw in tests.items():
    assert kw["main"] == TEST_MAIN
    assert TEST_MAIN in kw["srcs"] and "tests/conftest.py" in kw["srcs"]
    assert kw["args"] == [src]
    assert 'requirement("pytest")' in kw["deps"]


def test_every_first_party_import_is_a_declared_dep(rules):
  """Recomputed from the sources and BUILD alone (not the generator's
  model): each library file's bam_tf.* imports are deps of its target."""
  owner = {}
  for name, (kind, kw) in rules.items():
    if kind == "py_library":
      for src in kw.get("srcs", []):
        owner[src] = name
  assert {s for s in owner if s.startswith("bam_tf/")} == {
      f for f in gb.python_files(ROOT) if f.startswith("bam_tf/")}
  for src, name in sorted(owner.items()):
    with open(os.path.join(ROOT, src), encoding="utf-8") as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and not node.level:
        mods = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
      elif isinstance(node, ast.Import):
        mods = [a.name for a in node.names]
      else:
        continue
      for mod in mods:
        path = mod.replace(".", "/")
        dep = owner.get(path + ".py") or owner.get(path + "/__init__.py")
        if dep and dep != name:
          assert f":{dep}" in rules[name][1].get("deps", []), \
              f"{src}: imports {mod} ({dep})"


def _tree(tmp_path, files, requirements="numpy\n"):
  for path, text in files.items():
    full = tmp_path / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(textwrap.dedent(text))
  (tmp_path / "requirements.txt").write_text(requirements)
  return str(tmp_path)


def test_unknown_third_party_import_names_file_and_module(tmp_path):
  root = _tree(tmp_path, {"pkg/__init__.py": "",
                          "pkg/mod.py": "import os\n\n\ndef f():\n"
                                        "  import notarealmodule_xyz\n"})
  with pytest.raises(gb.GenerateError,
                     match=r"pkg/mod\.py:5: imports 'notarealmodule_xyz'"):
    gb.generate(root)


def test_pip_name_missing_from_requirements(tmp_path):
  root = _tree(tmp_path, {"pkg/__init__.py": "import scipy\n"})
  with pytest.raises(gb.GenerateError,
                     match=r"pkg/__init__\.py:1: needs pip package 'scipy'"):
    gb.generate(root)


def test_import_of_a_moved_module(tmp_path):
  root = _tree(tmp_path, {"pkg/__init__.py": "",
                          "pkg/a.py": "from pkg.gone import thing\n"})
  with pytest.raises(gb.GenerateError, match=r"pkg/a\.py:1: imports "
                     r"pkg\.gone\.thing, which is not a module"):
    gb.generate(root)


def test_module_level_cycle_is_an_error(tmp_path):
  root = _tree(tmp_path, {"pkg/__init__.py": "",
                          "pkg/a/__init__.py": "from pkg.b import x\n",
                          "pkg/b/__init__.py": "from pkg.a import y\n"})
  with pytest.raises(gb.GenerateError, match=r"(?s)cycle.*pkg_a.*pkg_b"):
    gb.generate(root)


def test_cycle_closed_by_a_lazy_import_is_an_error(tmp_path):
  """Imports inside functions count: nothing is left out to hide a cycle."""
  root = _tree(tmp_path, {"pkg/__init__.py": "",
                          "pkg/a/__init__.py": "from pkg.b import x\n",
                          "pkg/b/__init__.py": "def f():\n"
                                               "  from pkg.a import y\n"})
  with pytest.raises(gb.GenerateError) as e:
    gb.generate(root)
  msg = str(e.value)
  assert ":pkg_a -> :pkg_b  (pkg/a/__init__.py:1)" in msg
  assert ":pkg_b -> :pkg_a  (pkg/b/__init__.py:2 (in a function))" in msg
  assert "inside a function" in msg


def test_top_level_modules_of_a_split_package_are_targets(tmp_path):
  """run.py imports srv lazily, srv imports cfg: one target per module, so
  no cycle (a shared target for cfg.py and run.py would be one)."""
  root = _tree(tmp_path, {
      "pkg/__init__.py": "",
      "pkg/cfg.py": "from pkg.core import base\n",
      "pkg/run.py": "from pkg import cfg\n\n\ndef export():\n"
                    "  from pkg.srv import export\n",
      "pkg/core/__init__.py": "",
      "pkg/core/base.py": "import numpy\n",
      "pkg/srv/__init__.py": "",
      "pkg/srv/export.py": "from pkg import cfg\n",
      "main.py": "from pkg import run\n",
  })
  _, p = gb.generate(root)
  t = p.targets
  assert t["pkg_init"].srcs == ["pkg/__init__.py"]
  assert t["pkg_cfg"].srcs == ["pkg/cfg.py"]
  assert t["pkg_cfg"].deps == {"pkg_init", "pkg_core"}
  assert t["pkg_run"].deps == {"pkg_init", "pkg_cfg", "pkg_srv"}
  assert t["pkg_srv"].deps == {"pkg_init", "pkg_cfg"}
  assert t["pkg"].srcs == []
  assert t["pkg"].deps == {"pkg_init", "pkg_cfg", "pkg_run", "pkg_core",
                           "pkg_srv"}
  assert t["main"].deps == {"pkg_init", "pkg_run"}


def test_new_top_level_package_needs_no_edit(tmp_path):
  """A package that appears (or moves) gets targets and deps by itself."""
  root = _tree(tmp_path, {
      "bam_tf/__init__.py": "",
      "bam_tf/common/__init__.py": "",
      "bam_tf/common/files.py": "import numpy\n",
      "extra/__init__.py": "",
      "extra/reproduce.py": "from extra.reports import compute\n",
      "extra/reports/__init__.py": "",
      "extra/reports/compute.py": "from bam_tf.common import files\n",
      "run_me.py": "from extra import reproduce\n",
      "tests/bazel_pytest_main.py": "import pytest\n",
      "tests/conftest.py": "import bam_tf\n",
      "tests/test_x.py": "from conftest import *\nimport run_me\n",
  }, requirements="numpy\npytest\n")
  _, p = gb.generate(root)
  t = p.targets
  assert t["extra_init"].srcs == ["extra/__init__.py"]
  assert t["extra_reports"].deps == {"extra_init", "bam_tf_init", "common"}
  assert t["extra_reproduce"].deps == {"extra_init", "extra_reports"}
  assert t["extra"].deps == {"extra_init", "extra_reproduce", "extra_reports"}
  assert t["common"].pips == {("requirement", "numpy")}
  assert t["run_me"].deps == {"extra_reproduce", "extra_init"}
  assert t["test_x"].deps == {"run_me", "bam_tf_init"}
  assert t["test_x"].pips == {("requirement", "pytest")}


def test_module_bazel_declares_what_build_loads():
  calls = _calls(os.path.join(ROOT, "MODULE.bazel"))
  deps = {kw["name"]: kw["version"] for f, kw, _ in calls
          if f == "bazel_dep"}
  assert "rules_python" in deps
  assert all(p.isdigit() for p in deps["rules_python"].split("."))
  toolchains = [kw for f, kw, _ in calls if f == "python.toolchain"]
  assert toolchains and toolchains[0]["python_version"] == "3.11"
  assert toolchains[0]["is_default"] is True
  parses = {kw["hub_name"]: kw for f, kw, _ in calls if f == "pip.parse"}
  used = [pos[1:] for f, _, pos in calls if f == "use_repo"]
  for req_file, hub, _ in gb.REQUIREMENT_FILES:
    assert parses[hub]["requirements_lock"] == f"//:{req_file}"
    assert parses[hub]["python_version"] == "3.11"
    assert any(hub in u for u in used), hub
  with open(os.path.join(ROOT, "BUILD"), encoding="utf-8") as f:
    build = f.read()
  for _, hub, _ in gb.REQUIREMENT_FILES:
    if f"@{hub}//" in build:
      assert hub in parses


def test_pytest_is_a_requirement():
  assert "pytest" in gb.parse_requirements(
      os.path.join(ROOT, "requirements.txt"))


def test_bazel_pytest_main_exits_with_pytests_code(tmp_path):
  (tmp_path / "test_ok.py").write_text("def test_ok():\n  pass\n")
  (tmp_path / "test_bad.py").write_text("def test_bad():\n  assert 0\n")
  main = os.path.join(ROOT, TEST_MAIN)
  ok = subprocess.run([sys.executable, main, str(tmp_path / "test_ok.py")],
                      cwd=tmp_path, capture_output=True, timeout=300)
  bad = subprocess.run([sys.executable, main, str(tmp_path / "test_bad.py")],
                       cwd=tmp_path, capture_output=True, timeout=300)
  assert ok.returncode == 0, ok.stdout[-2000:]
  assert bad.returncode == 1, bad.stdout[-2000:]
