"""PNG plots of a report: score spread over trials, and training curves.

Matplotlib with the Agg backend (no display). TensorBoard event files are
read with a small record reader over tensorboard's protobufs, so plotting
local runs never imports TensorFlow (seconds, not tens of seconds); runs in
a gs:// bucket are read through tf.io.gfile (bam_tf.common.files).
"""

import io
import os
import struct
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bam_tf.common import files

CURVE_TAGS = ("loss", "learning_rate", "lambda")


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=True)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path: str):
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
  files.write_bytes_atomic(path, buf.getvalue())


def score_distributions(scores: Dict[str, Dict[str, Sequence[float]]],
                        columns: Sequence[str], path: str,
                        titles: Optional[Dict[str, str]] = None):
  """One panel per column (Avg, tasks): a box per method with its trial
  scores drawn on top (trials are few, so every point is shown). titles:
  a panel title per column (default: the column key)."""
  plt = _pyplot()
  columns = [c for c in columns
             if any(c in by and len(by[c]) for by in scores.values())]
  methods = list(scores)
  ncols = min(3, max(1, len(columns)))
  nrows = max(1, -(-len(columns) // ncols))
  fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                           figsize=(4.2 * ncols, 3.4 * nrows))
  rng = np.random.default_rng(0)
  for ax, col in zip(axes.flat, columns):
    data = [list(scores[m].get(col, [])) for m in methods]
    present = [i for i, d in enumerate(data) if d]
    ax.boxplot([data[i] for i in present], positions=[i + 1 for i in present],
               widths=0.5, showfliers=False)
    for i in present:
      xs = i + 1 + rng.uniform(-0.12, 0.12, size=len(data[i]))
      ax.plot(xs, data[i], "o", ms=3, alpha=0.7)
    ax.set_xticks(range(1, len(methods) + 1))
    ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
    ax.set_title((titles or {}).get(col, col))
    ax.set_ylabel("dev score")
  for ax in list(axes.flat)[len(columns):]:
    ax.axis("off")
  fig.suptitle("Dev scores over trials")
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


# --------------------------------------------------------- event files

def _records(path: str):
  """TFRecord framing: uint64 length, uint32 crc, data, uint32 crc. CRCs
  are not checked; a truncated tail (a run still writing) ends the file."""
  data = files.read_bytes(path)
  pos = 0
  while pos + 12 <= len(data):
    (length,) = struct.unpack("<Q", data[pos:pos + 8])
    end = pos + 12 + length
    if end + 4 > len(data):
      return
    yield data[pos + 12:end]
    pos = end + 4


def _scalar(value) -> Optional[float]:
  kind = value.WhichOneof("value")
  if kind == "simple_value":
    return float(value.simple_value)
  if kind != "tensor":
    return None
  t = value.tensor
  dtypes = {1: "<f4", 2: "<f8", 19: "<f2", 3: "<i4", 9: "<i8"}
  if t.dtype not in dtypes or t.tensor_shape.dim:
    return None
  if t.tensor_content:
    return float(np.frombuffer(t.tensor_content, dtype=dtypes[t.dtype])[0])
  for field in ("float_val", "double_val", "int_val", "int64_val",
                "half_val"):
    vals = getattr(t, field)
    if len(vals):
      return float(vals[0])
  return None


def read_scalars(event_dir: str) -> Dict[str, List[Tuple[int, float]]]:
  """{tag: [(step, value)] sorted by step} from every event file under
  event_dir (last write of a step wins)."""
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out: Dict[str, Dict[int, float]] = {}
  paths = [p for p in files.walk_files(event_dir)
           if "tfevents" in os.path.basename(p)]
  for path in paths:
    for rec in _records(path):
      try:
        ev = event_pb2.Event.FromString(rec)
      except Exception:  # pylint: disable=broad-except
        continue  # a damaged record: skip it, keep the rest
      for v in ev.summary.value:
        x = _scalar(v)
        if x is not None:
          out.setdefault(v.tag, {})[int(ev.step)] = x
  return {tag: sorted(d.items()) for tag, d in out.items()}


def _curve_panels(tags: Sequence[str]) -> List[str]:
  """One panel per curve (total loss, each task's loss, lr, lambda), in
  that order: a panel per task keeps trials comparable at a glance."""
  def is_family(tag, name):
    return tag == name or tag.startswith(name + "/")
  return [tag for name in CURVE_TAGS for tag in tags if is_family(tag, name)]


def training_curves(run_dir: str, path: str, title: str = "",
                    trials: Optional[Sequence[int]] = None) -> Optional[str]:
  """Loss (total and per task), learning rate and lambda over steps: one
  panel per curve, one line (colour) per trial. trials: only these trial
  numbers (a report passes the finished ones, so a trial still training is
  not drawn beside them).
  Returns None when written, else a note saying why not."""
  trial_dirs = [files.join(run_dir, name, "tensorboard")
                for name in files.listdir(run_dir)
                if name.startswith("trial_")
                and files.isdir(files.join(run_dir, name, "tensorboard"))]
  if trials is not None:
    wanted = {f"trial_{int(t)}" for t in trials}
    trial_dirs = [d for d in trial_dirs
                  if os.path.basename(os.path.dirname(d)) in wanted]
  curves = {}
  for d in trial_dirs:
    scalars = read_scalars(d)
    if scalars:
      curves[os.path.basename(os.path.dirname(d))] = scalars
  if not curves:
    return (f"no training curves for {run_dir}: no TensorBoard event files "
            "under trial_*/tensorboard"
            + (" of its finished trials" if trials is not None else ""))
  tags = sorted({tag for sc in curves.values() for tag in sc})
  panels = _curve_panels(tags)
  if not panels:
    return (f"no training curves for {run_dir}: its event files hold none "
            f"of {', '.join(CURVE_TAGS)}")
  plt = _pyplot()
  ncols = min(4, len(panels))
  nrows = -(-len(panels) // ncols)
  fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                           figsize=(4 * ncols, 3.0 * nrows))
  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  colour = {trial: cycle[i % len(cycle)]  # the same in every panel
            for i, trial in enumerate(sorted(curves))}
  for ax, tag in zip(axes.flat, panels):
    for trial, scalars in sorted(curves.items()):
      if tag in scalars:
        steps, vals = zip(*scalars[tag])
        ax.plot(steps, vals, lw=1, color=colour[trial], label=trial)
    ax.set_title(tag)
    ax.set_xlabel("step")
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  if len(curves) > 1:
    axes.flat[0].legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return None
