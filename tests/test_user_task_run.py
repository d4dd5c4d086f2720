"""A user's own tasks end to end: trained and scored by the metrics they
declare (binary F1 of a declared positive label, multi-class MCC and
macro-F1, checked against scikit-learn on the run's own dev predictions),
and --mode=predict writes their test-split predictions as TSV."""

import csv
import json
import os

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

from bam_tf.common import files
from conftest import run_classifier, run_classifier_process


ROWS = {"train": 60, "dev": 40, "test": 25}
TASKS = [
    {"name": "spam", "dir_name": "Spam", "kind": "classification",
     "label_list": ["spam", "ham"], "positive_label": "spam",
     "metric": "f1", "metrics": ["accuracy", "mcc"]},
    {"name": "tri", "dir_name": "Tri", "kind": "classification",
     "label_list": ["a", "b", "c"], "metric": "mcc",
     "metrics": ["macro_f1", "accuracy"]},
]


def _write_task(data_dir, decl, rng):
  folder = data_dir / decl["dir_name"]
  folder.mkdir()
  words = ["good", "bad", "fine", "late", "free", "offer", "meeting", "now"]
  splits = {}
  for split, n in ROWS.items():
    with open(folder / f"{split}.tsv", "w", newline="") as f:
      w = csv.writer(f, delimiter="\t", lineterminator="\n")
      w.writerow(["text", "label"] if split != "test" else ["text"])
      for _ in range(n):
        text = " ".join(rng.choice(words, size=int(rng.integers(2, 9))))
        label = decl["label_list"][int(rng.integers(len(decl["label_list"])))]
        w.writerow([text, label] if split != "test" else [text])
    splits[split] = {"file": f"{split}.tsv", "text_a_col": "text"}
    if split != "test":
      splits[split]["label_col"] = "label"
  return dict(decl, splits=splits)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("user_tasks")
  data_dir = root / "data"
  data_dir.mkdir()
  rng = np.random.default_rng(0)
  decls = [_write_task(data_dir, d, rng) for d in TASKS]
  (root / "tasks.json").write_text(json.dumps(decls))
  model_dir = str(root / "run")
  common = [f"--custom_tasks={root / 'tasks.json'}", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", f"--cache_dir={root / 'cache'}"]
  run_classifier(common + ["--task_names=spam,tri", "--debug",
                           "--max_train_steps=6", "--train_batch_size=8",
                           "--eval_batch_size=8", "--teacher_output_trials="])
  # Without --data_dir: predict reads the run's own test files.
  out = run_classifier([a for a in common if not a.startswith("--data_dir=")]
                       + ["--mode=predict"])
  return model_dir, data_dir, out


def _dev(model_dir, task):
  return np.load(os.path.join(model_dir, "trial_0", "predictions",
                              f"{task}_dev.npz"))


def test_declared_metrics_are_the_scores(user_run):
  model_dir = user_run[0]
  results = files.read_json(os.path.join(model_dir, "results.json"))
  assert results["headline_metrics"] == {"spam": "f1", "tri": "mcc"}
  spam, tri = (results["trials"][0]["tasks"][t] for t in ("spam", "tri"))
  d = _dev(model_dir, "spam")
  assert len(d["gold"]) == ROWS["dev"]
  want_f1 = 100 * sklearn_metrics.f1_score(d["gold"], d["prediction"],
                                           pos_label=0, zero_division=0)
  assert spam["score"] == pytest.approx(want_f1, abs=1e-9)
  assert spam["f1"] == spam["score"]
  assert spam["accuracy"] == pytest.approx(
      100 * sklearn_metrics.accuracy_score(d["gold"], d["prediction"]))
  d = _dev(model_dir, "tri")
  assert tri["score"] == pytest.approx(
      100 * sklearn_metrics.matthews_corrcoef(d["gold"], d["prediction"]),
      abs=1e-9)
  assert tri["macro_f1"] == pytest.approx(100 * sklearn_metrics.f1_score(
      d["gold"], d["prediction"], average="macro", zero_division=0), abs=1e-9)
  text = open(os.path.join(model_dir, "results.txt")).read()
  assert "score = f1 spam, mcc tri." in text
  header = text.splitlines()[3]
  assert "spam/score" in header and "spam/accuracy" in header
  assert "spam/f1" not in header  # the score column is F1


def test_predict_writes_user_test_predictions(user_run):
  model_dir, data_dir, out = user_run
  folder = os.path.join(model_dir, "test_predictions", "trial_0")
  assert sorted(os.listdir(folder)) == ["spam_test.tsv", "tri_test.tsv"]
  assert "glue_submission" not in os.listdir(model_dir)  # no GLUE task
  for decl in TASKS:
    labels = decl["label_list"]
    with open(os.path.join(folder, f"{decl['name']}_test.tsv")) as f:
      rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["id", "prediction"] + [f"prob_{l}" for l in labels]
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(ROWS["test"]))
    probs = np.array([[float(x) for x in r[2:]] for r in body])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [r[1] for r in body] == [labels[i] for i in probs.argmax(axis=1)]
    assert f"{decl['name']}_test.tsv: {ROWS['test']} rows" in out


