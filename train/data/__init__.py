"""Labelled data (read and validated row by row), weak supervision and distillation."""
