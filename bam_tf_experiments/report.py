"""The paper's Table 1 from finished runs, with significance marks.

    python -m bam_tf_experiments.report \\
      --runs='Single:runs/small/single_rte+runs/small/single_cola,Multi:runs/small/multi,Single->Multi:runs/small/single_to_multi' \\
      --baselines=Single,Multi --out_dir=reports/small [--test=bootstrap|mannwhitney|hierarchical|both|all]

(Quote --runs: an unquoted '->' is a shell redirection.)

A method is one or more run dirs (`+`-joined); Single is one run per task,
so its dirs are combined task by task. Each cell is the median over trials
of the headline dev score; a mark says the method improves over that
baseline with Holm-Bonferroni-corrected p < alpha, the correction taken over
every comparison the table makes. Writes table.md, table.csv,
comparisons.csv, compute.csv (what each method cost), report.json and PNG
plots into --out_dir. No TensorFlow.
"""

import argparse
import csv
import io
import math
import os
import re
import statistics as pystats
import sys
import zipfile
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bam_tf.common import errors
from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.evaluation import metrics as metrics_lib
from bam_tf.outputs import results as results_lib
from bam_tf.tasks import glue
from bam_tf.tasks import registry
from bam_tf.tasks.task import TaskSpec
from bam_tf_experiments import compute
from bam_tf_experiments import statistics as st

GLUE_ORDER = ("cola", "sst", "mrpc", "sts", "qqp", "mnli", "qnli", "rte")
AVG = "Avg"
MARKS = ("†", "‡", "§", "¶", "#")
TESTS = ("bootstrap", "mannwhitney", "hierarchical")
# --test's names for several tests at once.
TEST_GROUPS = {"both": ("bootstrap", "mannwhitney"), "all": TESTS}
TEST_NAMES = {
    "bootstrap": "paired bootstrap over dev examples (median-scoring trial "
                 "of each method; Avg: stratified by task)",
    "mannwhitney": "one-sided Mann-Whitney U over trial scores",
    "hierarchical": "two-level bootstrap over trials and dev examples (mean "
                    "over trials; Avg: stratified by task, trials drawn "
                    "once for all tasks)",
}
CORRECTION = "Holm-Bonferroni (step-down) over all {m} comparisons of this " \
             "test; significant where corrected p < {alpha}"


class ReportError(BamError):
  """A run dir, results.json or flag the report cannot use."""


class MissingPredictions(ReportError):
  """A trial's per-example dev predictions are gone (a run dir restored from
  its committed records alone, or a run older than them): the bootstrap
  comparisons that need them are left out and named in the notes."""

  def __init__(self, path: str):
    super().__init__(f"{path} not found")
    self.path = path


# ------------------------------------------------------------------ inputs

def parse_runs(specs, flag: str = "--runs",
               item: str = "DIR") -> Dict[str, List[str]]:
  """--runs 'Name:dir[+dir...],Name2:dir' (may repeat) -> {name: [dirs]}.

  Order is kept (it is the table's row order). `flag` and `item` name what
  is parsed in errors (bam_tf_experiments.reproduce lists flagfiles the same
  way)."""
  if isinstance(specs, str):
    specs = [specs]
  form = f"NAME:{item}[+{item}...]"
  methods: Dict[str, List[str]] = {}
  for spec in specs or []:
    for entry in (e.strip() for e in spec.split(",")):
      if not entry:
        continue
      name, sep, dirs = entry.partition(":")
      name = name.strip()
      if not sep or not name or not dirs.strip():
        raise ReportError(f"{flag}: entry {entry!r} is not {form}")
      if name in methods:
        raise ReportError(f"{flag}: method {name!r} given twice")
      methods[name] = [d.strip() for d in dirs.split("+") if d.strip()]
  if not methods:
    raise ReportError(f"{flag}: no methods given ({form},...)")
  return methods


def _task_spec(name: str, config: Dict, where: str,
               recorded: Optional[Dict]) -> TaskSpec:
  """A task as the run scored it: GLUE's, or a user task as the run recorded
  its declaration when it started training (the --custom_tasks file may
  have changed or moved since); the file itself only for runs from before
  runs recorded them."""
  if name in glue.GLUE_TASKS:
    return glue.GLUE_TASKS[name]
  if recorded and name in recorded:
    return registry.recorded_task(recorded[name])
  custom = config.get("custom_tasks") or ""
  if custom:
    try:
      specs = registry.load_custom_tasks(custom)
    except BamError as e:
      raise ReportError(f"{where}: cannot read its custom_tasks ({e})") from e
    if name in specs:
      return specs[name]
  raise ReportError(f"{where}: unknown task {name!r} (not GLUE and not in "
                    "the run's custom_tasks)")


