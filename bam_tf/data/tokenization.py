"""BERT WordPiece tokenisation, truncation and packing inside the TF graph.

Why in the graph: the same `tf.Module` featurises the training caches (via
tf.data) and can be saved inside a SavedModel, so serving takes raw strings
and tokenises exactly as training did.

Why the rules are hand-written: the ids must be EXACTLY those of the
original BAM code's Python `FullTokenizer` (google-research
bam/bert/tokenization.py) plus its `featurize` packing, also on odd
characters. tf_text's BertTokenizer, and Model Garden's
`official.nlp.tools.tokenization`, each differ from that original somewhere,
so every step below is written out from the original's rules:

  1. `_clean_text`: delete U+0000, U+FFFD and every character whose Unicode
     category starts with "C" -- Cc, Cf, Cn (unassigned, incl. the
     noncharacters), Co (private use), Cs -- except tab, newline and CR.
     (Model Garden and google-research/bert delete only Cc and Cf; tf_text
     turns Cc/Cf into spaces, which splits words.) Then tab, newline, CR and
     Zs spaces become " ". The original's `whitespace_tokenize` is Python's
     `str.split()`, which also splits on U+2028 and U+2029 (Zl/Zp: not
     deleted, not mapped, but `str.isspace()`), so those become " " too;
     the other characters str.split() splits on are Cc and already gone.
  2. Lower-casing (do_lower_case only): Python's `str.lower()` (full case
     mapping with the final-sigma rule, as `tf.strings.lower` does), then
     NFD and removal of Mn characters. tf_text's own lower_case uses NFKC
     case folding, which rewrites e.g. "\u2026" -> "...".
  3. Words: split on " ", and every punctuation character (ASCII 33-47,
     58-64, 91-96, 123-126, or category P*) and CJK ideograph (the
     original's `_is_chinese_char` blocks) is a word of its own.
  4. WordPiece: a word of more than 200 CHARACTERS (`len(list(token)) >
     max_input_chars_per_word`, counted after step 2) is one [UNK]; exactly
     200 is tokenised normally. tf_text limits BYTES per word instead, so
     long words are replaced by the "[UNK]" token string between the two
     stages, and tf_text's byte limit is set where it can never fire first.
     Otherwise greedy longest-match-first with "##" suffixes, and a word
     with any unmatchable piece is one [UNK].

The character classes of steps 1 and 3 are built from this Python's
`unicodedata` (the original's source of truth) when the first tokenizer is
made, not from RE2's or ICU's own Unicode tables, whose versions differ
(RE2 has no Cn class at all). Likewise the few letters Python lower-cases
but TF's ICU does not (letters newer than its Unicode version) are mapped
by a table. tests/test_tokenization.py checks every code point, every GLUE
train/dev example and a set of crafted edge cases against the reference.

Packing follows the original `featurize`: a second text is used only if it
gives at least one wordpiece (`if example.text_b: tokens_b = ...`, then
`if tokens_b:`), so a row whose text_b is "" -- or anything that tokenises
to nothing, e.g. " " -- is packed as a single sentence, [CLS] a [SEP] with
segment ids 0 and single-sentence truncation, row by row.
"""

import functools
import unicodedata
from typing import Dict, List, Optional, Tuple

import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf
import tensorflow_text as tf_text

from bam_tf.common import files
from bam_tf.common.files import file_sha256

CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
# The original WordpieceTokenizer's max_input_chars_per_word: longer words
# (in characters) are [UNK]. (Model Garden's default is 400.)
MAX_INPUT_CHARS_PER_WORD = 200
# tf_text's WordpieceTokenizer counts bytes; a UTF-8 character has at most 4,
# so a word it sees (<= 200 characters) never reaches this limit.
_MAX_BYTES_PER_WORD = 4 * MAX_INPUT_CHARS_PER_WORD

