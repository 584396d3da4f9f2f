"""The CPU a run or a benchmark ran on: a speed figure means little without it.

The same preset trains in 14 minutes on a CPU with bfloat16 kernels and takes hours in
bfloat16 on one without (``topictone.infer.predictors.precision`` then computes in float32), and
int8 pays only with VNNI; so every run and every speed benchmark records these flags.
Read from ``/proc/cpuinfo`` (Linux); elsewhere the flags are unknown, never guessed.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni")


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> dict[str, bool] | None:
    """Whether the CPU has each flag in ``FLAGS``; None where they cannot be read."""
    flags = _cpuinfo().get("flags")
    if flags is None:
        return None
    present = set(flags.split())
    return {name: name in present for name in FLAGS}


def machine() -> dict[str, Any]:
    """What a run's manifest and a benchmark's output record about the machine."""
    info = _cpuinfo()
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "flags": cpu_flags(),
    }


def describe() -> str:
    """One line: the CPU, its cores, and the flags that decide which preset fits it."""
    found = machine()
    flags = found["flags"]
    if flags is None:
        kernels = "CPU flags unknown"
    else:
        have = [name for name in FLAGS if flags[name]]
        bf16 = flags["avx512_bf16"] or flags["amx_bf16"]
        vnni = flags["avx512_vnni"] or flags["avx_vnni"]
        kernels = (
            f"flags: {' '.join(have) or 'none of ' + ' '.join(FLAGS)}; "
            f"bfloat16 kernels: {'yes' if bf16 else 'no'}; VNNI: {'yes' if vnni else 'no'}"
        )
    return f"{found['cpu']}, {found['cores']} cores; {kernels}"