class RunDir:
  """One run dir's results.json: per-task, per-trial headline scores."""

  def __init__(self, path: str, flag: str = "--runs",
               first_trials: Optional[int] = None):
    self.path = path
    self.results_path = results_path = os.path.join(
        path, results_lib.RESULTS_JSON)
    if not files.isdir(path):
      raise ReportError(f"{flag}: run dir {path!r} does not exist")
    if not files.exists(results_path):
      raise ReportError(f"{flag}: {results_path} not found (is {path!r} a "
                        "finished run's --model_dir?)")
    try:
      data = files.read_json(results_path)
    except (ValueError, OSError) as e:
      raise ReportError(f"{flag}: {results_path} is not readable JSON ({e})"
                        ) from e
    if (not isinstance(data, dict) or not isinstance(data.get("trials", []),
                                                     list)
        or not isinstance(data.get("config", {}), dict)):
      raise ReportError(f"{flag}: {results_path} is not a run's results "
                        "(expected an object with \"config\" and a "
                        "\"trials\" list)")
    self.config = data.get("config", {})
    trials = data.get("trials") or []
    if not trials:
      raise ReportError(f"{flag}: {results_path} has no finished trials")
    if first_trials is not None:
      trials = _first_trials(trials, first_trials, results_path)
    names = list(self.config.get("task_names") or [])
    if not names:  # older files: the tasks the trials scored
      names = sorted({t for tr in trials for t in tr.get("tasks", {})})
    fingerprint = results_lib.read_fingerprint(path) or {}
    self.tasks = {n: _task_spec(n, self.config, results_path,
                                fingerprint.get("tasks"))
                  for n in names}
    self.scores: Dict[str, Dict[int, float]] = {n: {} for n in names}
    self.trial_info = {int(tr["trial"]): {k: tr[k] for k in compute.COST_KEYS
                                          if k in tr} for tr in trials}
    # Each trial's training seed (None in records older than it).
    self.seeds = {int(tr["trial"]): tr.get("seed") for tr in trials}
    self._checked = set()  # (task, trial) whose predictions give the score
    for tr in trials:
      for n in names:
        if n not in tr.get("tasks", {}) or "score" not in tr["tasks"][n]:
          raise ReportError(f"{flag}: {results_path}: trial {tr.get('trial')}"
                            f" has no score for task {n!r}")
        self.scores[n][int(tr["trial"])] = float(tr["tasks"][n]["score"])
    self.dev_examples = self._dev_examples(
        names, trials, fingerprint.get("data", {}), flag)

  def _dev_examples(self, names, trials, data: Dict, flag: str
                    ) -> Dict[str, Tuple[Optional[int], Optional[str]]]:
    """{task: (dev examples scored, their examples_sha256 or None)}: what
    the scores are over, so that runs scored on other dev data (a --debug
    run's first 50 rows, an edited dev file) are never compared. `data`:
    the fingerprint's digests by task and split."""
    out = {}
    for n in names:
      counts = {tr["tasks"][n].get("num_examples") for tr in trials} - {None}
      if len(counts) > 1:
        raise ReportError(f"{flag}: {self.results_path}: task {n!r} was "
                          f"scored on {sorted(counts)} dev examples in "
                          "different trials")
      dev = data.get(n, {}).get(self.tasks[n].dev_split, {})
      out[n] = (counts.pop() if counts else None, dev.get("examples_sha256"))
    return out

  def predictions_path(self, task: str, trial: int) -> str:
    return os.path.join(self.path, f"trial_{trial}", "predictions",
                        f"{task}_{self.tasks[task].dev_split}.npz")

  def missing_predictions(self) -> Dict[int, List[str]]:
    """{trial: [missing dev prediction files]} over the finished trials."""
    missing = {}
    for trial in sorted(self.trial_info):
      paths = [self.predictions_path(n, trial) for n in self.tasks]
      paths = [p for p in paths if not files.exists(p)]
      if paths:
        missing[trial] = paths
    return missing

  def predictions(self, task: str, trial: int):
    """(eid, gold, prediction) of a trial's dev predictions, sorted by eid."""
    path = self.predictions_path(task, trial)
    if not files.exists(path):
      raise MissingPredictions(path)
    try:
      with np.load(io.BytesIO(files.read_bytes(path))) as z:
        arrays = {k: z[k] for k in ("eid", "gold", "prediction")
                  if k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError,
            OSError) as e:  # a truncated or damaged file
      raise ReportError(
          f"{path}: not a readable predictions file ({type(e).__name__}: "
          f"{e}); delete it and `python -m bam_tf_experiments.reproduce "
          "--retrain_missing_predictions` trains that trial again with its "
          "seed") from None
    missing = [k for k in ("eid", "gold", "prediction") if k not in arrays]
    if missing:
      raise ReportError(f"{path}: missing arrays {missing}")
    eid, gold, pred = arrays["eid"], arrays["gold"], arrays["prediction"]
    self._check_score(task, trial, path, gold, pred)
    order = np.argsort(eid, kind="stable")
    return eid[order], gold[order], pred[order]

  def _check_score(self, task: str, trial: int, path: str, gold, pred):
    """The file's predictions give the score results.json records for the
    trial: a file replaced since (another run's, a re-evaluation) would
    otherwise be tested in that trial's name without a word."""
    if (task, trial) in self._checked:
      return
    spec = self.tasks[task]
    score = metrics_lib.metric_value(spec, spec.metric, gold, pred)
    want = self.scores[task].get(trial)
    # results.json's score was computed from these very arrays.
    if want is None or not abs(score - want) <= 1e-6 * max(1.0, abs(want)):
      raise ReportError(
          f"{path}: its predictions score {score:.4f} ({spec.metric}), but "
          f"{self.results_path} records {want} for "
          f"trial {trial}: the file is not that trial's predictions")
    self._checked.add((task, trial))


def _first_trials(trials: List[Dict], n: int, where: str) -> List[Dict]:
  """Trials 0..n-1 of a results.json, all of them finished: a stage's
  table stays rebuildable from the records after later trials land."""
  kept = [tr for tr in trials if int(tr["trial"]) < n]
  missing = sorted(set(range(n)) - {int(tr["trial"]) for tr in kept})
  if missing:
    raise ReportError(f"--first_trials={n}: {where} has not finished "
                      f"trial(s) {missing} (0-based)")
  return kept


