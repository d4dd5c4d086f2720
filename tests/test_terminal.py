"""What a user sees: `--help` lists every project flag by group, framework
lines are off unless --verbosity asks, long predictions show progress."""

import logging
import os
import re
import subprocess
import sys

from absl import logging as absl_logging

from bam_tf import configure
from bam_tf.common import console
from bam_tf.evaluation import evaluator
from bam_tf.tools import demo_data
from conftest import REPO_ROOT, noise_lines


def _run(args, cwd, env=None):
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py")] + args,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=600, cwd=cwd, env=env)
  return proc.returncode, proc.stdout


def test_noise_pattern_catches_framework_lines():
  framework = [
      "I1201 12:54:20.518433 140486805355392 functional_saver.py:440] "
      "Sharding callback duration: 66 microseconds",
      "2026-12-01 12:54:12.499360: E external/local_xla/xla/stream_executor"
      "/cuda/cuda_platform.cc:51] failed call to cuInit: INTERNAL",
      "W1201 13:00:01.1 1 polymorphic_function.py:157] 5 out of the last 5 "
      "calls to <function> triggered tf.function retracing.",
      "/x/site-packages/keras/src/x.py:7: UserWarning: something"]
  ours = ["13:16:32 Trial 0 already finished; skipping",
          "  sst: 1 copy, loss weight 1.1458, 20.0% of examples",
          "sts  | spearman |     0.00 |   81.05 |   88.39 |  +7.34"]
  assert noise_lines("\n".join(framework + ours)) == framework


def test_help_lists_every_project_flag_by_group(tmp_path):
  code, out = _run(["--help"], tmp_path)
  assert code == 0, out
  headings = [out.index(f"\n{configure._GROUP_TITLES[g]}:\n")
              for g in configure.FLAG_GROUPS]
  assert headings == sorted(headings)
  listed = re.findall(r"^  --(\w+) \(default: ", out, re.M)
  settings = [s for s in configure.SETTINGS if not s.derived]
  assert sorted(listed) == sorted(s.name for s in settings)
  for s in settings:  # under its own group's heading, with its help
    at = out.index(f"\n  --{s.name} (default: ")
    group = configure.FLAG_GROUPS.index(s.group)
    assert headings[group] < at
    assert group + 1 == len(headings) or at < headings[group + 1]
    first_words = " ".join(s.help.split()[:3])
    assert first_words in " ".join(out[at:].split()[:60]), s.name
  # absl's own flags stay in --helpfull.
  assert "logtostderr" not in out
  _, full = _run(["--helpfull"], tmp_path)  # absl exits 1 after it
  assert "logtostderr" in full and "--task_names" in full


def test_every_setting_has_a_group():
  for s in configure.SETTINGS:
    assert (s.group in configure.FLAG_GROUPS) != s.derived, s.name


def test_only_project_records_pass_by_default():
  def record(path, level=logging.INFO):
    return logging.LogRecord("x", level, path, 1, "message", None, None)

  project = os.path.join(REPO_ROOT, "bam_tf", "runner.py")
  framework = os.path.join(os.path.dirname(logging.__file__), "x.py")
  handler = absl_logging.get_absl_handler()
  filters, formatter = list(handler.filters), handler.formatter
  try:
    console.setup(verbose=False)
    assert handler.filter(record(project))
    assert handler.filter(record(project, logging.WARNING))
    assert not handler.filter(record(framework))
    assert not handler.filter(record(framework, logging.WARNING))
    assert handler.filter(record(framework, logging.ERROR))
    assert re.fullmatch(r"\d\d:\d\d:\d\d warning: message",
                        handler.format(record(project, logging.WARNING)))
    console.setup(verbose=True)  # everything, in absl's format
    assert handler.filter(record(framework))
    assert re.match(r"I\d{4} ", handler.format(record(framework)))
  finally:
    os.environ.pop(console.VERBOSE_ENV, None)
    for f in list(handler.filters):
      handler.removeFilter(f)
    for f in filters:
      handler.addFilter(f)
    handler.setFormatter(formatter)
    logging.captureWarnings(False)


def test_verbosity_brings_the_framework_lines_back(tmp_path):
  demo_data.write_demo_data(str(tmp_path / "demo_data"),
                            sizes={"train": 8, "dev": 8, "test": 4})
  args = ["--mode=inspect_data", "--debug", "--task_names=sst",
          f"--data_dir={tmp_path / 'demo_data'}"]
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", console.VERBOSE_ENV)}
  code, quiet = _run(args, tmp_path, env)
  assert code == 0, quiet
  assert noise_lines(quiet) == []
  code, verbose = _run(args + ["--verbosity=0"], tmp_path, env)
  assert code == 0, verbose
  # TensorFlow's own start-up lines (C++: CUDA, CPU features) are back.
  assert noise_lines(verbose)


def test_long_predictions_show_progress(monkeypatch):
  lines = []
  monkeypatch.setattr(evaluator.logging, "info",
                      lambda fmt, *args: lines.append(fmt % args))
  clock = iter([0.0, 1.0, 20.0, 21.0, 40.0, 41.0])
  monkeypatch.setattr(evaluator.time, "time", lambda: next(clock))
  progress = evaluator.Progress("mrpc train", 300)  # t=0
  progress.update(100)  # t=1: too soon for a line
  progress.update(100)  # t=20
  progress.update(100)  # t=21
  progress.done()       # t=40
  assert lines == [
      "predicting mrpc train: 200/300 examples (67%) | 10 examples/s "
      "| ETA 0m10s",
      "predicted mrpc train: 300 examples in 0m40s"]
  lines.clear()
  clock = iter([0.0, 1.0, 2.0])
  quick = evaluator.Progress("sst dev", 10)
  quick.update(10)
  quick.done()
  assert lines == []  # a short prediction prints nothing


def test_tensorflow_warnings_logged_before_set_up_stay_filtered():
  """TensorFlow adds a handler of its own to its logger when it logs before
  absl's is installed (the benchmark did): its retracing warnings printed
  past the filter until console.setup took that handler away."""
  script = (
      "import bam_tf\n"
      "import tensorflow as tf\n"
      "from absl import app\n"
      "from bam_tf.common import console\n"
      "tf.get_logger()  # before app.run installs absl's handler\n"
      "def main(argv):\n"
      "  console.setup(verbose=False)\n"
      "  for _ in range(8):  # retraces a new function each time\n"
      "    tf.function(lambda x: x + 1)(tf.constant(1.0))\n"
      "  print('done')\n"
      "app.run(main)\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout
  assert "done" in proc.stdout
  assert noise_lines(proc.stdout) == []
