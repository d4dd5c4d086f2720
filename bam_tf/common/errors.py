"""The one base class of user-facing errors.

run_classifier.py prints these as one clear line and exits non-zero; any
other exception is a bug and keeps its traceback.
"""


class BamError(ValueError):
  """Bad input: a flag, a data file, an encoder or a teacher output."""


class ConfigError(BamError):
  """A flag value that cannot be used; the message names the flag."""
