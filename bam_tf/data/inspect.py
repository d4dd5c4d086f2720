"""--mode=inspect_data: what the data looks like before hours of training.

Per task and split: rows found vs the official GLUE count, label
distribution, token-length percentiles and truncation rate at
max_seq_length. Malformed files are reported with file and line, and make
the command fail; missing files are listed with the official count.
"""

import os
from typing import Dict, List

import numpy as np

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.tasks import sources
from bam_tf.tasks.task import TaskSpec

_TOKENIZE_BATCH = 1024


def _token_lengths(tokenizer, examples):
  lengths, truncated = [], []
  for i in range(0, len(examples), _TOKENIZE_BATCH):
    chunk = examples[i:i + _TOKENIZE_BATCH]
    text_a = [e.text_a for e in chunk]
    text_b = None
    if chunk[0].text_b is not None:
      text_b = [e.text_b for e in chunk]
    out = tokenizer.tokenize_unpadded(text_a, text_b)
    lengths.append(out["num_tokens"].numpy())
    truncated.append(out["truncated"].numpy())
  return np.concatenate(lengths), np.concatenate(truncated)


def _label_summary(task: TaskSpec, examples) -> str:
  if task.is_regression:
    v = np.array([e.label for e in examples], dtype=np.float64)
    return f"mean {v.mean():.2f} sd {v.std():.2f} [{v.min():g}, {v.max():g}]"
  counts = {label: 0 for label in task.label_list}
  for e in examples:
    counts[e.label] += 1
  n = max(len(examples), 1)
  return " ".join(f"{k}:{100.0 * c / n:.1f}%" for k, c in counts.items())


def inspect_split(task: TaskSpec, source, split: str, tokenizer) -> Dict:
  """One split's row; `source` a bam_tf.tasks.sources source."""
  row = {"task": task.name, "split": split,
         "official": task.official_counts.get(split)}
  try:
    path = source.check_split(task, split)
  except BamError as e:
    row.update(status="missing", error=str(e))
    return row
  try:
    examples = source.read(task, split, add_swapped=False)
  except BamError as e:
    row.update(status="malformed", error=str(e), file=path)
    return row
  lengths, truncated = _token_lengths(tokenizer, examples)
  labelled = task.splits[split].label_col is not None
  row.update(
      status="ok", file=path, count=len(examples),
      labels=_label_summary(task, examples) if labelled else "(unlabelled)",
      length_p50=float(np.percentile(lengths, 50)),
      length_p90=float(np.percentile(lengths, 90)),
      length_p99=float(np.percentile(lengths, 99)),
      length_max=int(lengths.max()),
      truncated_pct=100.0 * float(truncated.mean()))
  if row["official"] is not None and row["count"] != row["official"]:
    row["status"] = "count differs from official"
  return row


def format_table(rows: List[Dict], max_seq_length: int) -> str:
  header = ["task", "split", "rows", "official", "status", "tokens p50/p90/"
            "p99/max", f"trunc@{max_seq_length}", "labels"]
  table = []
  for r in rows:
    if r["status"] in ("missing", "malformed"):
      table.append([r["task"], r["split"], "-", str(r["official"] or "-"),
                    r["status"], "-", "-", "-"])
      continue
    table.append([
        r["task"], r["split"], str(r["count"]), str(r["official"] or "-"),
        r["status"], f"{r['length_p50']:.0f}/{r['length_p90']:.0f}/"
        f"{r['length_p99']:.0f}/{r['length_max']}",
        f"{r['truncated_pct']:.1f}%", r["labels"]])
  widths = [max(len(x[i]) for x in [header] + table) for i in range(len(header))]
  fmt = lambda x: "  ".join(c.ljust(w) for c, w in zip(x, widths))
  lines = [fmt(header), fmt(["-" * w for w in widths])]
  lines += [fmt(x) for x in table]
  return "\n".join(lines)


REPORT_JSON = "data_report.json"


def inspect(config, tokenizer) -> int:
  """Prints the table, writes it to model_dir if set; returns exit code."""
  rows = []
  source = sources.for_run(config)
  for task in config.tasks:
    for split in task.splits:
      rows.append(inspect_split(task, source, split, tokenizer))
  text = format_table(rows, config.max_seq_length)
  errors = [r for r in rows if r["status"] == "malformed"]
  missing = [r for r in rows if r["status"] == "missing"]
  print(text)
  for message in dict.fromkeys(r["error"] for r in missing):
    print(f"missing: {message}")
  for r in errors:
    print(f"ERROR: {r['error']}")
  if config.model_dir:
    files.write_text_atomic(os.path.join(config.model_dir, "data_report.txt"),
                            text + "\n")
    files.write_json_atomic(os.path.join(config.model_dir, REPORT_JSON),
                            rows)
  return 1 if errors else 0
