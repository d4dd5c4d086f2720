"""The in-graph tokenizer must give the reference Python WordPiece ids.

Reference = Model Garden's FullTokenizer + the original `_truncate_seq_pair`
(written out plainly below), compared on EVERY train and dev example of
CoLA, SST-2, MRPC, STS-B and RTE at max_seq_length 128, and on a subset at
max_seq_length 16 where truncation happens all the time.
"""

import csv
import os
import random
import time

import pytest

import bam_tf  # noqa: F401
import tensorflow as tf

from bam_tf.data import tokenization

from conftest import GLUE_DIR  # noqa: E402
# (dir, has_header, text_a col, text_b col)
LAYOUTS = {
    "CoLA": (False, 3, None),
    "SST-2": (True, 0, None),
    "MRPC": (True, 3, 4),
    "STS-B": (True, -3, -2),
    "RTE": (True, 1, 2),
}
BATCH = 1024


def read_texts(task, split):
  """(text_a, text_b or None) rows of a GLUE TSV, read without quoting."""
  has_header, ca, cb = LAYOUTS[task]
  path = os.path.join(GLUE_DIR, task, split + ".tsv")
  if not os.path.exists(path):
    pytest.fail("GLUE data missing: " + path)
  rows = []
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    for i, line in enumerate(reader):
      if has_header and i == 0:
        continue
      rows.append((line[ca], None if cb is None else line[cb]))
  return rows


def truncate_seq_pair(tokens_a, tokens_b, max_length):
  """The original BERT/BAM pair truncation, verbatim in spirit."""
  while True:
    total_length = len(tokens_a) + len(tokens_b)
    if total_length <= max_length:
      break
    if len(tokens_a) > len(tokens_b):
      tokens_a.pop()
    else:
      tokens_b.pop()


def reference_pack(cls_id, sep_id, ids_a, ids_b, max_seq_length):
  """Original featurisation of one example -> (input_ids, segment_ids)."""
  ids_a = list(ids_a)
  if ids_b is None:
    ids_a = ids_a[:max_seq_length - 2]
    return [cls_id] + ids_a + [sep_id], [0] * (len(ids_a) + 2)
  ids_b = list(ids_b)
  truncate_seq_pair(ids_a, ids_b, max_seq_length - 3)
  ids = [cls_id] + ids_a + [sep_id] + ids_b + [sep_id]
  return ids, [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)


@pytest.fixture(scope="module")
def vocab_file(minilm_vocab):
  return minilm_vocab


@pytest.fixture(scope="module")
def reference(vocab_file):
  """Per (task, split): rows and FullTokenizer wordpiece ids (untruncated)."""
  from official.nlp.tools import tokenization as ref_tok
  full = ref_tok.FullTokenizer(vocab_file, do_lower_case=True)
  out = {}
  start = time.time()
  n = 0
  for task in LAYOUTS:
    for split in ("train", "dev"):
      rows = read_texts(task, split)
      enc = lambda s: full.convert_tokens_to_ids(full.tokenize(s))
      ids = [(enc(a), None if b is None else enc(b)) for a, b in rows]
      out[(task, split)] = (rows, ids)
      n += len(rows)
  print("\n[reference FullTokenizer: %d examples in %.1fs]"
        % (n, time.time() - start))
  return out


def tf_pack(tokenizer, rows):
  """Batched TF tokenisation -> list of (ids, type_ids, num_tokens, trunc)."""
  results = []
  pair = rows[0][1] is not None
  for s in range(0, len(rows), BATCH):
    chunk = rows[s:s + BATCH]
    a = tf.constant([r[0] for r in chunk])
    b = tf.constant([r[1] for r in chunk]) if pair else None
    out = (tokenizer.tokenize_pair(a, b) if pair
           else tokenizer.tokenize_single(a))
    results.extend(zip(out["input_word_ids"].to_list(),
                       out["input_type_ids"].to_list(),
                       out["num_tokens"].numpy().tolist(),
                       out["truncated"].numpy().tolist()))
  return results


def compare(tokenizer, rows, ref_ids, max_seq_length, label):
  got = tf_pack(tokenizer, rows)
  assert len(got) == len(rows)
  bad = []
  n_trunc = 0
  for i, ((ids_a, ids_b), (ids, types, num, trunc)) in enumerate(
      zip(ref_ids, got)):
    want_ids, want_types = reference_pack(
        tokenizer.cls_id, tokenizer.sep_id, ids_a, ids_b, max_seq_length)
    untrunc = len(ids_a) + (2 if ids_b is None else len(ids_b) + 3)
    if (ids != want_ids or types != want_types or num != untrunc
        or trunc != (untrunc > len(want_ids))):
      bad.append((i, rows[i], want_ids, ids))
    n_trunc += trunc
  assert not bad, "%s: %d mismatches, first: %r" % (label, len(bad), bad[:3])
  return n_trunc


def test_truncation_closed_form_matches_simulation():
  rng = random.Random(0)
  cases = [(la, lb, m) for m in range(0, 40) for la in range(0, 45)
           for lb in range(0, 45)]
  cases += [(rng.randrange(600), rng.randrange(600), rng.randrange(1, 520))
            for _ in range(20000)]
  for la, lb, m in cases:
    a, b = list(range(la)), list(range(lb))
    truncate_seq_pair(a, b, m)
    assert tokenization.truncated_lengths(la, lb, m) == (len(a), len(b)), \
        (la, lb, m)
  # The tensor path gives the same answers.
  las = tf.constant([c[0] for c in cases[:5000]])
  lbs = tf.constant([c[1] for c in cases[:5000]])
  for m in (1, 13, 125, 509):
    ta, tb = tokenization.truncated_lengths(las, lbs, m)
    want = [tokenization.truncated_lengths(c[0], c[1], m) for c in cases[:5000]]
    assert list(zip(ta.numpy().tolist(), tb.numpy().tolist())) == want


