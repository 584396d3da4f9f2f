"""Whether bfloat16 pays on this machine, and the precision a model then computes in.

bfloat16 is a speed choice, not part of what a model means: on CPUs with native
bfloat16 (AVX512-BF16 or AMX; AVX-512 emulates it) and GPUs that have it, it is faster
than float32, but on an AVX2-only CPU oneDNN has no bfloat16 kernel and torch falls back
to slow generic code — embeddinggemma embeds about 6× slower than in float32 there
(``benchmarks/speed/encoder_speed.py``, BENCHMARKS.md). So a bfloat16 that a config or a saved
model asks for is used only where it pays; elsewhere the model computes in float32 and a
warning says so once. A dtype passed explicitly as an option is always honoured.
"""

from __future__ import annotations

import warnings

import torch


def native_bfloat16(device: str | torch.device | None = None) -> bool:
    """True where bfloat16 matrix products run on bfloat16 kernels: a GPU that supports
    it, or a CPU oneDNN has bfloat16 kernels for (its own check)."""
    kind = torch.device(device).type if device is not None else None
    if kind == "cuda" or (kind is None and torch.cuda.is_available()):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


_WARNED: set[str] = set()  # once per setting and process: a run loads its encoder per fold


def effective_dtype(dtype: str, what: str, device: str | torch.device | None = None) -> str:
    """``dtype``, except a bfloat16 this machine would run slower than float32."""
    if dtype != "bfloat16" or native_bfloat16(device):
        return dtype
    if what in _WARNED:
        return "float32"
    _WARNED.add(what)
    warnings.warn(
        f"{what} asks for bfloat16, which this machine has no native kernels for (CPU "
        f"capability {torch.backends.cpu.get_cpu_capability()}): computing in float32, "
        "several times faster here",
        RuntimeWarning,
        stacklevel=2,
    )
    return "float32"
