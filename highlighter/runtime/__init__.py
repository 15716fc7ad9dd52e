"""Inference back-ends for the live path. No Qt. ``ort.py`` imports neither torch nor core."""
