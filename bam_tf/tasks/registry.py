"""Looks tasks up by name: GLUE tasks, their aliases, and user-declared tasks.

A user's own task is a JSON object (inline in a flag or in a file) with the
same fields as `TaskSpec`; see `custom_task_from_dict`. Every field is
checked when the declaration is read, before a run writes anything: the name
becomes part of file names (the feature cache, predictions), so it must be a
safe file name, and a relative data file must stay inside --data_dir.
"""

import json
import math
import os
import re
from typing import Dict, List

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.tasks import glue
from bam_tf.tasks.task import (CLASSIFICATION, METRICS, REGRESSION,
                               SplitLayout, TaskSpec)

_SPLIT_FIELDS = {"file", "text_a_col", "text_b_col", "label_col",
                 "has_header", "delimiter", "quotechar"}
_TASK_FIELDS = {"name", "dir_name", "kind", "splits", "label_list",
                "label_range", "double_unordered", "metric", "metrics",
                "positive_label", "in_average"}
# Letters, digits, '_', '.', '-'; not starting with '.' (so never '.', '..'
# or a hidden file).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}\Z")
# --task_names=all and --teachers=all:DIR mean every task.
_RESERVED_NAMES = ("all",)


class TaskError(BamError):
  """A task name or task declaration that cannot be used."""


def _require(cond: bool, where: str, message: str):
  if not cond:
    raise TaskError(f"{where}: {message}")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_column(value, field: str, where: str, optional: bool):
  _require((optional and value is None) or _is_int(value) or (
      isinstance(value, str) and value != ""), where,
           f"{field} must be a 0-based column number or a header name"
           f"{' (or null)' if optional else ''}, got {value!r}")


def _leaves_folder(path: str) -> bool:
  """Whether a relative path climbs out of its folder ('..')."""
  return not os.path.isabs(path) and ".." in re.split(r"[\\/]", path)


def _check_split(name: str, layout, where: str):
  at = f"{where}: split '{name}'"
  _require(isinstance(layout, dict), where,
           f"split '{name}' must be an object, got {layout!r}")
  bad = set(layout) - _SPLIT_FIELDS
  _require(not bad and "file" in layout and "text_a_col" in layout, where,
           f"split '{name}' needs 'file' and 'text_a_col' and only fields "
           f"{sorted(_SPLIT_FIELDS)}")
  file = layout["file"]
  _require(isinstance(file, str) and file != "", at,
           f"file must be a file name, got {file!r}")
  _require(not _leaves_folder(file), at,
           f"file {file!r} leaves the task folder ('..'); give a path inside "
           "it, or an absolute path")
  _check_column(layout["text_a_col"], "text_a_col", at, optional=False)
  for field in ("text_b_col", "label_col"):
    _check_column(layout.get(field), field, at, optional=True)
  has_header = layout.get("has_header", True)
  _require(isinstance(has_header, bool), at,
           f"has_header must be true or false, got {has_header!r}")
  # Columns by number and no label: nothing in the file tells a header row
  # from data (with a label, the reader refuses a first row whose label
  # column holds a label), so the default would drop a test file's first
  # example, and every later id would name the wrong row.
  columns = [layout.get(f) for f in ("text_a_col", "text_b_col")]
  _require("has_header" in layout or layout.get("label_col") is not None
           or any(isinstance(c, str) for c in columns), at,
           "columns are given by number and there is no label_col, so "
           "nothing tells a header row from data: declare \"has_header\": "
           "true or false")
  if not has_header:
    named = [f for f in ("text_a_col", "text_b_col", "label_col")
             if isinstance(layout.get(f), str)]
    _require(not named, at, f"{', '.join(named)} name header columns, but "
             "has_header is false: use column numbers")
  delimiter = layout.get("delimiter", "\t")
  _require(isinstance(delimiter, str) and len(delimiter) == 1
           and delimiter not in "\r\n", at,
           f"delimiter must be one character (not a line break), got "
           f"{delimiter!r}")
  quotechar = layout.get("quotechar")
  _require(quotechar is None or (
      isinstance(quotechar, str) and len(quotechar) == 1
      and quotechar not in "\r\n" and quotechar != delimiter), at,
           "quotechar must be null (no quoting) or one character other than "
           f"the delimiter and line breaks, got {quotechar!r}")


