"""Bad input through the command line: run_classifier exits non-zero with one
line naming the file and line (or the flag) and what was expected, and
leaves nothing in --model_dir. Each case starts from real GLUE files made
bad in one way. (Teacher-file problems: tests/test_teacher_outputs.py; a
non-finite loss: tests/test_reliability.py; a batch not divisible by the
replicas: tests/test_distribution.py.)"""

import os
import re
import shutil
import sys

import pytest
from absl import flags

from conftest import REPO_ROOT

sys.path.insert(0, REPO_ROOT)
import run_classifier  # noqa: E402  pylint: disable=wrong-import-position


def _copy(glue_dir, dst, *dir_names):
  for name in dir_names:
    shutil.copytree(os.path.join(glue_dir, name), os.path.join(dst, name))


def _edit_line(path, line_no, fn):
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  lines[line_no - 1] = fn(lines[line_no - 1])
  with open(path, "wb") as f:
    f.write(b"\n".join(lines))


def _run(args, capsys):
  flags.FLAGS.unparse_flags()
  try:
    argv = flags.FLAGS(["run_classifier"] + args)
    code = run_classifier.main(argv)
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr().err


def _drop_header(path):
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  with open(path, "wb") as f:
    f.write(b"\n".join(lines[1:]))


def _truncate(path):
  open(path, "wb").close()


# name -> (task, folders to copy, how to break them, expected message)
DATA_CASES = {
    "missing_data_dir": ("rte", [], None, r"--data_dir"),
    "missing_task_folder": ("cola", ["RTE"], None,
                            r"task folder .*CoLA is missing"),
    "missing_split_file": ("rte", ["RTE"],
                           lambda d: os.remove(f"{d}/RTE/dev.tsv"),
                           r"RTE/dev.tsv"),
    "empty_file": ("rte", ["RTE"], lambda d: _truncate(f"{d}/RTE/train.tsv"),
                   r"RTE/train.tsv: the file is empty"),
    "wrong_column_count": ("rte", ["RTE"], lambda d: _edit_line(
        f"{d}/RTE/train.tsv", 5, lambda l: l + b"\textra"),
                           r"RTE/train.tsv:5: 5 columns, expected 4"),
    "unknown_label": ("rte", ["RTE"], lambda d: _edit_line(
        f"{d}/RTE/train.tsv", 7, lambda l: l.rsplit(b"\t", 1)[0] + b"\tmaybe"),
                      r"RTE/train.tsv:7: unknown label 'maybe'"),
    "non_utf8": ("rte", ["RTE"], lambda d: _edit_line(
        f"{d}/RTE/train.tsv", 3, lambda l: l.replace(b"the", b"th\xff\xfe")),
                 r"RTE/train.tsv:3: bytes that are not UTF-8"),
    "sts_score_out_of_range": ("sts", ["STS-B"], lambda d: _edit_line(
        f"{d}/STS-B/train.tsv", 4,
        lambda l: l.rsplit(b"\t", 1)[0] + b"\t7.5"),
                               r"STS-B/train.tsv:4: score 7.5 is outside "
                               r"\[0.0, 5.0\]"),
    "missing_header": ("rte", ["RTE"], lambda d: _drop_header(
        f"{d}/RTE/dev.tsv"), r"RTE/dev.tsv:1: the first row looks like data"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_file(case, glue_dir, tmp_path, capsys):
  task, folders, breaker, message = DATA_CASES[case]
  data = tmp_path / "glue"
  data.mkdir()
  _copy(glue_dir, str(data), *folders)
  if breaker:
    breaker(str(data))
  if case == "missing_data_dir":
    data = tmp_path / "nope"
  model_dir = tmp_path / "run"
  code, err = _run([f"--task_names={task}", f"--data_dir={data}",
                    f"--model_dir={model_dir}", "--debug",
                    f"--cache_dir={tmp_path / 'cache'}"], capsys)
  assert code != 0
  lines = [l for l in err.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, err
  assert re.search(message, lines[0]), lines[0]
  assert not model_dir.exists()


@pytest.mark.parametrize("args,message", [
    (["--task_names=rtee"], r"--task_names: unknown task 'rtee'"),
    (["--task_names=rte", "--max_seq_length=600"],
     r"--max_seq_length: 600 is above the encoder's 512 position"),
])
def test_bad_flags(args, message, glue_dir, tmp_path, capsys):
  model_dir = tmp_path / "run"
  code, err = _run(args + [f"--data_dir={glue_dir}",
                           f"--model_dir={model_dir}", "--debug",
                           f"--cache_dir={tmp_path / 'cache'}"], capsys)
  assert code != 0
  assert re.search(message, err), err
  assert not model_dir.exists()


@pytest.fixture(scope="module")
def embedded_export():
  from bam_tf.modeling import minilm  # pylint: disable=g-import-not-at-top
  return minilm.export_embedded_encoder()


def test_hub_path_that_is_not_a_bert_encoder(embedded_export, glue_dir,
                                             tmp_path, capsys):
  # A real TF-Hub SavedModel, but the preprocessor, not an encoder.
  model_dir = tmp_path / "run"
  code, err = _run(["--task_names=rte", f"--data_dir={glue_dir}",
                    f"--model_dir={model_dir}",
                    f"--hub_module_url={embedded_export['preprocessor']}"],
                   capsys)
  assert code != 0
  assert "does not look like a TF-Hub BERT encoder" in err, err
  assert "--hub_module_url must point to a BERT encoder" in err
  assert not model_dir.exists()


def test_vocab_that_does_not_match_the_encoder(embedded_export, glue_dir,
                                               tmp_path, capsys):
  vocab = tmp_path / "vocab.txt"
  with open(embedded_export["vocab_file"], encoding="utf-8") as f:
    vocab.write_text("".join(f.readlines()[:20000]), encoding="utf-8")
  model_dir = tmp_path / "run"
  code, err = _run(["--task_names=rte", f"--data_dir={glue_dir}",
                    f"--model_dir={model_dir}",
                    f"--hub_module_url={embedded_export['encoder']}",
                    f"--vocab_file={vocab}"], capsys)
  assert code != 0
  assert (f"--vocab_file {vocab}: 20000 tokens, but the encoder" in err
          and "embeds 30522 word ids" in err), err
  assert not model_dir.exists()
