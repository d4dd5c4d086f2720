"""--eval_every_steps (dev metrics while training, validation/ TensorBoard
curves) and --mode=eval (a finished run's final weights or one of its
checkpoints on dev, without training).

Three --debug runs of 6 steps on RTE + STS-B (checkpoints at 2, 4, 6): A
evaluates every 2 steps, B not at all, C is B cut back to its step-2
checkpoint and resumed with --eval_every_steps=2. A and B train together;
C trains in the background while the --mode=eval tests evaluate A in this
process. Bad --checkpoint values: tests/test_bad_input.py.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from bam_tf import configure
from bam_tf.common import files
from bam_tf_experiments.plots import read_scalars
from conftest import REPO_ROOT
from conftest import assert_same_dev_predictions
from conftest import comparable_results
from conftest import finish

sys.path.insert(0, REPO_ROOT)
import run_classifier  # noqa: E402  pylint: disable=wrong-import-position

TASKS = ("rte", "sts")
STEPS, EVERY = 6, 2
TAGS = {"rte/accuracy", "sts/pearson", "sts/spearman",
        "average/paper_average", "average/glue_average"}


def _train_args(model_dir, glue_dir, cache_dir, *extra):
  return [os.path.join(REPO_ROOT, "run_classifier.py"),
          f"--task_names={','.join(TASKS)}", f"--data_dir={glue_dir}",
          f"--model_dir={model_dir}", f"--cache_dir={cache_dir}", "--debug",
          f"--max_train_steps={STEPS}", "--train_batch_size=8",
          "--eval_batch_size=8", f"--save_checkpoints_steps={EVERY}",
          "--keep_checkpoint_max=3", "--teacher_output_trials="] + list(extra)


def _start(args):
  return subprocess.Popen([sys.executable] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)


def _cut_back_to_step(model_dir, step, new_dir):
  """A copy of a finished run as a kill after the checkpoint of `step`
  leaves it (no later checkpoints, no results, no final weights)."""
  shutil.copytree(model_dir, new_dir)
  trial = os.path.join(new_dir, "trial_0")
  for name in ("results.json", "results.txt"):
    os.remove(os.path.join(new_dir, name))
  for name in ("final", "predictions"):
    shutil.rmtree(os.path.join(trial, name))
  ckpts = os.path.join(trial, "checkpoints")
  for name in os.listdir(ckpts):
    if name.startswith("ckpt-") and not name.startswith(f"ckpt-{step}."):
      os.remove(os.path.join(ckpts, name))
  with open(os.path.join(ckpts, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "ckpt-{step}"\n'
            f'all_model_checkpoint_paths: "ckpt-{step}"\n')
  path = os.path.join(new_dir, "config.json")
  with open(path) as f:
    config = json.load(f)
  config["model_dir"] = new_dir
  with open(path, "w") as f:
    json.dump(config, f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, glue_dir):
  root = tmp_path_factory.mktemp("eval_mode")
  dirs = {k: str(root / k) for k in "ABC"}
  cache = str(root / "cache")
  procs = {"A": _start(_train_args(dirs["A"], glue_dir, cache,
                                   f"--eval_every_steps={EVERY}")),
           "B": _start(_train_args(dirs["B"], glue_dir, cache))}
  out = {}
  for k, proc in procs.items():
    code, out[k] = finish(proc)
    assert code == 0, out[k][-4000:]
  _cut_back_to_step(dirs["B"], EVERY, dirs["C"])
  resumed = _start(_train_args(dirs["C"], glue_dir, cache,
                               f"--eval_every_steps={EVERY}"))
  try:
    yield dict(dirs, out=out, resumed=resumed, glue_dir=glue_dir,
               cache=cache)
  finally:
    if resumed.poll() is None:
      resumed.kill()
      resumed.communicate()


def _validation(model_dir):
  return read_scalars(os.path.join(model_dir, "trial_0", "tensorboard",
                                   "validation"))


def _metrics(results, trial=0):
  """{tag: value} of a results.json trial, as the validation/ tags."""
  record = [t for t in results["trials"] if t["trial"] == trial][0]
  out = {f"{task}/{k}": v for task, m in record["tasks"].items()
         for k, v in m.items()}
  out.update({f"average/{k}": v for k, v in record["averages"].items()})
  return out


def test_periodic_evaluation_does_not_change_training(runs):
  assert comparable_results(runs["A"]) == comparable_results(runs["B"])
  assert_same_dev_predictions(runs["A"], runs["B"], TASKS)
  assert not os.path.exists(os.path.join(runs["B"], "trial_0",
                                         "tensorboard", "validation"))
  assert "eval at step" not in runs["out"]["B"]


def test_validation_curves_end_with_the_final_evaluation(runs):
  scalars = _validation(runs["A"])
  assert set(scalars) == TAGS
  for tag in TAGS:
    assert [s for s, _ in scalars[tag]] == [2, 4, 6], tag
  final = _metrics(files.read_json(os.path.join(runs["A"], "results.json")))
  for tag in TAGS:
    assert scalars[tag][-1][1] == np.float32(final[tag]), tag
  out = runs["out"]["A"]
  for step in (2, 4, 6):  # one line each: the last step is evaluated once
    assert out.count(f"eval at step {step}/{STEPS} | rte accuracy ") == 1
  assert f"| sts pearson {final['sts/pearson']:.2f} spearman " in out


def _eval(model_dir, capsys, *extra):
  flags.FLAGS.unparse_flags()
  try:
    argv = flags.FLAGS(["run_classifier", "--mode=eval",
                        f"--model_dir={model_dir}"] + list(extra))
    code = run_classifier.main(argv)
  finally:
    flags.FLAGS.unparse_flags()
  captured = capsys.readouterr()
  assert code == 0, captured.err[-4000:]
  return captured.out


def _npz(path):
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


def _eval_record(model_dir, name):
  out_dir = os.path.join(model_dir, "eval", "trial_0", name)
  results = files.read_json(os.path.join(out_dir, "results.json"))
  preds = {t: _npz(os.path.join(out_dir, "predictions", f"{t}_dev.npz"))
           for t in TASKS}
  return results, preds


def test_eval_mode_gives_the_end_of_training_results(runs, capsys):
  run = runs["A"]
  own = {name: files.read_bytes(os.path.join(run, name))
         for name in ("results.json", "results.txt")}
  out = _eval(run, capsys, f"--cache_dir={runs['cache']}")
  assert "Evaluation of trial 0: final weights (step 6)" in out
  assert f"wrote {run}/eval/trial_0/final" in out
  results, preds = _eval_record(run, "final")
  trained = files.read_json(os.path.join(run, "results.json"))
  assert results["trials"][0]["tasks"] == trained["trials"][0]["tasks"]
  assert results["trials"][0]["averages"] == trained["trials"][0]["averages"]
  assert results["weights"]["name"] == "final"
  assert results["config"]["mode"] == "eval"
  for task in TASKS:
    want = _npz(os.path.join(run, "trial_0", "predictions", f"{task}_dev.npz"))
    assert sorted(preds[task]) == sorted(want)
    for key in want:
      np.testing.assert_array_equal(preds[task][key], want[key], key)
  # The run's own records are untouched.
  for name, data in own.items():
    assert files.read_bytes(os.path.join(run, name)) == data, name
  assert files.read_text(os.path.join(
      run, "eval", "trial_0", "final", "results.txt")) in out


def test_eval_mode_of_a_checkpoint(runs, capsys):
  """ckpt-4 gives what the periodic evaluation at step 4 logged, not the
  final weights' results, and the same again when evaluated twice; the
  checkpoints folder means its latest (step 6: the final weights)."""
  run = runs["A"]
  # Where configure looks for them is where the trainer saves them.
  ckpts = os.path.join(run, "trial_0", configure.CHECKPOINTS_DIR)
  assert os.path.isfile(os.path.join(ckpts, "ckpt-4.index"))
  cache = f"--cache_dir={runs['cache']}"
  out = _eval(run, capsys, cache, f"--checkpoint={ckpts}/ckpt-4")
  assert "Evaluation of trial 0: ckpt-4 weights (step 4)" in out
  first, first_preds = _eval_record(run, "ckpt-4")
  assert first["weights"]["path"] == os.path.join(ckpts, "ckpt-4")
  at_4 = {tag: dict(points)[4] for tag, points in _validation(run).items()}
  got = _metrics(first)
  for tag in TAGS:
    assert np.float32(got[tag]) == at_4[tag], tag
  trained = _npz(os.path.join(run, "trial_0", "predictions", "sts_dev.npz"))
  assert not np.array_equal(first_preds["sts"]["prediction"],
                            trained["prediction"])
  # Twice: the same (the index file named instead of the prefix).
  _eval(run, capsys, cache, f"--checkpoint={ckpts}/ckpt-4.index")
  again, again_preds = _eval_record(run, "ckpt-4")
  for key in ("tasks", "averages"):
    assert again["trials"][0][key] == first["trials"][0][key]
  for task in TASKS:
    for key, value in first_preds[task].items():
      np.testing.assert_array_equal(again_preds[task][key], value)
  # The folder: its latest checkpoint, the last step's weights.
  out = _eval(run, capsys, cache, f"--checkpoint={ckpts}")
  assert "ckpt-6 weights (step 6)" in out
  latest, _ = _eval_record(run, "ckpt-6")
  trained = files.read_json(os.path.join(run, "results.json"))
  assert latest["trials"][0]["tasks"] == trained["trials"][0]["tasks"]


def test_resumed_run_continues_periodic_evaluation(runs):
  code, out = finish(runs["resumed"])
  assert code == 0, out[-4000:]
  assert f"Resumed from {runs['C']}/trial_0/checkpoints/ckpt-2" in out
  assert "eval at step 2/" not in out
  assert comparable_results(runs["C"]) == comparable_results(runs["A"])
  resumed, unbroken = _validation(runs["C"]), _validation(runs["A"])
  assert set(resumed) == TAGS
  for tag in TAGS:
    assert resumed[tag] == unbroken[tag][1:], tag  # steps 4 and 6
