"""bam_tf against a PyTorch/transformers fine-tune of the same weights.

The same task, weights and recipe (single-task: batch 32, lr 5e-5, dynamic
padding, --epochs passes over the train set) trained by bam_tf
(run_classifier.py) and by the independent PyTorch loop in
tools/pytorch_reference/finetune.py (recipe 'hf', what a user would
otherwise pick), alternated in one invocation: bam, torch, bam, torch, ...
Each side runs in a fresh process; reported per run: training seconds (the
training loop only, as each side measures it), s/step, real (non-padding)
tokens/s, the process's peak RSS, and the dev score; then the medians and
the bam_tf / peer ratio of real tokens/s.

torch is optional. Install the peer's packages into a venv of their own
(keeps torch out of bam_tf's environment):

  python3.11 -m venv .venv-peer
  .venv-peer/bin/pip install torch transformers tokenizers scikit-learn scipy

  .venv/bin/python benchmarks/peer_comparison.py --peer_python=.venv-peer/bin/python \
      --task=mrpc --epochs=1 --seeds=1,2

Without a peer Python that imports torch it says so and exits 0 (skipped).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import bam_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string("peer_python", os.path.join(REPO, ".venv-peer", "bin",
                                                "python"),
                    "A Python with torch, transformers, tokenizers, "
                    "scikit-learn and scipy.")
flags.DEFINE_enum("task", "mrpc", ["mrpc", "rte", "cola", "sts"],
                  "The task both sides train.")
flags.DEFINE_float("epochs", 1.0, "Passes over the train set.")
flags.DEFINE_list("seeds", ["1", "2"], "One bam_tf and one peer run per "
                  "seed, alternated.")
flags.DEFINE_string("data_dir", os.path.join(REPO, "..", "shared",
                                             "glue_data"), "glue_data root.")
flags.DEFINE_list("bam_flags", [], "Extra run_classifier flags for the "
                  "bam_tf side, e.g. --length_bucketing.")
flags.DEFINE_string("output", "", "JSON results (default benchmarks/results/"
                    "peer_<task>.json).")
FLAGS = flags.FLAGS

GLUE_DIRS = {"mrpc": "MRPC", "rte": "RTE", "cola": "CoLA", "sts": "STS-B"}
METRIC = {"mrpc": "acc", "rte": "acc", "cola": "mcc", "sts": "spearman"}
BAM_METRIC = {"mrpc": "accuracy", "rte": "accuracy", "cola": "mcc",
              "sts": "spearman"}


def run_measured(cmd, env=None, cwd=None):
  """Runs cmd; returns (stdout, seconds, peak RSS in MB of that process)."""
  t0 = time.time()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=cwd)
  out = proc.stdout.read()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode != 0:
    raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{out[-3000:]}")
  return out, time.time() - t0, usage.ru_maxrss / 1024.0


def peer_available(python: str) -> str:
  """'' if the peer Python imports torch, else why not."""
  if not os.path.exists(python):
    return f"no peer Python at {python}"
  proc = subprocess.run([python, "-c", "import torch, transformers, "
                         "tokenizers, sklearn, scipy"],
                        capture_output=True, text=True)
  return "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]


def bam_run(task, seed, epochs, work, extra):
  model_dir = os.path.join(work, f"bam_{task}_{seed}")
  cmd = [sys.executable, os.path.join(REPO, "run_classifier.py"),
         f"--task_names={task}", f"--data_dir={FLAGS.data_dir}",
         f"--model_dir={model_dir}", f"--num_train_epochs={epochs}",
         f"--seed={seed}", "--teacher_output_trials=",
         "--learning_rate=5e-5", "--train_batch_size=32",
         "--eval_batch_size=32", "--log_every_steps=1000",
         # The peer trains each pair in its file order only.
         "--double_unordered=false"] + list(extra)
  _, wall, rss = run_measured(cmd)
  with open(os.path.join(model_dir, "results.json"), encoding="utf-8") as f:
    trial = json.load(f)["trials"][0]
  real_tokens = _bam_real_tokens(model_dir, task, epochs)
  score = trial["tasks"][task][BAM_METRIC[task]]
  return {"side": "bam_tf", "seed": seed, "steps": trial["train_steps"],
          "train_s": trial["train_seconds"], "wall_s": wall,
          "peak_rss_mb": rss, "real_tokens": real_tokens, "score": score}


def _bam_real_tokens(model_dir, task, epochs):
  """Real tokens bam_tf trained on: every train pair's packed length (at
  most 128) once a pass; the pool's padding examples are not counted."""
  from bam_tf.data.tokenization import InGraphTokenizer  # pylint: disable=g-import-not-at-top
  from bam_tf.modeling import minilm  # pylint: disable=g-import-not-at-top
  from bam_tf.tasks import readers, registry  # pylint: disable=g-import-not-at-top
  del model_dir
  spec = registry.get_tasks([task])[0]
  examples = readers.read_examples(spec, FLAGS.data_dir, "train",
                                   add_swapped=False)
  tok = InGraphTokenizer(minilm.find_minilm_files()[1], True, 128)
  total = 0
  for i in range(0, len(examples), 1024):
    chunk = examples[i:i + 1024]
    b = [e.text_b for e in chunk] if chunk[0].text_b is not None else None
    out = tok.tokenize_unpadded([e.text_a for e in chunk], b)
    total += int(out["input_word_ids"].row_lengths().numpy().sum())
  return int(round(total * epochs))


