"""MultiWorkerMirroredStrategy: two worker processes on loopback train one
model together to the end; only the chief writes into model_dir."""

import json
import os
import socket
import subprocess
import sys

from conftest import REPO_ROOT


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_workers_train_together(tmp_path, glue_dir):
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  model_dir = tmp_path / "run"
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": {"worker": workers},
         "task": {"type": "worker", "index": index}}))
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py"),
         "--task_names=rte,sts", f"--data_dir={glue_dir}",
         f"--model_dir={model_dir}", "--debug", "--max_train_steps=4",
         "--train_batch_size=8", "--eval_batch_size=8",
         "--strategy=multi_worker_mirrored", "--teacher_output_trials=",
         "--save_checkpoints_steps=2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True))
  outputs = [p.communicate(timeout=900)[0] for p in procs]
  for index, (proc, out) in enumerate(zip(procs, outputs)):
    assert proc.returncode == 0, f"worker {index} failed:\n{out[-3000:]}"
  # Both workers ran the same 4 global steps.
  for out in outputs:
    assert "step 4/4 (100.0%)" in out
  results = json.loads((model_dir / "results.json").read_text())
  assert set(results["trials"][0]["tasks"]) == {"rte", "sts"}
  assert results["trials"][0]["tasks"]["rte"]["num_examples"] == 50
  ckpts = sorted(os.listdir(model_dir / "trial_0" / "checkpoints"))
  assert ckpts == ["checkpoint", "ckpt-2.data-00000-of-00001",
                   "ckpt-2.index", "ckpt-4.data-00000-of-00001",
                   "ckpt-4.index"]
  # Nothing but the chief's files (no worker temp folders) in model_dir.
  assert sorted(os.listdir(model_dir)) == [".lock", "config.json",
                                           "data_fingerprint.json",
                                           "results.json", "results.txt",
                                           "trial_0"]


_COORDINATION = r"""
import json, os, sys
os.environ["TF_CONFIG"] = json.dumps(
    {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
     "task": {"type": "worker", "index": 1}})
import bam_tf
import tensorflow as tf
from tensorflow.python.eager import context
from bam_tf.training import distribution
resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
distribution.configure_coordination(resolver, int(sys.argv[1]))
c = context.context().coordination_service
print(json.dumps({"heartbeat": c.heartbeat_timeout_in_ms,
                  "barrier": c.shutdown_barrier_timeout_in_ms,
                  "register": c.cluster_register_timeout_in_ms,
                  "leader": c.service_leader,
                  "jobs": [(j.name, j.num_tasks)
                           for j in c.coordinated_job_list]}))
"""


def test_worker_timeouts_reach_the_coordination_service():
  """--worker_timeout_s becomes the coordination service's heartbeat and
  barrier timeouts (TensorFlow's own default heartbeat timeout, 10 s, was
  missed by workers on a loaded 2-core host)."""
  out = subprocess.run([sys.executable, "-c", _COORDINATION, "45"],
                       cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=300, check=True).stdout
  got = json.loads(out.strip().splitlines()[-1])
  assert got == {"heartbeat": 45000, "barrier": 45000, "register": 45000,
                 "leader": "/job:worker/replica:0/task:0",
                 "jobs": [["worker", 2]]}
