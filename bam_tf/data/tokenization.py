"""BERT WordPiece tokenisation, truncation and packing inside the TF graph.

Why in the graph: the same `tf.Module` featurises the training caches (via
tf.data) and can be saved inside a SavedModel, so serving takes raw strings
and tokenises exactly as training did. The ids equal those of the reference
Python `FullTokenizer` plus the original `_truncate_seq_pair` (checked on
every GLUE train/dev example by tests/test_tokenization.py).
"""

import os
from typing import Dict, Optional

import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf
import tensorflow_text as tf_text

from bam_tf.outputs.files import file_sha256

CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
# FullTokenizer maps words longer than 400 characters to [UNK]; tf_text counts
# bytes, so 400 matches exactly for ASCII words (GLUE has none that long).
MAX_WORD_LENGTH = 400


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
  """FullTokenizer's `_clean_text`, which tf_text lacks.

  Deletes Cc/Cf characters (but not tab, newline, CR) and U+FFFD, where
  tf_text would split the word instead ("Treasury\x12s" must stay one word,
  "treasury ##s"), and maps Zs spaces to " ".
  """
  text = tf.strings.regex_replace(
      text, r"[^\P{Cc}\t\n\r]|\p{Cf}|\x{fffd}", "")
  # FullTokenizer also maps every Zs space to " "; tf_text does not split on
  # e.g. U+00A0 or U+3000.
  return tf.strings.regex_replace(text, r"\p{Zs}", " ")


def lower_and_strip_accents(text: tf.Tensor) -> tf.Tensor:
  """FullTokenizer's lower-casing: str.lower(), NFD, drop Mn characters.

  tf_text's own `lower_case=True` uses NFKC case folding, which also rewrites
  compatibility characters (e.g. "\u2026" -> "...") and so gives ids that
  differ from the reference; this keeps them apart.
  """
  text = tf.strings.lower(text, encoding="utf-8")
  text = tf_text.normalize_utf8(text, "NFD")
  return tf.strings.regex_replace(text, r"\p{Mn}", "")


def _keep_first(rt: tf.RaggedTensor, lengths: tf.Tensor) -> tf.RaggedTensor:
  """Keeps the first lengths[i] tokens of row i of a 2-D ragged tensor."""
  positions = tf.ragged.range(tf.cast(rt.row_lengths(), lengths.dtype))
  return tf.ragged.boolean_mask(rt, positions < tf.expand_dims(lengths, 1))


class InGraphTokenizer(tf.Module):
  """Raw text -> BERT inputs, with the original truncation.

  Built from (vocab_file, do_lower_case, max_seq_length). Lower-casing also
  strips accents (NFD, drop Mn), as FullTokenizer does; a cased vocab gets
  neither. The vocab is a `tf.lookup` table initialised from the file, so a
  SavedModel that holds this module carries the vocab as an asset.

  Inputs are 1-D tf.string tensors [B] (text_b None for single sentences).
  `tokenize_unpadded` gives ragged ids for caching (graph-compiled variants:
  `tokenize_single`, `tokenize_pair`), `__call__` padded [B, max_seq_length]
  int32 for serving (graph variants: `serve_single`, `serve_pair`).
  """

  def __init__(self, vocab_file: str, do_lower_case: bool = True,
               max_seq_length: int = 128, name: Optional[str] = None):
    super().__init__(name=name)
    if max_seq_length < 4:
      raise ValueError("max_seq_length must be >= 4, got %d" % max_seq_length)
    self.vocab_file = os.path.abspath(vocab_file)
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
    self._bert = tf_text.BertTokenizer(
        self._vocab_table,
        suffix_indicator="##",
        max_bytes_per_word=MAX_WORD_LENGTH,
        token_out_type=tf.int64,
        unknown_token=UNK_TOKEN,
        lower_case=False)

  def config(self) -> Dict:
    """What decides the ids: part of every feature-cache key."""
    return {"vocab_sha256": self.vocab_sha256,
            "do_lower_case": self.do_lower_case,
            "max_seq_length": self.max_seq_length}

  def wordpieces(self, text: tf.Tensor) -> tf.RaggedTensor:
    """[B] strings -> [B, (tokens)] int64 wordpiece ids, no truncation."""
    text = clean_text(tf.convert_to_tensor(text, tf.string))
    if self.do_lower_case:
      text = lower_and_strip_accents(text)
    return self._bert.tokenize(text).merge_dims(-2, -1)

  def tokenize_unpadded(self, text_a, text_b=None) -> Dict[str, tf.Tensor]:
    """Truncated, packed, unpadded inputs (for the TFRecord cache).

    Returns dict of
      input_word_ids, input_type_ids: int32 RaggedTensor [B, (len)];
      num_tokens: int32 [B], the packed length BEFORE truncation (with
        [CLS]/[SEP]); truncated: bool [B], whether anything was dropped.
    """
    a = self.wordpieces(text_a)
    la = tf.cast(a.row_lengths(), tf.int32)
    if text_b is None:
      m = self.max_seq_length - 2
      a_keep = tf.minimum(la, m)
      segments = [_keep_first(a, a_keep)]
      num_tokens = la + 2
      truncated = la > a_keep
    else:
      b = self.wordpieces(text_b)
      lb = tf.cast(b.row_lengths(), tf.int32)
      a_keep, b_keep = truncated_lengths(la, lb, self.max_seq_length - 3)
      segments = [_keep_first(a, a_keep), _keep_first(b, b_keep)]
      num_tokens = la + lb + 3
      truncated = (la + lb) > (a_keep + b_keep)
    ids, type_ids = tf_text.combine_segments(
        segments, start_of_sequence_id=self.cls_id,
        end_of_segment_id=self.sep_id)
    return {"input_word_ids": tf.cast(ids, tf.int32),
            "input_type_ids": tf.cast(type_ids, tf.int32),
            "num_tokens": num_tokens,
            "truncated": truncated}

  def __call__(self, text_a, text_b=None) -> Dict[str, tf.Tensor]:
    """Padded model inputs: int32 [B, max_seq_length] each."""
    out = self.tokenize_unpadded(text_a, text_b)
    return pad_inputs(out["input_word_ids"], out["input_type_ids"],
                      self.max_seq_length, self.pad_id)

  # Signature-bound graph versions: traced once per tokenizer (the first
  # trace + graph optimisation costs seconds; later batches milliseconds),
  # and exported when a SavedModel holds this module.
  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def tokenize_single(self, text_a):
    return self.tokenize_unpadded(text_a)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([None], tf.string)])
  def tokenize_pair(self, text_a, text_b):
    return self.tokenize_unpadded(text_a, text_b)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def serve_single(self, text_a):
    return self(text_a)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([None], tf.string)])
  def serve_pair(self, text_a, text_b):
    return self(text_a, text_b)


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
