"""The report end to end on synthetic run dirs with known numbers.

No model is trained: results.json and the prediction .npz files are written
here, scores computed with the project's own metric functions."""

import json
import os
import re
import statistics as pystats

import numpy as np
import pytest

from bam_tf.evaluation import metrics
from bam_tf.tasks.glue import GLUE_TASKS
from bam_tf_experiments import plots
from bam_tf_experiments import report as rp
from bam_tf_experiments import statistics as st

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_TRIALS = 6
N_EX = 120


def _gold(task):
  rng = np.random.default_rng({"cola": 1, "sst": 2, "sts": 3}[task])
  if GLUE_TASKS[task].is_regression:
    return np.round(rng.uniform(0, 5, N_EX), 2)
  return rng.integers(0, 2, N_EX)


def _pred(task, trial, perfect=False):
  """Same predictions for every method given (task, trial), unless perfect."""
  gold = _gold(task)
  if perfect:
    return gold.copy()
  rng = np.random.default_rng(100 * trial + len(task))
  if GLUE_TASKS[task].is_regression:
    return gold + rng.normal(0, 1.0 + 0.1 * trial, N_EX)
  return np.where(rng.random(N_EX) < 0.6 + 0.03 * trial, gold, 1 - gold)


def _write_run(path, tasks, perfect=(), n_trials=N_TRIALS, pred_fn=None):
  """A finished run dir; pred_fn(task, trial) replaces _pred if given."""
  trials = []
  for t in range(n_trials):
    per_task = {}
    for task in tasks:
      spec = GLUE_TASKS[task]
      gold = _gold(task)
      pred = (pred_fn(task, t) if pred_fn
              else _pred(task, t, task in perfect))
      eid = np.arange(N_EX, dtype=np.int64)[::-1].copy()  # unsorted on disk
      d = os.path.join(path, f"trial_{t}", "predictions")
      os.makedirs(d, exist_ok=True)
      np.savez(os.path.join(d, f"{task}_{spec.dev_split}.npz"), eid=eid,
               gold=gold[eid], prediction=pred[eid])
      per_task[task] = metrics.task_metrics(spec, gold, pred)
    trials.append({"trial": t, "seed": t + 1, "tasks": per_task,
                   "averages": metrics.averages(
                       [GLUE_TASKS[x] for x in tasks], per_task)})
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"config": {"task_names": list(tasks)}, "trials": trials,
               "summary": {}}, f)
  return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  tasks = ("sts", "cola", "sst")  # not GLUE order on purpose
  return {
      "Single": [_write_run(str(root / f"single_{t}"), [t]) for t in tasks],
      "Multi": [_write_run(str(root / "multi"), tasks)],
      # Perfect on SST, identical to the baselines elsewhere.
      "Best": [_write_run(str(root / "best"), tasks, perfect=("sst",))],
  }


def _table_rows(markdown, heading_word):
  """{model: [cells]} of the first table after a heading containing word."""
  lines = markdown.splitlines()
  start = next(i for i, l in enumerate(lines)
               if l.startswith("## ") and heading_word in l)
  rows, header = {}, None
  for l in lines[start + 1:]:
    if l.startswith("## "):
      break
    if l.startswith("| ") and header is None:
      header = [c.strip() for c in l.strip("|").split("|")]
    elif l.startswith("| "):
      cells = [c.strip() for c in l.strip("|").split("|")]
      rows[cells[0]] = dict(zip(header[1:], cells[1:]))
  return header, rows


def _expected_scores(method_tasks_perfect):
  tasks, perfect = method_tasks_perfect
  return {task: [metrics.task_metrics(GLUE_TASKS[task], _gold(task),
                                      _pred(task, t, task in perfect))["score"]
                 for t in range(N_TRIALS)] for task in tasks}