class Method:
  """A table row: one or more run dirs, each task taken from exactly one."""

  def __init__(self, name: str, dirs: Sequence[str], flag: str = "--runs",
               first_trials: Optional[int] = None):
    if not dirs:
      raise ReportError(f"{flag}: method {name!r} has no run dirs")
    self.name = name
    self.runs = [RunDir(d, flag, first_trials) for d in dirs]
    self.task_run: Dict[str, RunDir] = {}
    for run in self.runs:
      for task in run.tasks:
        if task in self.task_run:
          raise ReportError(
              f"{flag}: method {name!r} has task {task!r} in two run dirs "
              f"({self.task_run[task].path} and {run.path}); give one")
        self.task_run[task] = run

  def spec(self, task: str) -> TaskSpec:
    return self.task_run[task].tasks[task]

  def scores(self, task: str) -> Dict[int, float]:
    return self.task_run[task].scores[task]

  def common_trials(self, tasks: Sequence[str]) -> List[int]:
    """The trials every one of `tasks` has, in order."""
    return sorted(set.intersection(*(set(self.scores(t)) for t in tasks)))

  def trial_averages(self, tasks: Sequence[str]) -> Dict[int, float]:
    """Per-trial mean of `tasks`' scores, over trials every task has."""
    return {i: float(np.mean([self.scores(t)[i] for t in tasks]))
            for i in self.common_trials(tasks)}


def _ordered_tasks(names) -> List[str]:
  names = set(names)
  return ([t for t in GLUE_ORDER if t in names]
          + sorted(names - set(GLUE_ORDER)))


def _describe(values: Sequence[float]) -> Dict[str, float]:
  vs = [float(v) for v in values]
  return {"median": pystats.median(vs), "mean": pystats.fmean(vs),
          "std": pystats.pstdev(vs) if len(vs) > 1 else 0.0,
          "min": min(vs), "max": max(vs), "n": len(vs)}


def aligned_predictions(task: str, a: Method, b: Method, trial_a: int,
                        trial_b: int):
  """(gold, a's predictions, b's predictions) over the same dev examples."""
  gold, pa, pb = stacked_predictions(task, a, b, [trial_a], [trial_b])
  return gold, pa[0], pb[0]


def stacked_predictions(task: str, a: Method, b: Method,
                        trials_a: Sequence[int], trials_b: Sequence[int]):
  """(gold [n], a's predictions [len(trials_a), n], b's [len(trials_b), n])
  over the same dev examples, in eid order."""
  loaded = [(m, t, m.task_run[task].predictions(task, t))
            for m, trials in ((a, trials_a), (b, trials_b)) for t in trials]
  m0, t0, (eid0, gold0, _) = loaded[0]
  for m, t, (eid, gold, _) in loaded[1:]:
    if not np.array_equal(eid0, eid):
      raise ReportError(
          f"{task}: {m0.name} ({m0.task_run[task].path}, trial {t0}) and "
          f"{m.name} ({m.task_run[task].path}, trial {t}) predicted "
          "different dev examples; a paired test needs the same ones")
    if not np.allclose(np.asarray(gold0, np.float64),
                       np.asarray(gold, np.float64)):
      raise ReportError(f"{task}: {m0.name} (trial {t0}) and {m.name} "
                        f"(trial {t}) have different gold labels for the "
                        "same example ids")
  preds = [p for _, _, (_, _, p) in loaded]
  k = len(trials_a)
  return gold0, np.stack(preds[:k]), np.stack(preds[k:])


# ------------------------------------------------------------------ report

def build_report(methods: Dict[str, List[str]],
                 baselines: Sequence[str] = (),
                 out_dir: Optional[str] = None,
                 test: str = "bootstrap",
                 alpha: float = 0.05,
                 n_resamples: int = st.DEFAULT_RESAMPLES,
                 seed: int = st.DEFAULT_SEED,
                 bootstrap_pvalue: str = "nonpositive",
                 tasks: Optional[Sequence[str]] = None,
                 plots: bool = True,
                 tested: Optional[Sequence[str]] = None,
                 first_trials: Optional[int] = None) -> Dict:
  """Loads the runs, tests every method against every baseline and (with
  out_dir) writes table.md, table.csv, comparisons.csv, report.json, PNGs.

  methods: {row name: [run dirs]} in row order; baselines: row names, each
  gets a mark symbol (†, ‡, ...); test: "bootstrap", "mannwhitney",
  "hierarchical", "both" (the first two) or "all"; tested: the methods
  tested against the baselines (default: every other method), which sets
  the size of the Holm family; first_trials: only trials 0..n-1 of every
  run dir (default: all finished trials). Returns the report
  dict (what report.json holds, plus "markdown")."""
  check_test_levels(alpha, n_resamples)
  check_out_dir(out_dir, runs=[d for dirs in methods.values() for d in dirs])
  tests, baselines, marks = check_settings(methods, baselines, test,
                                           bootstrap_pvalue)
  tested = check_tested(methods, baselines, tested)
  rows = load_methods(methods, first_trials)
  columns = table_columns(rows, tasks)
  notes: List[str] = []
  trial_scores, stats_table, cells = score_table(rows, columns, notes)
  results, untested, missing = run_tests(
      tests, rows, baselines, marks, columns, trial_scores, alpha,
      n_resamples, seed, bootstrap_pvalue, tested)
  notes += untested_notes(untested, missing)
  report = assemble_report(
      rows, columns, trial_scores, stats_table, cells, results, notes,
      {"test": test, "alpha": alpha, "n_resamples": n_resamples,
       "seed": seed, "bootstrap_pvalue": bootstrap_pvalue,
       "baselines": baselines, "marks": marks, "tested": tested,
       "first_trials": first_trials})
  if out_dir and plots:
    report["plots"], plot_notes = _write_plots(report, rows, out_dir)
    report["notes"].extend(plot_notes)
  report["markdown"] = render_markdown(report)
  if out_dir:
    write_report(report, out_dir)
  return report


