"""Prepares TFDS's GLUE (`glue/<config>`) from GLUE TSV files, offline.

    python -m bam_tf.tools.tfds_glue --glue_dir=../shared/glue_data \
        --tfds_data_dir=~/tensorflow_datasets [--configs=cola,mrpc]

With network access `tfds build glue --config=cola --data_dir=DIR` does the
same from GLUE's servers. This runs TFDS's own GLUE builder
(tensorflow_datasets.text.glue.Glue: its features, parsing and writer)
with its downloads answered from a local glue_data folder, so what it
writes is the dataset `tfds.builder("glue/cola", data_dir=DIR)` reads.
MRPC is the exception TFDS makes: it reads the original Microsoft files,
which are rebuilt here from GLUE's MRPC train/dev/test TSVs (the same
columns; train and dev rows go into one train file, dev ids into their
own), so the examples are GLUE's (ids: see bam_tf.tasks.tfds_glue).
"""

import argparse
import os
import sys
from typing import Dict, List

from absl import logging

from bam_tf.common import errors
from bam_tf.common import files
from bam_tf.common.errors import BamError

# TFDS config -> the glue_data folder its files are in.
FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B",
           "qqp": "QQP", "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE",
           "wnli": "WNLI", "ax": "diagnostic"}
_BOM = b"\xef\xbb\xbf"


class _LocalDownloads:
  """Answers the GLUE builder's downloads from a glue_data folder."""

  def __init__(self, glue_dir: str, mrpc_files: Dict[str, str]):
    self._glue_dir = glue_dir
    self._mrpc_files = mrpc_files

  def download_and_extract(self, url):
    del url  # the builder joins its folder name (e.g. "CoLA") to this
    return self._glue_dir

  def download(self, url):
    if isinstance(url, dict):  # MRPC's three Microsoft files
      return dict(self._mrpc_files)
    return os.path.join(self._glue_dir, "diagnostic", "diagnostic.tsv")


def _tsv_body(path: str) -> List[bytes]:
  """A TSV file's data lines (header and BOM off), each ending in \\n."""
  lines = files.read_bytes(path).split(b"\n")
  return [line + b"\n" for line in lines[1:] if line.strip()]


def write_mrpc_sources(glue_dir: str, out_dir: str) -> Dict[str, str]:
  """The Microsoft files TFDS's MRPC builder reads, from GLUE's TSVs."""
  mrpc = os.path.join(glue_dir, "MRPC")
  header = files.read_first_line(os.path.join(mrpc, "train.tsv"))
  header = header[len(_BOM):] if header.startswith(_BOM) else header
  train, dev = (_tsv_body(os.path.join(mrpc, f"{s}.tsv"))
                for s in ("train", "dev"))
  paths = {k: os.path.join(out_dir, f"mrpc_{k}.tsv")
           for k in ("train", "dev_ids", "test")}
  # The builder skips 3 BOM bytes at the start of the train file.
  files.write_bytes_atomic(paths["train"], b"".join(
      [_BOM + header.rstrip(b"\r\n") + b"\n"] + train + dev))
  files.write_bytes_atomic(paths["dev_ids"], b"".join(
      b"\t".join(line.split(b"\t")[1:3]) + b"\n" for line in dev))
  files.write_bytes_atomic(paths["test"], files.read_bytes(
      os.path.join(mrpc, "test.tsv")))
  return paths


def prepare(glue_dir: str, tfds_data_dir: str, configs: List[str]) -> None:
  """Writes glue/<config> under tfds_data_dir for each config."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.text import glue as tfds_glue_builder  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()

  for config in configs:
    if config not in FOLDERS:
      raise BamError(f"--configs: unknown GLUE config {config!r}; known: "
                     f"{', '.join(FOLDERS)}")
    folder = os.path.join(glue_dir, FOLDERS[config])
    if not files.isdir(folder):
      raise BamError(f"--glue_dir: {folder} is missing (glue/{config} is "
                     "made from it)")

  tmp = files.scratch_dir("bam_tf_mrpc_")
  try:
    mrpc_files = (write_mrpc_sources(glue_dir, tmp) if "mrpc" in configs
                  else {})
    downloads = _LocalDownloads(glue_dir, mrpc_files)

    class LocalGlue(tfds_glue_builder.Glue, skip_registration=True):
      """TFDS's GLUE builder, its downloads answered from glue_dir."""
      name = "glue"

      def _split_generators(self, dl_manager):
        del dl_manager
        return super()._split_generators(downloads)

    for config in configs:
      builder = LocalGlue(config=config, data_dir=tfds_data_dir)
      if builder.is_prepared():
        logging.info("glue/%s is already prepared in %s", config,
                     builder.data_dir)
        continue
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
              try_download_gcs=False))
      sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
      print(f"glue/{config}: {sizes} -> {builder.data_dir}", flush=True)
  finally:
    files.remove(tmp)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
      prog="python -m bam_tf.tools.tfds_glue",
      description="Prepares TFDS's glue/<config> from GLUE TSV files.")
  p.add_argument("--glue_dir", required=True, help="glue_data root with one "
                 "folder per task (CoLA, SST-2, MRPC, STS-B, ...).")
  p.add_argument("--tfds_data_dir", required=True,
                 help="TFDS data dir to write glue/ to.")
  p.add_argument("--configs", default="", help="Comma-separated TFDS GLUE "
                 "configs (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, "
                 "wnli, ax); default: those whose folder is in --glue_dir.")
  args = p.parse_args(argv)

  def work() -> int:
    if not files.isdir(args.glue_dir):
      raise BamError(f"--glue_dir: {args.glue_dir!r} is not a folder")
    configs = [c for c in args.configs.split(",") if c] or [
        c for c, folder in FOLDERS.items()
        if files.isdir(os.path.join(args.glue_dir, folder))]
    prepare(args.glue_dir, os.path.expanduser(args.tfds_data_dir), configs)
    return 0
  return errors.run_command(work)


if __name__ == "__main__":
  sys.exit(main())
