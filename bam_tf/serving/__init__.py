"""Serving: export a finished run as a raw-text SavedModel (see export.py)."""