def test_pair_truncation_of_tokens():
  """Drops come off the END of the longer sequence; ties drop from b."""
  a, b = list("abcdef"), list("xyz")
  truncate_seq_pair(a, b, 5)
  assert tokenization.truncated_lengths(6, 3, 5) == (len(a), len(b)) == (3, 2)
  assert tokenization.truncated_lengths(3, 3, 5) == (3, 2)
  assert tokenization.truncated_lengths(4, 4, 5) == (3, 2)
  assert tokenization.truncated_lengths(1, 9, 5) == (1, 4)


def test_all_glue_train_dev_examples_match_reference_128(vocab_file,
                                                         reference):
  tok = tokenization.InGraphTokenizer(vocab_file, True, 128)
  start = time.time()
  total = 0
  for (task, split), (rows, ids) in reference.items():
    compare(tok, rows, ids, 128, "%s/%s@128" % (task, split))
    total += len(rows)
  print("\n[InGraphTokenizer vs reference: %d examples at 128 in %.1fs]"
        % (total, time.time() - start))
  assert total > 90000


def test_subset_matches_reference_with_heavy_truncation_16(vocab_file,
                                                           reference):
  tok = tokenization.InGraphTokenizer(vocab_file, True, 16)
  n_trunc = total = 0
  for (task, split), (rows, ids) in reference.items():
    k = 1500
    n_trunc += compare(tok, rows[:k], ids[:k], 16, "%s/%s@16" % (task, split))
    total += min(k, len(rows))
  assert n_trunc > total // 3   # truncation really was exercised


def test_padded_call_and_mask(vocab_file):
  tok = tokenization.InGraphTokenizer(vocab_file, True, 12)
  out = tok(tf.constant(["Hello world!", "a b c d e f g h i j k l m n"]),
            tf.constant(["Yes.", "no"]))
  for k in ("input_word_ids", "input_mask", "input_type_ids"):
    assert out[k].shape == (2, 12) and out[k].dtype == tf.int32
  unp = tok.tokenize_unpadded(
      tf.constant(["Hello world!", "a b c d e f g h i j k l m n"]),
      tf.constant(["Yes.", "no"]))
  lens = unp["input_word_ids"].row_lengths().numpy().tolist()
  assert out["input_mask"].numpy().sum(1).tolist() == lens
  assert lens[1] == 12 and unp["truncated"].numpy().tolist() == [False, True]
  ids = out["input_word_ids"].numpy()
  assert ids[0, 0] == tok.cls_id and ids[0, lens[0]:].tolist() == [0] * (
      12 - lens[0])
  single = tok(tf.constant(["Hello world!"]))
  assert single["input_type_ids"].numpy().sum() == 0


def test_unicode_edge_cases_match_reference(vocab_file):
  """Characters where tf_text's defaults differ from FullTokenizer."""
  from official.nlp.tools import tokenization as ref_tok
  texts = ["a book,\u2026.", "Treasury\x12s plan", "Iraq\u00e2\x80\x99s",
           "\ufb01ne \u00bd \uff21\uff22", "Stra\u00dfe na\u00efve \u00c9mile",
           "zero\u200bwidth soft\u00adhyphen", "nbsp\u00a0here\u3000wide",
           "\u4e2d\u6587 text", "tab\tnew\nline\rcr", "\u0130stanbul \u03a3\u039f\u03a3",
           "x\ufffdy\x00z", ""]
  full = ref_tok.FullTokenizer(vocab_file, do_lower_case=True)
  tok = tokenization.InGraphTokenizer(vocab_file, True, 64)
  got = tok.tokenize_unpadded(tf.constant(texts))["input_word_ids"].to_list()
  for t, g in zip(texts, got):
    want = full.convert_tokens_to_ids(["[CLS]"] + full.tokenize(t) + ["[SEP]"])
    assert g == want, repr(t)


def test_cased_vocab_keeps_case_and_accents(vocab_file, tmp_path):
  """do_lower_case=False: no lower-casing, no accent stripping."""
  from official.nlp.tools import tokenization as ref_tok
  vocab = tokenization.load_vocab_tokens(vocab_file)
  extra = ["Hello", "World", "café", "Émile", "##é"]
  cased = tmp_path / "cased_vocab.txt"
  cased.write_text("\n".join(vocab + extra) + "\n", encoding="utf-8")
  full = ref_tok.FullTokenizer(str(cased), do_lower_case=False)
  tok = tokenization.InGraphTokenizer(str(cased), False, 32)
  texts = ["Hello World café", "Émile hello WORLD naïve Straße", "x"]
  got = tok.tokenize_unpadded(tf.constant(texts))["input_word_ids"].to_list()
  for t, g in zip(texts, got):
    want = full.convert_tokens_to_ids(["[CLS]"] + full.tokenize(t) + ["[SEP]"])
    assert g == want, t
  assert got[0][1] == len(vocab)   # "Hello" found as a cased entry


def test_saved_model_round_trip(vocab_file, tmp_path):
  tok = tokenization.InGraphTokenizer(vocab_file, True, 16)
  path = str(tmp_path / "tok")
  tf.saved_model.save(tok, path)
  assert os.path.exists(os.path.join(path, "assets", "vocab.txt"))
  loaded = tf.saved_model.load(path)
  a, b = tf.constant(["The cat sat."]), tf.constant(["On the mat."])
  got, want = loaded.serve_pair(a, b), tok(a, b)
  for k in want:
    assert got[k].numpy().tolist() == want[k].numpy().tolist()
