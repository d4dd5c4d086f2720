"""Reads task files into `Example`s, refusing bad rows with file and line.

Files are read as the original does: tab-separated (or the declared
delimiter), no quote character (GLUE text has stray quotes), header rows
skipped, example ids = row index after the header. Only '\\n' (with an
optional '\\r' before it) ends a row, as the original's line reader: U+2028,
U+0085, form feeds or a lone '\\r' are text inside a field (the tokenizer
treats them as whitespace), and a field may be of any length. A user split
that declares a `quotechar` is read as RFC 4180 CSV instead (a spreadsheet's
or pandas' export), where a row ends at a line break outside quotes.
"""

import csv
import io
import os
from typing import List, Optional

import numpy as np

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.tasks.task import Example, SplitLayout, TaskSpec


class DataError(BamError):
  """A data file that cannot be read as its task declares."""


def split_path(task: TaskSpec, data_dir: str, split: str) -> str:
  if split not in task.splits:
    raise DataError(f"task {task.name!r} has no split {split!r}; it has "
                    f"{', '.join(task.splits)}")
  path = os.path.join(data_dir, task.dir_name, task.splits[split].file)
  # normpath would fold a scheme's "//" (gs://bucket/...).
  return os.path.normpath(path) if files.is_local(path) else path


def check_split_file(task: TaskSpec, data_dir: str, split: str) -> str:
  """Returns the split's path, or a DataError naming what is missing."""
  if not data_dir or not files.isdir(data_dir):
    raise DataError(f"--data_dir={data_dir!r} is not a directory; expected "
                    "a glue_data root with one folder per task")
  task_dir = os.path.join(data_dir, task.dir_name)
  layout = task.splits.get(split)
  absolute = layout is not None and (os.path.isabs(layout.file)
                                     or not files.is_local(layout.file))
  if not absolute and not files.isdir(task_dir):
    raise DataError(f"task folder {task_dir} is missing (task {task.name!r} "
                    f"reads {task.dir_name}/ under --data_dir)")
  path = split_path(task, data_dir, split)
  if files.isdir(path):
    raise DataError(f"{path}: the {split} file of task {task.name!r} is a "
                    "folder, not a file")
  if not files.isfile(path):
    raise DataError(f"{path}: the {split} file of task {task.name!r} is "
                    "missing")
  return path


def _decode(path: str, raw: bytes) -> str:
  if raw.startswith(b"\xef\xbb\xbf"):
    raw = raw[3:]
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise DataError(f"{path}:{line}: bytes that are not UTF-8 "
                    f"({raw[e.start:e.start + 4]!r}); expected UTF-8 "
                    "text") from e


def _split_row(line: str, delimiter: str) -> List[str]:
  """One line (without its '\\n') -> fields; an empty line has none."""
  if line.endswith("\r"):
    line = line[:-1]
  return line.split(delimiter) if line else []


def _decode_lines(path: str) -> List[str]:
  """The file's lines: split at '\\n' only (not str.splitlines, which also
  splits at U+2028, U+0085, form feeds and a lone '\\r')."""
  raw = files.read_bytes(path)
  if not raw.strip():
    raise DataError(f"{path}: the file is empty")
  text = _decode(path, raw)
  if "\n" not in text and "\r" in text.rstrip("\r"):
    # Old Mac line endings: read as one line, the file looked like a header
    # with no data rows.
    raise DataError(f"{path}: its lines end in '\\r' alone; expected '\\n' "
                    "or '\\r\\n' (convert it, e.g. tr '\\r' '\\n')")
  return text.split("\n")


def first_row(path: str, layout: SplitLayout) -> List[str]:
  """The fields of a file's first line (its header, or first data row)."""
  line = files.read_first_line(path)
  if not line.strip():
    raise DataError(f"{path}:1: the first line is empty")
  text = _decode(path, line).rstrip("\n")
  if layout.quotechar is not None:
    return _csv_rows(path, text, layout)[0][1]
  return _split_row(text, layout.delimiter)


# The csv module refuses a field over 131072 characters by default; fields
# may be of any length here, as in unquoted files.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


def _csv_rows(path: str, text: str, layout: SplitLayout):
  """[(line of the row's start, fields)] of RFC 4180 text (quotechar set):
  Python's csv reader, strict, so a stray quote is an error naming its line
  rather than a silently merged row."""
  reader = csv.reader(io.StringIO(text, newline=""),
                      delimiter=layout.delimiter, quotechar=layout.quotechar,
                      doublequote=True, strict=True)
  rows, start = [], 1
  try:
    for row in reader:
      rows.append((start, row))
      start = reader.line_num + 1
  except csv.Error as e:
    raise DataError(f"{path}:{reader.line_num}: {e} (the split is read as "
                    f"CSV quoted with {layout.quotechar!r})") from None
  return rows


def _resolve_col(col, header: Optional[List[str]], width: int,
                 layout_name: str, path: str):
  """A declared column -> its index, checked against the first row."""
  if col is None:
    return col
  if isinstance(col, int):
    if not -width <= col < width:
      raise DataError(f"{path}:1: {layout_name} is column {col}, but the "
                      f"{'header' if header is not None else 'first row'} "
                      f"has {width} columns (numbered from 0)")
    return col
  if header is None:
    raise DataError(f"{path}: {layout_name} names column {col!r}, but the "
                    "split is declared without a header")
  try:
    return header.index(col)
  except ValueError:
    raise DataError(f"{path}:1: no column named {col!r} in the header "
                    f"{header}") from None


