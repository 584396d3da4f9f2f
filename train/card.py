"""What only training knows for the model card: data, licence, base models, buckets."""

from __future__ import annotations

from typing import Any

import datasets

from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import targets
from topictone.train.metrics.compute import bucket_metrics


def base_models(model_cfg: Any) -> list[str]:
    """Every ``backbone`` named in a model config, members' included."""
    found: list[str] = []
    if isinstance(model_cfg, dict):
        backbone = model_cfg.get("backbone")
        if isinstance(backbone, str):
            found.append(backbone)
        for value in model_cfg.values():
            found += [b for b in base_models(value) if b not in found]
    return found


def label_counts(train: datasets.Dataset, schema: LabelSchema) -> dict[str, int]:
    topic_true, tone_true = targets(train)
    counts = {t: int(topic_true[:, i].sum()) for i, t in enumerate(schema.topics)}
    counts["(no topic)"] = int((topic_true.sum(axis=1) == 0).sum())
    counts.update({t: int((tone_true == i).sum()) for i, t in enumerate(schema.tones)})
    return counts


def card_info(
    data_cfg: Any,
    model_cfg: dict[str, Any],
    decision_cfg: dict[str, Any],
    train: datasets.Dataset,
    schema: LabelSchema,
    training_data: dict[str, str],
    evaluated: dict[str, tuple[datasets.Dataset, tuple, tuple, dict[str, float]]],
) -> dict[str, Any]:
    """``topictone.infer.card.model_card``'s ``info``; ``evaluated``: per split, (dataset, scores,
    truth, thresholds) of the figures to break down by language and length."""
    column = train["lang"] if "lang" in train.column_names else []
    languages = sorted({str(lang) for lang in column if lang})  # weak rows may have none
    return {
        "languages": languages or None,
        "license": data_cfg.get("license"),
        "license_name": data_cfg.get("license_name"),
        "datasets": [str(data_cfg.get("name"))],
        "base_models": base_models(model_cfg),
        "training_data": training_data,
        "label_counts": label_counts(train, schema),
        "hyperparameters": {"model": model_cfg, "decision": decision_cfg},
        "buckets": {
            split: [
                {k: v for k, v in row.items() if k in ("field", "bucket", "n") or "macro_f1" in k}
                for row in bucket_metrics(dataset, schema, scores, truth, thresholds)
            ]
            for split, (dataset, scores, truth, thresholds) in evaluated.items()
        },
    }
