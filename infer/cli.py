"""Shared entry-point plumbing: every user mistake is one line on stderr and exit code 2.

:func:`command` is ``hydra.main`` plus that promise: a bad override or a missing
``???`` value (Hydra / OmegaConf), a :class:`TopictoneError` and an operating-system
error on a user's path all print ``error: <one line>``; SIGTERM exits like Ctrl-C, so
temporary files are removed on the way out.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from topictone.infer.errors import TopictoneError
from topictone.infer.resources import conf_dir

# Absolute, so that `python -m topictone.infer`, the console scripts and in-process calls agree; the
# checkout's conf/, or the copy an installed wheel ships (infer/resources.py).
CONF_DIR = str(conf_dir())

USER_ERRORS = (TopictoneError, OmegaConfBaseException, HydraException, OSError)


def settings_of(node: Any, name: str = "config") -> dict[str, Any]:
    """A config mapping as a plain dict (interpolations resolved, enums as strings)."""
    value = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    if not isinstance(value, dict):
        raise TopictoneError(f"{name} must be a mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def integer_options(cfg: Any, minimums: dict[str, int]) -> None:
    """The named options, typed on the command line, as integers of at least their
    minimum: one line for a wrong one, before any model loads."""
    for name, low in minimums.items():
        value = cfg[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TopictoneError(f"{name} must be an integer of at least {low}, got {value!r}")


def one_line(err: BaseException) -> str:
    """The error's message on one line: its unindented lines, then its cause's first."""
    parts = [line.strip() for line in str(err).splitlines() if line and not line[0].isspace()]
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        parts.append(str(cause).strip().splitlines()[0])
    return " ".join(p for p in parts if p) or type(err).__name__


def fail(err: BaseException) -> None:
    if isinstance(err, BrokenPipeError):  # the reader left (`... | head`): end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + 13)  # as a shell reports SIGPIPE
    print(f"error: {one_line(err)}", file=sys.stderr)
    sys.exit(2)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Inside a Hydra task: user errors become one line and exit 2 (Hydra adds nothing)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            fail(err)

    return wrapper


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def command(
    config_path: str, config_name: str
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``hydra.main`` for a console command, with one-line errors around composition too."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        hydra_main = hydra.main(
            version_base="1.3", config_path=config_path, config_name=config_name
        )(user_errors(task))

        @wraps(task)
        def main() -> Any:
            # Hydra re-raises composition errors instead of printing several lines.
            os.environ.setdefault("HYDRA_FULL_ERROR", "1")
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _terminate)
            try:
                return hydra_main()
            except USER_ERRORS as err:
                fail(err)

        return main

    return decorate