def check_columns(task: TaskSpec, data_dir: str):
  """Checks every split's declared columns against the first row of its
  file, where the file exists (a missing one is reported when the split is
  read). Cheap: reads one line per file; for user-declared tasks before a
  run starts."""
  for split, layout in task.splits.items():
    path = split_path(task, data_dir, split)
    if not files.isfile(path) or files.getsize(path) == 0:
      continue
    row = first_row(path, layout)
    header = row if layout.has_header else None
    for name in ("text_a_col", "text_b_col", "label_col"):
      _resolve_col(getattr(layout, name), header, len(row), name, path)


def _looks_like_label(task: TaskSpec, value: str) -> bool:
  if task.is_regression:
    try:
      float(value)
      return True
    except ValueError:
      return False
  return value.strip() in task.label_list


def _is_id(value: str) -> bool:
  value = value.strip()
  return value.isascii() and value.isdigit()


def read_rows(path: str, layout: SplitLayout):
  """(header or None, [(line_number, row)] of the data rows)."""
  if layout.quotechar is not None:
    numbered = _csv_rows(path, "\n".join(_decode_lines(path)), layout)
  else:
    numbered = [(i + 1, _split_row(line, layout.delimiter))
                for i, line in enumerate(_decode_lines(path))]
  while numbered and not numbered[-1][1]:
    numbered.pop()
  header = numbered[0][1] if layout.has_header and numbered else None
  return header, numbered[1 if layout.has_header else 0:]


def read_examples(task: TaskSpec, data_dir: str, split: str,
                  max_rows: Optional[int] = None,
                  add_swapped: Optional[bool] = None) -> List[Example]:
  """Reads one split of one task.

  max_rows keeps the first rows only (the original's debug mode: 50).
  add_swapped adds (b, a) copies for `double_unordered` tasks; by default it
  does so for the train split only, as the original does.
  An empty second text stays "" (not None), also in a swapped copy's text_a:
  the tokenizer packs a row whose text_b gives no wordpieces as a single
  sentence, and an empty text_a as [CLS] [SEP] b [SEP], as the original.
  """
  path = check_split_file(task, data_dir, split)
  layout = task.splits[split]
  header, rows = read_rows(path, layout)
  width = len(header) if header is not None else len(rows[0][1]) if rows else 0
  if not rows:
    raise DataError(f"{path}: no data rows after the header")
  a_col = _resolve_col(layout.text_a_col, header, width, "text_a_col", path)
  b_col = _resolve_col(layout.text_b_col, header, width, "text_b_col", path)
  label_col = _resolve_col(layout.label_col, header, width, "label_col",
                           path)
  if header is not None and label_col is not None and _looks_like_label(
      task, header[label_col]):
    raise DataError(f"{path}:1: the first row looks like data "
                    f"({header[label_col]!r} in the label column), but this "
                    "split is expected to start with a header row")
  # An unlabelled (test) split has no label to tell its header from data;
  # GLUE's begin with an id column ("index", "id") above integer ids, so a
  # first row that starts with an integer id like the row below it is data,
  # and taking it for the header would drop one example and shift every id.
  if header is not None and _is_id(header[0]) and _is_id(rows[0][1][0]):
    raise DataError(f"{path}:1: the first row looks like data (it starts "
                    f"with the id {header[0]!r}, as the rows below it do), "
                    "but this split is expected to start with a header row")
  if max_rows is not None:
    rows = rows[:max_rows]
  lo, hi = task.label_range
  examples = []
  for eid, (line, row) in enumerate(rows):
    if len(row) != width:
      raise DataError(f"{path}:{line}: {len(row)} columns, expected {width} "
                      f"(separated by {layout.delimiter!r}, like the "
                      f"{'header' if header is not None else 'first row'})")
    text_a = row[a_col]
    text_b = row[b_col] if b_col is not None else None
    if label_col is None:
      label = 0.0 if task.is_regression else task.label_list[0]
    elif task.is_regression:
      try:
        # Read at float32, the precision the features keep, straight from
        # the text as TFDS reads it: both sources give the same score.
        label = float(np.float32(row[label_col]))
      except ValueError:
        raise DataError(f"{path}:{line}: score {row[label_col]!r} is not a "
                        "number") from None
      if not lo <= label <= hi:
        raise DataError(f"{path}:{line}: score {label} is outside "
                        f"[{lo}, {hi}]")
    else:
      label = row[label_col].strip()
      if label not in task.label_list:
        raise DataError(f"{path}:{line}: unknown label {label!r}; expected "
                        f"one of {list(task.label_list)}")
    examples.append(Example(eid, task.name, text_a, text_b, label))
  return with_swapped(examples, task, split, add_swapped)


def with_swapped(examples: List[Example], task: TaskSpec, split: str,
                 add_swapped: Optional[bool] = None) -> List[Example]:
  """Adds the (b, a) copies of a `double_unordered` task's pairs, with ids
  after the originals'; by default to the train split only, as the
  original does."""
  if add_swapped is None:
    add_swapped = split == "train"
  if add_swapped and task.double_unordered:
    n = len(examples)
    examples = examples + [Example(e.eid + n, e.task_name, e.text_b,
                                   e.text_a, e.label) for e in examples]
  return examples
