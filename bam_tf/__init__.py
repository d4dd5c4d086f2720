"""bam_tf: BAM! Born-Again Multi-Task Networks in TensorFlow 2 / Keras.

Model Garden and TF-Hub's KerasLayer need Keras 2 (tf-keras); the switch must
be set before TensorFlow is first imported, so importing the package sets it,
and TensorFlow's C++ log level: only FATAL unless the command line asks for
--verbosity (bam_tf/common/console.py says why).
"""
import os
import sys

# Set by a verbose run for the processes it starts (a recipe's teachers).
VERBOSE_ENV = "BAM_TF_VERBOSE"


def verbosity_requested(argv) -> bool:
  """Whether a command line asks for absl's --verbosity (or -v), or a
  verbose parent run started this process."""
  return os.environ.get(VERBOSE_ENV) == "1" or any(
      a.split("=", 1)[0] in ("--verbosity", "-verbosity", "-v", "--v")
      for a in argv[1:])


os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL",
                      "0" if verbosity_requested(sys.argv) else "3")
