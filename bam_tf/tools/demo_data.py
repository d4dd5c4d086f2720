"""Generates a small GLUE-layout dataset for offline demos and smoke runs.

The README's first command trains on it, so a fresh machine with no GLUE
download runs the whole pipeline. Three tasks in the real GLUE file layouts:
SST-2 (sentiment), MRPC (paraphrase) and STS-B (similarity on [0, 5]), built
from templates with a fixed seed, so every run gets the same files.

  python -m bam_tf.tools.demo_data --out_dir=demo_data
"""

import os
import random

from absl import app
from absl import flags

from bam_tf.common import files

_SUBJECTS = ["the movie", "this film", "the story", "the acting", "the plot",
             "the soundtrack", "the director's work", "the ending"]
_POSITIVE = ["wonderful", "moving", "brilliant", "charming", "delightful",
             "gripping", "beautiful", "clever"]
_NEGATIVE = ["dull", "tedious", "clumsy", "boring", "messy", "lifeless",
             "predictable", "awful"]
_ADVERBS = ["", "truly ", "rather ", "utterly ", "surprisingly "]
_PEOPLE = ["The chef", "A teacher", "The pilot", "An old man", "The girl",
           "A doctor", "The farmer", "A singer"]
_ACTIONS = [("is cooking dinner", "is preparing a meal"),
            ("is riding a bike", "is cycling"),
            ("is reading a book", "is reading a novel"),
            ("is playing the guitar", "is strumming a guitar"),
            ("is walking the dog", "is taking the dog for a walk"),
            ("is painting a wall", "is painting the wall"),
            ("is swimming in a lake", "is swimming in the lake"),
            ("is writing a letter", "is writing a note")]

SIZES = {"train": 240, "dev": 60, "test": 40}


def _sst(rng, n, labelled):
  rows = []
  for _ in range(n):
    label = rng.randint(0, 1)
    word = rng.choice(_POSITIVE if label else _NEGATIVE)
    text = f"{rng.choice(_SUBJECTS)} is {rng.choice(_ADVERBS)}{word} ."
    rows.append([text, str(label)] if labelled else [text])
  return rows


def _pair(rng):
  """A sentence pair and a similarity in [0, 5]."""
  who_a, who_b = rng.choice(_PEOPLE), rng.choice(_PEOPLE)
  i, j = rng.randrange(len(_ACTIONS)), rng.randrange(len(_ACTIONS))
  a = f"{who_a} {_ACTIONS[i][0]} ."
  same_action = rng.random() < 0.5
  b_action = _ACTIONS[i][1] if same_action else _ACTIONS[j][1]
  b = f"{who_a if rng.random() < 0.6 else who_b} {b_action} ."
  score = (3.0 if same_action or i == j else 0.4) + (
      1.6 if b.startswith(who_a) else 0.0)
  score = min(5.0, max(0.0, score + rng.uniform(-0.4, 0.4)))
  return a, b, round(score, 2)


def write_demo_data(out_dir: str, seed: int = 13):
  rng = random.Random(seed)
  for split, n in SIZES.items():
    test = split == "test"
    sst = _sst(rng, n, labelled=not test)
    header = ["index", "sentence"] if test else ["sentence", "label"]
    if test:
      sst = [[str(k)] + r for k, r in enumerate(sst)]
    _write(os.path.join(out_dir, "SST-2", f"{split}.tsv"), header, sst)
    mrpc, sts = [], []
    for k in range(n):
      a, b, score = _pair(rng)
      quality = "1" if score >= 3.0 else "0"
      mrpc.append(([quality] if not test else [str(k)]) +
                  [str(1000 + k), str(2000 + k), a, b])
      a, b, score = _pair(rng)
      sts.append([str(k), "demo", "2026", f"{k:04d}", "none", a, b] +
                 ([] if test else [f"{score:.2f}"]))
    _write(os.path.join(out_dir, "MRPC", f"{split}.tsv"),
           ["index" if test else "Quality", "#1 ID", "#2 ID", "#1 String",
            "#2 String"], mrpc)
    _write(os.path.join(out_dir, "STS-B", f"{split}.tsv"),
           ["index", "genre", "filename", "year", "old_index", "sentence1",
            "sentence2"] + ([] if test else ["score"]), sts)


def _write(path, header, rows):
  lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
  files.write_text_atomic(path, "\n".join(lines) + "\n")


FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "demo_data", "Where to write the dataset.")
flags.DEFINE_integer("demo_seed", 13, "Seed of the generator.")


def main(argv):
  del argv
  write_demo_data(FLAGS.out_dir, FLAGS.demo_seed)
  print(f"wrote SST-2, MRPC and STS-B demo data to {FLAGS.out_dir}")


if __name__ == "__main__":
  app.run(main)