def test_a_changed_declaration_is_refused_not_served(user_run, capsys):
  """config.json names the tasks file, not its contents: with spam's labels
  swapped in it after training, every label would flip without a word.
  Resuming, evaluating, predicting and exporting (run_classifier or the
  export tool) refuse it, naming the
  field, and write nothing; the declaration restored, they run again."""
  model_dir, data_dir, _ = user_run
  saved = files.read_json(os.path.join(model_dir, "config.json"))
  tasks_json = saved["custom_tasks"]
  original = open(tasks_json).read()
  # Where the files lie may change (data moves): not a new declaration.
  moved = json.loads(original)
  moved[0]["dir_name"] = "SpamMoved"
  os.rename(os.path.join(data_dir, "Spam"), os.path.join(data_dir,
                                                         "SpamMoved"))
  swapped = json.loads(json.dumps(moved))
  swapped[0]["label_list"] = ["ham", "spam"]
  common = [f"--model_dir={model_dir}", f"--data_dir={data_dir}",
            f"--cache_dir={saved['cache_dir']}"]
  before = sorted(os.listdir(model_dir))
  try:
    with open(tasks_json, "w") as f:
      json.dump(swapped, f)
    for mode in ("eval", "predict", "export"):
      proc = run_classifier_process([f"--mode={mode}"] + common)
      assert proc.returncode == 2, proc.stdout[-3000:]
      errors = [l for l in proc.stdout.splitlines() if l.startswith("error:")]
      assert errors == [
          "error: --custom_tasks: task spam's label_list is ['ham', 'spam'] "
          f"now, but was ['spam', 'ham'] when {model_dir} was trained; "
          "restore the declaration it was trained with"], mode
    # The export tool reads the run's config.json the same way.
    from bam_tf.serving import export  # pylint: disable=g-import-not-at-top
    assert export.main([f"--model_dir={model_dir}",
                        f"--export_dir={model_dir}/tool_export"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == errors[0]
    # Resuming (one more trial) is refused the same way, before training.
    proc = run_classifier_process(
        [f"--custom_tasks={tasks_json}", "--task_names=spam,tri", "--debug",
         "--max_train_steps=6", "--train_batch_size=8", "--eval_batch_size=8",
         "--teacher_output_trials=", "--num_trials=2"] + common)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert ("error: --custom_tasks: task spam's label_list is ['ham', 'spam'] "
            "now, but was ['spam', 'ham'] since this run started training in"
            in proc.stdout), proc.stdout[-3000:]
    assert sorted(os.listdir(model_dir)) == before
    with open(tasks_json, "w") as f:
      json.dump(moved, f)
    run_classifier(["--mode=eval"] + common)
  finally:
    with open(tasks_json, "w") as f:
      f.write(original)
    if os.path.isdir(os.path.join(data_dir, "SpamMoved")):
      os.rename(os.path.join(data_dir, "SpamMoved"),
                os.path.join(data_dir, "Spam"))
  run_classifier(["--mode=eval"] + common)


def test_a_moved_declaration_file_is_named_and_read_from_its_new_place(
    user_run, tmp_path, capsys):
  """config.json names the --custom_tasks file; once it moves, eval,
  predict and export say which file is gone, and read the declarations from
  where --custom_tasks says they are now (checked against those recorded at
  training): eval gives results.json's metrics again."""
  model_dir, data_dir, _ = user_run
  saved = files.read_json(os.path.join(model_dir, "config.json"))
  old = saved["custom_tasks"]
  new = str(tmp_path / "moved_tasks.json")
  common = [f"--model_dir={model_dir}", f"--data_dir={data_dir}",
            f"--cache_dir={saved['cache_dir']}"]
  os.rename(old, new)
  try:
    for mode in ("eval", "predict", "export"):
      proc = run_classifier_process([f"--mode={mode}"] + common)
      assert proc.returncode == 2, proc.stdout[-3000:]
      errors = [l for l in proc.stdout.splitlines() if l.startswith("error:")]
      assert errors == [
          f"error: --custom_tasks: {old}, the task declarations {model_dir} "
          "was trained with, is not there any more; give its new place with "
          "--custom_tasks=FILE"], mode
    out = run_classifier(["--mode=eval", f"--custom_tasks={new}"] + common)
    assert "wrote" in out
    evaluated = files.read_json(os.path.join(model_dir, "eval", "trial_0",
                                             "final", "results.json"))
    trained = files.read_json(os.path.join(model_dir, "results.json"))
    for task in ("spam", "tri"):
      assert (evaluated["trials"][0]["tasks"][task]["score"] ==
              pytest.approx(trained["trials"][0]["tasks"][task]["score"],
                            abs=1e-9))
    out = run_classifier(["--mode=predict", f"--custom_tasks={new}"] + common)
    assert f"spam_test.tsv: {ROWS['test']} rows" in out
    from bam_tf.serving import export  # pylint: disable=g-import-not-at-top
    base = str(tmp_path / "served")
    # --tasks matches names without case, as --task_names does.
    assert export.main([f"--model_dir={model_dir}", f"--export_dir={base}",
                        f"--custom_tasks={new}", "--tasks=Spam"]) == 0
    assert export.versions(base) == {1: os.path.join(base, "1")}
    meta = files.read_json(os.path.join(base, "1", "assets",
                                        export.METADATA_FILE))
    assert [t["name"] for t in meta["tasks"]] == ["spam"]
    assert export.main([f"--model_dir={model_dir}", f"--export_dir={base}",
                        "--tasks=spam,ham"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: --custom_tasks: {old}, the task declarations {model_dir} "
        "was trained with, is not there any more; give its new place with "
        "--custom_tasks=FILE")
  finally:
    os.rename(new, old)
