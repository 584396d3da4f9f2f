"""Does the audit find label errors? Plant some in gold train and count what it finds.

    python -m topictone.train.label.measure_audit [--share 0.05] [--seed 0] [--folds 5]
        [--preset gold_encoder]

Changes the labels of ``share`` of gold train's rows at random (seeded; each chosen row
gets one topic flipped or its tone changed to another, with even odds), runs the audit
(:class:`topictone.train.label.auditor.LabelAuditor` with the models the audit command
uses for a run of the preset: its TF-IDF settings, or the audit's TF-IDF beside the
preset's own kind; ``folds`` out-of-fold models each) and prints the precision and recall of its
top ``share`` at finding the changed rows, per kind of change, and those of the rows
cleanlab flags. Reads ``../shared/data/gold/train.jsonl`` only (never dev, never
heldout) and writes nothing.
About 2 minutes on the 2-core AMX machine (116–121 s measured: TF-IDF's folds; the
encoder's refit in seconds on cached embeddings, once gold train has been embedded).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import datasets
import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from topictone import train  # noqa: F401  (the typed schemas conf/train.yaml starts from)
from topictone.infer.cli import CONF_DIR
from topictone.infer.errors import InputError
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled, targets
from topictone.train.fitters.base import Fitter
from topictone.train.label.audit import fitters_of
from topictone.train.label.auditor import LabelAuditor


@dataclass
class _Planted:
    """The noisy copy of a dataset, and which rows were changed and how."""

    dataset: datasets.Dataset
    rows: np.ndarray
    kinds: np.ndarray  # "topic" or "tone", per changed row


def plant_errors(dataset: datasets.Dataset, share: float, seed: int, n_tones: int) -> _Planted:
    """``ceil(share × n)`` rows, each with one topic flipped or the tone changed."""
    topics, tones = targets(dataset)
    topics, tones = topics.copy(), tones.copy()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(tones), math.ceil(share * len(tones)), replace=False)
    kinds = []
    for row in rows:
        if rng.random() < 0.5:
            topic = rng.integers(topics.shape[1])
            topics[row, topic] = 1 - topics[row, topic]
            kinds.append("topic")
        else:
            tones[row] = rng.choice([t for t in range(n_tones) if t != tones[row]])
            kinds.append("tone")
    noisy = dataset.remove_columns(["topics", "tone"])
    noisy = noisy.add_column("topics", topics.astype(float).tolist())
    noisy = noisy.add_column("tone", tones.tolist())
    return _Planted(noisy, rows, np.asarray(kinds))


def found(picked: np.ndarray, wanted: np.ndarray) -> tuple[int, float, float]:
    """Hits, precision and recall of ``picked`` at finding ``wanted``."""
    hits = len(set(picked.tolist()) & set(wanted.tolist()))
    return hits, hits / max(len(picked), 1), hits / max(len(wanted), 1)


def preset(name: str) -> tuple[list[Fitter], str, LabelSchema, dict]:
    """The audit's fitters for a run of ``experiment=<name>`` and what they are, its label
    schema and data config."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = ["data=gold"] + ([] if name == "none" else [f"experiment={name}"])
        cfg = compose("train", overrides=overrides)
    model = cast("dict[str, Any]", OmegaConf.to_container(cfg.model, resolve=True))
    tfidf = OmegaConf.load(Path(CONF_DIR) / "label" / "audit.yaml").tfidf  # the command's
    tfidf_settings = cast("dict[str, Any]", OmegaConf.to_container(tfidf))
    fitters, origin = fitters_of(model, f"experiment={name}", True, tfidf_settings)
    data = cast("dict[str, Any]", OmegaConf.to_container(cfg.data))  # paths as written
    return fitters, origin, LabelSchema.from_dict(cfg.labels), data


def report(planted: _Planted, auditor: LabelAuditor, share: float) -> list[str]:
    top = auditor.top(share)
    hits, precision, recall = found(top, planted.rows)
    lines = [
        f"top {share:.0%} ({len(top)} rows): {hits} of the {len(planted.rows)} changed rows; "
        f"precision {precision:.3f}, recall {recall:.3f} (random picks: precision {share:.3f})"
    ]
    for kind in ("topic", "tone"):
        wanted = planted.rows[planted.kinds == kind]
        got, _, kind_recall = found(top, wanted)
        lines.append(f"  {kind} changes: {got} of {len(wanted)} found (recall {kind_recall:.3f})")
    flagged = auditor.top(None)
    hits, precision, recall = found(flagged, planted.rows)
    lines.append(
        f"cleanlab find_label_issues flags {len(flagged)} rows: {hits} changed; "
        f"precision {precision:.3f}, recall {recall:.3f}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--preset", default="gold_encoder", help="an experiment, or none")
    args = parser.parse_args(argv)
    fitters, origin, schema, data_cfg = preset(args.preset)
    try:
        dataset = read_labelled(data_cfg["train"], data_cfg, schema)
    except InputError as err:  # no gold data here: one line, as the commands do
        print(f"error: {err}", file=sys.stderr)
        return 2
    planted = plant_errors(dataset, args.share, args.seed, len(schema.tones))
    start = time.perf_counter()
    auditor = LabelAuditor(args.folds, args.seed, fitters).fit(planted.dataset, schema)
    print(
        f"gold train: {len(dataset)} rows, {len(planted.rows)} changed (seed {args.seed}); "
        f"audit: {args.folds} folds of {origin}, {time.perf_counter() - start:.0f} s"
    )
    print("\n".join(report(planted, auditor, args.share)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
