"""The original's training recipe: copies, padding, steps, shuffling, heads.

Numbers come from ORIGINAL_BEHAVIOUR.md's "Precise details" (checked against
the original code) and from formulas written out here independently of
bam_tf.data.sampling.
"""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import bam_tf  # noqa: F401
from bam_tf import runner
from bam_tf.data import sampling
from bam_tf.data import train_pool
from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.tasks import readers
from bam_tf.tasks import registry
from conftest import REPO_ROOT, resolve_flags, run_classifier

# The original's copies per task (ORIGINAL_BEHAVIOUR.md, Precise details).
COPIES = {"cola": 3, "mnli": 1, "mrpc": 3, "qnli": 1, "qqp": 1, "sst": 2,
          "sts": 2, "rte": 4}
TABLE = {"cola": 8551, "mnli": 392702, "mrpc": 7336, "qnli": 108436,
         "qqp": 363869, "sst": 67349, "sts": 11498, "rte": 2490}


def original_steps(tasks, batch, epochs, copies=True):
  """(examples with copies + padding to a multiple of batch) // batch *
  epochs, written out as the original computes it."""
  n = sum(TABLE[t] * (COPIES[t] if copies else 1) for t in tasks)
  padded = n + (batch - n % batch) % batch
  return int(padded // batch * epochs)


def _steps(sizes, scheme="multiples", batch=128, epochs=6.0):
  plan = sampling.sampling_plan(sizes, scheme, 0.75)
  return plan.train_steps(batch, epochs)


@pytest.mark.parametrize("tasks,expected", [
    (("cola", "mrpc", "sts", "rte"), 3780),
    (tuple(TABLE), 50646),
    (("rte", "qqp", "cola", "sst"), 25044),
    (("rte", "mnli"), 18876),
])
def test_multi_task_step_counts(tasks, expected):
  sizes = {t: TABLE[t] for t in tasks}
  assert original_steps(tasks, 128, 6) == expected
  assert _steps(sizes) == expected
  # The sampler trains the same number of steps as the pool.
  assert _steps(sizes, "proportional") == expected


def test_single_task_step_count():
  # RTE alone: 2,490 examples + 6 padding = 78 batches of 32, 3 epochs.
  assert _steps({"rte": 2490}, "loss_weights", 32, 3.0) == 234
  assert original_steps(["rte"], 32, 3, copies=False) == 234


def test_shared_glue_train_sizes_are_the_table(glue_dir):
  """The shared GLUE train files (swapped pairs included) have the table's
  sizes, so the small recipes train the original's counts on them."""
  for name in ("cola", "mrpc", "sts", "rte"):
    task = registry.get_tasks([name])[0]
    examples = readers.read_examples(task, glue_dir, "train")
    assert len(examples) == TABLE[name], name


# ---------------------------------------------------------------------------
# Every flagfile trains the original's step count.

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "official_configs", "**",
                                        "*.cfg"), recursive=True))


def _resolve(path, data_dir):
  return resolve_flags([f"--flagfile={path}", f"--data_dir={data_dir}"])


def _logged(monkeypatch):
  """Lines the runner logs (absl logging bypasses pytest's caplog)."""
  lines = []
  monkeypatch.setattr(runner.logging, "info",
                      lambda fmt, *args: lines.append(fmt % args))
  return lines


def _table_data(config):
  """PreparedData stand-in with the full GLUE train sizes (no data read)."""
  manifests = {t.name: {"train": {"count": TABLE[t.name]}}
               for t in config.tasks}
  return runner.PreparedData(records={}, manifests=manifests)


# The first run's configs (demo.cfg, demo/) train the generated demo data,
# not GLUE: their recipe is their own (README).
@pytest.mark.parametrize("path", [c for c in CONFIGS
                                  if "demo" not in os.path.relpath(
                                      c, REPO_ROOT)],
                         ids=lambda p: os.path.relpath(
                             p, os.path.join(REPO_ROOT, "official_configs")))