def check_settings(methods: Dict[str, List[str]], baselines: Sequence[str],
                   test: str, bootstrap_pvalue: str):
  """Checks the flags before any run is read.

  Returns (the tests to run, the baselines as a list, {baseline: mark})."""
  tests = list(TEST_GROUPS.get(test, [test]))
  if any(t not in TESTS for t in tests):
    raise ReportError(f"--test must be one of "
                      f"{', '.join(TESTS + tuple(TEST_GROUPS))}, got {test!r}")
  if bootstrap_pvalue not in st.PVALUE_METHODS:
    raise ReportError(f"--bootstrap_pvalue must be one of "
                      f"{st.PVALUE_METHODS}, got {bootstrap_pvalue!r}")
  baselines = list(baselines or [])
  for i, b in enumerate(baselines):
    if b in baselines[:i]:  # its comparisons would count twice in Holm
      raise ReportError(f"--baselines: {b!r} given twice")
    if b not in methods:
      raise ReportError(f"--baselines: {b!r} is not a method of --runs "
                        f"({', '.join(methods)})")
  if len(baselines) > len(MARKS):
    raise ReportError(f"--baselines: at most {len(MARKS)} baselines")
  return tests, baselines, dict(zip(baselines, MARKS))


def check_out_dir(out_dir: Optional[str], flag: str = "--out_dir",
                  runs: Sequence[str] = ()):
  """The output folder can be written and is not a run's (one of `runs`,
  inside one, or any folder holding a run's config.json: the report's
  files would mix with the run's records); checked before any run is
  read."""
  problem = files.folder_problem(out_dir) if out_dir else ""
  if problem:
    raise ReportError(f"{flag}: {problem}")
  if not out_dir:
    return
  where = files.resolve(out_dir)
  for run in runs:
    folder = files.resolve(run)
    if where == folder or files.lies_inside(where, folder):
      raise ReportError(
          f"{flag}: {out_dir} is {'' if where == folder else 'inside '}the "
          f"run folder {run} (of --runs); the report's files would mix with "
          "the run's: give a folder of its own")
  if files.isfile(os.path.join(out_dir, "config.json")):
    raise ReportError(
        f"{flag}: {out_dir} is a run's folder (it holds config.json); the "
        "report's files would mix with the run's: give a folder of its own")


def check_tested(methods: Dict[str, List[str]], baselines: Sequence[str],
                 tested: Optional[Sequence[str]]) -> List[str]:
  """The methods tested against the baselines: `tested`, or by default
  every method (each is compared with every baseline but itself)."""
  if not tested:
    return list(methods)
  if not baselines:
    raise ReportError("--tested: names the methods tested against the "
                      "baselines; give --baselines too")
  for name in tested:
    if name not in methods:
      raise ReportError(f"--tested: {name!r} is not a method of --runs "
                        f"({', '.join(methods)})")
  if baselines and set(tested) <= set(baselines) and len(baselines) == 1:
    raise ReportError(f"--tested: {', '.join(tested)} is the only baseline; "
                      "a method is not tested against itself")
  return list(tested)


def check_test_levels(alpha: float, n_resamples: int):
  """--alpha and --n_resamples, before any run is read (report and
  paired_trials): --alpha=5 meant as 5% would mark every cell."""
  if not 0 < alpha < 1:
    raise ReportError(f"--alpha must be a level between 0 and 1 (e.g. "
                      f"0.05), got {alpha}")
  if n_resamples < 1:
    raise ReportError(f"--n_resamples must be at least 1, got {n_resamples}")


def load_methods(methods: Dict[str, List[str]],
                 first_trials: Optional[int] = None) -> Dict[str, Method]:
  """{row name: Method}: every run dir's results.json, in row order;
  first_trials: only trials 0..n-1 of each (a stage's snapshot)."""
  if first_trials is not None and first_trials < 1:
    raise ReportError(f"--first_trials must be at least 1, got "
                      f"{first_trials}")
  rows = {name: Method(name, dirs, first_trials=first_trials)
          for name, dirs in methods.items()}
  check_same_dev_examples(rows)
  return rows


def check_same_dev_examples(rows: Dict[str, Method]):
  """Every row scored each task on the same dev examples (their count, and
  their digest where both runs recorded one): a score on other data is not
  comparable, and the bootstrap's example ids would not say so when a
  Mann-Whitney test reads scores only."""
  for task in _ordered_tasks({t for m in rows.values() for t in m.task_run}):
    seen = None
    for m in rows.values():
      if task not in m.task_run:
        continue
      run = m.task_run[task]
      count, sha = run.dev_examples[task]
      if seen is None:
        seen = (m, run, count, sha)
        continue
      m0, run0, count0, sha0 = seen
      if (count is not None and count0 is not None and count != count0) or (
          sha and sha0 and sha != sha0):
        raise ReportError(
            f"--runs: {task}'s dev examples differ between {m0.name} "
            f"({run0.path}: {count0} examples, examples_sha256 "
            f"{(sha0 or 'not recorded')[:12]}) and {m.name} ({run.path}: "
            f"{count} examples, examples_sha256 "
            f"{(sha or 'not recorded')[:12]}); their scores are not "
            "comparable")


