"""The evaluation report: ``report.md`` with PNG figures, per split, people can read.

Per-topic precision/recall/F1 and average precision, confusion matrices (tone, and each
topic), precision–recall curves, a reliability diagram with its bin counts, and breakdowns
by language and text length. Every figure names the split it shows, in its title and in
its caption in ``report.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from topictone.infer.schema import LabelSchema
from topictone.train.decisions.fitting import Fitted
from topictone.train.decisions.thresholds import apply_thresholds
from topictone.train.metrics.compute import bucket_metrics
from topictone.train.metrics.splits import Evaluation

_Figure = tuple[str, str, str]  # file name, title and caption, both naming the split


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps legends placed outside the axes
    _plt().close(fig)
    return path.name


def _average_precisions(
    schema: LabelSchema, topic_true: np.ndarray, topic_scores: np.ndarray
) -> dict[str, float]:
    """Average precision per topic; topics without a positive text are left out."""
    from sklearn.metrics import average_precision_score

    return {
        t: float(average_precision_score(topic_true[:, i], topic_scores[:, i]))
        for i, t in enumerate(schema.topics)
        if topic_true[:, i].any()
    }


def _figure_per_topic(metrics: dict, schema: LabelSchema, split: str, path: Path) -> _Figure:
    title = f"{split} — per-topic precision, recall and F1"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    x = np.arange(len(schema.topics))
    for k, (name, label) in enumerate(
        (("precision", "precision"), ("recall", "recall"), ("f1", "F1"))
    ):
        values = [metrics[f"topics/{t}_{name}"] for t in schema.topics]
        bars = ax.bar(x + (k - 1) * 0.27, values, 0.27, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, schema.topics)
    ax.set_ylim(0, 1.15)  # headroom for the value labels
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path), title, f"{title} at the current thresholds."


def _figure_confusions(
    schema: LabelSchema,
    topic_true: np.ndarray,
    topic_pred: np.ndarray,
    tone_true: np.ndarray,
    tone_pred: np.ndarray,
    split: str,
    path: Path,
) -> _Figure:
    from sklearn.metrics import ConfusionMatrixDisplay

    title = f"{split} — confusion matrices"
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(schema.topics) + 1, figsize=(3.2 * (len(schema.topics) + 1), 3.4)
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
    fig.suptitle(title, fontsize=11)
    return _save(fig, path), title, f"{title}: tone, and each topic at its threshold."


def _figure_pr_curves(
    schema: LabelSchema,
    topic_true: np.ndarray,
    topic_scores: np.ndarray,
    metrics: dict,
    split: str,
    path: Path,
) -> _Figure:
    """``PrecisionRecallDisplay`` per topic on one axes (average precision in each label),
    with the operating point of the current threshold marked."""
    from matplotlib.lines import Line2D
    from sklearn.metrics import PrecisionRecallDisplay

    title = f"{split} — precision–recall per topic"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5.2))
    ap = _average_precisions(schema, topic_true, topic_scores)
    for i, topic in enumerate(schema.topics):
        if topic not in ap:
            continue
        display = PrecisionRecallDisplay.from_predictions(
            topic_true[:, i], topic_scores[:, i], name=topic, ax=ax
        )
        ax.plot(
            metrics[f"topics/{topic}_recall"],
            metrics[f"topics/{topic}_precision"],
            "o",
            markersize=7,
            markeredgecolor="black",
            color=display.line_.get_color(),
        )
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", linestyle="", color="grey", markeredgecolor="black"))
    labels.append("current threshold")
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    caption = f"{title} (dot: the current threshold). Average precision: " + (
        ", ".join(f"{t} {v:.3f}" for t, v in ap.items()) or "none"
    )
    missing = [t for t in schema.topics if t not in ap]
    if missing:
        caption += f"; no positive texts for {', '.join(missing)}, so no curve"
    return _save(fig, path), title, caption + "."


def _bin_counts(probs: np.ndarray, bins: int) -> np.ndarray:
    """Texts per uniform bin, binned as ``expected_calibration_error`` bins them."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    return np.bincount(which, minlength=bins)


