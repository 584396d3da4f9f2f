"""topictone's training layer: builds on ``infer``, never imported by it."""
