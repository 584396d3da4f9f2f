"""``python -m topictone.label``: the labelling commands under their short name.

This folder is installed as ``topictone.label`` only (setup.py); the commands themselves
are ``topictone.train.label`` (labelling fits models, so it lives beside training)."""
