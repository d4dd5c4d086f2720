"""The README's first command at reduced size: BAM end to end (single-task
teachers, the teacher-annealed multi-task student, the teacher-vs-student
table) on the generated demo data, every task well above what a model that
ignores its input scores, and not one framework line on the terminal."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from bam_tf.common import files
from bam_tf.tools import demo_data
from conftest import REPO_ROOT, noise_lines

# Every task must clear its baseline (the best constant prediction) by
# this many points (x100) at the reduced size (120 training examples a task
# instead of 160); the README's full-size run clears it by 40 or more.
MARGIN = 20.0


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  """The README's command 1 in a scratch folder (its own copy of the
  configs, so runs/ lands there) on smaller demo data."""
  work = tmp_path_factory.mktemp("first_run")
  demo_data.write_demo_data(str(work / "demo_data"),
                            sizes={"train": 120, "dev": 80, "test": 8})
  shutil.copytree(os.path.join(REPO_ROOT, "official_configs"),
                  work / "official_configs")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py"),
       "--flagfile=official_configs/demo.cfg"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=1500, cwd=work)
  assert proc.returncode == 0, proc.stdout[-4000:]
  return work, proc.stdout


def test_student_and_teachers_beat_the_baselines(first_run):
  work, output = first_run
  rows = files.read_json(str(work / "runs/demo/student/comparison.json"))
  rows = {r["task"]: r for r in rows["tasks"]}
  assert sorted(rows) == ["mrpc", "sst", "sts"]
  for task, r in rows.items():
    assert r["student"] > r["baseline"] + MARGIN, (task, r)
    assert r["teacher"] > r["baseline"] + MARGIN, (task, r)
  # A constant predictor's best: the majority share, 0 for Spearman.
  assert rows["sts"]["baseline"] == 0.0
  assert 50.0 <= rows["sst"]["baseline"] < 75.0
  # The table is the run's last output, and the teachers ran first.
  assert "Teachers vs the BAM student" in output
  table = (work / "runs/demo/student/comparison.txt").read_text()
  assert table.strip() in output
  order = [output.index(f"Teacher runs/demo/teachers/{t}: training")
           for t in ("mrpc", "sst", "sts")]
  assert order == sorted(order) < [output.index("Teachers vs")] * 3
  # Teacher annealing shows in the student's progress lines.
  lambdas = [float(m) for m in re.findall(r"\| lambda (\d\.\d+) \|", output)]
  assert lambdas and lambdas == sorted(lambdas) and lambdas[-1] > 0.9


def test_terminal_has_no_framework_noise(first_run):
  _, output = first_run
  assert noise_lines(output) == []
  # Once, though the teachers train in the same process.
  assert len(re.findall(r"^\d\d:\d\d:\d\d Running on CPU \(\d+ cores\): "
                        r"--strategy=one_device, 1 replica$", output,
                        re.M)) == 1
  assert re.search(r"^\d\d:\d\d:\d\d step \d+/\d+ ", output, re.M)
