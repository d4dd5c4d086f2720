"""What a user sees on the terminal: bam_tf's own lines, not framework chatter.

TensorFlow, Keras, TF-Hub and Model Garden log through Python's logging
(the `tensorflow` logger, absl's) at INFO and WARNING: saver timings,
"Found untraced functions", Model Garden's own clip setting. None of that
helps a user of this project, so by default only records from bam_tf's own
code (and any framework ERROR) reach the terminal, in a short
`HH:MM:SS message` format. TensorFlow's C++ runtime (the cuInit error on a
machine without a GPU, oneDNN notices) is silenced by TF_CPP_MIN_LOG_LEVEL
before TensorFlow loads (bam_tf/__init__.py). `--verbosity=N` on the
command line (absl's flag) turns all of this off: every framework line, in
absl's own format.
"""

import logging
import os
import time

from absl import logging as absl_logging

from bam_tf import VERBOSE_ENV

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ROOT = os.path.dirname(_PACKAGE)
# Where the project's own records come from.
PROJECT_PATHS = (_PACKAGE + os.sep,
                 os.path.join(_ROOT, "bam_tf_experiments") + os.sep,
                 os.path.join(_ROOT, "run_classifier.py"))


def is_project_record(record: logging.LogRecord) -> bool:
  return (record.pathname or "").startswith(PROJECT_PATHS)


class _ProjectOnly(logging.Filter):
  """Lets through bam_tf's records and anything at ERROR or above."""

  def filter(self, record):
    return record.levelno >= logging.ERROR or is_project_record(record)


class _ShortFormat(logging.Formatter):
  """`13:02:55 message`; warnings and errors say so."""

  def format(self, record):
    stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
    kind = ("" if record.levelno < logging.WARNING
            else f"{logging.getLevelName(record.levelno).lower()}: ")
    text = f"{stamp} {kind}{record.getMessage()}"
    if record.exc_info:
      text += "\n" + self.formatException(record.exc_info)
    return text


def setup(verbose: bool):
  """Configures absl's handler: the project's lines at INFO by default;
  with `verbose` (or a verbose parent), everything in absl's format at the
  verbosity absl's flag set. Safe to call again."""
  verbose = verbose or os.environ.get(VERBOSE_ENV) == "1"
  # TensorFlow gives its logger a stderr handler of its own when it logs
  # before absl's handler is on the root logger (an import that warns, a
  # script that calls tf.get_logger() early): its records would pass by the
  # filter below, and print twice when verbose. The root's handler (absl's,
  # installed by app.run) takes them instead.
  tf_logger = logging.getLogger("tensorflow")
  if logging.getLogger().handlers:
    for own in list(tf_logger.handlers):
      if type(own) is logging.StreamHandler:  # pylint: disable=unidiomatic-typecheck
        tf_logger.removeHandler(own)
  handler = absl_logging.get_absl_handler()
  for f in list(handler.filters):
    if isinstance(f, _ProjectOnly):
      handler.removeFilter(f)
  if verbose:
    os.environ[VERBOSE_ENV] = "1"
    handler.setFormatter(absl_logging.PythonFormatter())
    logging.captureWarnings(False)
    return
  absl_logging.set_verbosity(absl_logging.INFO)
  handler.addFilter(_ProjectOnly())
  handler.setFormatter(_ShortFormat())
  # Deprecation and user warnings of the libraries (printed straight to
  # stderr otherwise) go through logging, where the filter drops them.
  logging.captureWarnings(True)
