"""Looks tasks up by name: GLUE tasks, their aliases, and user-declared tasks.

A user's own task is a JSON object (inline in a flag or in a file) with the
same fields as `TaskSpec`; see `custom_task_from_dict`.
"""

import json
import os
from typing import Dict, List

from bam_tf.common.errors import BamError
from bam_tf.tasks import glue
from bam_tf.tasks.task import CLASSIFICATION, REGRESSION, SplitLayout, TaskSpec

_SPLIT_FIELDS = {"file", "text_a_col", "text_b_col", "label_col",
                 "has_header", "delimiter"}
_TASK_FIELDS = {"name", "dir_name", "kind", "splits", "label_list",
                "label_range", "double_unordered", "metric", "in_average"}


class TaskError(BamError):
  """A task name or task declaration that cannot be used."""


def custom_task_from_dict(d: Dict, where: str) -> TaskSpec:
  """Builds a TaskSpec from a user declaration, e.g.

  {"name": "reviews", "dir_name": "Reviews", "kind": "classification",
   "label_list": ["neg", "pos"],
   "splits": {"train": {"file": "train.csv", "text_a_col": "review",
                        "label_col": "stars", "delimiter": ","},
              "dev":   {"file": "dev.csv", "text_a_col": "review",
                        "label_col": "stars", "delimiter": ","}}}

  Columns are header names or 0-based positions.
  """
  unknown = set(d) - _TASK_FIELDS
  if unknown:
    raise TaskError(f"{where}: unknown task field(s) {sorted(unknown)}; "
                    f"expected some of {sorted(_TASK_FIELDS)}")
  for key in ("name", "kind", "splits"):
    if key not in d:
      raise TaskError(f"{where}: task declaration needs '{key}'")
  kind = d["kind"]
  if kind not in (CLASSIFICATION, REGRESSION):
    raise TaskError(f"{where}: kind must be '{CLASSIFICATION}' or "
                    f"'{REGRESSION}', got {kind!r}")
  if kind == CLASSIFICATION and len(d.get("label_list", ())) < 2:
    raise TaskError(f"{where}: a classification task needs a label_list "
                    "with at least two labels")
  splits = {}
  for split, layout in d["splits"].items():
    bad = set(layout) - _SPLIT_FIELDS
    if bad or "file" not in layout or "text_a_col" not in layout:
      raise TaskError(f"{where}: split '{split}' needs 'file' and "
                      f"'text_a_col' and only fields {sorted(_SPLIT_FIELDS)}")
    splits[split] = SplitLayout(**layout)
  if "train" not in splits or "dev" not in splits:
    raise TaskError(f"{where}: a task needs 'train' and 'dev' splits")
  metric = d.get("metric", "spearman" if kind == REGRESSION else "accuracy")
  return TaskSpec(
      name=d["name"], dir_name=d.get("dir_name", d["name"]), kind=kind,
      splits=splits, label_list=tuple(str(x) for x in d.get("label_list", ())),
      label_range=tuple(d.get("label_range", (0.0, 1.0))),
      double_unordered=bool(d.get("double_unordered", False)), metric=metric,
      glue_name=d["name"], in_average=bool(d.get("in_average", True)))


def load_custom_tasks(declaration: str) -> Dict[str, TaskSpec]:
  """Parses --custom_tasks: a JSON file path or inline JSON (list or dict)."""
  if not declaration:
    return {}
  where = "--custom_tasks"
  text = declaration
  if os.path.exists(declaration):
    where = declaration
    with open(declaration, encoding="utf-8") as f:
      text = f.read()
  try:
    parsed = json.loads(text)
  except json.JSONDecodeError as e:
    raise TaskError(f"{where}: not valid JSON ({e}); expected a task "
                    "declaration object or a list of them") from e
  items = parsed if isinstance(parsed, list) else [parsed]
  tasks = {}
  for i, item in enumerate(items):
    spec = custom_task_from_dict(item, f"{where} (task {i})")
    if spec.name in glue.GLUE_TASKS or spec.name in glue.ALIASES:
      raise TaskError(f"{where}: custom task name {spec.name!r} clashes with "
                      "a GLUE task")
    tasks[spec.name] = spec
  return tasks


def canonical_name(name: str) -> str:
  key = name.strip().lower()
  return glue.ALIASES.get(key, key)


def get_tasks(names: List[str],
              custom: Dict[str, TaskSpec] = None) -> List[TaskSpec]:
  """Resolves task names (original or GLUE spelling) in the given order;
  ["all"] means the nine GLUE tasks."""
  custom = custom or {}
  if [n.strip().lower() for n in names] == ["all"]:
    names = list(glue.GLUE_TASKS)
  specs, seen = [], set()
  for raw in names:
    if raw in custom:
      key = raw
    else:
      key = canonical_name(raw)
    spec = custom.get(key) or glue.GLUE_TASKS.get(key)
    if spec is None:
      known = sorted(set(glue.GLUE_TASKS) | set(custom))
      raise TaskError(f"--task_names: unknown task {raw!r}; known tasks: "
                      f"{', '.join(known)} (GLUE spellings like STS-B also "
                      "work)")
    if spec.name in seen:
      raise TaskError(f"--task_names: task {spec.name!r} given twice")
    seen.add(spec.name)
    specs.append(spec)
  return specs