def _figure_reliability(
    topic_true: np.ndarray,
    topic_scores: np.ndarray,
    tone_correct: np.ndarray,
    tone_confidence: np.ndarray,
    metrics: dict,
    split: str,
    path: Path,
    bins: int = 10,
) -> _Figure:
    """``CalibrationDisplay`` for topic scores (pooled over topics) and tone confidence,
    with the number of predictions per bin below."""
    from sklearn.calibration import CalibrationDisplay

    title = f"{split} — reliability: topics pooled and tone confidence"
    plt = _plt()
    fig, (ax, counts_ax) = plt.subplots(2, 1, figsize=(5, 6.4), height_ratios=(3, 1.3), sharex=True)
    series = (
        ("topics pooled", topic_scores.ravel(), topic_true.ravel(), metrics["topics_ece"]),
        ("tone", tone_confidence, tone_correct, metrics["tone_ece"]),
    )
    width = 1.0 / bins / (len(series) + 1)
    centres = (np.arange(bins) + 0.5) / bins
    totals = []
    for k, (name, probs, truth, ece) in enumerate(series):
        display = CalibrationDisplay.from_predictions(
            np.asarray(truth, dtype=int),
            probs,
            n_bins=bins,
            name=f"{name} (ECE {ece:.3f})",
            ax=ax,
            ref_line=k == 0,
        )
        counts = _bin_counts(probs, bins)
        totals.append(counts)
        bars = counts_ax.bar(
            centres + (k - 0.5) * width,
            counts,
            width,
            color=display.line_.get_color(),
            label=name,
        )
        counts_ax.bar_label(
            bars, labels=[str(c) if c else "" for c in counts], fontsize=6, padding=1
        )
    ax.set_aspect("auto")  # the display makes it square; keep it as wide as the counts
    ax.set_xlabel("")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    # Above the axes, under the title: reliability points can sit anywhere inside them.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    counts_ax.set_ylim(0, max(1, max(c.max() for c in totals)) * 1.3)
    counts_ax.set_ylabel("predictions\nper bin")
    counts_ax.set_xlabel("predicted probability")
    caption = (
        f"{title}. ECE: topics {metrics['topics_ece']:.3f}, tone {metrics['tone_ece']:.3f}; "
        f"bars below: predictions per bin ({bins} uniform bins)."
    )
    return _save(fig, path), title, caption