def table_columns(rows: Dict[str, Method],
                  tasks: Optional[Sequence[str]]) -> List[str]:
  """The table's task columns in GLUE order: --tasks (every method must have
  them) or every task some method has."""
  if not tasks:
    return _ordered_tasks(t for m in rows.values() for t in m.task_run)
  tasks = [glue.ALIASES.get(t.strip().lower(), t.strip()) for t in tasks]
  for m in rows.values():
    missing = [t for t in tasks if t not in m.task_run]
    if missing:
      raise ReportError(
          f"--tasks: method {m.name!r} has no results for {missing} in "
          f"{[r.path + '/results.json' for r in m.runs]}")
  return _ordered_tasks(tasks)


def _avg_tasks(m: Method, columns: Sequence[str]) -> Optional[List[str]]:
  """The columns m's Avg is over (None: m lacks some column, or none
  counts)."""
  used = [t for t in columns if m.spec(t).in_average] if all(
      t in m.task_run for t in columns) else None
  return used or None


def score_table(rows: Dict[str, Method], columns: Sequence[str],
                notes: List[str]):
  """Per method and column (Avg included): trial scores, summary stats and
  the table's cell (the median; Avg: the mean of the task medians).

  Returns (trial_scores, stats, cells), each {method: {column: ...}}; a
  method without an Avg gets a note."""
  trial_scores: Dict[str, Dict[str, Dict[int, float]]] = {}
  stats_table: Dict[str, Dict[str, Dict]] = {}
  cells: Dict[str, Dict[str, Optional[float]]] = {}
  for m in rows.values():
    trial_scores[m.name], stats_table[m.name], cells[m.name] = {}, {}, {}
    for t in columns:
      if t in m.task_run:
        trial_scores[m.name][t] = m.scores(t)
        stats_table[m.name][t] = _describe(m.scores(t).values())
        cells[m.name][t] = stats_table[m.name][t]["median"]
    used = _avg_tasks(m, columns)
    if used:
      # As the paper: Avg = mean of the per-task medians (WNLI out).
      cells[m.name][AVG] = float(np.mean([cells[m.name][t] for t in used]))
      per_trial = m.trial_averages(used)
      if per_trial:
        trial_scores[m.name][AVG] = per_trial
        stats_table[m.name][AVG] = _describe(per_trial.values())
    else:
      cells[m.name][AVG] = None
      notes.append(f"{m.name}: no Avg (it lacks some of the table's tasks)")
  return trial_scores, stats_table, cells


def run_tests(tests: Sequence[str], rows: Dict[str, Method],
              baselines: Sequence[str], marks: Dict[str, str],
              columns: Sequence[str], trial_scores: Dict, alpha: float,
              n_resamples: int, seed: int, bootstrap_pvalue: str,
              tested: Sequence[str]):
  """Every test's comparisons, Holm-corrected over each test's family.

  Returns (results: {test: {description, correction, comparisons}},
  untested: {(method, baseline): [columns]} that lacked predictions, the
  missing prediction files)."""
  results: Dict[str, Dict] = {}
  untested: Dict[tuple, List[str]] = {}
  missing: set = set()
  for test_name in tests:
    comps = compare_all(test_name, rows, baselines, marks, columns,
                        trial_scores, n_resamples, seed, bootstrap_pvalue,
                        untested, missing, tested)
    if "mannwhitney" not in tests and missing and not comps:
      raise ReportError(
          f"{test_name} test needs per-example predictions: "
          f"{', '.join(sorted(missing))} not found (use --test=mannwhitney "
          "or --test=both for runs without them)")
    holm_correct(comps, alpha, p_floor(test_name, n_resamples))
    results[test_name] = {
        "description": TEST_NAMES[test_name],
        "correction": CORRECTION.format(m=len(comps), alpha=alpha),
        "comparisons": comps}
    if test_name == "mannwhitney":
      results[test_name]["power_note"] = mann_whitney_power_note(comps, alpha)
  return results, untested, missing


def compare_all(test_name: str, rows: Dict[str, Method],
                baselines: Sequence[str], marks: Dict[str, str],
                columns: Sequence[str], trial_scores: Dict,
                n_resamples: int, seed: int, bootstrap_pvalue: str,
                untested: Dict[tuple, List[str]], missing: set,
                tested: Sequence[str]) -> List[Dict]:
  """One test of every (baseline, tested method, column) both sides have.

  A comparison whose predictions are missing is left out and recorded in
  `untested` and `missing`."""
  comps = []
  columns_avg = [AVG] + list(columns)
  for b in baselines:
    base = rows[b]
    for m in rows.values():
      if m.name == b or m.name not in tested:
        continue
      for col in columns_avg:
        try:
          c = _compare(test_name, col, base, m, columns, trial_scores,
                       n_resamples, seed, bootstrap_pvalue)
        except MissingPredictions as e:
          untested.setdefault((test_name, m.name, b), []).append(col)
          missing.add(e.path)
          continue
        if c is not None:
          c.update({"baseline": b, "method": m.name, "column": col,
                    "test": test_name, "mark": marks[b]})
          comps.append(c)
  return comps