def _check_labels(d: Dict, kind: str, where: str):
  labels = d.get("label_list", [])
  _require(isinstance(labels, (list, tuple)) and all(
      isinstance(x, str) for x in labels), where,
           f"label_list must be a list of strings, got {labels!r}")
  _require(len(set(labels)) == len(labels), where,
           f"label_list names a label twice: {labels!r}")
  for label in labels:
    _require(label != "" and label == label.strip(), where,
             f"label {label!r} is empty or has surrounding spaces (labels "
             "in the files are compared without them)")
  if kind == CLASSIFICATION:
    _require(len(labels) >= 2, where, "a classification task needs a "
             "label_list with at least two labels")
  if "label_range" in d:
    lr = d["label_range"]
    _require(isinstance(lr, (list, tuple)) and len(lr) == 2 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool)
        and math.isfinite(x) for x in lr) and lr[0] < lr[1] and lr[1] != 0,
             where, "label_range must be [min, max] with finite numbers, "
             f"min < max and max != 0 (scores are scaled by (y - min) / "
             f"max), got {lr!r}")


def _check_metric_name(name, field: str, kind: str, labels, where: str):
  known = METRICS[kind]
  _require(isinstance(name, str) and name in known, f"{where}: {field}",
           f"a {kind} task's metrics are {', '.join(known)}; got {name!r}")
  _require(name != "f1" or len(labels) == 2, f"{where}: {field}",
           f"f1 is binary F1 and this task has {len(labels)} labels: use "
           "macro_f1 (or mcc, accuracy)")


def _check_metrics(d: Dict, kind: str, where: str):
  """(headline metric, reported metrics, positive label) of a declaration:
  every name one bam_tf computes for the task's kind and label count."""
  labels = list(d.get("label_list", []))
  metric = d.get("metric", "spearman" if kind == REGRESSION else "accuracy")
  _check_metric_name(metric, "metric", kind, labels, where)
  metrics = d.get("metrics", [])
  _require(isinstance(metrics, list), f"{where}: metrics",
           f"must be a list of metric names, got {metrics!r}")
  for i, name in enumerate(metrics):
    _check_metric_name(name, f"metrics[{i}]", kind, labels, where)
  _require(len(set(metrics)) == len(metrics), f"{where}: metrics",
           f"names a metric twice: {metrics!r}")
  positive = d.get("positive_label")
  if positive is not None:
    _require(kind == CLASSIFICATION and len(labels) == 2,
             f"{where}: positive_label",
             "only a binary classification task has a positive label")
    _require(positive in labels, f"{where}: positive_label",
             f"{positive!r} is not one of label_list {labels!r}")
  return metric, tuple(metrics), positive


def custom_task_from_dict(d: Dict, where: str) -> TaskSpec:
  """Builds a TaskSpec from a user declaration, e.g.

  {"name": "reviews", "dir_name": "Reviews", "kind": "classification",
   "label_list": ["neg", "pos"],
   "splits": {"train": {"file": "train.csv", "text_a_col": "review",
                        "label_col": "stars", "delimiter": ","},
              "dev":   {"file": "dev.csv", "text_a_col": "review",
                        "label_col": "stars", "delimiter": ","}}}

  Columns are header names or 0-based positions. A split with "quotechar"
  (e.g. "\"") is read as RFC 4180 CSV; without, as the original reads GLUE
  (quotes are text). The name is a file name:
  letters, digits, '_', '.', '-', not starting with '.'. dir_name (default:
  the name) and each file are relative to --data_dir and may not leave it
  ('..'), unless given as absolute paths. The delimiter is one character.
  """
  _require(isinstance(d, dict), where,
           f"a task declaration is a JSON object, got {d!r}")
  unknown = set(d) - _TASK_FIELDS
  if unknown:
    raise TaskError(f"{where}: unknown task field(s) {sorted(unknown)}; "
                    f"expected some of {sorted(_TASK_FIELDS)}")
  for key in ("name", "kind", "splits"):
    if key not in d:
      raise TaskError(f"{where}: task declaration needs '{key}'")
  name = d["name"]
  _require(isinstance(name, str) and bool(_SAFE_NAME.match(name)), where,
           f"task name {name!r} must be a file name: up to 100 letters, "
           "digits, '_', '.' or '-', not starting with '.'")
  _require(name.lower() not in _RESERVED_NAMES, where,
           f"task name {name!r} is reserved (--task_names=all)")
  dir_name = d.get("dir_name", name)
  _require(isinstance(dir_name, str), where,
           f"dir_name must be a folder name, got {dir_name!r}")
  _require(not _leaves_folder(dir_name), where,
           f"dir_name {dir_name!r} leaves --data_dir ('..'); give a folder "
           "inside it, or an absolute path")
  kind = d["kind"]
  if kind not in (CLASSIFICATION, REGRESSION):
    raise TaskError(f"{where}: kind must be '{CLASSIFICATION}' or "
                    f"'{REGRESSION}', got {kind!r}")
  _check_labels(d, kind, where)
  _require(isinstance(d["splits"], dict), where,
           "splits must be an object: {\"train\": {...}, \"dev\": {...}}")
  splits = {}
  for split, layout in d["splits"].items():
    _check_split(split, layout, where)
    splits[split] = SplitLayout(**layout)
  if "train" not in splits or "dev" not in splits:
    raise TaskError(f"{where}: a task needs 'train' and 'dev' splits")
  metric, metrics, positive = _check_metrics(d, kind, where)
  for flag in ("double_unordered", "in_average"):
    _require(isinstance(d.get(flag, False), bool), where,
             f"{flag} must be true or false, got {d.get(flag)!r}")
  return TaskSpec(
      name=name, dir_name=dir_name, kind=kind,
      splits=splits, label_list=tuple(d.get("label_list", ())),
      label_range=tuple(d.get("label_range", (0.0, 1.0))),
      double_unordered=d.get("double_unordered", False), metric=metric,
      metrics=metrics, positive_label=positive,
      glue_name=name, in_average=d.get("in_average", True))


