"""Serving: `load` a run directory, export a SavedModel."""