def test_flagfile_trains_the_original_step_count(path, tmp_path,
                                                 monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  config = _resolve(path, str(tmp_path))
  # Paper recipes use random batches; the bucketing question's twins
  # (small/single_*_bucketed.cfg) are the one deliberate exception.
  assert config.length_bucketing == path.endswith("_bucketed.cfg")
  tasks = config.task_names
  multi = len(tasks) > 1
  assert config.task_sampling == ("multiples" if multi else "loss_weights")
  # Exponent 1 (the "no task sampling" ablation) gives one copy of each
  # task (tests/test_sampling.py); otherwise the table's copies.
  copies = multi and config.sampling_exponent == 0.75
  assert copies or not multi or config.sampling_exponent == 1.0
  expected = original_steps(tasks, config.train_batch_size,
                            config.num_train_epochs, copies=copies)
  logged = _logged(monkeypatch)
  plan, steps = runner.plan_training(config, _table_data(config))
  assert steps == expected
  assert f"= {expected:,} steps" in "\n".join(logged)
  for task in tasks:
    assert plan.multiples[task] == (COPIES[task] if copies else 1)


def test_small_multi_announces_its_recipe(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  config = _resolve(os.path.join(REPO_ROOT, "official_configs", "small",
                                 "multi.cfg"), str(tmp_path))
  config.max_train_steps = 10
  logged = _logged(monkeypatch)
  _, steps = runner.plan_training(config, _table_data(config))
  assert steps == 10
  text = "\n".join(logged)
  assert "= 3,780 steps" in text
  assert "cola: 3 copies, loss weight 0.8634" in text
  assert "rte: 4 copies, loss weight 0.8816" in text
  assert "stops after 10 of the recipe's 3,780 steps" in text


# ---------------------------------------------------------------------------
# The pool: exact copies per pass, padding, whole-file shuffling.

def _write_task(path, task_id, n, labels=None):
  def ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  with tf.io.TFRecordWriter(path) as writer:
    for eid in range(n):
      label = 0 if labels is None else labels[eid]
      feats = {"eid": ints([eid]), "task_id": ints([task_id]),
               "input_word_ids": ints([101, 7 + eid % 5, 102]),
               "input_type_ids": ints([0, 0, 0]), "label_id": ints([label]),
               "num_tokens": ints([3]),
               "label_value": tf.train.Feature(
                   float_list=tf.train.FloatList(value=[0.0]))}
      writer.write(tf.train.Example(features=tf.train.Features(
          feature=feats)).SerializeToString())


def _pairs(elements):
  return [(int(e["task_id"]), int(e["eid"])) for e in elements]


def test_every_pass_holds_each_example_its_copies(tmp_path):
  sizes, copies, batch = [37, 50, 11], [3, 1, 4], 16
  sources = []
  for i, n in enumerate(sizes):
    sources.append(str(tmp_path / f"t{i}.tfrecord"))
    _write_task(sources[-1], i, n)
  out = str(tmp_path / "pool.tfrecord")
  stats = train_pool.write_pool(sources, copies, batch, 5, out,
                                pad_task_id=3)
  n = 37 * 3 + 50 + 11 * 4                      # 205
  assert stats["records"] == 208 and stats["padding"] == 3
  assert stats["per_source"] == [111, 50, 44]
  elements = list(train_pool.pool_dataset(out, seed=5).take(3 * 208))
  for p in range(3):
    got = _pairs(elements[p * 208:(p + 1) * 208])
    counts = {}
    for pair in got:
      counts[pair] = counts.get(pair, 0) + 1
    assert counts.pop((3, -1)) == 3            # padding examples
    assert len(counts) == sum(sizes)
    for (task, eid), c in counts.items():
      assert c == copies[task] and 0 <= eid < sizes[task]
  assert len(_pairs(elements)) == 3 * (n + 3)
  # Passes differ (the read buffer reshuffles locally), the seed repeats.
  assert _pairs(elements[:208]) != _pairs(elements[208:416])
  again = list(train_pool.pool_dataset(out, seed=5).take(208))
  assert _pairs(again) == _pairs(elements[:208])


def test_pool_order_depends_on_the_seed_only():
  a = train_pool.pool_order([30, 20], [2, 1], 8, seed=1)
  b = train_pool.pool_order([30, 20], [2, 1], 8, seed=1)
  c = train_pool.pool_order([30, 20], [2, 1], 8, seed=2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert len(a) == 80 and np.sum(a[:, 0] < 0) == 0


def test_first_batches_of_a_sorted_file_come_from_the_whole_file(tmp_path):
  """A file sorted by label (all 0s, then all 1s) reaches the model mixed:
  the first batches hold both labels and example ids from the whole file,
  where a 10,000-row buffer over the file's order would see only its start."""
  n = 20000
  path = str(tmp_path / "sorted.tfrecord")
  _write_task(path, 0, n, labels=[0] * (n // 2) + [1] * (n // 2))
  out = str(tmp_path / "pool.tfrecord")
  train_pool.write_pool([path], [1], 32, 11, out, pad_task_id=1)
  # The first 10 batches. Their read buffer's order also follows the
  # process's global seed (whatever earlier tests set), so the bounds hold
  # for any uniform draw: 4.5 standard deviations, and a tenth of the file
  # missed by 320 draws with probability 10 * 0.9^320 (below 1e-13); with 64
  # draws that was 1.2%, and it happened.
  first = list(train_pool.pool_dataset(out, seed=11).take(320))
  eids = np.array([int(e["eid"]) for e in first])
  labels = np.array([int(e["label_id"]) for e in first])
  assert 120 <= labels.sum() <= 200            # ~half of 320 are 1s
  assert eids.max() > 0.9 * n and eids.min() < 0.1 * n
  # Spread like a uniform draw: every tenth of the file is hit.
  assert len(set(eids * 10 // n)) == 10


def test_sts_genres_are_mixed_from_the_first_batch(glue_dir, tmp_path,
                                                   minilm_vocab):
  """STS-B's train file is sorted by genre; the first batch of the real
  pool mixes them in about their shares."""
  from bam_tf.data import features as features_lib  # pylint: disable=g-import-not-at-top
  from bam_tf.data.tokenization import InGraphTokenizer  # pylint: disable=g-import-not-at-top
  task = registry.get_tasks(["sts"])[0]
  examples = readers.read_examples(task, glue_dir, "train",
                                   add_swapped=False)
  path = os.path.join(glue_dir, "STS-B", "train.tsv")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
  genres = [r[1] for r in rows]
  assert genres == sorted(genres, key=lambda g: genres.index(g))  # blocks
  tok = InGraphTokenizer(minilm_vocab, True, 128)
  records = str(tmp_path / "sts.tfrecord")
  features_lib.write_features(examples, task, 0, tok, records)
  out = str(tmp_path / "pool.tfrecord")
  train_pool.write_pool([records], [2], 128, 3, out, pad_task_id=1)
  first = list(train_pool.pool_dataset(out, seed=3).take(128))
  seen = {genres[int(e["eid"])] for e in first}
  assert seen == set(genres), (seen, set(genres))


def test_student_records_get_teacher_fields(tmp_path):
  """Pool records of tasks with and without a teacher parse to one
  structure: teacher_probs padded to the widest label set, teacher_value."""
  plain = str(tmp_path / "plain.tfrecord")
  _write_task(plain, 0, 4)
  joined = str(tmp_path / "joined.tfrecord")
  with tf.io.TFRecordWriter(joined) as writer:
    for raw in tf.data.TFRecordDataset(plain):
      ex = tf.train.Example.FromString(raw.numpy())
      ex.features.feature["task_id"].int64_list.value[:] = [1]
      ex.features.feature["teacher_probs"].float_list.value[:] = [0.2, 0.8]
      writer.write(ex.SerializeToString())
  out = str(tmp_path / "pool.tfrecord")
  train_pool.write_pool([plain, joined], [1, 1], 3, 0, out, pad_task_id=2)
  got = list(train_pool.pool_dataset(out, 0, teacher_width=3).take(9))
  for e in got:
    probs = e["teacher_probs"].numpy().tolist()
    if int(e["task_id"]) == 1:
      assert probs == pytest.approx([0.2, 0.8, 0.0])
    else:
      assert probs == [0.0, 0.0, 0.0]
    assert float(e["teacher_value"]) == 0.0


# ---------------------------------------------------------------------------
# Heads and the run's announcement.

def test_heads_are_glorot_uniform_with_zero_bias():
  from official.nlp.modeling import networks  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(0)
  encoder = networks.BertEncoder(
      vocab_size=30, hidden_size=384, num_layers=1, num_attention_heads=2,
      inner_dim=32, max_sequence_length=8, dict_outputs=True)
  tasks = registry.get_tasks(["mnli", "sts"])
  model = MultiTaskModel(encoder, tasks)
  for task in tasks:
    kernel, bias = model.get_layer(f"head_{task.name}").get_weights()
    fan_in, fan_out = kernel.shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.all(np.abs(kernel) <= limit) and np.all(bias == 0)
    # Uniform on [-limit, limit]: std limit/sqrt(3) (0.072 for 384x2);
    # a truncated normal of 0.02 would be far below, and its values would
    # not reach beyond 0.04.
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.25)
    assert np.abs(kernel).max() > 0.8 * limit


def test_multi_task_run_prints_copies_weights_and_steps(glue_dir, tmp_path):
  out = run_classifier([
      "--debug", "--task_names=cola,mrpc,sts,rte", "--task_sampling=multiples",
      f"--data_dir={glue_dir}", f"--model_dir={tmp_path / 'run'}",
      "--max_train_steps=2", "--teacher_output_trials="])
  # Debug rows: 50 each, mrpc and sts doubled.
  n = 50 * 3 + 100 * 3 + 100 * 2 + 50 * 4       # 850 + 14 = 27 x 32
  assert (f"{n:,} examples per pass + 14 padding = 27 batches of 32 x 3 "
          "epochs = 81 steps") in out
  assert "cola: 3 copies, loss weight 0.8634" in out
  assert "sts: 2 copies, loss weight 1.2028" in out
  assert "stops after 2 of the recipe's 81 steps" in out
  assert not os.path.exists(tmp_path / "run" / "trial_0" /
                            train_pool.POOL_FILE)   # removed after training


def _flags_config(tmp_path, *args):
  return resolve_flags([f"--data_dir={tmp_path}",
                        f"--model_dir={tmp_path / 'run'}"] + list(args))


def test_defaults_pick_the_original_scheme(tmp_path):
  multi = _flags_config(tmp_path, "--task_names=cola,rte")
  assert (multi.task_sampling, multi.train_batch_size,
          multi.num_train_epochs) == ("multiples", 128, 6.0)
  single = _flags_config(tmp_path, "--task_names=rte")
  assert (single.task_sampling, single.train_batch_size,
          single.num_train_epochs) == ("loss_weights", 32, 3.0)
  # The original's debug mode: batch 32, 3 epochs, no multiples.
  debug = _flags_config(tmp_path, "--task_names=cola,rte", "--debug")
  assert (debug.task_sampling, debug.train_batch_size,
          debug.num_train_epochs) == ("loss_weights", 32, 3.0)
  assert debug.learning_rate == multi.learning_rate == 1e-4
  chosen = _flags_config(tmp_path, "--task_names=cola,rte",
                         "--task_sampling=proportional")
  assert chosen.task_sampling == "proportional"
  assert chosen.recipe_scheme == "multiples"
