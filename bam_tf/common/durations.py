"""Durations as people read them in progress lines and tables (no
TensorFlow import: the experiment driver uses it too)."""

from typing import Optional


def format_duration(seconds: Optional[float]) -> str:
  """12m05s under an hour, 2h07m above; '-' when unknown."""
  if seconds is None:
    return "-"
  s = int(max(seconds, 0))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"
