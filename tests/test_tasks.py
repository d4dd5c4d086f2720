"""GLUE readers on the real files, user tasks, and bad-input errors."""

import dataclasses
import json
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
  # A test split has no label to give it away: its id column does. Read
  # as it is, the first example would be taken for the header, dropped, and
  # every id after it shifted by one.
  test_lines = (dst / "test.tsv").read_bytes().split(b"\n")
  assert len(readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path),
                                   "test")) == 3000
  (dst / "test.tsv").write_bytes(b"\n".join(test_lines[1:]))
  with pytest.raises(readers.DataError, match=r"test.tsv:1: the first row "
                     r"looks like data \(it starts with the id '0', as the "
                     r"rows below it do\)"):
    readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path), "test")
  # Old Mac line endings: one line, read as a header with no data rows.
  (dst / "dev.tsv").write_bytes(b"\r".join(lines))
  with pytest.raises(readers.DataError, match=r"dev.tsv: its lines end in "
                     r"'\\r' alone; expected '\\n' or '\\r\\n'"):
    readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path), "dev")
  (dst / "dev.tsv").write_bytes(b"\r\n".join(lines))  # Windows: fine
  assert len(readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path),
                                   "dev")) == 277
  (dst / "dev.tsv").unlink()
  (dst / "dev.tsv").mkdir()
  with pytest.raises(readers.DataError, match="dev.tsv: the dev file of "
                     "task 'rte' is a folder, not a file"):
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


def test_rows_end_at_newline_only_and_fields_have_no_length_limit(glue_dir,
                                                                  tmp_path):
  """U+2028, U+2029, U+0085, form feed, vertical tab and a lone '\\r' are
  text inside a field (str.splitlines would end the row there), '\\r\\n'
  ends a row like '\\n', and a field longer than the csv module's default
  limit (131072 characters) is read whole."""
  dst = _copy_task(glue_dir, tmp_path, "RTE")
  lines = (dst / "train.tsv").read_text(encoding="utf-8").split("\n")
  odd = "a\u2028b\u2029c\x85d\x0ce\x0bf\rg"
  cols = lines[1].split("\t")
  label = cols[3]
  lines[1] = "\t".join([cols[0], odd, cols[2], cols[3]]) + "\r"
  long_text = "word " * 40000  # 200,000 characters
  cols = lines[2].split("\t")
  lines[2] = "\t".join([cols[0], long_text, cols[2], cols[3]])
  (dst / "train.tsv").write_text("\n".join(lines), encoding="utf-8")
  examples = readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path),
                                   "train")
  assert len(examples) == glue.GLUE_TASKS["rte"].official_counts["train"]
  assert (examples[0].text_a, examples[0].label) == (odd, label)
  assert examples[1].text_a == long_text
  # Line numbers count '\n' only: a bad row after them is named right.
  _edit_line(dst / "train.tsv", 9, lambda l: l + b"\textra")
  with pytest.raises(readers.DataError, match=r"train.tsv:9: 5 columns"):
    readers.read_examples(glue.GLUE_TASKS["rte"], str(tmp_path), "train")


def _decl(**split_changes):
  split = {"file": "train.csv", "text_a_col": 1, "label_col": 2,
           "delimiter": ","}
  split.update(split_changes)
  return {"name": "reviews", "kind": "classification",
          "label_list": ["neg", "pos"],
          "splits": {"train": split, "dev": dict(split, file="dev.csv")}}


