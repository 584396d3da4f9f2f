"""topictone's training layer: builds on ``infer``, never imported by it."""

from topictone.train.schema import register

register()  # the typed config schemas conf/ starts from, before any composition
