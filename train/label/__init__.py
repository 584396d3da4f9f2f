"""The labelling loop: choose texts to label (``select``), bring the labels back as
training rows (``import``), and find training rows whose labels look wrong (``audit``).
Run as ``python -m topictone.train.label <subcommand>``; docs/labelling.md walks through it."""
