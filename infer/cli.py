"""Shared entry-point plumbing: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from infer.errors import TopictoneError

# Absolute, so that `python -m infer`, the console scripts and in-process calls agree.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TopictoneError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