def mann_whitney_power_note(comps: List[Dict], alpha: float
                            ) -> Optional[str]:
  """Says so when no comparison can be marked whatever the scores: Holm
  multiplies the smallest p by the family's size, and with few trials even
  the strongest outcome (every trial above every other) is not small
  enough."""
  if not comps:
    return None
  floors = {(c["n_a"], c["n_b"]): st.mann_whitney_smallest_p(c["n_a"],
                                                             c["n_b"])
            for c in comps}
  best = min(floors.values())
  if best * len(comps) < alpha:
    return None
  sizes = ", ".join(f"{b} against {a} trials: {p:.3g}"
                    for (a, b), p in sorted(floors.items()))
  return (f"Mann-Whitney cannot mark anything in this table: its smallest "
          f"one-sided p ({sizes}) times the {len(comps)} comparisons of its "
          f"Holm family is {best * len(comps):.3g} >= {alpha} (more trials, "
          "or fewer comparisons with --tested, let it decide)")


def p_floor(test_name: str, n_resamples: int,
            sides: str = "one-sided") -> Optional[float]:
  """st.resampling_floor of a resampling test; None for Mann-Whitney,
  which does not resample (its p of 0 is exact)."""
  if test_name == "mannwhitney":
    return None
  return st.resampling_floor(n_resamples, sides)


def holm_correct(comps: List[Dict], alpha: float,
                 floor: Optional[float] = None):
  """Adds p_adjusted and significant (Holm-Bonferroni over comps). floor: a
  resampling test's st.resampling_floor; its p of 0 enters as that bound."""
  keyed = {i: max(c["p_value"], floor or 0.0) for i, c in enumerate(comps)}
  adjusted, reject = st.holm_bonferroni(keyed, alpha) if comps else ({}, {})
  for i, c in enumerate(comps):
    c["p_adjusted"] = adjusted[i]
    c["significant"] = bool(reject[i])


def untested_notes(untested: Dict[tuple, List[str]],
                   missing: set) -> List[str]:
  """The notes naming comparisons left out for missing predictions."""
  notes = []
  for (test_name, name, b), cols in untested.items():
    whose = ("a median-scoring trial's" if test_name == "bootstrap"
             else "a trial's")
    notes.append(f"{test_name}: {name} vs {b} not tested in "
                 f"{', '.join(cols)} ({whose} per-example predictions are "
                 "missing)")
  if missing:
    notes.append("missing predictions: " + ", ".join(sorted(missing)))
  return notes


def assemble_report(rows: Dict[str, Method], columns: Sequence[str],
                    trial_scores: Dict, stats_table: Dict, cells: Dict,
                    results: Dict, notes: List[str], settings: Dict) -> Dict:
  """The report dict (what report.json holds), the compute section's notes
  appended to `notes`; plots and markdown are added later."""
  return {
      "settings": dict(settings,
                       score="median over trials of the headline dev score "
                             "(x100); Avg = mean of the task medians"),
      "methods": {m.name: {"dirs": [r.path for r in m.runs],
                           "task_dirs": {t: r.path
                                         for t, r in m.task_run.items()}}
                  for m in rows.values()},
      "columns": [AVG] + list(columns),
      "cells": cells,
      "stats": stats_table,
      "trial_scores": {m: {c: {str(k): v for k, v in s.items()}
                           for c, s in by.items()}
                       for m, by in trial_scores.items()},
      "tests": results,
      "compute": compute.method_costs(
          {m.name: m.runs for m in rows.values()}, notes),
      "notes": notes,
      "plots": [],
  }


def _compare(test_name, col, base: Method, m: Method, columns, trial_scores,
             n_resamples, seed, pvalue) -> Optional[Dict]:
  """One test of "m improves over base" in column col (None: not testable)."""
  if col not in trial_scores[base.name] or col not in trial_scores[m.name]:
    return None
  if test_name == "mannwhitney":
    r = st.mann_whitney_test(list(trial_scores[base.name][col].values()),
                             list(trial_scores[m.name][col].values()))
    return r
  if test_name == "hierarchical":
    used = [col]
    if col == AVG:
      used = _avg_tasks(base, columns)
      if used != _avg_tasks(m, columns):
        return None
    # A trial's Avg is one model's (or one seed's) scores: the trials every
    # averaged task has, as in Method.trial_averages.
    trials_b, trials_m = base.common_trials(used), m.common_trials(used)
    per_task = [(base.spec(t),) + stacked_predictions(t, base, m, trials_b,
                                                      trials_m)
                for t in used]
    r = st.hierarchical_bootstrap_test(per_task, n_resamples, seed, pvalue)
    r["trials"] = [trials_b, trials_m]
    return r
  if col == AVG:
    used_b, used_m = _avg_tasks(base, columns), _avg_tasks(m, columns)
    if used_b != used_m:
      return None
    per_task, trials = [], {}
    for t in used_m:
      ta = st.median_trial(base.scores(t))
      tb = st.median_trial(m.scores(t))
      trials[t] = [ta, tb]
      per_task.append((base.spec(t),)
                      + aligned_predictions(t, base, m, ta, tb))
    r = st.stratified_bootstrap_average_test(per_task, n_resamples, seed,
                                             pvalue)
    r["trials"] = trials
    return r
  ta = st.median_trial(base.scores(col))
  tb = st.median_trial(m.scores(col))
  gold, pa, pb = aligned_predictions(col, base, m, ta, tb)
  r = st.paired_bootstrap_test(m.spec(col), gold, pa, pb, n_resamples,
                               st.resample_seed(seed, col), pvalue)
  r["trials"] = [ta, tb]
  return r


