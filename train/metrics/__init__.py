"""Scores to metrics (the ``evaluate`` modules beside this file) and the printed table."""