@pytest.mark.parametrize("decl,message", [
    (dict(_decl(), name="a/b"), r"task name 'a/b' must be a file name"),
    (dict(_decl(), name=".."), r"task name '..' must be a file name"),
    (dict(_decl(), name=7), r"task name 7 must be a file name"),
    (dict(_decl(), dir_name="x/../../y"), r"dir_name 'x/../../y' leaves"),
    (_decl(file="..\\..\\t.csv"), r"file '..\\\\..\\\\t.csv' leaves"),
    (dict(_decl(), label_list=["neg", " pos"]), r"label ' pos' is empty or "
     "has surrounding spaces"),
    (dict(_decl(), label_list=["neg", "neg"]), r"names a label twice"),
    (dict(_decl(), kind="regression", label_range=[5, 0]),
     r"label_range must be \[min, max\]"),
    (dict(_decl(), metric="auc"), r"^test: metric: a classification task's "
     r"metrics are accuracy, f1, macro_f1, mcc; got 'auc'$"),
    (dict(_decl(), label_list=["a", "b", "c"], metric="f1"),
     r"^test: metric: f1 is binary F1 and this task has 3 labels: use "
     r"macro_f1"),
    (dict(_decl(), metrics=["accuracy", "spearman"]),
     r"^test: metrics\[1\]: a classification task's metrics are"),
    (dict(_decl(), kind="regression", metric="mcc"),
     r"^test: metric: a regression task's metrics are pearson, spearman"),
    (dict(_decl(), metrics="f1"), r"^test: metrics: must be a list"),
    (dict(_decl(), metrics=["f1", "f1"]), r"^test: metrics: names a metric "
     "twice"),
    (dict(_decl(), positive_label="yes"), r"^test: positive_label: 'yes' is "
     "not one of label_list"),
    (dict(_decl(), label_list=["a", "b", "c"], positive_label="a"),
     r"^test: positive_label: only a binary classification task"),
    (_decl(text_a_col=1.5), r"text_a_col must be a 0-based column number"),
    (_decl(text_a_col="review", has_header=False), r"text_a_col name header "
     "columns, but has_header is false"),
    (_decl(delimiter="\n"), r"delimiter must be one character"),
    (dict(_decl(), splits=[]), r"splits must be an object"),
    ("reviews", r"a task declaration is a JSON object"),
])
def test_custom_task_declarations_are_checked(decl, message):
  with pytest.raises(registry.TaskError, match=message):
    registry.custom_task_from_dict(decl, "test")


def test_a_quoted_csv_split_reads_what_a_spreadsheet_wrote(tmp_path):
  """quotechar set: a quoted field holds the delimiter, a doubled quote and
  a line break (pandas' and spreadsheets' CSV); ids count rows, errors name
  the line a row starts on; a stray quote is an error, not a merged row.
  Unquoted (the default, the original's reading) keeps quotes as text."""
  folder = tmp_path / "reviews"
  folder.mkdir()
  (folder / "train.csv").write_text(
      'id,review,stars\r\n'
      '0,"great, really",pos\r\n'
      '1,"a ""quoted"" word",neg\r\n'
      '2,"two\nlines",pos\r\n'
      '3,plain,neg\r\n', newline="")
  decl = _decl(file="train.csv", text_a_col="review", label_col="stars",
               quotechar='"')
  task = registry.custom_task_from_dict(decl, "test")
  readers.check_columns(task, str(tmp_path))
  examples = readers.read_examples(task, str(tmp_path), "train")
  assert [(e.eid, e.text_a, e.label) for e in examples] == [
      (0, "great, really", "pos"), (1, 'a "quoted" word', "neg"),
      (2, "two\nlines", "pos"), (3, "plain", "neg")]
  with open(folder / "train.csv", "a", newline="") as f:
    f.write('4,"three\nmore\nlines",pos,extra\r\n')
  with pytest.raises(readers.DataError, match=r"train.csv:7: 4 columns, "
                     r"expected 3 \(separated by ','"):
    readers.read_examples(task, str(tmp_path), "train")
  with open(folder / "train.csv", "r+", newline="") as f:
    f.seek(0)
    text = f.read().replace(",extra", "")
    f.seek(0)
    f.write(text + '5,"stray" quote,neg\r\n')
  with pytest.raises(readers.DataError, match=r"train.csv:10: .* \(the "
                     r"split is read as CSV quoted with '\"'\)$"):
    readers.read_examples(task, str(tmp_path), "train")
  # Unquoted, the first quoted field splits at its comma.
  unquoted = registry.custom_task_from_dict(dict(decl, splits={
      s: dict(l, quotechar=None) for s, l in decl["splits"].items()}),
                                            "test")
  with pytest.raises(readers.DataError, match=r"train.csv:2: 4 columns"):
    readers.read_examples(unquoted, str(tmp_path), "train")
  for bad in (",", "\n", "ab", 1):
    with pytest.raises(registry.TaskError, match=r"quotechar must be null "
                       r"\(no quoting\) or one character"):
      registry.custom_task_from_dict(_decl(quotechar=bad), "test")


def test_a_field_added_later_is_not_a_changed_declaration():
  """A run recorded its declaration before SplitLayout had quotechar: the
  new field's null default is not a change; a set one is."""
  task = registry.custom_task_from_dict(_decl(), "test")
  now = registry.task_declarations([task])
  before = json.loads(json.dumps(now))
  for layout in before["reviews"]["splits"].values():
    del layout["quotechar"]
  assert registry.declaration_change(before, now) == ""
  quoted = registry.task_declarations([registry.custom_task_from_dict(
      _decl(quotechar='"'), "test")])
  assert registry.declaration_change(before, quoted).startswith(
      "task reviews's splits is ")


