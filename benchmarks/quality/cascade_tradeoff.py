"""What a cascade's target buys: honest F1 and the expensive share, target by target.

    python -m benchmarks.quality.cascade_tradeoff --run runs/gold-cascade \\
        [--losses 0,0.01,0.02,0.03,0.05] [--shares 0.1,0.2,0.3] [--route-by text,head]

Loads a trained cascade (``experiment=gold_cascade``) and scores the mixed set (gold dev +
dev_articles, the run's dev split) with both stages, each with the calibration the run
fitted on out-of-fold train. For each target (``max_f1_loss`` values, then
``max_expensive_share`` caps) the bands and the cascade's thresholds are cross-fitted over
the mixed set: fitted on four fifths, applied to the fifth left out, so every text is
decided by bands that never saw it, under each ``route_by`` rule asked for (what the
expensive stage decides of a text it reads: every score, or the unsure heads'). The
stages alone get the same protocol (thresholds only). Printed per row: honest topic and
tone macro-F1 with bootstrap 95% intervals, the share sent to the expensive stage, overall
and per unit (headline, title+lead, article), and the share it reads only for the tone
(its first window, where its tone is pooled from it). What a share costs in time:
``benchmarks.speed.frontier``, which times the trained cascade. The expensive stage's
embeddings are cached (``<cache>/embeddings``), so a rerun takes seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

from benchmarks.common import (
    MIXED,
    bootstrap_interval,
    cache_loaded_embeddings,
    gold_rows,
    macro_f1,
    one_line_errors,
    print_cpu,
    print_header,
    require_gold,
    row,
    tone_macro_f1,
    truth,
)

Scores = tuple[np.ndarray, np.ndarray]


def crossfit(
    schema: Any,
    cheap: Scores,
    expensive: Scores,
    facts: tuple,
    target: tuple | None,
    route_by: str = "text",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Honest topic decisions and tone predictions of every text, whether the expensive
    stage reads it and whether only for its tone: bands (where ``target`` is given as
    (share, loss)) and thresholds fitted on the other folds."""
    from topictone.infer.predictors.cascade import decided_by, mixed, reads
    from topictone.train.decisions.routing import fit_bands
    from topictone.train.decisions.thresholds import ThresholdRule, apply_thresholds

    n = len(facts[1])
    decided = np.zeros((n, len(schema.topics)), dtype=int)
    tones, routed, lead = np.zeros(n, dtype=int), np.zeros(n, dtype=bool), np.zeros(n, bool)
    nothing = (np.zeros((n, len(schema.topics)), dtype=bool), np.zeros(n, dtype=bool))
    for fit, held in KFold(5, shuffle=True, random_state=0).split(np.arange(n)):
        taken = nothing
        if target is not None:
            part = tuple((s[0][fit], s[1][fit]) for s in (cheap, expensive))
            truth = (facts[0][fit], facts[1][fit])
            bands, _ = fit_bands(schema, *part, truth, *target, route_by)
            taken = decided_by(route_by, bands.unsure(schema, cheap))
        merged = mixed(cheap, expensive, taken)
        cuts = ThresholdRule("f1").tune(schema, merged[0][fit], facts[0][fit])
        decided[held] = apply_thresholds(merged[0][held], schema, cuts)
        whole, tone_only = reads(taken)
        tones[held], routed[held] = merged[1][held].argmax(axis=1), (whole | tone_only)[held]
        lead[held] = tone_only[held]
    return decided, tones, routed, lead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a cascade's training run")
    parser.add_argument("--losses", default="0,0.01,0.02,0.03,0.05")
    parser.add_argument("--shares", default="0.1,0.2,0.3")
    parser.add_argument("--route-by", default="text,head", help="route_by rules, in turn")
    args = parser.parse_args()
    require_gold(*(f"{name}.jsonl" for name in MIXED))
    from topictone import infer
    from topictone.infer.predictors.cascade import check_route

    print_cpu()
    cascade = infer.load(args.run / "model")
    if cascade.kind != "cascade":
        raise SystemExit(f"error: {args.run / 'model'} holds a {cascade.kind} model, not a cascade")
    rows = gold_rows(*MIXED)
    clean = cascade.preprocess([r["text"] for r in rows])
    units = [r.get("unit", "?") for r in rows]
    facts = truth(rows, cascade.schema)
    stages = {"cheap": cascade.cheap, "expensive": cascade.expensive}
    cache_loaded_embeddings(cascade, args.run / "model")  # a rerun embeds nothing again
    cheap, expensive = (stage.predict_scores_clean(clean) for stage in stages.values())
    targets: list[tuple[str, Any, str]] = [
        ("cheap alone", None, "text"),
        ("expensive alone", "all", "text"),
    ]
    for rule in args.route_by.split(","):
        check_route(rule, "--route-by")
        named = [(f"max_f1_loss={v}", (None, float(v))) for v in args.losses.split(",")]
        named += [(f"max_expensive_share={v}", (float(v), None)) for v in args.shares.split(",")]
        targets += [(f"{name}, by {rule}", target, rule) for name, target in named]
    print()
    unit_names = [f"{u}s to expensive" for u in sorted(set(units))]
    print_header(
        "target", "topic macro-F1 [95%]", "tone macro-F1 [95%]", "to expensive",
        "for tone alone", *unit_names,
    )  # fmt: skip
    for name, target, rule in targets:
        if target == "all":
            decided, tones, _, lead = crossfit(cascade.schema, expensive, expensive, facts, None)
            routed = np.ones(len(rows), dtype=bool)
        else:
            decided, tones, routed, lead = crossfit(
                cascade.schema, cheap, expensive, facts, target, rule
            )
        interval = bootstrap_interval(decided, facts[0], tones, facts[1])
        tone_f1 = tone_macro_f1(facts[1], tones, len(cascade.schema.tones))
        per_unit = [f"{routed[np.array(units) == u].mean():.0%}" for u in sorted(set(units))]
        low_t, high_t = interval["topics/macro_f1"]
        low_o, high_o = interval["tone/macro_f1"]
        print(
            row(
                name,
                f"{macro_f1(facts[0], decided):.3f} [{low_t:.3f}, {high_t:.3f}]",
                f"{tone_f1:.3f} [{low_o:.3f}, {high_o:.3f}]",
                f"{routed.mean():.0%}",
                f"{lead.mean():.0%}",
                *per_unit,
            ),
            flush=True,
        )


if __name__ == "__main__":
    one_line_errors(main)
