"""Decisions from scores: calibration and per-topic thresholds, fitted on out-of-fold or dev
scores."""