def _breakdown_rows(
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
    for m in bucket_metrics(dataset, schema, scores, truth, thresholds):
        lines.append(
            f"| {m['field']} | {m['bucket']} | {m['n']} | {m['topics/macro_f1']:.3f} | "
            f"{m['topics/macro_f1'] - overall['topics/macro_f1']:+.3f} | "
            f"{m['tone/macro_f1']:.3f} | {m['tone/macro_f1'] - overall['tone/macro_f1']:+.3f} |"
        )
    return lines


def fitting_note(
    fitted: Fitted | None,
    split: str,
    schema: LabelSchema,
    metrics: Mapping[str, Any],
    thresholds: Mapping[str, float],
) -> list[str]:
    """What was fitted, on which texts, as the run did it (``fitted``), and the honest
    figures beside the optimistic ones. Nothing when nothing was fitted; one sentence when
    ``split`` took no part (its figures are then honest as they stand)."""
    if fitted is None or not fitted.fitted:
        return []
    what = _what_fitted(fitted, thresholds)
    oof = fitted.oof_texts
    if not fitted.on_dev:
        return [
            f"**Fitted on {oof} out-of-fold train texts: {what}.** The {split} texts took no "
            f"part, so the {split} figures above are honest for unseen texts.",
            "",
        ]
    on = f"{split} + {oof} out-of-fold train texts" if oof else f"the {split} texts"
    lines = [
        f"**Fitted on {on}: {what}.** The {split} figures above are therefore optimistic "
        f"for unseen texts; honest figures from the same texts are below. Cross-fitted: each "
        f"{split} text decided with {what} fitted without it, on the other {split} folds"
        + (f" and the {oof} out-of-fold train texts." if oof else "."),
        "",
    ]
    return lines + _estimates_table(fitted, split, schema, metrics)


def _what_fitted(fitted: Fitted, thresholds: Mapping[str, float]) -> str:
    """ "platt calibration of the scores and per-topic thresholds (f1)", as the run did."""
    parts = []
    if fitted.methods is not None:
        topics, tone = fitted.methods
        how = topics if topics == tone else f"{topics} (topics) / {tone} (tone)"
        parts.append(f"{how} calibration of the scores")
    if fitted.rule != "fixed":
        parts.append(f"per-topic thresholds ({fitted.rule})")
    else:
        kept = ", ".join(f"{t} {v:.3f}" for t, v in thresholds.items())
        parts.append(f"thresholds kept at {kept}")
    return " and ".join(parts)


def _estimates_table(
    fitted: Fitted, split: str, schema: LabelSchema, metrics: Mapping[str, Any]
) -> list[str]:
    """The split's figures as fitted, cross-fitted and before fitting, side by side."""
    header = " | ".join(f"{t} F1" for t in schema.topics)
    lines = [
        f"| estimate | {header} | topics macro-F1 | topics ECE | tone ECE |",
        "|---|" + "---|" * (len(schema.topics) + 3),
    ]
    rows = {
        f"as fitted, on the same {split} texts (optimistic)": metrics,
        "fitted on the other folds (cross-fitted)": fitted.metrics.get(f"{split}_crossfit"),
        "before fitting (fixed thresholds, uncalibrated)": fitted.metrics.get(
            f"{split}_before_fitting"
        ),
    }
    for label, m in rows.items():
        if m is not None:
            per_topic = " | ".join(f"{m[f'topics/{t}_f1']:.3f}" for t in schema.topics)
            eces = " | ".join(f"{m[k]:.3f}" if k in m else "–" for k in ("topics_ece", "tone_ece"))
            lines.append(f"| {label} | {per_topic} | {m['topics/macro_f1']:.3f} | {eces} |")
    return [*lines, ""]


def _split_section(
    folder: Path,
    name: str,
    split: Evaluation,
    schema: LabelSchema,
    thresholds: dict[str, float],
    fitted: Fitted | None,
) -> list[str]:
    """One split's section: its table, the fitting note, breakdowns and figures."""
    topic_true, topic_scores = split.truth[0], split.scores[0]
    metrics = split.metrics
    figures = _split_figures(folder, name, split, schema, thresholds, metrics)
    lines = _split_table(
        name, schema, metrics, _average_precisions(schema, topic_true, topic_scores)
    )
    if name == "dev":  # decisions are fitted on dev (and out-of-fold train), never on test
        lines += fitting_note(fitted, name, schema, metrics, thresholds)
    lines += _breakdown_rows(split.dataset, schema, split.scores, split.truth, thresholds, metrics)
    lines.append("")
    for file, figure_title, caption in figures:
        lines += [f"![{figure_title}]({file})", "", f"*{caption}*", ""]
    return lines


def _split_figures(
    folder: Path,
    name: str,
    split: Any,
    schema: LabelSchema,
    thresholds: dict[str, float],
    metrics: dict[str, Any],
) -> list[tuple]:
    """The split's four figures, drawn into ``folder``: (file, title, caption) each."""
    (topic_scores, tone_probs), (topic_true, tone_true) = split.scores, split.truth
    topic_pred = apply_thresholds(topic_scores, schema, thresholds)
    tone_pred = tone_probs.argmax(axis=1)
    return [
        _figure_per_topic(metrics, schema, name, folder / f"{name}-per-topic.png"),
        _figure_confusions(
            schema,
            topic_true,
            topic_pred,
            tone_true,
            tone_pred,
            name,
            folder / f"{name}-confusion.png",
        ),
        _figure_pr_curves(
            schema, topic_true, topic_scores, metrics, name, folder / f"{name}-pr.png"
        ),
        _figure_reliability(
            topic_true,
            topic_scores,
            tone_pred == tone_true,
            tone_probs.max(axis=1),
            metrics,
            name,
            folder / f"{name}-reliability.png",
        ),
    ]


def _split_table(
    name: str, schema: LabelSchema, metrics: dict[str, Any], ap: dict[str, float]
) -> list[str]:
    """The per-topic table and the split's summary line."""
    lines = [
        f"## {name} ({metrics['n']} texts)",
        "",
        "| topic | precision | recall | F1 | average precision | support |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t} | {metrics[f'topics/{t}_precision']:.3f} | {metrics[f'topics/{t}_recall']:.3f} "
        f"| {metrics[f'topics/{t}_f1']:.3f} | {f'{ap[t]:.3f}' if t in ap else '–'} "
        f"| {metrics[f'topics/{t}_support']} |"
        for t in schema.topics
    ]
    return [
        *lines,
        "",
        f"Topics: micro-F1 {metrics['topics/micro_f1']:.3f}, macro-F1 "
        f"{metrics['topics/macro_f1']:.3f}, "
        f"subset accuracy {metrics['topics/subset_accuracy']:.3f}, "
        f"ECE {metrics['topics_ece']:.3f}. Tone: accuracy {metrics['tone/accuracy']:.3f}, "
        f"macro-F1 {metrics['tone/macro_f1']:.3f}, ECE {metrics['tone_ece']:.3f}.",
        "",
    ]


def write_report(
    folder: Path,
    title: str,
    splits: Mapping[str, Evaluation],
    schema: LabelSchema,
    thresholds: dict[str, float],
    fitted: Fitted | None = None,
    never_predicted: dict[str, list[str]] | None = None,
) -> Path:
    """``report.md`` and its figures from the run's evaluations (their metrics as computed
    once) and ``fitted``, what fitting the decisions did (None: nothing was fitted)."""
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
        lines += _split_section(folder, name, split, schema, thresholds, fitted)
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
