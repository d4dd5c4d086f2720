"""GLUE readers on the real files, user tasks, and bad-input errors."""

import os
import shutil

import pytest

from bam_tf.tasks import glue
from bam_tf.tasks import readers
from bam_tf.tasks import registry
from conftest import SHARED_TASKS


@pytest.mark.parametrize("name", SHARED_TASKS)
def test_official_counts_and_ids(glue_dir, name):
  task = glue.GLUE_TASKS[name]
  for split in ("train", "dev", "test"):
    examples = readers.read_examples(task, glue_dir, split,
                                     add_swapped=False)
    assert len(examples) == task.official_counts[split], (name, split)
    assert [e.eid for e in examples] == list(range(len(examples)))
    if split == "test":
      assert all(e.label == (0.0 if task.is_regression else
                             task.label_list[0]) for e in examples)


def test_columns_match_reference(glue_dir):
  rte = readers.read_examples(glue.GLUE_TASKS["rte"], glue_dir, "dev")
  assert rte[0].text_a.startswith("Dana Reeve, the widow")
  assert rte[0].text_b == "Christopher Reeve had an accident."
  assert rte[0].label == "not_entailment"
  cola = readers.read_examples(glue.GLUE_TASKS["cola"], glue_dir, "train")
  assert cola[0].text_a.startswith("Our friends won't buy this analysis")
  assert cola[0].label == "1" and cola[0].text_b is None
  sts = readers.read_examples(glue.GLUE_TASKS["sts"], glue_dir, "dev")
  assert (sts[0].text_a, sts[0].text_b, sts[0].label) == (
      "A man with a hard hat is dancing.",
      "A man wearing a hard hat is dancing.", 5.0)
  mrpc_test = readers.read_examples(glue.GLUE_TASKS["mrpc"], glue_dir, "test")
  assert mrpc_test[0].text_a.startswith("PCCW 's chief operating officer")


@pytest.mark.parametrize("name", ["mrpc", "sts"])
def test_double_unordered(glue_dir, name):
  task = glue.GLUE_TASKS[name]
  train = readers.read_examples(task, glue_dir, "train")
  n = task.official_counts["train"]
  assert len(train) == 2 * n
  for k in (0, 17, n - 1):
    orig, swapped = train[k], train[k + n]
    assert swapped.eid == orig.eid + n
    assert (swapped.text_a, swapped.text_b) == (orig.text_b, orig.text_a)
    assert swapped.label == orig.label
  dev = readers.read_examples(task, glue_dir, "dev")
  assert len(dev) == task.official_counts["dev"]


def test_debug_keeps_first_rows(glue_dir):
  ex = readers.read_examples(glue.GLUE_TASKS["rte"], glue_dir, "train",
                             max_rows=50)
  assert len(ex) == 50 and ex[-1].eid == 49


def test_aliases_and_unknown_names():
  names = [t.name for t in registry.get_tasks(["STS-B", "SST-2", "CoLA",
                                               "mnli"])]
  assert names == ["sts", "sst", "cola", "mnli"]
  assert len(registry.get_tasks(["all"])) == 9
  with pytest.raises(registry.TaskError, match="--task_names: unknown task "
                     "'glu'"):
    registry.get_tasks(["glu"])


def _copy_task(glue_dir, tmp_path, dir_name):
  dst = tmp_path / dir_name
  shutil.copytree(os.path.join(glue_dir, dir_name), dst)
  os.chmod(dst, 0o755)
  for f in dst.iterdir():
    os.chmod(f, 0o644)
  return dst


def _edit_line(path, line_no, fn):
  lines = path.read_bytes().split(b"\n")
  lines[line_no - 1] = fn(lines[line_no - 1])
  path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("task_name,dir_name,line,edit,message", [
    ("rte", "RTE", 5, lambda l: l + b"\textra", r"train.tsv:5: 5 columns, "
     r"expected 4"),
    ("rte", "RTE", 7, lambda l: l.rsplit(b"\t", 1)[0] + b"\tmaybe",
     r"train.tsv:7: unknown label 'maybe'"),
    ("rte", "RTE", 3, lambda l: l.replace(b"the", b"th\xff\xfe"),
     r"train.tsv:3: bytes that are not UTF-8"),
    ("sts", "STS-B", 4, lambda l: l.rsplit(b"\t", 1)[0] + b"\t7.5",
     r"train.tsv:4: score 7.5 is outside \[0.0, 5.0\]"),
])
def test_bad_rows_name_file_and_line(glue_dir, tmp_path, task_name, dir_name,
                                     line, edit, message):
  dst = _copy_task(glue_dir, tmp_path, dir_name)
  _edit_line(dst / "train.tsv", line, edit)
  with pytest.raises(readers.DataError, match=message):
    readers.read_examples(glue.GLUE_TASKS[task_name], str(tmp_path), "train")


def test_missing_header_empty_and_missing_files(glue_dir, tmp_path):
  dst = _copy_task(glue_dir, tmp_path, "RTE")
  lines = (dst / "dev.tsv").read_bytes().split(b"\n")
  (dst / "dev.tsv").write_bytes(b"\n".join(lines[1:]))
  with pytest.raises(readers.DataError, match=r"dev.tsv:1: the first row "
                     r"looks like data"):
    readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path), "dev")
  (dst / "train.tsv").write_bytes(b"")
  with pytest.raises(readers.DataError, match="train.tsv: the file is empty"):
    readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path), "train")
  (dst / "test.tsv").unlink()
  with pytest.raises(readers.DataError, match="test.tsv: the test file of "
                     "task 'rte' is missing"):
    readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path), "test")
  with pytest.raises(readers.DataError, match="task folder .*CoLA is missing"):
    readers.read_examples(glue.GLUE_TASKS["cola"], str(tmp_path), "train")
  with pytest.raises(readers.DataError, match="--data_dir="):
    readers.read_examples(glue.GLUE_TASKS["cola"], str(tmp_path / "nope"),
                          "train")


def test_custom_task_with_named_columns(tmp_path):
  folder = tmp_path / "Reviews"
  folder.mkdir()
  rows = ["id,review,stars", "0,great phone,pos", "1,broke in a day,neg",
          "2,\"quoted\" fine,pos"]
  (folder / "train.csv").write_text("\n".join(rows) + "\n")
  (folder / "dev.csv").write_text("\n".join(rows[:3]) + "\n")
  decl = ('{"name": "reviews", "dir_name": "Reviews", "kind": '
          '"classification", "label_list": ["neg", "pos"], "splits": {'
          '"train": {"file": "train.csv", "text_a_col": "review", '
          '"label_col": "stars", "delimiter": ","}, '
          '"dev": {"file": "dev.csv", "text_a_col": 1, "label_col": 2, '
          '"delimiter": ","}}}')
  custom = registry.load_custom_tasks(decl)
  task = registry.get_tasks(["reviews"], custom)[0]
  train = readers.read_examples(task, str(tmp_path), "train")
  assert [(e.text_a, e.label) for e in train] == [
      ("great phone", "pos"), ("broke in a day", "neg"),
      ('"quoted" fine', "pos")]
  assert len(readers.read_examples(task, str(tmp_path), "dev")) == 2
  with pytest.raises(registry.TaskError, match="kind must be"):
    registry.load_custom_tasks(decl.replace('"classification"', '"ranking"'))