def _write_events(path, events):
  """TFRecord framing by hand: tensorboard's own writer would import
  TensorFlow (seconds) just to open a file."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    for ev in events:
      data = ev.SerializeToString()
      header = struct.pack("<Q", len(data))
      f.write(header + struct.pack("<I", masked_crc32c(header)) + data
              + struct.pack("<I", masked_crc32c(data)))


def _naive_holm(ps):
  m = len(ps)
  order = np.argsort(ps, kind="stable")
  adj = np.empty(m)
  running = 0.0
  for i, k in enumerate(order):
    running = max(running, min(1.0, (m - i) * ps[k]))
    adj[k] = running
  return adj


@pytest.mark.parametrize("test", ["bootstrap", "mannwhitney", "hierarchical"])
def test_report_table_medians_and_marks(runs, tmp_path, test):
  out = str(tmp_path / "out")
  report = rp.build_report(runs, ["Single", "Multi"], out_dir=out,
                           test=test, n_resamples=1000, plots=False)
  header, rows = _table_rows(report["markdown"], "Dev scores")
  assert header == ["Model", "Avg", "CoLA", "SST-2", "STS-B"]
  assert list(rows) == ["Single", "Multi", "Best"]

  tasks = ("cola", "sst", "sts")
  expected = {"Single": _expected_scores((tasks, ())),
              "Multi": _expected_scores((tasks, ())),
              "Best": _expected_scores((tasks, ("sst",)))}
  comps = report["tests"][test]["comparisons"]
  # Holm over every comparison: 2 baselines x 2 other methods x 4 columns.
  assert len(comps) == 16
  # A resampled p of 0 enters Holm as its bound, 1 / n_resamples.
  floor = 0.0 if test == "mannwhitney" else 1 / 1000
  adj = _naive_holm(np.maximum([c["p_value"] for c in comps], floor))
  np.testing.assert_allclose([c["p_adjusted"] for c in comps], adj)
  sig = {(c["method"], c["column"], c["baseline"])
         for c in comps if c["p_adjusted"] < 0.05}
  for method, by_task in expected.items():
    medians = {t: pystats.median(v) for t, v in by_task.items()}
    medians["Avg"] = float(np.mean(list(medians.values())))
    for col, head in (("Avg", "Avg"), ("cola", "CoLA"), ("sst", "SST-2"),
                      ("sts", "STS-B")):
      marks = "".join(mk for b, mk in (("Single", "†"), ("Multi", "‡"))
                      if (method, col, b) in sig)
      assert rows[method][head] == f"{medians[col]:.1f}{marks}", (method, col)
  # The design: Best is perfect on SST (significant vs both baselines with
  # every test: the bootstraps p = 0; Mann-Whitney 6 vs 6 all above,
  # p ~ 0.001 with Best's tied 100s); identical predictions elsewhere and
  # between Single and Multi give no marks.
  assert rows["Best"]["SST-2"].endswith("†‡")
  if test == "mannwhitney":
    # Best's Avg: raw p < 0.05 but not after Holm over 16 -> no mark.
    avg = [c for c in comps if c["method"] == "Best" and c["column"] == "Avg"]
    assert all(c["p_value"] < 0.05 <= c["p_adjusted"] for c in avg)
    assert not rows["Best"]["Avg"].endswith(("†", "‡"))
  for m in ("Single", "Multi"):
    assert not any(c.endswith(("†", "‡")) for c in rows[m].values())
  for col in ("cola", "sts"):
    assert ("Best", col, "Single") not in sig

  for name in ("table.md", "table.csv", "comparisons.csv", "report.json"):
    assert os.path.getsize(os.path.join(out, name)) > 0
  with open(os.path.join(out, "report.json")) as f:
    saved = json.load(f)
  assert saved["cells"]["Best"]["sst"] == pytest.approx(100.0)
  with open(os.path.join(out, "comparisons.csv")) as f:
    lines = f.read().splitlines()
  assert len(lines) == 1 + 16 and "Holm-Bonferroni" in lines[1]


def test_a_bootstrap_p_of_zero_is_corrected_as_its_resampling_bound(runs):
  """Best is perfect on SST: no resample favours a baseline, p = 0, which
  means p < 1 / n_resamples. Holm multiplies that bound, not 0: over the 16
  comparisons, 100 resamples cannot mark it (16 / 100), 1,000 can."""
  def sst(n):
    report = rp.build_report(runs, ["Single", "Multi"], test="bootstrap",
                             n_resamples=n, plots=False)
    return report, [c for c in report["tests"]["bootstrap"]["comparisons"]
                    if c["method"] == "Best" and c["column"] == "sst"]
  report, comps = sst(100)
  assert [c["p_value"] for c in comps] == [0.0, 0.0]
  assert [c["p_adjusted"] for c in comps] == [pytest.approx(0.16)] * 2
  assert not any(c["significant"] for c in comps)
  assert "| Best | Single | SST-2 | +" in report["markdown"]
  assert "| <1e-02 | <0.1600 | no |" in report["markdown"]
  _, rows = _table_rows(report["markdown"], "paired bootstrap")
  assert not rows["Best"]["SST-2"].endswith(("†", "‡"))
  _, comps = sst(1000)
  assert [c["p_adjusted"] for c in comps] == [pytest.approx(0.016)] * 2
  assert all(c["significant"] for c in comps)
  # Two-sided (paired_trials): the bound is 2 / n.
  comps = [{"p_value": 0.0}, {"p_value": 0.5}]
  rp.holm_correct(comps, 0.05, st.resampling_floor(100, "two-sided"))
  assert [c["p_adjusted"] for c in comps] == [pytest.approx(0.04), 0.5]
  assert rp.format_p_pair(comps[0], 0.02) == ("<2e-02", "<0.0400")


def test_tested_sets_the_holm_family_and_the_power_note_says_when_it_is_too_big(
    runs):
  """6 trials against 6: Mann-Whitney's smallest one-sided p is 1/924. Over
  the 16 comparisons of every method against both baselines it can still
  mark; with 3 trials against 3 (1/20) it never can, and says so."""
  every = rp.build_report(runs, ["Single", "Multi"], test="mannwhitney",
                          plots=False)
  only_best = rp.build_report(runs, ["Single", "Multi"], test="mannwhitney",
                              plots=False, tested=["Best"])
  comps = only_best["tests"]["mannwhitney"]["comparisons"]
  assert {(c["method"], c["baseline"]) for c in comps} == {
      ("Best", "Single"), ("Best", "Multi")}
  assert len(comps) == 8  # 2 baselines x 4 columns
  assert "over all 8 comparisons" in only_best["tests"]["mannwhitney"][
      "correction"]
  # The same raw p-values, a smaller family: Holm-adjusted p drop.
  raw = {(c["baseline"], c["column"]): c for c in
         every["tests"]["mannwhitney"]["comparisons"] if c["method"] == "Best"}
  for c in comps:
    before = raw[(c["baseline"], c["column"])]
    assert c["p_value"] == before["p_value"]
    assert c["p_adjusted"] <= before["p_adjusted"]
  # Best's Avg: not significant over 16 comparisons, significant over 8.
  avg = [c for c in comps if c["column"] == "Avg"]
  assert all(c["significant"] for c in avg)
  assert only_best["settings"]["tested"] == ["Best"]
  assert every["tests"]["mannwhitney"]["power_note"] is None
  # 3 trials a side over 4 comparisons: 4 x 1/20 >= 0.05.
  note = rp.mann_whitney_power_note(
      [{"n_a": 3, "n_b": 3, "p_value": 0.05}] * 4, 0.05)
  assert note.startswith("Mann-Whitney cannot mark anything in this table")
  assert "3 against 3 trials: 0.05" in note and "4 comparisons" in note
  assert rp.mann_whitney_power_note(
      [{"n_a": 5, "n_b": 5, "p_value": 0.004}] * 10, 0.05) is None
  # 5 against 5 (1/252) decides over 10 comparisons, not over 15.
  assert "0.0595" in rp.mann_whitney_power_note(
      [{"n_a": 5, "n_b": 5, "p_value": 0.004}] * 15, 0.05)


def test_tested_names_a_method_of_the_runs(runs):
  with pytest.raises(rp.ReportError, match="--tested: 'Nope' is not a method"):
    rp.build_report(runs, ["Single"], plots=False, tested=["Nope"])
  with pytest.raises(rp.ReportError, match="is the only baseline"):
    rp.build_report(runs, ["Single"], plots=False, tested=["Single"])


def test_detailed_stats(runs):
  report = rp.build_report(runs, ["Single"], test="mannwhitney", plots=False)
  scores = _expected_scores((("sts",), ()))["sts"]
  d = report["stats"]["Multi"]["sts"]
  assert d["n"] == N_TRIALS
  assert d["median"] == pytest.approx(np.median(scores))
  assert d["mean"] == pytest.approx(np.mean(scores))
  assert d["std"] == pytest.approx(np.std(scores))
  assert d["min"] == pytest.approx(min(scores))
  assert d["max"] == pytest.approx(max(scores))
  assert "| Multi | STS-B | " in report["markdown"]
  assert "Holm-Bonferroni" in report["markdown"]


def test_cli_writes_everything_with_plots(runs, tmp_path, capsys):
  # Training curves for one run: loss, per-task loss, learning rate, lambda
  # in both the TF2 tensor form and the TF1 simple_value form.
  from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
  logdir = os.path.join(runs["Multi"][0], "trial_0", "tensorboard")
  events = [event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")]
  for step in range(1, 6):
    vals = [summary_pb2.Summary.Value(
        tag=tag, tensor=tensor_pb2.TensorProto(
            dtype=1, tensor_content=np.float32(x).tobytes()))
            for tag, x in (("loss", 1.0 / step), ("loss/sst", 0.5 / step),
                           ("learning_rate", 1e-4 * step))]
    vals.append(summary_pb2.Summary.Value(tag="lambda",
                                          simple_value=step / 5))
    events.append(event_pb2.Event(step=step,
                                  summary=summary_pb2.Summary(value=vals)))
  _write_events(os.path.join(logdir, "events.out.tfevents.1.test.v2"),
                events)
  scalars = plots.read_scalars(logdir)
  assert scalars["lambda"] == [(s, pytest.approx(s / 5)) for s in range(1, 6)]
  assert scalars["learning_rate"][-1] == (5, pytest.approx(5e-4))

  out = str(tmp_path / "rep")
  spec = ",".join(f"{m}:{'+'.join(d)}" for m, d in runs.items())
  rc = rp.main([f"--runs={spec}", "--baselines=Single,Multi",
                f"--out_dir={out}", "--test=both", "--n_resamples=300"])
  assert rc == 0
  printed = capsys.readouterr().out
  assert "| Model | Avg | CoLA | SST-2 | STS-B |" in printed
  pngs = [os.path.join(out, "score_distributions.png"),
          os.path.join(out, "curves_Multi_multi.png")]
  for p in pngs:
    with open(p, "rb") as f:
      data = f.read()
    assert len(data) > 100 and data[:8] == PNG_MAGIC, p
  with open(os.path.join(out, "report.json")) as f:
    saved = json.load(f)
  assert set(saved["tests"]) == {"bootstrap", "mannwhitney"}
  assert sorted(saved["plots"]) == sorted(pngs)
  # Runs without event files: no curves, a note instead.
  assert any("no training curves" in n and "best" in n
             for n in saved["notes"])
  assert not os.path.exists(os.path.join(out, "curves_Best_best.png"))


def test_parse_runs():
  assert rp.parse_runs("Single:a+b,Single->Multi:c") == {
      "Single": ["a", "b"], "Single->Multi": ["c"]}
  assert rp.parse_runs(["A:x", "B:y"]) == {"A": ["x"], "B": ["y"]}
  for bad in ("nodirs", "A:", ":x", "A:x,A:y", ""):
    with pytest.raises(rp.ReportError, match="--runs"):
      rp.parse_runs(bad)


def test_clear_errors(runs, tmp_path):
  with pytest.raises(rp.ReportError, match="--runs.*does not exist"):
    rp.build_report({"X": [str(tmp_path / "nope")]}, plots=False)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(rp.ReportError, match="results.json not found"):
    rp.build_report({"X": [str(empty)]}, plots=False)
  with pytest.raises(rp.ReportError, match=r"--tasks.*'rte'.*results.json"):
    rp.build_report(runs, tasks=["rte"], plots=False)
  with pytest.raises(rp.ReportError, match="--baselines.*'Nope'"):
    rp.build_report(runs, ["Nope"], plots=False)
  with pytest.raises(rp.ReportError, match="two run dirs"):
    rp.build_report({"X": runs["Multi"] + runs["Best"]}, plots=False)
  # A bootstrap without prediction files names the missing file.
  bare = _write_run(str(tmp_path / "bare"), ["sst"], n_trials=1)
  os.remove(os.path.join(bare, "trial_0", "predictions", "sst_dev.npz"))
  with pytest.raises(rp.ReportError, match="sst_dev.npz not found"):
    rp.build_report({"Multi": runs["Multi"], "Bare": [bare]}, ["Multi"],
                    plots=False, n_resamples=10)
  # ... while Mann-Whitney needs only results.json.
  r = rp.build_report({"Multi": runs["Multi"], "Bare": [bare]}, ["Multi"],
                      test="mannwhitney", plots=False)
  assert r["cells"]["Bare"]["Avg"] is None  # lacks cola and sts
  assert rp.main(["--runs=X:" + str(tmp_path / "nope")]) == 2
  # The same baseline twice would count its comparisons twice in Holm.
  with pytest.raises(rp.ReportError, match="--baselines: 'Multi' given twice"):
    rp.build_report(runs, ["Multi", "Multi"], plots=False)
  with pytest.raises(rp.ReportError, match="--tested: .*give --baselines"):
    rp.build_report(runs, [], tested=["Best"], plots=False)
  # An output folder that cannot be one: refused before any run is read.
  with pytest.raises(rp.ReportError, match=(
      r"--out_dir: .*results.json is a file, not a folder, so "
      r".*results.json/rep cannot be made")):
    rp.build_report({"X": [str(tmp_path / "nope")]}, plots=False,
                    out_dir=os.path.join(runs["Multi"][0], "results.json",
                                         "rep"))
  # A run's folder: the report's files would mix with its records.
  run = runs["Multi"][0]
  other = tmp_path / "other_run"  # a run not among --runs
  other.mkdir()
  (other / "config.json").write_text('{"task_names": ["rte"]}')
  for out, message in ((run, rf"--out_dir: {run} is the run folder {run} "
                        r"\(of --runs\)"),
                       (os.path.join(run, "trial_0"), r"is inside the run "
                        "folder"),
                       (str(other), r"is a run's folder \(it holds "
                        r"config.json\)")):
    before = sorted(os.listdir(out))
    with pytest.raises(rp.ReportError, match=message):
      rp.build_report({"Multi": runs["Multi"]}, plots=False, out_dir=out)
    assert sorted(os.listdir(out)) == before
  # A results.json that is not a run's results names the file.
  for name, content in (("list", "[]"), ("trials", '{"trials": 3}')):
    bad = tmp_path / name
    bad.mkdir()
    (bad / "results.json").write_text(content)
    with pytest.raises(rp.ReportError, match=(
        rf"{name}/results.json is not a run's results")):
      rp.build_report({"X": [str(bad)]}, plots=False)
  folder = tmp_path / "folder"
  (folder / "results.json").mkdir(parents=True)
  with pytest.raises(rp.ReportError, match="results.json is not readable"):
    rp.build_report({"X": [str(folder)]}, plots=False)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_predictions_file_is_named(runs, tmp_path, damage):
  run = _write_run(str(tmp_path / "run"), ["sst"], n_trials=1)
  path = os.path.join(run, "trial_0", "predictions", "sst_dev.npz")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:300] if damage == "truncated" else b"")
  with pytest.raises(rp.ReportError, match=(
      rf"^{re.escape(path)}: not a readable predictions file .*delete it "
      "and .*--retrain_missing_predictions")):
    rp.build_report({"Multi": runs["Multi"], "Run": [run]}, ["Multi"],
                    plots=False, n_resamples=10)


def test_predictions_that_do_not_give_the_trials_score_are_refused(
    runs, tmp_path):
  """A trial's prediction file replaced by another trial's (a re-evaluated
  checkpoint, a copy from another run): its metric is not the score that
  results.json records, and the bootstrap would test it in the trial's
  name. Refused, naming the file and both numbers."""
  import shutil  # pylint: disable=g-import-not-at-top
  multi = str(tmp_path / "multi")
  shutil.copytree(runs["Multi"][0], multi)
  run = rp.RunDir(multi)
  median = st.median_trial(run.scores["sts"])
  other = next(t for t in run.scores["sts"]
               if run.scores["sts"][t] != run.scores["sts"][median])
  folder = os.path.join(multi, "trial_{}", "predictions", "sts_dev.npz")
  shutil.copy(folder.format(other), folder.format(median))
  with np.load(folder.format(median)) as z:
    got = metrics.metric_value(GLUE_TASKS["sts"], GLUE_TASKS["sts"].metric,
                               z["gold"], z["prediction"])
  with pytest.raises(rp.ReportError, match=(
      rf"^{re.escape(folder.format(median))}: its predictions score "
      rf"{got:.4f} \({GLUE_TASKS['sts'].metric}\), but "
      rf"{re.escape(multi)}/results.json records "
      rf"{run.scores['sts'][median]} for trial {median}: the file is not "
      r"that trial's predictions$")):
    rp.build_report(dict(runs, Multi=[multi]), ["Single"], plots=False,
                    n_resamples=10)
  # Mann-Whitney reads only results.json's scores.
  rp.build_report(dict(runs, Multi=[multi]), ["Single"], plots=False,
                  test="mannwhitney")


def test_a_user_task_is_scored_as_the_run_declared_it(tmp_path):
  """A user task is scored with the declaration its run recorded when it
  started training: the --custom_tasks file edited since (F1's positive
  label swapped) or deleted changes nothing. A run from before runs
  recorded them is read from the file, and an edited one is caught by the
  score check."""
  from bam_tf.tasks import registry  # pylint: disable=g-import-not-at-top
  decl = {"name": "spam", "kind": "classification",
          "label_list": ["ham", "spam"], "positive_label": "spam",
          "metric": "f1",
          "splits": {s: {"file": f"{s}.tsv", "text_a_col": "text",
                         "label_col": "label"} for s in ("train", "dev")}}
  tasks_json = tmp_path / "tasks.json"
  tasks_json.write_text(json.dumps([decl]))
  spec = registry.load_custom_tasks(str(tasks_json))["spam"]
  rng = np.random.default_rng(0)
  gold = rng.integers(0, 2, N_EX)
  dirs, f1s = {}, {}
  for name in ("A", "B"):
    run = tmp_path / name
    trials = []
    for t in range(3):
      pred = np.where(rng.random(N_EX) < 0.7 + 0.1 * t, gold, 1 - gold)
      folder = run / f"trial_{t}" / "predictions"
      folder.mkdir(parents=True)
      np.savez(folder / "spam_dev.npz", eid=np.arange(N_EX), gold=gold,
               prediction=pred)
      trials.append({"trial": t, "tasks": {
          "spam": metrics.task_metrics(spec, gold, pred)}})
    f1s[name] = [tr["tasks"]["spam"]["score"] for tr in trials]
    (run / "results.json").write_text(json.dumps({
        "config": {"task_names": ["spam"], "custom_tasks": str(tasks_json)},
        "trials": trials}))
    (run / "data_fingerprint.json").write_text(json.dumps(
        {"tasks": registry.task_declarations([spec])}))
    dirs[name] = [str(run)]
  tasks_json.write_text(json.dumps([dict(decl, positive_label="ham")]))
  for state in ("edited", "deleted"):
    if state == "deleted":
      os.remove(tasks_json)
    report = rp.build_report(dirs, ["A"], plots=False, n_resamples=100,
                             test="both")
    for name in dirs:
      assert report["stats"][name]["spam"]["median"] == pytest.approx(
          pystats.median(f1s[name]), abs=1e-12)
    assert len(report["tests"]["bootstrap"]["comparisons"]) == 2
  tasks_json.write_text(json.dumps([dict(decl, positive_label="ham")]))
  for name in dirs:
    os.remove(os.path.join(dirs[name][0], "data_fingerprint.json"))
  with pytest.raises(rp.ReportError, match=r"spam_dev.npz: its predictions "
                     r"score .* \(f1\), but .*results.json records"):
    rp.build_report(dirs, ["A"], plots=False, n_resamples=100)


def test_runs_scored_on_other_dev_examples_are_not_compared(runs, tmp_path):
  """A --debug run scores its first 50 dev rows; an edited dev file scores
  other examples in the same number. Mann-Whitney reads scores only, so
  nothing downstream would notice: the report refuses, naming both runs."""
  import shutil  # pylint: disable=g-import-not-at-top
  short = _write_run(str(tmp_path / "short"), ["sst"], n_trials=3)
  results_path = os.path.join(short, "results.json")
  with open(results_path) as f:
    data = json.load(f)
  gold = _gold("sst")[:50]
  for tr in data["trials"]:
    tr["tasks"]["sst"] = metrics.task_metrics(
        GLUE_TASKS["sst"], gold, _pred("sst", tr["trial"])[:50])
  with open(results_path, "w") as f:
    json.dump(data, f)
  single_sst = runs["Single"][2]
  with pytest.raises(rp.ReportError, match=(
      rf"^--runs: sst's dev examples differ between Single "
      rf"\({re.escape(single_sst)}: {N_EX} examples, examples_sha256 not "
      rf"recorded\) and Short \({re.escape(short)}: 50 examples, "
      r"examples_sha256 not recorded\); their scores are not comparable$")):
    rp.build_report({"Single": [single_sst], "Short": [short]}, ["Single"],
                    test="mannwhitney", plots=False)
  # The same number of examples, other ones: told apart by their digests.
  multi, edited = str(tmp_path / "multi"), str(tmp_path / "edited")
  for run, sha in ((multi, "a" * 64), (edited, "b" * 64)):
    shutil.copytree(runs["Multi"][0], run)
    with open(os.path.join(run, "data_fingerprint.json"), "w") as f:
      json.dump({"data": {"sst": {"dev": {"examples_sha256": sha}}}}, f)
  with pytest.raises(rp.ReportError, match=r"sst's dev examples differ "
                     r".*examples_sha256 aaaaaaaaaaaa\) and Edited .*"
                     r"examples_sha256 bbbbbbbbbbbb\)"):
    rp.build_report({"Multi": [multi], "Edited": [edited]}, ["Multi"],
                    test="mannwhitney", plots=False)
  # Recorded on one side only: the counts decide.
  os.remove(os.path.join(edited, "data_fingerprint.json"))
  rp.build_report({"Multi": [multi], "Edited": [edited]}, ["Multi"],
                  test="mannwhitney", plots=False)


def test_statistics_module_is_what_the_report_uses():
  assert rp.st is st


def test_score_panels_titled_with_task_display_names(runs, tmp_path,
                                                     monkeypatch):
  import matplotlib.axes  # pylint: disable=g-import-not-at-top
  titles = []
  original = matplotlib.axes.Axes.set_title
  monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                      lambda ax, t, *a, **k: (titles.append(t),
                                              original(ax, t, *a, **k))[1])
  rp.build_report({"Multi": runs["Multi"]}, out_dir=str(tmp_path),
                  test="mannwhitney")
  assert titles[:4] == ["Avg", "CoLA", "SST-2", "STS-B"]


def test_curves_only_of_finished_trials(runs, tmp_path, monkeypatch):
  """A trial still training (event files, no results.json entry) is not
  drawn beside the finished ones."""
  run = runs["Multi"][0]
  for trial in ("trial_0", f"trial_{N_TRIALS + 3}"):
    os.makedirs(os.path.join(run, trial, "tensorboard"), exist_ok=True)
  read = []
  monkeypatch.setattr(plots, "read_scalars",
                      lambda d: read.append(os.path.relpath(d, run)) or {})
  rp.build_report({"Multi": runs["Multi"]}, out_dir=str(tmp_path),
                  test="mannwhitney")
  assert read == [os.path.join("trial_0", "tensorboard")]
  assert plots.training_curves(run, str(tmp_path / "x.png"), trials=[]) == (
      f"no training curves for {run}: no TensorBoard event files under "
      "trial_*/tensorboard of its finished trials")


def test_curves_one_panel_per_curve_one_colour_per_trial(tmp_path,
                                                        monkeypatch):
  """Total loss, each task's loss, lr and lambda get a panel each, in that
  order; every trial is one line of the same colour in every panel."""
  from tensorboard.compat.proto import event_pb2, summary_pb2
  run = str(tmp_path / "run")
  for trial in (0, 1):
    events = [event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")]
    for step in range(1, 4):
      vals = [summary_pb2.Summary.Value(tag=tag, simple_value=x)
              for tag, x in (("lambda", step / 3), ("loss/sts", 0.1 * trial),
                             ("learning_rate", 1e-4), ("loss", 1.0 / step),
                             ("loss/cola", 0.5 / step), ("other", 7.0))]
      events.append(event_pb2.Event(step=step,
                                    summary=summary_pb2.Summary(value=vals)))
    _write_events(os.path.join(run, f"trial_{trial}", "tensorboard",
                               "events.out.tfevents.1.test.v2"), events)
  figs = []
  monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
  assert plots.training_curves(run, str(tmp_path / "c.png")) is None
  drawn = [ax for ax in figs[0].axes if ax.get_title()]
  assert [ax.get_title() for ax in drawn] == [
      "loss", "loss/cola", "loss/sts", "learning_rate", "lambda"]
  for ax in drawn:
    assert [ln.get_label() for ln in ax.get_lines()] == ["trial_0", "trial_1"]
  colours = {tuple(ln.get_color() for ln in ax.get_lines()) for ax in drawn}
  assert len(colours) == 1 and len(set(next(iter(colours)))) == 2
  sts = drawn[2].get_lines()
  assert list(sts[1].get_ydata()) == pytest.approx([0.1] * 3)


def test_lost_predictions_leave_out_only_the_bootstrap_tests_needing_them(
    runs, tmp_path):
  """A run dir restored from its committed records without a trial's
  per-example predictions: its bootstrap comparisons in that task (and the
  Avg, which needs every task) are named in the notes, not invented; the
  other bootstrap tests and every Mann-Whitney test (trial scores only)
  still run, and Holm corrects over the tests that ran."""
  import shutil  # pylint: disable=g-import-not-at-top
  multi = str(tmp_path / "multi")
  shutil.copytree(runs["Multi"][0], multi)
  lost = st.median_trial(rp.RunDir(multi).scores["sst"])
  lost_path = os.path.join(multi, f"trial_{lost}", "predictions",
                           "sst_dev.npz")
  os.remove(lost_path)
  methods = dict(runs, Multi=[multi])
  report = rp.build_report(methods, ["Single"], test="all",
                           n_resamples=200, plots=False)
  for test in ("bootstrap", "hierarchical"):
    boot = report["tests"][test]["comparisons"]
    assert sorted((c["method"], c["column"]) for c in boot) == [
        ("Best", "Avg"), ("Best", "cola"), ("Best", "sst"), ("Best", "sts"),
        ("Multi", "cola"), ("Multi", "sts")]
    np.testing.assert_allclose(
        [c["p_adjusted"] for c in boot],
        _naive_holm(np.maximum([c["p_value"] for c in boot], 1 / 200)))
    assert "over all 6 comparisons" in report["tests"][test]["correction"]
  assert len(report["tests"]["mannwhitney"]["comparisons"]) == 8
  notes = "\n".join(report["notes"])
  assert "bootstrap: Multi vs Single not tested in Avg, sst (a median" in notes
  assert ("hierarchical: Multi vs Single not tested in Avg, sst (a trial's"
          in notes)
  assert lost_path in notes
  # With every median trial's predictions gone, --test=both still reports
  # Mann-Whitney and says that no bootstrap test could run.
  bare_single = []
  for d in methods["Single"]:
    copy = str(tmp_path / os.path.basename(d))
    shutil.copytree(d, copy, ignore=shutil.ignore_patterns("*.npz"))
    bare_single.append(copy)
  bare = rp.build_report(dict(methods, Single=bare_single), ["Single"],
                         test="both", n_resamples=200, plots=False)
  assert not bare["tests"]["bootstrap"]["comparisons"]
  assert len(bare["tests"]["mannwhitney"]["comparisons"]) == 8
  assert "None could be run (see the notes)." in bare["markdown"]


def test_hierarchical_marks_only_what_survives_another_draw_of_seeds(
    tmp_path):
  """B is A with 5 more SST examples right in every trial, but A's (and
  B's) trials lie 8 to 40 points apart. The median trials' paired bootstrap
  marks B (p = P(none of the 5 drawn) = (115/120)^120 ~ 0.006); the
  two-level bootstrap, which also draws the trials, does not, and
  Mann-Whitney (B's trials interleave A's) agrees with it."""
  gold = _gold("sst")

  def flipped(wrong):
    p = gold.copy()
    p[:wrong] = 1 - p[:wrong]
    return p
  a = _write_run(str(tmp_path / "a"), ["sst"], n_trials=5,
                 pred_fn=lambda task, t: flipped(10 + 10 * t))
  b = _write_run(str(tmp_path / "b"), ["sst"], n_trials=5,
                 pred_fn=lambda task, t: flipped(5 + 10 * t))
  report = rp.build_report({"A": [a], "B": [b]}, ["A"], test="all",
                           n_resamples=4000, plots=False)
  by_test = {t: {c["column"]: c for c in r["comparisons"]}
             for t, r in report["tests"].items()}
  assert by_test["bootstrap"]["sst"]["significant"]
  assert by_test["bootstrap"]["sst"]["p_value"] < 0.02
  hier = by_test["hierarchical"]["sst"]
  assert hier["delta"] == pytest.approx(500 / 120)  # mean of trial deltas
  assert hier["trials"] == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
  assert hier["p_value"] > 0.2 and not hier["significant"]
  assert not by_test["mannwhitney"]["sst"]["significant"]
  header, rows = _table_rows(report["markdown"], "two-level bootstrap")
  assert rows["B"]["SST-2"] == f"{100 * (1 - 25 / 120):.1f}"  # no mark
  assert "| B | A | SST-2 | +4.17 |" in report["markdown"]


def test_test_flag_names_the_tests(runs):
  with pytest.raises(rp.ReportError, match="--test must be one of "
                     "bootstrap, mannwhitney, hierarchical, both, all"):
    rp.build_report(runs, ["Single"], plots=False, test="seeds")
  report = rp.build_report(runs, ["Single"], plots=False, test="all",
                           n_resamples=100)
  assert list(report["tests"]) == ["bootstrap", "mannwhitney", "hierarchical"]


def test_first_trials_is_the_table_of_a_stage(runs, tmp_path):
  """--first_trials=N gives the report the first N trials would have had
  alone, however many trials the run dirs have since finished."""
  n = 3
  alone = {m: [_write_run(str(tmp_path / m / os.path.basename(d)),
                          json.load(open(os.path.join(d, "results.json"))
                                    )["config"]["task_names"],
                          perfect=("sst",) if m == "Best" else (),
                          n_trials=n) for d in dirs]
           for m, dirs in runs.items()}
  kw = dict(baselines=["Single", "Multi"], test="all", n_resamples=200,
            plots=False)
  want = rp.build_report(alone, **kw)
  got = rp.build_report(runs, first_trials=n, **kw)
  assert got["trial_scores"] == want["trial_scores"]
  assert got["cells"] == want["cells"]
  for test, res in want["tests"].items():
    assert ([c["p_value"] for c in got["tests"][test]["comparisons"]]
            == [c["p_value"] for c in res["comparisons"]])
  assert got["cells"] != rp.build_report(runs, **kw)["cells"]
  assert got["settings"]["first_trials"] == n
  assert got["markdown"].startswith("Trials 1-3 of every run")
  assert sorted(got["compute"]["Multi"]["trial_seconds"]) == ["0", "1", "2"]
  with pytest.raises(rp.ReportError,
                     match=r"--first_trials=7: .*single_sts/results.json has not "
                           r"finished trial\(s\) \[6\]"):
    rp.build_report(runs, first_trials=N_TRIALS + 1, **kw)
  with pytest.raises(rp.ReportError, match="--first_trials must be at least 1"):
    rp.build_report(runs, first_trials=0, **kw)


def test_alpha_and_resamples_are_checked_before_any_run_is_read(
    runs, tmp_path, capsys):
  spec = "Single:" + "+".join(runs["Single"]) + ",Multi:" + "+".join(
      runs["Multi"])
  out = tmp_path / "report"
  # "5" meant as 5% would have marked every cell significant.
  assert rp.main([f"--runs={spec}", "--baselines=Single", "--alpha=5",
                  f"--out_dir={out}"]) == 2
  assert capsys.readouterr().err.strip().splitlines() == [
      "error: --alpha must be a level between 0 and 1 (e.g. 0.05), got 5.0"]
  assert rp.main([f"--runs={spec}", "--baselines=Single", "--n_resamples=-1",
                  f"--out_dir={out}"]) == 2
  assert "--n_resamples must be at least 1, got -1" in capsys.readouterr().err
  assert not out.exists()
  with pytest.raises(rp.ReportError, match="--n_resamples must be at least 1"):
    rp.build_report({"Nope": [str(tmp_path / "missing")]}, n_resamples=0)
