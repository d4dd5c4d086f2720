"""The in-graph tokenizer must give the reference Python WordPiece ids.

Reference = Model Garden's FullTokenizer + the original `_truncate_seq_pair`
(written out plainly below), compared on EVERY train and dev example of
CoLA, SST-2, MRPC, STS-B and RTE at max_seq_length 128, and on a subset at
max_seq_length 16 where truncation happens all the time. (GLUE holds no
Cn/Co characters and no word of 201-400 characters, where Model Garden and
the original differ.)

The second half checks fidelity to the ORIGINAL BAM tokenizer itself on
crafted edge cases and on every code point: Model Garden's module with the
original `_is_control` (category "C*") and max_input_chars_per_word=200.
"""

import csv
import os
import random
import time
import unicodedata

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


# ---------------------------------------------------------------------------
# Fidelity to the ORIGINAL BAM tokenizer (google-research bam/bert/
# tokenization.py) on characters GLUE does not contain.


def original_bam_is_control(char):
  """The original BAM `_is_control`: every category starting with "C"
  (Cc, Cf, Cn unassigned, Co private use, Cs), except tab/newline/CR.
  Model Garden's (and google-research/bert's) has `cat in ("Cc", "Cf")`."""
  if char in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(char).startswith("C")


@pytest.fixture
def original_ref_tok(monkeypatch):
  """Model Garden's tokenization module turned into the original BAM one.

  Two differences, both patched: `_is_control` (module-level, used by
  BasicTokenizer._clean_text, so patching the module global is enough) and
  the WordpieceTokenizer's max_input_chars_per_word (the original passes
  200; Model Garden's default is 400), set per tokenizer by `original_full`.
  Everything else -- _clean_text, _is_whitespace, _is_punctuation, CJK
  blocks, whitespace_tokenize = str.split(), lower/NFD/drop Mn, greedy
  WordPiece -- is line for line the original.
  """
  from official.nlp.tools import tokenization as ref_tok
  monkeypatch.setattr(ref_tok, "_is_control", original_bam_is_control)
  return ref_tok


def original_full(ref_tok, vocab_file, do_lower_case):
  full = ref_tok.FullTokenizer(vocab_file, do_lower_case=do_lower_case)
  full.wordpiece_tokenizer.max_input_chars_per_word = 200
  return full


EDGE_TEXTS = [
    # Cc (deleted, not a word break), Cf (U+200B, U+200E, U+FEFF, U+00AD).
    "ctrl\x01a\x7fb", "zw\u200bsp lrm\u200eark bom\ufeffx soft\u00adhy",
    # Cn: unassigned U+0378, U+E0080, noncharacters U+FFFF, U+10FFFF.
    "unassigned\u0378x \U000E0080y \uffffz end\U0010FFFF.",
    # Co: private use U+E000, U+F8FF, U+F0000.
    "pua\ue000a \uf8ffb \U000F0000c \ue000",
    # Whitespace: tab/newline/CR, Zl/Zp (str.split() splits on them), Zs.
    "tab\tnl\nc\rr", "line\u2028sep para\u2029sep", "\u2028",
    "nb\u00a0sp ideo\u3000sp thin\u2009sp",
    # Accents in several scripts, combining marks, final sigma, dotted I.
    "caf\u00e9 na\u00efve \u00c9mile Stra\u00dfe \u00c5ngstr\u00f6m",
    "\u0391\u03b8\u03ae\u03bd\u03b1 \u039f\u0394\u03a5\u03a3\u03a3\u0395\u038e\u03a3 "
    "\u041c\u043e\u0441\u043a\u0432\u0430 \u0419\u043e\u0433\u0430 \u1ec7 "
    "\u0130stanbul",
    "e\u0301\u0302 a\u0308 n\u0303 \u0301lone",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 "
    "\u05e2\u05b4\u05d1\u05b0\u05e8\u05b4\u05d9\u05ea",
    # Words of exactly 200 / 201 CHARACTERS (the original counts characters,
    # after lower-casing and accent stripping).
    "x" * 200, "x" * 201, "y" * 201 + ".", "\u00e9" * 200, "\u00e9" * 201,
    "\u00e9" * 150,             # 300 bytes, 150 characters: not [UNK]
    "\u3042" * 150,             # 450 bytes, 150 characters: not [UNK]
    "e\u0301" * 150,            # 300 chars; 150 once accents are stripped
    "\u00c9" * 199 + "\u0130",  # 200 chars; 201 after lower() (i + U+0307,
                                # the dot then stripped): 200 again
    "a" * 199 + "\ue000\u0378b",  # 201 raw, 200 after deleting C*
    # CJK, kana, hangul, emoji, mixed.
    "\u4e2d\u6587 \u6f22\u5b57abc\uf900\U00020000",
    "\u3072\u3089\u304c\u306a \ud55c\uad6d\uc5b4",
    "emoji \U0001F600 \U0001F44D\U0001F3FD \u2764\ufe0f",
    "mix\u200b\ue000\u0378 \u2028 a" + "b" * 199 + "!\u00a0\u4e00x\x00y\ufffd",
    "\u2c2f\u2c5f \ua7c0 \U00010570",  # letters newer than TF's ICU
    "\u2026 \ufb01ne \u00bd \uff21\uff22 \u2163",
    "", " ", "\x01\u200b\ue000",
]


