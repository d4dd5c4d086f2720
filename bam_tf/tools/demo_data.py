"""Generates a small GLUE-layout dataset for the README's first run.

The first command runs BAM end to end on it (single-task teachers, then the
teacher-annealed multi-task student), so a fresh machine with no GLUE
download shows the whole method in a few minutes. Three tasks in the real
GLUE file layouts, built from templates with a fixed seed (every run gets
the same files):

- SST-2: a sentence about a film, positive or negative by its adjective.
- MRPC: two sentences about people and what they do; a paraphrase when the
  second says the same person does the same thing in other words.
- STS-B: the same kind of pairs, scored 0-5: 3 for the same activity plus
  2 for the same person, with a little noise.

Every label is a function of the text a pair model can learn (no label
noise across the MRPC threshold), so each task is learnable well above its
majority baseline in a few hundred examples.

  python -m bam_tf.tools.demo_data --out_dir=demo_data
"""

import argparse
import os
import random
import sys
from typing import Dict

from bam_tf.common import errors
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
# (how sentence a says it, how sentence b says it)
_ACTIONS = [("is cooking dinner", "is preparing a meal"),
            ("is riding a bike", "is cycling down the road"),
            ("is reading a book", "is reading a novel"),
            ("is playing the guitar", "is strumming a guitar"),
            ("is walking the dog", "is taking the dog for a walk"),
            ("is painting a wall", "is putting paint on the wall"),
            ("is swimming in a lake", "is having a swim in the lake"),
            ("is writing a letter", "is writing a note")]

SIZES = {"train": 160, "dev": 100, "test": 40}


def _sst(rng, n, labelled):
  rows = []
  for _ in range(n):
    label = rng.randint(0, 1)
    word = rng.choice(_POSITIVE if label else _NEGATIVE)
    text = f"{rng.choice(_SUBJECTS)} is {rng.choice(_ADVERBS)}{word} ."
    rows.append([text, str(label)] if labelled else [text])
  return rows


def _other(rng, items, index):
  return rng.choice([k for k in range(len(items)) if k != index])


def _pair(rng, same_person: bool, same_action: bool):
  """Sentence b says whether a's person does a's activity (in other
  words)."""
  p, q = rng.randrange(len(_PEOPLE)), rng.randrange(len(_ACTIONS))
  p_b = p if same_person else _other(rng, _PEOPLE, p)
  q_b = q if same_action else _other(rng, _ACTIONS, q)
  return (f"{_PEOPLE[p]} {_ACTIONS[q][0]} .",
          f"{_PEOPLE[p_b]} {_ACTIONS[q_b][1]} .")


def _mrpc(rng):
  """Half paraphrases; the other half differ in the person, the activity
  or both."""
  if rng.random() < 0.5:
    return _pair(rng, True, True) + (1,)
  same_person, same_action = rng.choice([(False, True), (True, False),
                                         (False, False)])
  return _pair(rng, same_person, same_action) + (0,)


def _sts(rng):
  same_person, same_action = rng.random() < 0.5, rng.random() < 0.5
  a, b = _pair(rng, same_person, same_action)
  score = 3.0 * same_action + 2.0 * same_person + rng.uniform(-0.3, 0.3)
  return a, b, min(5.0, max(0.0, score))


class DemoDataError(errors.BamError):
  """out_dir cannot take the demo data; the message names the path."""


def demo_files(seed: int = 13, sizes=None) -> Dict[str, str]:
  """{path relative to out_dir: text} of the SST-2, MRPC and STS-B files;
  `sizes`: rows per split (default SIZES)."""
  rng = random.Random(seed)
  out = {}
  for split, n in (sizes or SIZES).items():
    test = split == "test"
    sst = _sst(rng, n, labelled=not test)
    header = ["index", "sentence"] if test else ["sentence", "label"]
    if test:
      sst = [[str(k)] + r for k, r in enumerate(sst)]
    out[os.path.join("SST-2", f"{split}.tsv")] = _text(header, sst)
    mrpc, sts = [], []
    for k in range(n):
      a, b, quality = _mrpc(rng)
      mrpc.append(([str(quality)] if not test else [str(k)]) +
                  [str(1000 + k), str(2000 + k), a, b])
      a, b, score = _sts(rng)
      sts.append([str(k), "demo", "2026", f"{k:04d}", "none", a, b] +
                 ([] if test else [f"{score:.2f}"]))
    out[os.path.join("MRPC", f"{split}.tsv")] = _text(
        ["index" if test else "Quality", "#1 ID", "#2 ID", "#1 String",
         "#2 String"], mrpc)
    out[os.path.join("STS-B", f"{split}.tsv")] = _text(
        ["index", "genre", "filename", "year", "old_index", "sentence1",
         "sentence2"] + ([] if test else ["score"]), sts)
  return out


def write_demo_data(out_dir: str, seed: int = 13, sizes=None):
  """Writes `demo_files` into out_dir. Checked first, so nothing is written
  when any check fails: out_dir must be a folder (or can be made one), and a
  file already there is only rewritten when it holds these very rows (a
  rerun of the README's first command). Anything else there, real GLUE
  data above all, is never replaced."""
  problem = files.folder_problem(out_dir)
  if problem:
    raise DemoDataError(f"--out_dir: {problem}")
  texts = demo_files(seed, sizes)
  for name, text in texts.items():
    path = os.path.join(out_dir, name)
    if not files.exists(path):
      continue
    if files.isdir(path):
      raise DemoDataError(f"--out_dir: {path} is a folder, not a file")
    try:
      same = files.read_text(path) == text
    except (OSError, UnicodeDecodeError):
      same = False
    if not same:
      raise DemoDataError(
          f"--out_dir: {path} holds other data than this demo's (GLUE's own "
          "files, or another --demo_seed); it is not replaced: give another "
          "--out_dir")
  for name, text in texts.items():
    files.write_text_atomic(os.path.join(out_dir, name), text)


def _text(header, rows) -> str:
  lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
  return "\n".join(lines) + "\n"


def main(argv=None):
  # argparse, not absl flags: run_classifier's flags live in the same
  # process when tests import this module.
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out_dir", default="demo_data",
                      help="Where to write the dataset.")
  parser.add_argument("--demo_seed", type=int, default=13,
                      help="Seed of the generator.")
  args = parser.parse_args(argv)

  def work() -> int:
    write_demo_data(args.out_dir, args.demo_seed)
    print(f"wrote SST-2, MRPC and STS-B demo data to {args.out_dir}")
    return 0
  return errors.run_command(work)


if __name__ == "__main__":
  sys.exit(main())
