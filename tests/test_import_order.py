"""The package's imports follow the data flow: derived from the code.

Every module of bam_tf belongs to a layer (a subpackage, or a top-level
module); a layer may import only the layers below it. The order is declared
once, here, and docs/ARCHITECTURE.md shows it. Imports inside functions
count too: a lazy import is still a dependency.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Bottom to top. `bam_tf` is the package's __init__ (it selects Keras 2
# before TensorFlow loads, so every module imports it first).
LAYERS = ("bam_tf", "common", "tasks", "data", "modeling", "training",
          "evaluation", "outputs", "distill", "configure", "serving", "tools",
          "runner")
RANK = {name: i for i, name in enumerate(LAYERS)}


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, REPO)[:-len(".py")].replace(os.sep, ".")
  return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _modules(package: str):
  """module name -> path of every .py file under `package`."""
  out = {}
  for root, _, names in os.walk(os.path.join(REPO, package)):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        out[_module_name(path)] = path
  return out


def _imports(path: str, module: str, known) -> set:
  """The first-party modules a file imports (anywhere in it)."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  package = module if path.endswith("__init__.py") else module.rpartition(
      ".")[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      # `from bam_tf.x import y`: y may be a module or a name in bam_tf.x.
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
               for a in node.names]
    else:
      continue
    for name in names:
      while name and name not in known:
        name = name.rpartition(".")[0]
      if name:
        found.add(name)
  return found


def _layer(module: str) -> str:
  parts = module.split(".")
  return "bam_tf" if len(parts) == 1 else parts[1]


def _graph():
  known = _modules("bam_tf")
  known.update(_modules("bam_tf_experiments") if os.path.isdir(
      os.path.join(REPO, "bam_tf_experiments")) else {})
  return {m: _imports(p, m, known) - {m} for m, p in known.items()}


def test_every_module_has_a_layer():
  graph = _graph()
  unplaced = sorted({_layer(m) for m in graph if m.startswith("bam_tf.")
                     or m == "bam_tf"} - set(RANK))
  assert not unplaced, f"add {unplaced} to LAYERS (and ARCHITECTURE.md)"


def test_imports_only_go_down():
  graph = _graph()
  upward = []
  for module, deps in sorted(graph.items()):
    if not (module == "bam_tf" or module.startswith("bam_tf.")):
      continue
    for dep in sorted(deps):
      if dep.startswith("bam_tf_experiments"):
        upward.append(f"{module} -> {dep} (bam_tf never imports the "
                      "experiments)")
      elif (_layer(dep) != _layer(module)
            and RANK[_layer(dep)] > RANK[_layer(module)]):
        upward.append(f"{module} ({_layer(module)}) -> {dep} "
                      f"({_layer(dep)})")
  assert not upward, "imports against the declared order:\n" + "\n".join(
      upward)


def test_no_import_cycle():
  graph = _graph()
  state, stack, cycles = {}, [], []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for dep in sorted(graph.get(node, ())):
      if dep == "bam_tf":  # the package init imports nothing of its own
        continue
      if state.get(dep) == "open":
        cycles.append(stack[stack.index(dep):] + [dep])
      elif dep not in state:
        visit(dep)
    stack.pop()
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node)
  assert not cycles, "import cycles: " + "; ".join(
      " -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_and_upward_imports(tmp_path, monkeypatch):
  """The checker itself: an import inside a function counts, and one from
  a lower layer to a higher one is reported."""
  pkg = tmp_path / "bam_tf"
  (pkg / "tasks").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "tasks" / "__init__.py").write_text("")
  (pkg / "runner.py").write_text("X = 1\n")
  (pkg / "tasks" / "task.py").write_text(
      "def f():\n  from bam_tf import runner\n  return runner.X\n")
  monkeypatch.setattr(__import__(__name__), "REPO", str(tmp_path))
  graph = _graph()
  assert graph["bam_tf.tasks.task"] == {"bam_tf.runner"}
  try:
    test_imports_only_go_down()
  except AssertionError as e:
    assert "bam_tf.tasks.task (tasks) -> bam_tf.runner (runner)" in str(e)
  else:
    raise AssertionError("an upward import went unnoticed")


def test_architecture_doc_shows_the_order():
  text = open(os.path.join(REPO, "docs", "ARCHITECTURE.md"),
              encoding="utf-8").read()
  assert " -> ".join(LAYERS) in text