def _ids_in_graph(tok, texts):
  return tok.tokenize_unpadded(tf.constant(texts))["input_word_ids"].to_list()


def _ids_reference(full, texts):
  return [full.convert_tokens_to_ids(["[CLS]"] + full.tokenize(t) + ["[SEP]"])
          for t in texts]


def _cased_vocab(vocab_file, tmp_path):
  vocab = tokenization.load_vocab_tokens(vocab_file)
  extra = ["Hello", "World", "café", "Émile", "é", "##é", "Ångström", "Москва",
           "Αθήνα", "ΣΑΣ", "##ΣΑΣ", "İstanbul", "Ⱟ"]
  cased = tmp_path / "cased_vocab.txt"
  cased.write_text("\n".join(vocab + [e for e in extra if e not in vocab])
                   + "\n", encoding="utf-8")
  return str(cased)


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_edge_cases_match_original_bam_tokenizer(vocab_file, tmp_path,
                                                 original_ref_tok,
                                                 do_lower_case):
  """Ids equal the original's on crafted characters and word lengths."""
  if do_lower_case:
    vocab = vocab_file
  else:
    vocab = _cased_vocab(vocab_file, tmp_path)
  # Lower-cased forms of letters TF's ICU does not lower-case, so that a
  # wrong lower-casing would change ids (MiniLM's vocab lacks them).
  base = tokenization.load_vocab_tokens(vocab)
  lowered = tmp_path / "lowered_vocab.txt"
  lowered.write_text(
      "\n".join(base + [e for e in ("\u2c5f", "\ua7c1", "\U00010597")
                        if e not in base]) + "\n", encoding="utf-8")
  vocab = str(lowered)
  full = original_full(original_ref_tok, vocab, do_lower_case)
  tok = tokenization.InGraphTokenizer(vocab, do_lower_case, 512)
  want = _ids_reference(full, EDGE_TEXTS)
  got = _ids_in_graph(tok, EDGE_TEXTS)
  bad = [(t, w, g) for t, w, g in zip(EDGE_TEXTS, want, got) if w != g]
  assert not bad, bad[:3]
  unk = tok.unk_id
  by_text = dict(zip(EDGE_TEXTS, got))
  # The 200-character rule, spelled out.
  assert unk not in by_text["x" * 200] and by_text["x" * 201] == [
      tok.cls_id, unk, tok.sep_id]
  assert by_text["y" * 201 + "."][1] == unk
  assert unk not in by_text["\u00e9" * 150]
  assert unk in by_text["\u00e9" * 201] and unk not in by_text["\u00e9" * 200]
  assert (unk in by_text["e\u0301" * 150]) != do_lower_case
  assert unk not in by_text["a" * 199 + "\ue000\u0378b"]
  # C* characters are deleted without splitting the word.
  assert by_text["pua\ue000a \uf8ffb \U000F0000c \ue000"] == _ids_in_graph(
      tok, ["puaa b c"])[0]
  assert by_text["\x01\u200b\ue000"] == by_text[""] == [tok.cls_id,
                                                        tok.sep_id]
  # ... and U+2028/U+2029 do split words, as str.split() does.
  assert by_text["line\u2028sep para\u2029sep"] == _ids_in_graph(
      tok, ["line sep para sep"])[0]