def peer_run(python, carry, task, seed, epochs, work):
  env = dict(os.environ, OUT=os.path.join(work, f"peer_{task}_{seed}"),
             EPOCHS=str(epochs), BUDGET_S="100000")
  script = os.path.join(carry, "finetune.py")
  out, wall, rss = run_measured(
      [python, script, f"{GLUE_DIRS[task]}:hf:{seed}"], env=env)
  result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
  return {"side": "peer", "seed": seed, "steps": result["steps"],
          "train_s": result["train_s"], "wall_s": wall, "peak_rss_mb": rss,
          "real_tokens": result["real_tokens"],
          "score": result[METRIC[task]], "torch_threads": result["threads"]}


def _median(values):
  values = sorted(values)
  mid = len(values) // 2
  return values[mid] if len(values) % 2 else (values[mid - 1] +
                                               values[mid]) / 2


def main(argv):
  del argv
  why = peer_available(FLAGS.peer_python)
  if why:
    print(f"peer comparison skipped: {why}. To run it, install the peer "
          "into a venv of its own and pass its Python:\n"
          "  python3.11 -m venv .venv-peer\n"
          "  .venv-peer/bin/pip install torch transformers tokenizers "
          "scikit-learn scipy\n"
          "  .venv/bin/python benchmarks/peer_comparison.py "
          "--peer_python=.venv-peer/bin/python")
    return 0
  work = tempfile.mkdtemp(prefix="bam_tf_peer_")
  carry = os.path.join(work, "carry")
  subprocess.run([sys.executable, os.path.join(
      REPO, "tools", "pytorch_reference", "prepare_carry.py"),
                  f"--data_dir={FLAGS.data_dir}", f"--out={carry}",
                  "--dtype=float32"], check=True, capture_output=True)
  runs = []
  for seed in FLAGS.seeds:
    for side in ("bam_tf", "peer"):
      r = (bam_run(FLAGS.task, seed, FLAGS.epochs, work, FLAGS.bam_flags)
           if side == "bam_tf" else
           peer_run(FLAGS.peer_python, carry, FLAGS.task, seed, FLAGS.epochs,
                    work))
      r["s_per_step"] = r["train_s"] / r["steps"]
      r["real_tok_per_s"] = r["real_tokens"] / r["train_s"]
      runs.append(r)
      print(f"{r['side']:7s} seed {seed}: {r['steps']} steps in "
            f"{r['train_s']:.0f} s ({r['s_per_step']:.2f} s/step, "
            f"{r['real_tok_per_s']:.0f} real tok/s), peak RSS "
            f"{r['peak_rss_mb']:,.0f} MB, dev {r['score']:.2f}", flush=True)
  summary = {}
  for side in ("bam_tf", "peer"):
    mine = [r for r in runs if r["side"] == side]
    summary[side] = {k: _median([r[k] for r in mine]) for k in (
        "s_per_step", "real_tok_per_s", "peak_rss_mb", "score")}
  ratio = (summary["bam_tf"]["real_tok_per_s"] /
           summary["peer"]["real_tok_per_s"])
  print(f"\nmedians over {len(FLAGS.seeds)} seeds, {FLAGS.task}, "
        f"{FLAGS.epochs:g} epoch(s):")
  for side, s in summary.items():
    print(f"  {side:7s} {s['s_per_step']:.2f} s/step, "
          f"{s['real_tok_per_s']:.0f} real tok/s, peak RSS "
          f"{s['peak_rss_mb']:,.0f} MB, dev {s['score']:.2f}")
  print(f"  bam_tf / peer real tokens/s: {ratio:.2f}x")
  out = FLAGS.output or os.path.join(REPO, "benchmarks", "results",
                                     f"peer_{FLAGS.task}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w", encoding="utf-8") as f:
    json.dump({"command": " ".join(sys.argv), "runs": runs,
               "medians": summary, "bam_over_peer_real_tokens": ratio}, f,
              indent=2)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  app.run(main)
