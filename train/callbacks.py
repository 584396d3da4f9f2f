"""Hydra callbacks: a multirun ends with one table comparing all its runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

SUMMARY_KEYS = ("topics/micro_f1", "topics/macro_f1", "tone/accuracy", "tone/macro_f1")


class MultirunSummary(Callback):
    """Writes ``summary.json`` and ``summary.md`` in the sweep folder and prints the table."""

    def __init__(self, split: str = "dev") -> None:
        self.split = split

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        rows = []
        for metrics_file in sorted(
            sweep.glob("*/metrics.json"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        ):
            overrides_file = metrics_file.parent / ".hydra" / "overrides.yaml"
            overrides = OmegaConf.load(overrides_file) if overrides_file.exists() else []
            metrics = json.loads(metrics_file.read_text()).get(self.split, {})
            rows.append(
                {
                    "run": metrics_file.parent.name,
                    "overrides": list(overrides),
                    **{k: metrics.get(k) for k in SUMMARY_KEYS},
                }
            )
        (sweep / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
        header = f"| run | overrides | {' | '.join(SUMMARY_KEYS)} |"
        lines = [
            f"Multirun summary ({self.split}), {sweep}",
            "",
            header,
            "|" + "---|" * (len(SUMMARY_KEYS) + 2),
        ]
        for row in rows:
            values = " | ".join("-" if row[k] is None else f"{row[k]:.4f}" for k in SUMMARY_KEYS)
            lines.append(f"| {row['run']} | {' '.join(row['overrides'])} | {values} |")
        text = "\n".join(lines) + "\n"
        (sweep / "summary.md").write_text(text)
        print("\n" + text)