def test_unlabelled_numbered_split_must_say_whether_it_has_a_header(
    tmp_path):
  """A test file given by column numbers and without labels: the first row
  could be a header or the first example, and the default would silently
  drop it and shift every test id by one."""
  folder = tmp_path / "reviews"
  folder.mkdir()
  (folder / "test.csv").write_text("0,first review\n1,second review\n")
  decl = _decl()
  decl["splits"]["test"] = {"file": "test.csv", "text_a_col": 1,
                            "delimiter": ","}
  with pytest.raises(registry.TaskError, match=(
      r"^test: split 'test': columns are given by number and there is no "
      r"label_col, so nothing tells a header row from data: declare "
      r'"has_header": true or false$')):
    registry.custom_task_from_dict(decl, "test")
  decl["splits"]["test"]["has_header"] = False
  task = registry.custom_task_from_dict(decl, "test")
  examples = readers.read_examples(task, str(tmp_path), "test")
  assert [(e.eid, e.text_a) for e in examples] == [(0, "first review"),
                                                   (1, "second review")]
  # Declared with a header, the id column gives the data away.
  decl["splits"]["test"]["has_header"] = True
  task = registry.custom_task_from_dict(decl, "test")
  with pytest.raises(readers.DataError, match=r"test.csv:1: the first row "
                     "looks like data"):
    readers.read_examples(task, str(tmp_path), "test")
  (folder / "test.csv").write_text("id,review\n0,first review\n")
  examples = readers.read_examples(task, str(tmp_path), "test")
  assert [(e.eid, e.text_a) for e in examples] == [(0, "first review")]
  # A named column says the file has a header; a labelled split is checked
  # by its first row's label (the reader refuses data as a header).
  decl["splits"]["test"] = {"file": "test.csv", "text_a_col": "text"}
  registry.custom_task_from_dict(decl, "test")


def test_custom_task_paths_and_columns(tmp_path):
  outside = tmp_path / "elsewhere" / "train.csv"
  outside.parent.mkdir()
  outside.write_text("id,review,stars\n0,fine,pos\n")
  # An absolute file is used as given (on purpose outside --data_dir).
  task = registry.custom_task_from_dict(_decl(file=str(outside)), "test")
  data = tmp_path / "data"
  data.mkdir()
  assert readers.split_path(task, str(data), "train") == str(outside)
  readers.check_columns(task, str(data))  # dev.csv is missing: not checked
  bad = registry.custom_task_from_dict(_decl(file=str(outside),
                                             label_col=3), "test")
  with pytest.raises(readers.DataError, match=r"train.csv:1: label_col is "
                     r"column 3, but the first row has 3 columns"):
    readers.check_columns(dataclasses.replace(bad, splits={
        "train": dataclasses.replace(bad.splits["train"],
                                     has_header=False)}), str(data))
  # The same check where the split is read.
  with pytest.raises(readers.DataError, match=r"train.csv:1: label_col is "
                     "column 3, but the header has 3 columns"):
    readers.read_examples(bad, str(data), "train")


@pytest.mark.parametrize("name,glue_name", [("rte", "rte"), ("RTE", "rte"),
                                            ("Sts-B", "sts"), ("sst2", "sst")])
def test_custom_task_names_clash_with_glue_in_any_case(name, glue_name):
  # --task_names=RTE means GLUE's rte (README); a user task "RTE" may not
  # take that spelling over.
  decl = dict(_decl(), name=name)
  with pytest.raises(registry.TaskError, match=rf"^--custom_tasks: custom "
                     rf"task name '{name}' clashes with the GLUE task "
                     rf"'{glue_name}' \(task names are matched without "
                     r"case\)$"):
    registry.load_custom_tasks(json.dumps(decl))


def test_custom_tasks_flag_file_or_inline(tmp_path):
  with pytest.raises(registry.TaskError, match=r"--custom_tasks: file "
                     r".*tasks.json not found"):
    registry.load_custom_tasks(str(tmp_path / "tasks.json"))
  with pytest.raises(registry.TaskError, match=r"is a folder"):
    registry.load_custom_tasks(str(tmp_path))
  with pytest.raises(registry.TaskError, match=r"^--custom_tasks: not valid "
                     "JSON"):
    registry.load_custom_tasks('{"name": ')
  twice = json.dumps([_decl(), _decl()])
  with pytest.raises(registry.TaskError, match=r"'reviews' is declared "
                     "twice"):
    registry.load_custom_tasks(twice)