def is_inline(declaration: str) -> bool:
  """Whether --custom_tasks is inline JSON rather than a file's path."""
  return declaration.lstrip().startswith(("{", "["))


def _read_declaration(declaration: str):
  """(where, text) of --custom_tasks: a file's path and contents, or the
  flag's inline JSON."""
  if is_inline(declaration):
    return "--custom_tasks", declaration
  if files.isfile(declaration):
    try:
      return declaration, files.read_text(declaration)
    except UnicodeDecodeError as e:
      raise TaskError(f"--custom_tasks: {declaration} is not UTF-8 text "
                      f"({e.reason})") from None
  if files.isdir(declaration):
    raise TaskError(f"--custom_tasks: {declaration} is a folder, not a JSON "
                    "file")
  raise TaskError(f"--custom_tasks: file {declaration} not found (give a "
                  "JSON file, or inline JSON starting with '{' or '[')")


def load_custom_tasks(declaration: str) -> Dict[str, TaskSpec]:
  """Parses --custom_tasks: a JSON file path or inline JSON (list or dict)."""
  if not declaration:
    return {}
  where, text = _read_declaration(declaration)
  try:
    parsed = json.loads(text)
  except json.JSONDecodeError as e:
    at = f"{where}:{e.lineno}" if where != "--custom_tasks" else where
    raise TaskError(f"{at}: not valid JSON ({e.msg}, line {e.lineno} column "
                    f"{e.colno}); expected a task declaration object or a "
                    "list of them") from None
  items = parsed if isinstance(parsed, list) else [parsed]
  tasks = {}
  for i, item in enumerate(items):
    spec = custom_task_from_dict(item, f"{where} (task {i})")
    # Case-insensitive, as --task_names resolves GLUE names: a user task
    # "RTE" would otherwise take over the GLUE spelling of rte.
    if canonical_name(spec.name) in glue.GLUE_TASKS:
      raise TaskError(f"{where}: custom task name {spec.name!r} clashes with "
                      f"the GLUE task {canonical_name(spec.name)!r} (task "
                      "names are matched without case)")
    if spec.name in tasks:
      raise TaskError(f"{where}: custom task {spec.name!r} is declared twice")
    tasks[spec.name] = spec
  return tasks


def task_declarations(tasks) -> Dict[str, Dict]:
  """The user tasks' declarations (--custom_tasks), as a run records them:
  config.json names only the file, which may change after training. Where
  the files lie (folder, file names) may change: data moves. GLUE tasks are
  code, not recorded."""
  declarations = {}
  for t in tasks:
    if t.name in glue.GLUE_TASKS:
      continue
    d = json.loads(json.dumps(t.get_config()))
    del d["dir_name"]
    for layout in d["splits"].values():
      del layout["file"]
    declarations[t.name] = d
  return declarations


def _set_fields(d: Dict) -> Dict:
  """A declaration without its null fields: a field added to SplitLayout
  later (null by default) is not a change of a run recorded before it."""
  return {k: _set_fields(v) if isinstance(v, dict) else v
          for k, v in d.items() if v is not None}


def declaration_change(recorded: Dict, now: Dict) -> str:
  """The first field a user task's declaration changed ('' if none)."""
  for name, decl in sorted(now.items()):
    was = recorded.get(name)
    if was is None:
      continue
    was, decl = _set_fields(was), _set_fields(decl)
    if was == decl:
      continue
    key = next(k for k in sorted(set(was) | set(decl))
               if was.get(k) != decl.get(k))
    return (f"task {name}'s {key} is {decl.get(key)!r} now, but was "
            f"{was.get(key)!r}")
  return ""


def recorded_task(declaration: Dict) -> TaskSpec:
  """A task as a run recorded it (`task_declarations`), to score that run's
  predictions again: labels, metrics and splits, but no files to read (where
  they lay is not recorded)."""
  d = json.loads(json.dumps(declaration))
  for layout in d["splits"].values():
    layout["file"] = ""
  return TaskSpec.from_config(dict(d, dir_name=d["name"]))


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
