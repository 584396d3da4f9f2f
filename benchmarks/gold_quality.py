"""Quality on the real gold dev set: both presets, overall and per language / length bucket.

    python benchmarks/gold_quality.py [--runs DIR] [--reuse]

Trains ``experiment=gold_tfidf`` and ``experiment=gold_transformer`` into DIR/<kind>
(default ``runs/gold-quality``; ``--reuse`` reads runs already there), then prints a
Markdown table of gold dev topic and tone macro-F1 per model — before and after the
dev-fitted calibration and thresholds (after is optimistic: fitted on the same texts) —
with the buckets of ``lang`` and ``unit``, against the targets. It also labels
``../shared/examples/india-israel-defence-mou.hi.txt`` with each model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

TARGETS = {"tfidf": (0.80, 0.63), "transformer": (0.88, 0.72)}


def bucket_metrics(run: Path) -> list[tuple[str, int, float, float]]:
    from infer.schema import LabelSchema
    from train.evaluation import compute_metrics

    manifest = json.loads((run / "model" / "topictone.json").read_text())
    schema = LabelSchema.from_dict(manifest["schema"])
    rows = [json.loads(line) for line in (run / "predictions" / "dev.jsonl").open(encoding="utf-8")]
    topic_true = np.array([[t in r["topics"] for t in schema.topics] for r in rows], dtype=int)
    tone_true = np.array([schema.tones.index(r["tone"]) for r in rows])
    scores = np.array([[r["prediction"]["topic_scores"][t] for t in schema.topics] for r in rows])
    probs = np.array([[r["prediction"]["tone_scores"][t] for t in schema.tones] for r in rows])
    out = []
    buckets = [("all", np.ones(len(rows), dtype=bool))]
    for field in ("lang", "unit"):
        values = np.array([str(r.get(field)) for r in rows])
        buckets += [(f"{field}={v}", values == v) for v in sorted(set(values))]
    for name, mask in buckets:
        m = compute_metrics(
            schema,
            scores[mask],
            probs[mask],
            topic_true[mask],
            tone_true[mask],
            manifest["thresholds"],
        )
        out.append((name, int(mask.sum()), m["topics/macro_f1"], m["tone/macro_f1"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "gold-quality")
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    if not (SHARED / "data" / "gold" / "dev.jsonl").is_file():
        sys.exit(f"error: {SHARED / 'data/gold'} not found: needs ../shared beside the repo")

    import infer

    for kind in ("tfidf", "transformer"):
        run = args.runs.resolve() / kind
        if not (args.reuse and (run / "metrics.json").is_file()):
            quiet = ["model.progress=false"] if kind == "transformer" else []
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "train",
                    f"experiment=gold_{kind}",
                    f"hydra.run.dir={run}",
                    *quiet,
                ],
                cwd=ROOT,
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
            )
    print("| model | dev bucket | n | topics macro-F1 | tone macro-F1 | targets (topics / tone) |")
    print("|---|---|---|---|---|---|")
    example = (SHARED / "examples" / "india-israel-defence-mou.hi.txt").read_text(encoding="utf-8")
    labels = {}
    for kind in ("tfidf", "transformer"):
        run = args.runs.resolve() / kind
        metrics = json.loads((run / "metrics.json").read_text())
        before = metrics.get("dev_before_fitting", metrics["dev"])
        topics_t, tone_t = TARGETS[kind]
        print(
            f"| {kind} | all, before dev fitting (0.5 thresholds, uncalibrated) | "
            f"{before['n']} | {before['topics/macro_f1']:.3f} | {before['tone/macro_f1']:.3f} | |"
        )
        for name, n, topics, tone in bucket_metrics(run):
            print(
                f"| {kind} | {name} (dev-fitted, optimistic) | {n} | {topics:.3f} | {tone:.3f} | "
                f"{topics_t:.2f} / {tone_t:.2f} |"
            )
        [p] = infer.load(run / "model").predict([example])
        labels[kind] = f"topics {p.topics}, tone {p.tone}"
    print()
    print("Seed example (expected: all three topics, positive):")
    for kind, text in labels.items():
        print(f"- {kind}: {text}")


if __name__ == "__main__":
    main()
