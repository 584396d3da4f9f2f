"""The HTTP service: ``python -m topictone.infer.service model=<dir>`` (``topictone-serve``)."""
