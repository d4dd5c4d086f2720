"""How long the report's significance tests take at Table 1's sizes.

  python benchmarks/report_statistics.py [--n_resamples=10000] [--trials=5]

Synthetic predictions with the dev-set sizes of the small Table 1's tasks
(CoLA 1,043, MRPC 408, STS-B 1,500, RTE 277 examples), timed for each test
the report runs per comparison: the paired bootstrap of two median trials,
its task-stratified Avg, and the two-level bootstrap over --trials trials a
side (per task and Avg). Each time is the median of --repeats runs. Prints
a table; writes JSON to --output (default:
benchmarks/results/report_statistics.json). numpy/scipy only, no
TensorFlow: what a report costs on any machine.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bam_tf.common import files  # noqa: E402
from bam_tf.tasks.glue import GLUE_TASKS  # noqa: E402
from bam_tf_experiments import statistics as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_SIZES = {"cola": 1043, "mrpc": 408, "sts": 1500, "rte": 277}


def synthetic_trials(task: str, n: int, trials: int, rng):
  """(gold, A's predictions [trials, n], B's [trials, n]) of about the
  scores these tasks get here (70-85% right; STS-B Pearson ~0.85)."""
  if GLUE_TASKS[task].is_regression:
    gold = np.round(rng.uniform(0, 5, n), 2)
    noisy = lambda: gold + rng.normal(0, 0.9, n)
  else:
    gold = rng.integers(0, 2, n)
    noisy = lambda: np.where(rng.random(n) < 0.8, gold, 1 - gold)
  return (gold, np.stack([noisy() for _ in range(trials)]),
          np.stack([noisy() for _ in range(trials)]))


def median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def measure(n_resamples: int, trials: int, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  data = {t: synthetic_trials(t, n, trials, rng)
          for t, n in DEV_SIZES.items()}
  out = {}
  for task, (gold, a, b) in data.items():
    spec = GLUE_TASKS[task]
    out[f"bootstrap_{task}"] = median_seconds(
        lambda: st.paired_bootstrap_test(spec, gold, a[0], b[0],
                                         n_resamples), repeats)
    out[f"hierarchical_{task}"] = median_seconds(
        lambda: st.hierarchical_bootstrap_test([(spec, gold, a, b)],
                                               n_resamples), repeats)
  out["bootstrap_avg"] = median_seconds(
      lambda: st.stratified_bootstrap_average_test(
          [(GLUE_TASKS[t], g, a[0], b[0]) for t, (g, a, b) in data.items()],
          n_resamples), repeats)
  out["hierarchical_avg"] = median_seconds(
      lambda: st.hierarchical_bootstrap_test(
          [(GLUE_TASKS[t], g, a, b) for t, (g, a, b) in data.items()],
          n_resamples), repeats)
  # The small Table 1 with --test=all: 2 baselines x 5 columns per test.
  per_baseline = {test: sum(v for k, v in out.items()
                            if k.startswith(test + "_"))
                  for test in ("bootstrap", "hierarchical")}
  out["table1_bootstrap_s"] = 2 * per_baseline["bootstrap"]
  out["table1_hierarchical_s"] = 2 * per_baseline["hierarchical"]
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python benchmarks/report_statistics.py",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--n_resamples", type=int, default=st.DEFAULT_RESAMPLES)
  p.add_argument("--trials", type=int, default=5,
                 help="trials a side of the two-level bootstrap")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--output", default=os.path.join(
      REPO, "benchmarks", "results", "report_statistics.json"))
  args = p.parse_args(argv)
  for flag in ("n_resamples", "trials", "repeats"):
    if getattr(args, flag) < 1:
      print(f"error: --{flag} must be >= 1", file=sys.stderr)
      return 2
  seconds = measure(args.n_resamples, args.trials, args.repeats)
  print(f"report significance tests, {args.n_resamples:,} resamples, "
        f"{args.trials} trials a side (median of {args.repeats}, seconds):")
  for k, v in seconds.items():
    print(f"  {k:28s} {v:8.2f}")
  report = {"command": " ".join(sys.argv), "platform": platform.platform(),
            "cpus": os.cpu_count(), "numpy": np.__version__,
            "n_resamples": args.n_resamples, "trials": args.trials,
            "repeats": args.repeats, "dev_sizes": DEV_SIZES,
            "seconds": seconds}
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  files.write_text_atomic(args.output,
                          json.dumps(report, indent=2, sort_keys=True))
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