# ----------------------------------------------------------------- writing

def format_p(p: float, floor: Optional[float] = None) -> str:
  """floor: a resampling test's st.resampling_floor (its 0 reads "<floor")."""
  if p == 0 and floor:
    return f"<{floor:.0e}"
  return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def format_p_pair(c: Dict, floor: Optional[float] = None) -> Tuple[str, str]:
  """(p, Holm-adjusted p) of a comparison; where p is 0, the adjusted one
  is the bound the floor gives, so it reads "<" too."""
  adjusted = format_p(c["p_adjusted"])
  if c["p_value"] == 0 and floor:
    adjusted = "<" + adjusted
  return format_p(c["p_value"], floor), adjusted


def column_header(col: str) -> str:
  if col == AVG:
    return AVG
  spec = glue.GLUE_TASKS.get(col)
  return spec.glue_name if spec else col


def marked_cells(report: Dict, test_name: str) -> Dict[str, Dict[str, str]]:
  """{method: {column: 'median + marks'}} for one test's marks."""
  sig: Dict = {}
  for c in report["tests"][test_name]["comparisons"]:
    if c["significant"]:
      sig.setdefault((c["method"], c["column"]), []).append(c["baseline"])
  out = {}
  for m, by in report["cells"].items():
    out[m] = {}
    for col in report["columns"]:
      v = by.get(col)
      if v is None:
        out[m][col] = "-"
        continue
      ms = "".join(report["settings"]["marks"][b]
                   for b in report["settings"]["baselines"]
                   if b in sig.get((m, col), []))
      out[m][col] = f"{v:.1f}{ms}"
  return out


def markdown_table(header: List[str], rows: List[List[str]]) -> List[str]:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return lines


def first_trials_lines(settings: Dict) -> List[str]:
  """The markdown line that says a stage's snapshot left later trials out
  (none without --first_trials); shared with paired_trials."""
  n = settings.get("first_trials")
  if not n:
    return []
  return [f"Trials 1-{n} of every run (trial indices 0-{n - 1}); later "
          "trials left out.", ""]


def render_markdown(report: Dict) -> str:
  cols = report["columns"]
  s = report["settings"]
  lines = first_trials_lines(s)
  for test_name, res in report["tests"].items():
    cells = marked_cells(report, test_name)
    lines.append(f"## Dev scores (median over trials) - marks: "
                 f"{res['description']}")
    lines.append("")
    lines += markdown_table(["Model"] + [column_header(c) for c in cols],
                            [[m] + [cells[m][c] for c in cols]
                             for m in cells])
    lines.append("")
    legend = ", ".join(f"{mk} improves over {b}"
                       for b, mk in s["marks"].items())
    if legend:
      lines.append(f"{legend}; {res['correction']}.")
      lines.append("")
  if not report["tests"]:
    lines += markdown_table(["Model"] + [column_header(c) for c in cols],
                            [[m] + ["-" if by.get(c) is None
                                    else f"{by[c]:.1f}" for c in cols]
                             for m, by in report["cells"].items()])
    lines.append("")
  lines.append("## Detail (over trials; std is the population std; Avg row "
               "= per-trial averages)")
  lines.append("")
  rows = []
  for m, by in report["stats"].items():
    for c in cols:
      if c in by:
        d = by[c]
        rows.append([m, column_header(c)] + [f"{d[k]:.2f}" for k in
                                             ("median", "mean", "std", "min",
                                              "max")] + [str(d["n"])])
  lines += markdown_table(["Model", "Task", "median", "mean", "std", "min",
                           "max", "n"], rows)
  lines.append("")
  for test_name, res in report["tests"].items():
    lines.append(f"## Comparisons: {res['description']}")
    lines.append("")
    lines.append(f"Correction: {res['correction']}.")
    lines.append("")
    if res.get("power_note"):
      lines += [res["power_note"] + ".", ""]
    rows = []
    for c in res["comparisons"]:
      rows.append([c["method"], c["baseline"], column_header(c["column"]),
                   f"{c['delta']:+.2f}",
                   *format_p_pair(c, p_floor(test_name, s["n_resamples"])),
                   "yes" if c["significant"] else "no"])
    if rows:
      lines += markdown_table(["Method", "vs", "Task", "delta", "p",
                               "p (Holm)", f"p<{s['alpha']}"], rows)
    else:
      lines.append("None could be run (see the notes).")
    lines.append("")
  if report.get("compute"):
    lines += compute.render_markdown(report["compute"])
  if report["notes"]:
    lines.append("## Notes")
    lines.append("")
    lines += [f"- {n}" for n in report["notes"]]
    lines.append("")
  return "\n".join(lines)


def csv_text(rows: List[List]) -> str:
  buf = io.StringIO()
  csv.writer(buf, lineterminator="\n").writerows(rows)
  return buf.getvalue()


