"""The model card (``README.md`` of a model folder), in the Hugging Face format.

Written with ``huggingface_hub.ModelCard``: YAML metadata the Hub and its tools read
(languages, licence, base model, datasets, metrics as a model-index), then the sections
people look for — how to use it, training data, hyper-parameters, evaluation per split,
language and length, intended use and limitations. Never read by a loader.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

if TYPE_CHECKING:
    from topictone.infer.artifact import Manifest

INTENDED_USE = (
    "Routing and monitoring Hindi and English news: flag texts about defence, "
    "counterterrorism and technology (any, all or none of them) and read their tone "
    "(positive, neutral, negative) toward the subject, in bulk."
)
LIMITATIONS = (
    "Trained on news from a few sources; other registers (social media, transcripts), "
    "other languages and code-mixed text are out of scope. Tone is the article's stance, "
    "not the event's: 'terrorists killed' may be positive for the security forces. Scores "
    "are calibrated on the development data of the run; decisions near a threshold are "
    "uncertain. Long articles are read only up to the model's window budget. Not for "
    "decisions about people."
)
HEADLINE = ("topics/macro_f1", "tone/macro_f1", "topics/micro_f1", "tone/accuracy")


def model_card(manifest: Manifest, info: dict[str, Any] | None = None) -> str:
    """The card for a model folder; ``info`` (from ``train``) adds data, hyper-parameters,
    buckets and licence; without it the card holds what the manifest knows."""
    info = info or {}
    data = ModelCardData(
        language=info.get("languages") or ["hi", "en"],
        license=info.get("license") or "other",
        license_name=info.get("license_name"),
        base_model=info.get("base_models") or None,
        datasets=info.get("datasets") or None,
        metrics=["f1"],
        library_name="topictone",
        tags=["topictone", "text-classification", "multi-label", manifest.kind],
        model_name=f"topictone-{manifest.kind}",
        eval_results=_eval_results(manifest) or None,
    )
    body = [
        *_usage_section(manifest),
        *_training_section(info),
        *_metrics_section(manifest),
        *_buckets_section(info),
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Limitations",
        "",
        LIMITATIONS,
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in manifest.versions.items()),
        "",
    ]
    card = ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(body))
    return str(card)


def _usage_section(manifest: Manifest) -> list[str]:
    """What the model labels, how to run it, and how it decides."""
    schema = manifest.schema
    return [
        f"# topictone {manifest.kind} model",
        "",
        "Labels news texts by topic (multi-label: "
        + ", ".join(schema.topics)
        + "; any, all or none) and by tone ("
        + ", ".join(schema.tones)
        + ").",
        "",
        "## How to use",
        "",
        "```python",
        "import infer",
        'model = infer.load("<this folder>")',
        'print(model.predict(["<a news text>"])[0])',
        "```",
        "",
        "Batch: `python -m topictone.infer model=<this folder> input=<file> output=<file>`; "
        "HTTP: `python -m topictone.infer.service model=<this folder>`. A generic Hugging Face "
        "`pipeline` cannot run it: the labels, windows and heads are topictone's.",
        "",
        "## Decisions",
        "",
        "- thresholds: " + ", ".join(f"{k} {v:.3f}" for k, v in manifest.thresholds.items()),
        f"- calibration: {(manifest.calibration or {}).get('method', 'none')}",
        f"- text normalisation: v{manifest.normalization_version}",
        "",
    ]


def _training_section(info: dict[str, Any]) -> list[str]:
    """Training files with their hashes, examples per label, hyper-parameters (from train)."""
    body: list[str] = []
    if info.get("training_data"):
        body += ["## Training data", "", "| file | SHA-256 |", "|---|---|"]
        files = info["training_data"].items()
        body += [f"| `{name}` | `{digest[:16]}…` |" for name, digest in files]
        body.append("")
    if info.get("label_counts"):
        body += ["Examples per label in the training split:", ""]
        body += ["| label | texts |", "|---|---|"]
        body += [f"| {label} | {n} |" for label, n in info["label_counts"].items()]
        body.append("")
    if info.get("hyperparameters"):
        body += ["## Hyper-parameters", "", "```json"]
        body += [json.dumps(info["hyperparameters"], indent=2, ensure_ascii=False, default=str)]
        body += ["```", ""]
    return body


def _buckets_section(info: dict[str, Any]) -> list[str]:
    """Figures per language and text length, where training measured them."""
    if not info.get("buckets"):
        return []
    body = [
        "### Per language and text length",
        "",
        "| split | field | bucket | n | topics macro-F1 | tone macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    for split, rows in info["buckets"].items():
        body += [
            f"| {split} | {r['field']} | {r['bucket']} | {r['n']} | "
            f"{r['topics/macro_f1']:.3f} | {r['tone/macro_f1']:.3f} |"
            for r in rows
        ]
    return [*body, ""]


def _metrics_section(manifest: Manifest) -> list[str]:
    lines = []
    for split, values in manifest.metrics.items():
        if isinstance(values, dict):
            lines += [f"### {split}", "", "| metric | value |", "|---|---|"]
            lines += [
                f"| {k} | {v:.4f} |" for k, v in values.items() if isinstance(v, (int, float))
            ]
            lines.append("")
    return ["## Evaluation", "", *lines] if lines else []


def _eval_results(manifest: Manifest) -> list[EvalResult]:
    """The honest dev figures (cross-fitted when decisions were fitted on dev) and test."""
    out = []
    for split in ("dev_crossfit", "test"):
        values = manifest.metrics.get(split)
        if not isinstance(values, dict):
            continue
        for metric in HEADLINE:
            if isinstance(values.get(metric), (int, float)):
                out.append(
                    EvalResult(
                        task_type="text-classification",
                        dataset_type="topictone",
                        dataset_name=split,
                        dataset_split=split.split("_")[0],
                        metric_type=metric.split("/")[1].split("_")[-1],
                        metric_name=metric,
                        metric_value=round(float(values[metric]), 4),
                    )
                )
    return out
