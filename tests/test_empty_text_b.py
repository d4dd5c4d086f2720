"""An empty second text means a single sentence, as in the original BAM code.

The original `featurize` tokenises text_b only `if example.text_b:` and packs
a pair only `if tokens_b:`; otherwise [CLS] a [SEP], segment ids 0, with the
single-sentence truncation (max_seq_length - 2). So a pair task's row whose
text_b is "" -- or anything that gives no wordpieces, e.g. " " -- is a
single sentence, and a double_unordered swapped copy of a row with an empty
text_a is the pair [CLS] [SEP] b [SEP] (tokens_a may be empty). This checks
training/eval featurisation (reader -> TFRecord cache, which teacher outputs
are also predicted from) and serving (`export.pack_rows`) row by row against
the original written out below, on a small custom pair task.
"""

import json

import pytest

import bam_tf  # noqa: F401
import tensorflow as tf

from bam_tf.data import features
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.serving import export
from bam_tf.tasks import readers
from bam_tf.tasks import registry

MAX_SEQ_LENGTH = 16
LONG = " ".join("word%d" % i for i in range(20))   # > 14 wordpieces

# (text_a, text_b, label)
ROWS = [
    ("The cat sat on the mat.", "A cat was sitting.", "1"),
    ("Only one sentence here.", "", "0"),
    (LONG, "", "1"),                        # single-sentence truncation
    (LONG, "Short b.", "0"),                # pair truncation
    ("", "The second text alone.", "1"),    # empty a: still a pair
    ("", "", "0"),
    ("Whitespace second text.", " ", "1"),  # " " -> no tokens -> single
    ("Control chars only.", "\u200b", "0"),  # deleted -> no tokens -> single
    ("Is it raining?", "No, it is sunny.", "1"),
]


def original_featurize(full, text_a, text_b, max_seq_length):
  """The original BAM `SingleOutputTask.featurize` ids, unpadded."""
  tokens_a = full.tokenize(text_a)
  tokens_b = None
  if text_b:
    tokens_b = full.tokenize(text_b)
  if tokens_b:
    while len(tokens_a) + len(tokens_b) > max_seq_length - 3:
      if len(tokens_a) > len(tokens_b):
        tokens_a.pop()
      else:
        tokens_b.pop()
  elif len(tokens_a) > max_seq_length - 2:
    tokens_a = tokens_a[:max_seq_length - 2]
  tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
  segment_ids = [0] * len(tokens)
  if tokens_b:
    tokens += tokens_b + ["[SEP]"]
    segment_ids += [1] * (len(tokens_b) + 1)
  return full.convert_tokens_to_ids(tokens), segment_ids


@pytest.fixture(scope="module")
def tok(minilm_vocab):
  return InGraphTokenizer(minilm_vocab, True, MAX_SEQ_LENGTH)


@pytest.fixture(scope="module")
def full(minilm_vocab):
  from official.nlp.tools import tokenization as ref_tok
  return ref_tok.FullTokenizer(minilm_vocab, do_lower_case=True)


@pytest.fixture(scope="module")
def task_and_dir(tmp_path_factory):
  """A custom pair task (double_unordered) with TSV train/dev files."""
  root = tmp_path_factory.mktemp("data")
  (root / "Pairs").mkdir()
  lines = ["a\tb\tlabel"] + ["%s\t%s\t%s" % r for r in ROWS]
  for split in ("train", "dev"):
    (root / "Pairs" / (split + ".tsv")).write_text(
        "\n".join(lines) + "\n", encoding="utf-8")
  layout = {"text_a_col": "a", "text_b_col": "b", "label_col": "label"}
  decl = {"name": "pairs", "dir_name": "Pairs", "kind": "classification",
          "label_list": ["0", "1"], "double_unordered": True,
          "splits": {s: dict(layout, file=s + ".tsv")
                     for s in ("train", "dev")}}
  task = registry.custom_task_from_dict(json.loads(json.dumps(decl)), "test")
  return task, str(root)


def featurised(task, data_dir, split, tok, cache_dir):
  """eid -> (input_word_ids, input_type_ids, num_tokens) from the cache."""
  examples = readers.read_examples(task, data_dir, split)
  path, _ = features.build_or_load_features(
      examples, task, 0, split, readers.split_path(task, data_dir, split),
      tok, cache_dir)
  out = {}
  for rec in features.load_dataset(path):
    out[int(rec["eid"])] = (rec["input_word_ids"].numpy().tolist(),
                            rec["input_type_ids"].numpy().tolist(),
                            int(rec["num_tokens"]))
  return examples, out