# The original `_is_chinese_char` blocks.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
               (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
               (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def original_is_control(char: str) -> bool:
  """The original BAM `_is_control`: category C*, except tab/newline/CR."""
  if char in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(char).startswith("C")


def original_is_whitespace(char: str) -> bool:
  """The original `_is_whitespace`: space, tab, newline, CR or Zs."""
  return char in (" ", "\t", "\n", "\r") or unicodedata.category(char) == "Zs"


def original_is_punctuation(char: str) -> bool:
  """The original `_is_punctuation`: non-alphanumeric ASCII, or P*."""
  cp = ord(char)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def _re2_class(ranges: List[Tuple[int, int]]) -> str:
  parts = [r"\x{%X}" % lo if lo == hi else r"\x{%X}-\x{%X}" % (lo, hi)
           for lo, hi in ranges]
  return "[" + "".join(parts) + "]"


def _char_kind(char: str) -> Optional[str]:
  """Which of `char_classes` holds `char` (None: an ordinary character)."""
  cp = ord(char)
  if cp == 0 or cp == 0xFFFD or original_is_control(char):
    return "deleted"
  if original_is_whitespace(char) or char.isspace():
    return "space"
  if original_is_punctuation(char):
    return "punctuation"
  return None


@functools.lru_cache(maxsize=None)
def _unicode_tables():
  """One pass over all code points: class ranges and lower-case letters.

  The `_char_kind` rules, inlined for speed (about 0.5 s once a process).
  """
  ranges = {"deleted": [], "space": [], "punctuation": []}
  lower = []
  category = unicodedata.category
  ascii_punct = {cp for cp in range(128) if original_is_punctuation(chr(cp))}
  prev_kind, start = None, 0
  for cp in range(0x110001):
    if cp == 0x110000 or 0xD800 <= cp <= 0xDFFF:
      kind = "surrogate"   # cannot occur in UTF-8 text; also the end mark
    else:
      char = chr(cp)
      cat = category(char)
      if cat[0] == "C" and cp not in (9, 10, 13) or cp == 0xFFFD:
        kind = "deleted"
      elif cat == "Zs" or char.isspace():
        kind = "space"
      elif cat[0] == "P" or cp in ascii_punct:
        kind = "punctuation"
      else:
        kind = None
      if kind != "deleted":
        low = char.lower()
        if low != char and len(low) == 1:
          lower.append((cp, ord(low)))
    if kind != prev_kind:
      if prev_kind in ranges:
        ranges[prev_kind].append((start, cp - 1))
      prev_kind, start = kind, cp
  return ranges, tuple(lower)


@functools.lru_cache(maxsize=None)
def char_classes() -> Dict[str, str]:
  """RE2 character classes of the original's rules, from `unicodedata`.

  deleted: what `_clean_text` drops; space: what becomes a word boundary
  (mapped to " " by `_clean_text`, or split on by `str.split()`);
  punctuation: `_is_punctuation`; cjk: `_is_chinese_char`.
  """
  ranges, _ = _unicode_tables()
  out = {name: _re2_class(rs) for name, rs in ranges.items()}
  # What `clean_text` maps to " ": the separators but " " itself (a no-op
  # replacement of every space would cost a third of the tokenizer's time).
  assert (0x20, 0x20) in ranges["space"]   # " " is a range of its own
  out["to_space"] = _re2_class([r for r in ranges["space"]
                                if r != (0x20, 0x20)])
  out["cjk"] = _re2_class(list(_CJK_RANGES))
  return out


@functools.lru_cache(maxsize=None)
def lower_case_fixes() -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
  """(code points, their lower case) where `tf.strings.lower` != str.lower.

  TF's ICU may be an older Unicode version than Python's `unicodedata`
  (TF 2.20 misses 40 letters added in Unicode 14, e.g. U+2C2F). Only
  one-character mappings can differ this way; the multi-character one
  (U+0130) and the final sigma agree (the tests check every code point).
  """
  _, lower = _unicode_tables()
  with tf.init_scope():
    got = tf.strings.lower(
        tf.constant([chr(cp).encode("utf-8") for cp, _ in lower]),
        encoding="utf-8").numpy()
  fixes = [(cp, low) for (cp, low), g in zip(lower, got)
           if g.decode("utf-8") != chr(low)]
  return tuple(cp for cp, _ in fixes), tuple(low for _, low in fixes)


def load_vocab_tokens(vocab_file: str):
  """Vocab lines as FullTokenizer reads them (stripped, id = line number)."""
  with tf.io.gfile.GFile(vocab_file, "r") as f:
    return [line.strip() for line in f]


def truncated_lengths(len_a, len_b, max_pair_tokens):
  """Closed form of the original `_truncate_seq_pair` on lengths.

  The original repeatedly drops the last token of the longer sequence (ties
  drop from b) until len_a + len_b <= m. That leaves
    a' = min(la, max(m - lb, ceil(m / 2))),  b' = min(lb, m - a')
  whenever la + lb > m, and both untouched otherwise. Works on Python ints
  and on int tensors alike.
  """
  m = max_pair_tokens
  half = (m + 1) // 2
  if isinstance(len_a, int) and isinstance(len_b, int):
    if len_a + len_b <= m:
      return len_a, len_b
    a = min(len_a, max(m - len_b, half))
    return a, min(len_b, m - a)
  over = (len_a + len_b) > m
  a = tf.minimum(len_a, tf.maximum(m - len_b, half))
  b = tf.minimum(len_b, m - a)
  return tf.where(over, a, len_a), tf.where(over, b, len_b)


def clean_text(text: tf.Tensor) -> tf.Tensor:
  """The original `_clean_text`, plus `str.split()`'s extra separators.

  Deletes U+0000, U+FFFD and every C* character but tab/newline/CR (tf_text
  would turn Cc/Cf into spaces and split the word: "Treasury\\x12s" must
  stay one word, "treasury ##s"); maps every word separator to " ".
  """
  classes = char_classes()
  text = tf.strings.regex_replace(text, classes["deleted"], "")
  return tf.strings.regex_replace(text, classes["to_space"], " ")


def _map_chars(text: tf.Tensor, table) -> tf.Tensor:
  """Replaces code points found in `table` (int32 -> int32, default -1)."""
  cps = tf.strings.unicode_decode(text, "UTF-8")
  flat = cps.flat_values
  mapped = table.lookup(flat)
  return tf.strings.unicode_encode(
      cps.with_flat_values(tf.where(mapped >= 0, mapped, flat)), "UTF-8")


def lower_and_strip_accents(text: tf.Tensor, lower_fixes=None) -> tf.Tensor:
  """The original lower-casing: str.lower(), NFD, drop Mn characters.

  tf_text's own `lower_case=True` uses NFKC case folding, which also rewrites
  compatibility characters (e.g. "\\u2026" -> "...") and so gives ids that
  differ from the reference; this keeps them apart. `lower_fixes`, a
  (table, regex) pair, maps the letters TF's ICU does not lower-case (see
  `lower_case_fixes`); the mapping runs only on batches that hold one.
  """
  text = tf.strings.lower(text, encoding="utf-8")
  if lower_fixes is not None:
    table, pattern = lower_fixes
    text = tf.cond(
        tf.reduce_any(tf.strings.regex_full_match(text, pattern)),
        lambda: _map_chars(text, table), lambda: text)
  text = tf_text.normalize_utf8(text, "NFD")
  return tf.strings.regex_replace(text, r"\p{Mn}", "")


def split_words(text: tf.Tensor) -> tf.RaggedTensor:
  """[B] cleaned text -> [B, (words)]: split on " ", and each punctuation
  character and CJK ideograph is a word of its own."""
  classes = char_classes()
  keep = classes["punctuation"] + "|" + classes["cjk"]
  return tf_text.regex_split(text, " +|" + keep, keep)


def limit_word_length(words: tf.RaggedTensor) -> tf.RaggedTensor:
  """Words of more than MAX_INPUT_CHARS_PER_WORD characters -> "[UNK]"."""
  flat = words.flat_values
  too_long = tf.strings.length(flat, unit="UTF8_CHAR") > (
      MAX_INPUT_CHARS_PER_WORD)
  return words.with_flat_values(tf.where(too_long, UNK_TOKEN, flat))


def _keep_first(rt: tf.RaggedTensor, lengths: tf.Tensor) -> tf.RaggedTensor:
  """Keeps the first lengths[i] tokens of row i of a 2-D ragged tensor.

  Written on the flat values (each value's position in its row against its
  row's limit) rather than as a ragged comparison: same result, but
  tracing a ragged broadcast costs seconds per call site.
  """
  row_lengths = rt.row_lengths()
  keep = tf.minimum(tf.cast(lengths, row_lengths.dtype), row_lengths)
  rows = rt.value_rowids()
  position = (tf.range(tf.size(rows, out_type=rows.dtype))
              - tf.gather(rt.row_starts(), rows))
  values = tf.boolean_mask(rt.values, position < tf.gather(keep, rows))
  return tf.RaggedTensor.from_row_lengths(values, keep, validate=False)


class InGraphTokenizer(tf.Module):
  """Raw text -> BERT inputs, with the original truncation and packing.

  Built from (vocab_file, do_lower_case, max_seq_length). Lower-casing also
  strips accents (NFD, drop Mn), as FullTokenizer does; a cased vocab gets
  neither. The vocab is a `tf.lookup` table initialised from the file, so a
  SavedModel that holds this module carries the vocab as an asset.

  Inputs are 1-D tf.string tensors [B] (text_b None for single sentences;
  a row whose text_b gives no wordpieces, e.g. "", is a single sentence).
  `tokenize_unpadded` gives ragged ids for caching (graph-compiled variants:
  `tokenize_single`, `tokenize_pair`), `__call__` padded [B, max_seq_length]
  int32 for serving (graph variants: `serve_single`, `serve_pair`).
  """

  def __init__(self, vocab_file: str, do_lower_case: bool = True,
               max_seq_length: int = 128, name: Optional[str] = None):
    super().__init__(name=name)
    if max_seq_length < 4:
      raise ValueError("max_seq_length must be >= 4, got %d" % max_seq_length)
    self.vocab_file = files.absolute(vocab_file)
    self.do_lower_case = bool(do_lower_case)
    self.max_seq_length = int(max_seq_length)
    self.vocab_sha256 = file_sha256(self.vocab_file)
    tokens = load_vocab_tokens(self.vocab_file)
    index = {t: i for i, t in enumerate(tokens)}
    for special in (CLS_TOKEN, SEP_TOKEN, UNK_TOKEN):
      if special not in index:
        raise ValueError("%s not in vocab %s" % (special, vocab_file))
    self.vocab_size = len(tokens)
    self.cls_id = index[CLS_TOKEN]
    self.sep_id = index[SEP_TOKEN]
    self.pad_id = index.get(PAD_TOKEN, 0)
    self.unk_id = index[UNK_TOKEN]
    # Model Garden packs pad id 0; we pad with [PAD]'s id, which is 0 for
    # every released BERT vocab.
    init = tf.lookup.TextFileInitializer(
        self.vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
    self._vocab_table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
    # Words reach it already cut to <= MAX_INPUT_CHARS_PER_WORD characters
    # (longer ones are the literal "[UNK]", found in the vocab).
    self._wordpiece = tf_text.WordpieceTokenizer(
        self._vocab_table,
        suffix_indicator="##",
        max_bytes_per_word=_MAX_BYTES_PER_WORD,
        token_out_type=tf.int64,
        unknown_token=UNK_TOKEN)
    char_classes()  # built once per process, before any tracing
    self._lower_fixes = None
    keys, values = lower_case_fixes() if self.do_lower_case else ((), ())
    if keys:
      self._lower_fix_table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(
              tf.constant(keys, tf.int32), tf.constant(values, tf.int32)),
          default_value=-1)
      pattern = "(?s).*" + _re2_class([(k, k) for k in keys]) + ".*"
      self._lower_fixes = (self._lower_fix_table, pattern)

  def config(self) -> Dict:
    """What decides the ids: part of every feature-cache key."""
    return {"vocab_sha256": self.vocab_sha256,
            "do_lower_case": self.do_lower_case,
            "max_seq_length": self.max_seq_length}

  def words(self, text: tf.Tensor) -> tf.RaggedTensor:
    """[B] strings -> [B, (words)]: the original BasicTokenizer's words,
    those over MAX_INPUT_CHARS_PER_WORD characters replaced by "[UNK]"."""
    text = clean_text(tf.convert_to_tensor(text, tf.string))
    if self.do_lower_case:
      text = lower_and_strip_accents(text, self._lower_fixes)
    return limit_word_length(split_words(text))

  def wordpieces(self, text: tf.Tensor) -> tf.RaggedTensor:
    """[B] strings -> [B, (tokens)] int64 wordpiece ids, no truncation."""
    return self._wordpiece.tokenize(self.words(text)).merge_dims(-2, -1)

  def tokenize_unpadded(self, text_a, text_b=None) -> Dict[str, tf.Tensor]:
    """Truncated, packed, unpadded inputs (for the TFRecord cache).

    Row by row as the original `featurize`: [CLS] a [SEP] b [SEP] (segment
    ids 0..0 1..1, `_truncate_seq_pair` to max_seq_length - 3) when b gives
    at least one wordpiece, else [CLS] a [SEP] (segment ids 0, a cut to
    max_seq_length - 2) -- also for every row when text_b is None.

    Returns dict of
      input_word_ids, input_type_ids: int32 RaggedTensor [B, (len)];
      num_tokens: int32 [B], the packed length BEFORE truncation (with
        [CLS]/[SEP]); truncated: bool [B], whether anything was dropped.
    """
    a = self.wordpieces(text_a)
    la = tf.cast(a.row_lengths(), tf.int32)
    single_keep = tf.minimum(la, self.max_seq_length - 2)
    if text_b is None:
      ids = _concat_rows([self._column(la, self.cls_id),
                          _keep_first(a, single_keep),
                          self._column(la, self.sep_id)])
      return {"input_word_ids": tf.cast(ids, tf.int32),
              "input_type_ids": tf.zeros_like(ids, tf.int32),
              "num_tokens": la + 2,
              "truncated": la > single_keep}
    b = self.wordpieces(text_b)
    lb = tf.cast(b.row_lengths(), tf.int32)
    has_b = lb > 0   # the original's `if tokens_b:`
    pair_a, pair_b = truncated_lengths(la, lb, self.max_seq_length - 3)
    a_keep = tf.where(has_b, pair_a, single_keep)
    b_keep = tf.where(has_b, pair_b, 0)
    first = _concat_rows([self._column(la, self.cls_id),
                          _keep_first(a, a_keep),
                          self._column(la, self.sep_id)])
    # b and its [SEP] only where b has tokens.
    second = _concat_rows([_keep_first(b, b_keep),
                           _keep_first(self._column(la, self.sep_id),
                                       tf.cast(has_b, tf.int32))])
    ids = _concat_rows([first, second])
    type_ids = _concat_rows([tf.zeros_like(first, tf.int32),
                             tf.ones_like(second, tf.int32)])
    return {"input_word_ids": tf.cast(ids, tf.int32),
            "input_type_ids": type_ids,
            "num_tokens": tf.where(has_b, la + lb + 3, la + 2),
            "truncated": (la + lb) > (a_keep + b_keep)}

  @staticmethod
  def _column(like_lengths: tf.Tensor, token_id: int) -> tf.RaggedTensor:
    """[B, 1] ragged int64 column of `token_id`."""
    return tf.RaggedTensor.from_tensor(
        tf.fill(tf.stack([tf.size(like_lengths), 1]),
                tf.constant(token_id, tf.int64)))

  def __call__(self, text_a, text_b=None) -> Dict[str, tf.Tensor]:
    """Padded model inputs: int32 [B, max_seq_length] each."""
    out = self.tokenize_unpadded(text_a, text_b)
    return pad_inputs(out["input_word_ids"], out["input_type_ids"],
                      self.max_seq_length, self.pad_id)

  # Signature-bound graph versions: traced once per tokenizer (the first
  # trace + graph optimisation costs seconds; later batches milliseconds),
  # and exported when a SavedModel holds this module. No autograph: the
  # code has no Python control flow on tensors (tf.cond is explicit), and
  # converting it cost about as much as tracing it.
  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string)])
  def tokenize_single(self, text_a):
    return self.tokenize_unpadded(text_a)

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([None], tf.string)])
  def tokenize_pair(self, text_a, text_b):
    return self.tokenize_unpadded(text_a, text_b)

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string)])
  def serve_single(self, text_a):
    return self(text_a)

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([None], tf.string)])
  def serve_pair(self, text_a, text_b):
    return self(text_a, text_b)


def _concat_rows(parts) -> tf.RaggedTensor:
  """Row-wise concatenation of 2-D ragged tensors [B, (n_i)]."""
  return tf.concat(parts, axis=1)


def pad_inputs(word_ids, type_ids, max_seq_length: int, pad_id: int = 0):
  """Ragged [B, (len)] ids -> padded int32 dict with input_mask.

  Used by the tokenizer and by readers of the unpadded cache (batch the
  cache with `ragged_batch`, then pad here; rows longer than max_seq_length
  would be cut, but the cache never holds any).
  """
  shape = [None, max_seq_length]
  ids = word_ids.to_tensor(default_value=pad_id, shape=shape)
  types = type_ids.to_tensor(default_value=0, shape=shape)
  mask = tf.ones_like(word_ids, tf.int32).to_tensor(default_value=0,
                                                    shape=shape)
  return {"input_word_ids": tf.cast(ids, tf.int32),
          "input_mask": mask,
          "input_type_ids": tf.cast(types, tf.int32)}
