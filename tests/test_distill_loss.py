"""The student's loss, end to end from real teacher files to the train step.

Teacher logits are written with the real writer, validated, joined into the
student's featurised records, batched by the real pipeline, and the model's
loss is compared with a hand computation of
  CE(student, lambda * one_hot + (1 - lambda) * softmax(teacher_logits / T))
and, for regression, (prediction - (lambda * gold + (1 - lambda) teacher))^2.
"""

import numpy as np
import pytest
import tf_keras
from official.nlp.modeling import networks

from bam_tf.data import features
from bam_tf.data import pipeline
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.distill import teacher_outputs
from bam_tf.modeling.multitask_model import model_inputs
from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.modeling.teacher_annealing import DistillSchedule
from bam_tf.tasks import glue
from bam_tf.tasks import readers

RTE, STS = glue.GLUE_TASKS["rte"], glue.GLUE_TASKS["sts"]
T = 2.0


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def student_batch(tmp_path_factory, glue_dir, minilm_vocab):
  """A mixed RTE + STS-B batch with teacher targets joined by eid."""
  tmp = tmp_path_factory.mktemp("distill")
  tok = InGraphTokenizer(minilm_vocab, True, 32)
  rng = np.random.default_rng(5)
  datasets, raw = [], {}
  for task_id, (task, rows) in enumerate([(RTE, 10), (STS, 6)]):
    examples = readers.read_examples(task, glue_dir, "train", max_rows=rows)
    path, manifest = features.build_or_load_features(
        examples, task, task_id, "train",
        readers.split_path(task, glue_dir, "train"), tok, str(tmp / "cache"))
    eids = teacher_outputs.feature_eids(path)
    # Teacher file in shuffled order: the join must go by example id.
    order = rng.permutation(len(eids))
    logits = rng.normal(0, 2, (len(eids), task.num_labels)).astype(np.float32)
    preds = {"eid": eids[order], "logits": logits[order]}
    if task.is_regression:
      preds["scaled_prediction"] = rng.uniform(0, 1, len(eids)).astype(
          np.float32)[order]
    else:
      preds["probabilities"] = _softmax(logits[order])
    teacher_dir = str(tmp / f"teacher_{task.name}")
    teacher_outputs.write_teacher_outputs(
        teacher_outputs.teacher_outputs_dir(teacher_dir, 0), task, "train",
        preds, {"data_sha256": manifest["key_parts"]["data_sha256"]})
    targets = teacher_outputs.load_teacher_targets(
        [teacher_dir], 0, task, "train", eids,
        manifest["key_parts"]["data_sha256"], temperature=T)
    joined = str(tmp / f"student_{task.name}.tfrecord")
    teacher_outputs.join_teacher_targets(path, targets, joined)
    datasets.append(pipeline.task_dataset(
        joined, loader=lambda p: teacher_outputs.load_student_dataset(
            p, probs_width=2)))
    raw[task.name] = {int(e): preds_row for e, preds_row in zip(
        preds["eid"], preds.get("scaled_prediction", preds["logits"]))}
  mixed = datasets[0].concatenate(datasets[1])
  batch = next(iter(pipeline.batch(mixed, 64, True, 32)))
  return batch, raw


def _model():
  tf_keras.utils.set_random_seed(0)
  encoder = networks.BertEncoder(
      vocab_size=30522, hidden_size=16, num_layers=1, num_attention_heads=2,
      inner_dim=32, max_sequence_length=32, dict_outputs=True)
  model = MultiTaskModel(encoder, [RTE, STS],
                         distill_schedule=DistillSchedule("annealing", 10),
                         teacher_tasks=["rte", "sts"])
  return model


@pytest.mark.parametrize("lam", [0.0, 0.37, 1.0])
def test_loss_matches_hand_computation(student_batch, lam):
  batch, raw = student_batch
  model = _model()
  model.distill_lambda.assign(lam)
  outputs = model(model_inputs(batch), training=False)
  total, _, counts = model.bam_loss(batch, outputs)
  assert counts.numpy().tolist() == [10, 12]  # STS-B has swapped copies
  expected = 0.0
  for k in range(batch["eid"].shape[0]):
    eid, tid = int(batch["eid"][k]), int(batch["task_id"][k])
    if tid == 0:
      teacher = _softmax(np.asarray(raw["rte"][eid]) / T)
      target = lam * np.eye(2)[int(batch["label_id"][k])] + (1 - lam) * teacher
      logits = outputs["rte"][k].numpy().astype(np.float64)
      log_probs = logits - np.log(np.exp(logits).sum())
      expected += -(target * log_probs).sum()
    else:
      target = lam * float(batch["label_value"][k]) + (1 - lam) * float(
          raw["sts"][eid])
      expected += (float(outputs["sts"][k, 0]) - target) ** 2
  np.testing.assert_allclose(total.numpy(), expected, rtol=1e-5)


def test_train_step_anneals_lambda(student_batch):
  batch, _ = student_batch
  model = _model()
  model.compile(optimizer=tf_keras.optimizers.SGD(0.0))
  seen = [float(model.train_step(batch)["lambda"]) for _ in range(3)]
  np.testing.assert_allclose(seen, [0.0, 0.1, 0.2], atol=1e-7)