def test_reader_keeps_empty_text_b_and_swaps(task_and_dir):
  task, data_dir = task_and_dir
  train = readers.read_examples(task, data_dir, "train")
  n = len(ROWS)
  assert len(train) == 2 * n
  assert [e.text_b for e in train[:n]] == [r[1] for r in ROWS]
  assert [(e.text_a, e.text_b) for e in train[n:]] == [
      (r[1], r[0]) for r in ROWS]
  assert len(readers.read_examples(task, data_dir, "dev")) == n


@pytest.mark.parametrize("split", ["train", "dev"])
def test_featurised_records_equal_original(task_and_dir, tok, full, split,
                                           tmp_path):
  task, data_dir = task_and_dir
  examples, recs = featurised(task, data_dir, split, tok, str(tmp_path))
  assert len(recs) == len(examples)
  for ex in examples:
    ids, types, num = recs[ex.eid]
    want_ids, want_types = original_featurize(full, ex.text_a, ex.text_b,
                                              MAX_SEQ_LENGTH)
    assert (ids, types) == (want_ids, want_types), (ex.text_a, ex.text_b)
    la = len(full.tokenize(ex.text_a))
    lb = len(full.tokenize(ex.text_b))
    assert num == (la + lb + 3 if lb else la + 2)


def test_empty_rows_are_single_sentences_and_others_unchanged(
    task_and_dir, tok, tmp_path):
  task, data_dir = task_and_dir
  examples, recs = featurised(task, data_dir, "train", tok, str(tmp_path))
  no_b = [e for e in examples if not e.text_b.strip()
          or e.text_b == "\u200b"]
  with_b = [e for e in examples if e not in no_b]
  # 5 rows, and the swapped copies of the 2 rows with an empty text_a.
  assert len(no_b) == 7 and len(with_b) == 2 * len(ROWS) - 7
  single = tok.tokenize_single(tf.constant([e.text_a for e in no_b]))
  for e, ids in zip(no_b, single["input_word_ids"].to_list()):
    assert recs[e.eid][0] == ids and set(recs[e.eid][1]) <= {0}
    assert ids.count(tok.sep_id) == 1
  # The long single sentence keeps max_seq_length - 2 tokens of a (the old
  # pair packing kept 13 and added a second [SEP]).
  long_single = next(e for e in no_b if e.text_a == LONG)
  assert len(recs[long_single.eid][0]) == MAX_SEQ_LENGTH
  # Rows with a real second text: the plain pair packing (two [SEP]s,
  # segment 1 on b), as before.
  pair = tok.tokenize_pair(tf.constant([e.text_a for e in with_b]),
                           tf.constant([e.text_b for e in with_b]))
  for e, ids, types in zip(with_b, pair["input_word_ids"].to_list(),
                           pair["input_type_ids"].to_list()):
    assert recs[e.eid][:2] == (ids, types)
    assert ids.count(tok.sep_id) == 2 and types[-1] == 1
  empty_a = next(e for e in with_b if e.text_a == "")
  assert recs[empty_a.eid][0][:2] == [tok.cls_id, tok.sep_id]


def test_serving_packs_like_the_records(task_and_dir, tok, tmp_path):
  task, data_dir = task_and_dir
  for split in ("dev", "train"):
    examples, recs = featurised(task, data_dir, split, tok, str(tmp_path))
    served = export.pack_rows(tok, tf.constant([e.text_a for e in examples]),
                              tf.constant([e.text_b for e in examples]))
    ids = served["input_word_ids"].numpy().tolist()
    types = served["input_type_ids"].numpy().tolist()
    mask = served["input_mask"].numpy().tolist()
    for k, e in enumerate(examples):
      n = sum(mask[k])
      assert (ids[k][:n], types[k][:n]) == recs[e.eid][:2], (e.text_a,
                                                             e.text_b)
      assert set(ids[k][n:]) <= {tok.pad_id}
    # One row at a time (all-single / all-pair batches) agrees too.
    for k, e in enumerate(examples[:len(ROWS)]):
      one = export.pack_rows(tok, tf.constant([e.text_a]),
                             tf.constant([e.text_b]))
      assert one["input_word_ids"].numpy().tolist()[0] == ids[k]


def test_none_and_string_text_b_still_refused(tok, tmp_path):
  """A split mixing None and strings as text_b is a reader bug."""
  task = registry.custom_task_from_dict(
      {"name": "x", "kind": "classification", "label_list": ["0", "1"],
       "splits": {"train": {"file": "t", "text_a_col": 0, "text_b_col": 1,
                            "label_col": 2},
                  "dev": {"file": "d", "text_a_col": 0, "label_col": 1}}},
      "test")
  exs = [features.Example(0, "x", "a", "b", "1"),
         features.Example(1, "x", "a", None, "1")]
  with pytest.raises(ValueError, match="mixed"):
    features.build_or_load_features(exs, task, 0, "train", None, tok,
                                    str(tmp_path))