def write_report(report: Dict, out_dir: str):
  """table.md, table.csv, comparisons.csv, compute.csv, report.json
  (atomic writes)."""
  files.makedirs(out_dir)
  files.write_text_atomic(os.path.join(out_dir, "table.md"),
                          report["markdown"])
  tests = list(report["tests"])
  marked = {t: marked_cells(report, t) for t in tests}
  rows = [["method", "column", "median"] + [f"cell_{t}" for t in tests]]
  for m, by in report["cells"].items():
    for c in report["columns"]:
      v = by.get(c)
      rows.append([m, c, "" if v is None else repr(v)]
                  + [marked[t][m][c] for t in tests])
  files.write_text_atomic(os.path.join(out_dir, "table.csv"), csv_text(rows))
  rows = [["test", "method", "baseline", "column", "delta", "p_value",
           "p_adjusted", "significant", "alpha", "correction"]]
  for t, res in report["tests"].items():
    for c in res["comparisons"]:
      rows.append([t, c["method"], c["baseline"], c["column"],
                   repr(c["delta"]), repr(c["p_value"]),
                   repr(c["p_adjusted"]), c["significant"],
                   report["settings"]["alpha"], res["correction"]])
  files.write_text_atomic(os.path.join(out_dir, "comparisons.csv"),
                          csv_text(rows))
  files.write_text_atomic(os.path.join(out_dir, "compute.csv"),
                          csv_text(compute.csv_rows(report["compute"])))
  files.write_json_atomic(os.path.join(out_dir, "report.json"),
                          jsonable(report))


def jsonable(x):
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, (np.floating, float)):
    return None if math.isnan(float(x)) else float(x)
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "x"


def _write_plots(report: Dict, rows: Dict[str, Method], out_dir: str):
  from bam_tf_experiments import plots  # pylint: disable=g-import-not-at-top
  written, notes = [], []
  path = os.path.join(out_dir, "score_distributions.png")
  plots.score_distributions(
      {m: {c: list(s.values()) for c, s in by.items()}
       for m, by in report["trial_scores"].items()},
      report["columns"], path,
      titles={c: column_header(c) for c in report["columns"]})
  written.append(path)
  for m in rows.values():
    for run in m.runs:
      stem = (f"curves_{slug(m.name)}_"
              f"{slug(os.path.basename(os.path.normpath(run.path)))}")
      path, k = os.path.join(out_dir, stem + ".png"), 1
      while path in written:  # two dirs of one method, same basename
        k += 1
        path = os.path.join(out_dir, f"{stem}_{k}.png")
      note = plots.training_curves(run.path, path,
                                   title=f"{m.name}: {run.path}",
                                   trials=sorted(run.trial_info))
      if note:
        notes.append(note)
      else:
        written.append(path)
  return written, notes


# --------------------------------------------------------------------- CLI

def add_test_flags(p: argparse.ArgumentParser):
  """--alpha, --n_resamples, --seed and --first_trials, shared with
  paired_trials."""
  p.add_argument("--alpha", type=float, default=0.05)
  p.add_argument("--n_resamples", type=int, default=st.DEFAULT_RESAMPLES)
  p.add_argument("--seed", type=int, default=st.DEFAULT_SEED,
                 help="the bootstrap's resampling seed")
  p.add_argument("--first_trials", type=int, default=None,
                 help="only trials 0..N-1 of every run dir, each of them "
                      "finished (a stage's snapshot; default: all finished "
                      "trials)")


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      prog="python -m bam_tf_experiments.report",
      description="Table 1 of the paper (medians + significance marks) from "
                  "finished runs. Quote --runs ('->' is a shell redirect).")
  p.add_argument("--runs", action="append", required=True,
                 help="NAME:DIR[+DIR...][,NAME:DIR...]; a method may join "
                      "several single-task run dirs with '+'. May repeat. "
                      "Row order = given order.")
  p.add_argument("--baselines", default="",
                 help="comma-separated method names; marks †, ‡, §, ¶, # in "
                      "this order")
  p.add_argument("--out_dir", default="", help="where to write the report")
  p.add_argument("--test", default="bootstrap",
                 choices=list(TESTS) + list(TEST_GROUPS),
                 help="bootstrap: over dev examples, median trials; "
                      "mannwhitney: over trial scores; hierarchical: over "
                      "trials and examples at once; both: the first two; "
                      "all: the three")
  add_test_flags(p)
  p.add_argument("--bootstrap_pvalue", default="nonpositive",
                 choices=list(st.PVALUE_METHODS),
                 help="nonpositive: P*(delta <= 0); shifted: "
                      "Berg-Kirkpatrick et al. 2012, P*(delta > 2 delta_obs)")
  p.add_argument("--tested", default="",
                 help="comma-separated methods to test against the baselines "
                      "(default: every method); the Holm family is their "
                      "comparisons, so name only the question's methods")
  p.add_argument("--tasks", default="",
                 help="comma-separated tasks to show (default: all found)")
  p.add_argument("--no_plots", action="store_true")
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)

  def work() -> int:
    report = build_report(
        parse_runs(args.runs),
        [b.strip() for b in args.baselines.split(",") if b.strip()],
        out_dir=args.out_dir or None, test=args.test, alpha=args.alpha,
        n_resamples=args.n_resamples, seed=args.seed,
        bootstrap_pvalue=args.bootstrap_pvalue,
        tasks=[t for t in args.tasks.split(",") if t.strip()] or None,
        plots=not args.no_plots,
        tested=[t.strip() for t in args.tested.split(",") if t.strip()],
        first_trials=args.first_trials)
    print(report["markdown"])
    if args.out_dir:
      print(f"wrote table.md, table.csv, comparisons.csv, compute.csv, "
            f"report.json"
            f"{' and plots' if report['plots'] else ''} to {args.out_dir}")
    return 0
  return errors.run_command(work)

if __name__ == "__main__":
  sys.exit(main())
