"""The evaluation report: ``report.md`` with PNG figures, per split, people can read.

Per-topic precision/recall/F1, confusion matrices (tone, and each topic), precision–
recall curves, a reliability diagram, and breakdowns by language and text length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infer.schema import LabelSchema
from train.decision import calibration_errors
from train.evaluation import compute_metrics, decisions

BREAKDOWNS = ("lang", "unit")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path.name


def figure_per_topic(metrics: dict, schema: LabelSchema, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(len(schema.topics))
    for k, name in enumerate(("precision", "recall", "f1")):
        values = [metrics[f"topics/{t}_{name}"] for t in schema.topics]
        ax.bar(x + (k - 1) * 0.27, values, 0.27, label=name)
    ax.set_xticks(x, schema.topics)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Per-topic precision, recall and F1")
    return _save(fig, path)


def figure_confusions(
    schema: LabelSchema,
    topic_true: np.ndarray,
    topic_pred: np.ndarray,
    tone_true: np.ndarray,
    tone_pred: np.ndarray,
    path: Path,
) -> str:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _plt()
    fig, axes = plt.subplots(
        1, len(schema.topics) + 1, figsize=(3.2 * (len(schema.topics) + 1), 3.2)
    )
    ConfusionMatrixDisplay.from_predictions(
        tone_true,
        tone_pred,
        labels=range(len(schema.tones)),
        display_labels=schema.tones,
        ax=axes[0],
        colorbar=False,
        xticks_rotation=45,
    )
    axes[0].set_title("tone")
    for i, topic in enumerate(schema.topics):
        ConfusionMatrixDisplay.from_predictions(
            topic_true[:, i],
            topic_pred[:, i],
            labels=[0, 1],
            display_labels=["no", "yes"],
            ax=axes[i + 1],
            colorbar=False,
        )
        axes[i + 1].set_title(topic)
    return _save(fig, path)


def figure_pr_curves(
    schema: LabelSchema,
    topic_true: np.ndarray,
    topic_scores: np.ndarray,
    thresholds: dict[str, float],
    path: Path,
) -> str:
    from sklearn.metrics import precision_recall_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for i, topic in enumerate(schema.topics):
        if topic_true[:, i].sum() == 0:
            continue
        precision, recall, cuts = precision_recall_curve(topic_true[:, i], topic_scores[:, i])
        (line,) = ax.plot(recall, precision, label=topic)
        at = min(np.searchsorted(cuts, thresholds[topic]), len(cuts) - 1)
        ax.plot(recall[at], precision[at], "o", color=line.get_color())
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Precision–recall (dot: decision threshold)")
    return _save(fig, path)


def figure_reliability(
    topic_true: np.ndarray,
    topic_scores: np.ndarray,
    tone_correct: np.ndarray,
    tone_confidence: np.ndarray,
    path: Path,
    bins: int = 10,
) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    edges = np.linspace(0, 1, bins + 1)
    for name, probs, truth in (
        ("topics", topic_scores.ravel(), topic_true.ravel()),
        ("tone", tone_confidence, tone_correct),
    ):
        which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        ax.plot(
            [probs[which == b].mean() for b in filled],
            [truth[which == b].mean() for b in filled],
            "o-",
            label=name,
        )
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=8)
    ax.set_title("Reliability")
    return _save(fig, path)


def breakdown_rows(
    dataset: Any,
    schema: LabelSchema,
    scores: tuple[np.ndarray, np.ndarray],
    truth: tuple[np.ndarray, np.ndarray],
    thresholds: dict[str, float],
    overall: dict,
) -> list[str]:
    lines = [
        "| field | bucket | n | topics macro-F1 | Δ overall | tone macro-F1 | Δ overall |",
        "|---|---|---|---|---|---|---|",
    ]
    for field in BREAKDOWNS:
        if field not in dataset.column_names:
            continue
        values = np.array([str(v) for v in dataset[field]])
        for bucket in sorted(set(values)):
            mask = values == bucket
            m = compute_metrics(
                schema, scores[0][mask], scores[1][mask], truth[0][mask], truth[1][mask], thresholds
            )
            lines.append(
                f"| {field} | {bucket} | {int(mask.sum())} | {m['topics/macro_f1']:.3f} | "
                f"{m['topics/macro_f1'] - overall['topics/macro_f1']:+.3f} | "
                f"{m['tone/macro_f1']:.3f} | {m['tone/macro_f1'] - overall['tone/macro_f1']:+.3f} |"
            )
    return lines


def fitting_note(fitting: dict[str, dict[str, Any]], split: str, schema: LabelSchema) -> list[str]:
    """The honest figures for the split the decisions were fitted on."""
    lines = [
        f"Calibration and thresholds were fitted on {split}, so the figures above are "
        "optimistic for unseen texts. Honest figures from the same texts:",
        "",
        "| estimate | " + " | ".join(f"{t} F1" for t in schema.topics) + " | topics macro-F1 |",
        "|---|" + "---|" * (len(schema.topics) + 1),
    ]
    names = {
        f"{split}_crossfit": "thresholds tuned on the other folds (cross-fitted)",
        f"{split}_before_fitting": "before fitting (fixed thresholds, uncalibrated)",
    }
    for key, label in names.items():
        if key in fitting:
            m = fitting[key]
            per_topic = " | ".join(f"{m[f'topics/{t}_f1']:.3f}" for t in schema.topics)
            lines.append(f"| {label} | {per_topic} | {m['topics/macro_f1']:.3f} |")
    return [*lines, ""]


def write_report(
    folder: Path,
    title: str,
    splits: dict[str, Any],
    schema: LabelSchema,
    thresholds: dict[str, float],
    fitting: dict[str, dict[str, Any]] | None = None,
    fitted_on: str = "dev",
    never_predicted: dict[str, list[str]] | None = None,
) -> Path:
    """``splits[name]`` has ``dataset``, ``scores`` (topic, tone) and ``truth`` (topic, tone).

    ``fitting`` holds the metrics of the split that calibration and thresholds were fitted
    on (``dev_before_fitting``, ``dev_crossfit``), shown beside its optimistic figures.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {title}",
        "",
        "Thresholds: " + ", ".join(f"{t} {v:.3f}" for t, v in thresholds.items()),
        "",
    ]
    for name, labels in (never_predicted or {}).items():
        lines += [f"**Warning: on {name} the model never predicts {', '.join(labels)}.**", ""]
    for name, split in splits.items():
        (topic_scores, tone_probs), (topic_true, tone_true) = split.scores, split.truth
        metrics = compute_metrics(
            schema, topic_scores, tone_probs, topic_true, tone_true, thresholds
        )
        metrics.update(
            calibration_errors(schema, (topic_scores, tone_probs), topic_true, tone_true)
        )
        topic_pred = decisions(topic_scores, schema, thresholds)
        tone_pred = tone_probs.argmax(axis=1)
        figures = [
            figure_per_topic(metrics, schema, folder / f"{name}-per-topic.png"),
            figure_confusions(
                schema,
                topic_true,
                topic_pred,
                tone_true,
                tone_pred,
                folder / f"{name}-confusion.png",
            ),
            figure_pr_curves(
                schema, topic_true, topic_scores, thresholds, folder / f"{name}-pr.png"
            ),
            figure_reliability(
                topic_true,
                topic_scores,
                tone_pred == tone_true,
                tone_probs.max(axis=1),
                folder / f"{name}-reliability.png",
            ),
        ]
        lines += [
            f"## {name} ({metrics['n']} texts)",
            "",
            "| topic | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {t} | {metrics[f'topics/{t}_precision']:.3f} | {metrics[f'topics/{t}_recall']:.3f} "
            f"| {metrics[f'topics/{t}_f1']:.3f} | {metrics[f'topics/{t}_support']} |"
            for t in schema.topics
        ]
        lines += [
            "",
            f"Topics: micro-F1 {metrics['topics/micro_f1']:.3f}, macro-F1 "
            f"{metrics['topics/macro_f1']:.3f}, "
            f"subset accuracy {metrics['topics/subset_accuracy']:.3f}, "
            f"ECE {metrics['topics_ece']:.3f}. Tone: accuracy {metrics['tone/accuracy']:.3f}, "
            f"macro-F1 {metrics['tone/macro_f1']:.3f}, ECE {metrics['tone_ece']:.3f}.",
            "",
        ]
        if name == fitted_on and fitting:
            lines += fitting_note(fitting, name, schema)
        lines += breakdown_rows(
            split.dataset, schema, split.scores, split.truth, thresholds, metrics
        )
        lines += [""] + [f"![{f}]({f})" for f in figures] + [""]
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
