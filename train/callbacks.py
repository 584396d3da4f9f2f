"""Hydra callbacks: a multirun ends with one table comparing all its runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# (column, metrics block, key): the block is a split name, or "{split}_crossfit" etc.
COLUMNS = (
    ("topics macro-F1", "{split}", "topics/macro_f1"),
    ("cross-fitted", "{split}_crossfit", "topics/macro_f1"),
    ("before fitting", "{split}_before_fitting", "topics/macro_f1"),
    ("topics micro-F1", "{split}", "topics/micro_f1"),
    ("tone macro-F1", "{split}", "tone/macro_f1"),
    ("tone accuracy", "{split}", "tone/accuracy"),
)


class MultirunSummary(Callback):
    """Writes ``summary.json`` and ``summary.md`` in the sweep folder and prints the table.

    Rare topics decide the macro-F1, so each topic's F1 gets a column; where thresholds
    were tuned on the split, the cross-fitted figure is the one to compare runs by.
    """

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
            overrides: Any = OmegaConf.load(overrides_file) if overrides_file.exists() else []
            metrics = json.loads(metrics_file.read_text())
            split = metrics.get(self.split, {})
            topic_f1 = {
                k.removeprefix("topics/").removesuffix("_f1"): v
                for k, v in split.items()
                if k.startswith("topics/")
                and k.endswith("_f1")
                and "micro" not in k
                and "macro" not in k
            }
            rows.append(
                {
                    "run": metrics_file.parent.name,
                    "overrides": list(overrides),
                    **{
                        name: metrics.get(block.format(split=self.split), {}).get(key)
                        for name, block, key in COLUMNS
                    },
                    "topic_f1": topic_f1,
                }
            )
        (sweep / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
        text = _summary_table(rows, f"Multirun summary ({self.split}), {sweep}")
        (sweep / "summary.md").write_text(text)
        print("\n" + text)


def _summary_table(rows: list[dict[str, Any]], title: str) -> str:
    topics = list(dict.fromkeys(t for row in rows for t in row["topic_f1"]))
    names = [name for name, _, _ in COLUMNS if any(row[name] is not None for row in rows)]
    header = ["run", "overrides", *names, *(f"{t} F1" for t in topics)]
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [row[n] for n in names] + [row["topic_f1"].get(t) for t in topics]
        cells = ["-" if v is None else f"{v:.4f}" for v in values]
        lines.append(f"| {row['run']} | {' '.join(row['overrides'])} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
