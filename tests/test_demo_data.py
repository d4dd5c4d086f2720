"""The README's demo data generator: the same files on every run, and never
written over data that is not its own (a --out_dir holding real GLUE files
is refused, naming the file, before anything is written)."""

import os

from bam_tf.tools import demo_data
from conftest import GLUE_DIR


def _tree(path):
  out = {}
  for root, _, names in os.walk(path):
    for n in names:
      with open(os.path.join(root, n), "rb") as f:
        out[os.path.relpath(os.path.join(root, n), path)] = f.read()
  return out


def test_rerun_rewrites_its_own_files_and_refuses_others(tmp_path, capsys):
  out = tmp_path / "demo"
  assert demo_data.main([f"--out_dir={out}"]) == 0
  first = _tree(out)
  assert sorted(first) == sorted(
      os.path.join(t, f"{s}.tsv") for t in ("SST-2", "MRPC", "STS-B")
      for s in ("train", "dev", "test"))
  assert len(first["SST-2/train.tsv"].splitlines()) == 1 + 160
  assert demo_data.main([f"--out_dir={out}"]) == 0  # the README rerun
  assert _tree(out) == first
  capsys.readouterr()
  # Another seed's rows are other data: not replaced.
  assert demo_data.main([f"--out_dir={out}", "--demo_seed=3"]) == 2
  assert capsys.readouterr().err == (
      f"error: --out_dir: {out}/SST-2/train.tsv holds other data than this "
      "demo's (GLUE's own files, or another --demo_seed); it is not "
      "replaced: give another --out_dir\n")
  assert _tree(out) == first


def test_real_glue_files_are_never_overwritten(tmp_path, capsys):
  glue = tmp_path / "glue"
  (glue / "MRPC").mkdir(parents=True)
  with open(os.path.join(GLUE_DIR, "MRPC", "dev.tsv"), "rb") as f:
    real = f.read()
  (glue / "MRPC" / "dev.tsv").write_bytes(real)
  assert demo_data.main([f"--out_dir={glue}"]) == 2
  assert f"{glue}/MRPC/dev.tsv holds other data" in capsys.readouterr().err
  assert _tree(glue) == {"MRPC/dev.tsv": real}  # nothing else written
  afile = tmp_path / "afile"
  afile.write_text("x")
  assert demo_data.main([f"--out_dir={afile}"]) == 2
  assert capsys.readouterr().err == (
      f"error: --out_dir: {afile} is a file, not a folder\n")
