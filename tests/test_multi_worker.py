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
  assert sorted(os.listdir(model_dir)) == ["config.json", "results.json",
                                           "results.txt", "trial_0"]
