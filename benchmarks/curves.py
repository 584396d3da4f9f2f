"""Learning curves: the figures of models fitted on growing label sets, and their tables.

Shared by ``quality.label_gain`` (random subsets of gold train) and ``quality.label_loop``
(the labelling loop simulated per strategy), so that neither benchmark imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.common import configured_fitter, row, train_config


@dataclass
class Point:
    """One fitted subset's figures on dev."""

    model: str
    size: int
    seed: int
    topics_f1: float
    tone_f1: float
    topics_ci: tuple[float, float]
    tone_ci: tuple[float, float]
    per_topic: dict[str, float] = field(default_factory=dict)
    per_tone: dict[str, float] = field(default_factory=dict)
    positives: dict[str, int] = field(default_factory=dict)  # in the drawn subset
    seconds: float = 0.0


def summary(points: Sequence[Point]) -> list[dict]:
    """Per model and size: mean, min and max over seeds, and the gain per 100 labels
    against the model's previous size."""
    out: list[dict] = []
    for model in dict.fromkeys(p.model for p in points):
        previous = None
        for size in sorted({p.size for p in points if p.model == model}):
            group = [p for p in points if p.model == model and p.size == size]
            entry: dict[str, Any] = {"model": model, "size": size, "seeds": len(group)}
            for what in ("topics", "tone"):
                values = [getattr(p, f"{what}_f1") for p in group]
                entry[what] = (float(np.mean(values)), min(values), max(values))
                entry[f"{what}_gain"] = (
                    None
                    if previous is None
                    else (entry[what][0] - previous[what][0]) * 100 / (size - previous["size"])
                )
            out.append(entry)
            previous = entry
    return out


def curve_table(points: Sequence[Point]) -> list[str]:
    """The Markdown table: size | topics | tone | gain per 100 labels (topics, tone)."""

    def cell(figures: tuple[float, float, float]) -> str:
        mean, low, high = figures
        return f"{mean:.3f} [{low:.3f}–{high:.3f}]"

    def gain(value: float | None) -> str:
        return "–" if value is None else f"{value:+.4f}"

    lines = [
        row(
            "model",
            "size",
            "topics macro-F1, mean over seeds [min–max]",
            "tone macro-F1, mean [min–max]",
            "gain per 100 labels vs previous size (topics, tone)",
        ),
        "|---|---|---|---|---|",
    ]
    for s in summary(points):
        lines.append(
            row(
                s["model"],
                s["size"],
                cell(s["topics"]),
                cell(s["tone"]),
                f"{gain(s['topics_gain'])}, {gain(s['tone_gain'])}",
            )
        )
    return lines


def runs_table(points: Sequence[Point]) -> list[str]:
    """Each run: bootstrap 95% intervals, per-label F1 and the subset's positives."""
    if not points:
        return []
    topics, tones = list(points[0].per_topic), list(points[0].per_tone)
    lines = [
        row(
            "model",
            "size",
            "seed",
            "topics macro-F1 [95% CI]",
            "tone macro-F1 [95% CI]",
            *(f"F1 {t}" for t in topics + tones),
            "positives in subset (" + " / ".join(topics + tones) + ")",
        ),
        "|" + "---|" * (6 + len(topics) + len(tones)),
    ]
    for p in points:
        lines.append(
            row(
                p.model,
                p.size,
                p.seed,
                f"{p.topics_f1:.3f} [{p.topics_ci[0]:.3f}, {p.topics_ci[1]:.3f}]",
                f"{p.tone_f1:.3f} [{p.tone_ci[0]:.3f}, {p.tone_ci[1]:.3f}]",
                *(f"{p.per_topic[t]:.3f}" for t in topics),
                *(f"{p.per_tone[t]:.3f}" for t in tones),
                " / ".join(str(p.positives[t]) for t in topics + tones),
            )
        )
    return lines


def preset_fitter(kind: str) -> Callable[[int], Any]:
    """``seed`` -> the fitter of ``experiment=gold_<kind>`` with that seed."""
    configs: dict[int, Any] = {}

    def make(seed: int) -> Any:
        if seed not in configs:
            configs[seed] = train_config([f"experiment=gold_{kind}", f"seed={seed}"])
        return configured_fitter(configs[seed])

    return make