def test_edge_cases_are_where_model_garden_differs(vocab_file, monkeypatch,
                                                   original_ref_tok):
  """The reference really is the original: Model Garden's own rules
  (Cc/Cf only; 400 characters a word) give other ids on some of these."""
  full = original_full(original_ref_tok, vocab_file, True)
  original = _ids_reference(full, EDGE_TEXTS)
  monkeypatch.undo()   # Model Garden's `_is_control` again
  garden = original_ref_tok.FullTokenizer(vocab_file, do_lower_case=True)
  assert original_ref_tok._is_control("\ue000") is False
  differ = {t for t, a, b in zip(EDGE_TEXTS, original,
                                 _ids_reference(garden, EDGE_TEXTS))
            if a != b}
  assert "pua\ue000a \uf8ffb \U000F0000c \ue000" in differ
  assert "unassigned\u0378x \U000E0080y \uffffz end\U0010FFFF." in differ
  assert "x" * 200 not in differ
  if garden.wordpiece_tokenizer.max_input_chars_per_word > 200:
    assert "x" * 201 in differ


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_every_code_point_splits_like_original_basic_tokenizer(
    vocab_file, original_ref_tok, do_lower_case):
  """Each Unicode scalar value, between two letters: the in-graph words
  (before WordPiece) equal the original BasicTokenizer's. Catches a
  deleted/space/punctuation/CJK class, lower-casing or accent stripping
  that differs anywhere (e.g. Unicode versions of RE2/ICU vs Python).
  Every code point of planes 0-3 and 14 (all assigned characters); planes
  4-13, 15 and 16 (unassigned, private use) every 101st, for speed."""
  ref = original_ref_tok.BasicTokenizer(do_lower_case=do_lower_case)
  tok = tokenization.InGraphTokenizer(vocab_file, do_lower_case, 16)
  cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and (
      cp < 0x40000 or 0xE0000 <= cp < 0xF0000 or cp % 101 == 0
      or cp & 0xFFFF >= 0xFFFE)]
  texts = ["Ab%sCd" % chr(cp) for cp in cps]
  bad = []
  step = 100000
  for s in range(0, len(texts), step):
    chunk = texts[s:s + step]
    got = tok.words(tf.constant([t.encode("utf-8") for t in chunk])).to_list()
    for t, g in zip(chunk, got):
      w = ref.tokenize(t)
      if [x.decode("utf-8") for x in g] != w:
        bad.append((hex(ord(t[2])), w, g))
  assert not bad, "%d code points differ, first: %r" % (len(bad), bad[:5])


def test_char_tables_follow_the_rules():
  """The generated RE2 classes hold exactly the characters the original's
  rules pick (checked on the range list, not through RE2)."""
  ranges, _ = tokenization._unicode_tables()
  for kind, rs in ranges.items():
    for lo, hi in rs:
      for cp in (lo, hi, (lo + hi) // 2):
        assert tokenization._char_kind(chr(cp)) == kind, (kind, hex(cp))
  inside = {cp for rs in ranges.values() for lo, hi in rs
            for cp in range(lo, hi + 1)}
  for cp in list(range(0, 0x3100)) + list(range(0xFE00, 0x10000)):
    if 0xD800 <= cp <= 0xDFFF:
      continue
    assert (cp in inside) == (tokenization._char_kind(chr(cp)) is not None)
  spaces = [lo for lo, hi in ranges["space"] for lo in range(lo, hi + 1)]
  assert 0x2028 in spaces and 0x2029 in spaces and 0x85 not in spaces
  assert all(chr(cp).isspace() for cp in spaces)
