"""``report.md`` on small synthetic splits: the fitting note only when something was fitted,
every figure naming its split, average precision, bin counts, and a legend clear of bars."""

from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from sklearn.metrics import average_precision_score

from topictone.infer.schema import LabelSchema
from topictone.train import report as report_module
from topictone.train.decisions.fitting import Fitted
from topictone.train.metrics.compute import split_metrics as metrics_of
from topictone.train.report import fitting_note, write_report

SCHEMA = LabelSchema(
    ("defence", "counterterrorism", "technology"), ("positive", "neutral", "negative")
)
THRESHOLDS = {"defence": 0.45, "counterterrorism": 0.6, "technology": 0.5}
FIGURES = ("per-topic", "confusion", "pr", "reliability")


def synthetic_split(n: int, seed: int, absent: str | None = None) -> SimpleNamespace:
    """What ``topictone.train.metrics.splits.Evaluation`` gives the report: dataset,
    (topic, tone) scores, truth and the metrics computed once."""
    rng = np.random.default_rng(seed)
    topic_true = (rng.random((n, len(SCHEMA.topics))) < 0.4).astype(int)
    if absent:
        topic_true[:, SCHEMA.topics.index(absent)] = 0
    tone_true = rng.integers(0, len(SCHEMA.tones), n)
    topic_scores = np.clip(0.45 * topic_true + 0.6 * rng.random(topic_true.shape), 0, 1)
    logits = rng.normal(size=(n, len(SCHEMA.tones)))
    logits[np.arange(n), tone_true] += 1.5
    tone_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    dataset = datasets.Dataset.from_dict(
        {
            "id": [f"{seed}-{i}" for i in range(n)],
            "text": [f"text {i}" for i in range(n)],
            "topics": topic_true.tolist(),
            "tone": tone_true.tolist(),
            "lang": ["en", "hi"] * (n // 2),
            "unit": ["article", "headline"] * (n // 2),
        }
    )
    scores, truth = (topic_scores, tone_probs), (topic_true, tone_true)
    metrics = metrics_of(SCHEMA, scores, truth, THRESHOLDS)
    return SimpleNamespace(dataset=dataset, scores=scores, truth=truth, metrics=metrics)


def split_metrics(split: SimpleNamespace, thresholds: dict[str, float]) -> dict:
    return metrics_of(SCHEMA, split.scores, split.truth, thresholds)


SPLITS = {"dev": synthetic_split(40, 1), "test": synthetic_split(40, 2, absent="technology")}
BEFORE = split_metrics(SPLITS["dev"], dict.fromkeys(SCHEMA.topics, 0.5))
CROSSFIT = split_metrics(SPLITS["dev"], dict.fromkeys(SCHEMA.topics, 0.55))


def render(folder, fitted):
    """Write the report, keeping each figure (by file name) for inspection."""
    figures = {}
    save = report_module._save

    def keep(fig, path):
        figures[path.name] = fig
        return save(fig, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "_save", keep)
        path = write_report(folder, "synthetic", SPLITS, SCHEMA, THRESHOLDS, fitted)
    return path.read_text(encoding="utf-8"), figures


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fitted")
    fitted = Fitted(
        fitted=True,
        on_dev=True,
        oof_texts=240,
        rule="f1",
        metrics={"dev_before_fitting": BEFORE, "dev_crossfit": CROSSFIT},
    )
    text, figures = render(folder, fitted)
    return folder, text, figures


def test_nothing_fitted_claims_nothing(tmp_path):
    # A run with decision.calibrate=false decision.thresholds=fixed fits nothing;
    # topictone.train.evaluate hands over nothing.
    for k, fitted in enumerate((Fitted(), None)):
        path = write_report(
            tmp_path / str(k), "synthetic", {"dev": SPLITS["dev"]}, SCHEMA, THRESHOLDS, fitted
        )
        text = path.read_text(encoding="utf-8")
        assert "fitted" not in text.lower() and "optimistic" not in text
        assert "| estimate |" not in text


def test_fitting_note_says_what_was_fitted_on_what(fitted):
    _, text, _ = fitted
    assert (
        text.count("**Fitted on dev + 240 out-of-fold train texts: per-topic thresholds (f1)") == 1
    )
    assert "calibration" not in text  # none was fitted: none is claimed
    test_section = text[text.index("## test") :]
    assert "fitted" not in test_section.lower() and "| estimate |" not in test_section
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    honest = rows["fitted on the other folds (cross-fitted)"]
    assert f"| {CROSSFIT['topics/macro_f1']:.3f} | {CROSSFIT['topics_ece']:.3f} |" in honest
    before = rows["before fitting (fixed thresholds, uncalibrated)"]
    assert f"| {BEFORE['topics/defence_f1']:.3f} |" in before
    assert "as fitted, on the same dev texts (optimistic)" in rows


def test_fitting_note_names_calibration_and_kept_thresholds():
    dev_metrics = split_metrics(SPLITS["dev"], THRESHOLDS)
    fitted = Fitted(
        fitted=True, on_dev=True, methods=("platt", "platt"), rule="fixed",
        metrics={"dev_before_fitting": BEFORE, "dev_crossfit": CROSSFIT},
    )  # fmt: skip
    note = "\n".join(fitting_note(fitted, "dev", SCHEMA, dev_metrics, THRESHOLDS))
    assert (
        "**Fitted on the dev texts: platt calibration of the scores and thresholds kept at" in note
    )
    assert "per-topic thresholds" not in note
    both = Fitted(**{**fitted.__dict__, "methods": ("temperature", "platt"), "rule": "f1"})
    note = "\n".join(fitting_note(both, "dev", SCHEMA, dev_metrics, THRESHOLDS))
    assert "temperature (topics) / platt (tone) calibration of the scores and per-topic" in note


def test_decisions_fitted_without_dev_leave_its_figures_honest():
    """As ``experiment=gold_tfidf`` runs (``decision.use_dev=false``, out-of-fold train):
    the report says dev took no part, never that its figures are optimistic."""
    dev_metrics = split_metrics(SPLITS["dev"], THRESHOLDS)
    fitted = Fitted(
        fitted=True, on_dev=False, oof_texts=4290, methods=("platt", "platt"), rule="f1",
        metrics={"dev_before_fitting": BEFORE, "dev_crossfit": dev_metrics},
    )  # fmt: skip
    note = "\n".join(fitting_note(fitted, "dev", SCHEMA, dev_metrics, THRESHOLDS))
    assert note.startswith("**Fitted on 4290 out-of-fold train texts: platt calibration")
    assert "took no part" in note and "honest" in note
    assert "optimistic" not in note and "dev +" not in note and "| estimate |" not in note


def test_every_figure_and_caption_names_its_split(fitted):
    folder, text, figures = fitted
    lines = text.splitlines()
    for split in SPLITS:
        for figure in FIGURES:
            png = folder / f"{split}-{figure}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            [at] = [i for i, line in enumerate(lines) if line.endswith(f"]({png.name})")]
            assert lines[at].startswith(f"![{split} — "), lines[at]
            assert lines[at + 2].startswith(f"*{split} — "), lines[at + 2]
            fig = figures[png.name]
            titles = [fig._suptitle.get_text()] if fig._suptitle else []
            titles += [ax.get_title() for ax in fig.axes]
            assert any(t.startswith(f"{split} — ") for t in titles), titles


def test_average_precision_per_topic(fitted):
    _, text, figures = fitted
    for split, data in SPLITS.items():
        (topic_scores, _), (topic_true, _) = data.scores, data.truth
        section = text[text.index(f"## {split} ") :]
        [caption] = [
            line for line in section.splitlines() if line.startswith(f"*{split} — precision")
        ]
        legend = [t.get_text() for t in figures[f"{split}-pr.png"].axes[0].get_legend().get_texts()]
        for i, topic in enumerate(SCHEMA.topics):
            row = next(line for line in section.splitlines() if line.startswith(f"| {topic} |"))
            if not topic_true[:, i].any():  # no positive text: no curve, no AP
                assert f"no positive texts for {topic}" in caption and "| – |" in row
                assert not any(label.startswith(f"{topic} ") for label in legend)
                continue
            ap = average_precision_score(topic_true[:, i], topic_scores[:, i])
            assert f"{topic} {ap:.3f}" in caption and f"| {ap:.3f} |" in row
            assert f"{topic} (AP = {ap:.2f})" in legend
        assert "current threshold" in legend


def test_reliability_shows_ece_and_bin_counts(fitted):
    _, text, figures = fitted
    for split, data in SPLITS.items():
        metrics = split_metrics(data, THRESHOLDS)
        top, counts = figures[f"{split}-reliability.png"].axes
        labels = [t.get_text() for t in top.get_legend().get_texts()]
        assert f"topics pooled (ECE {metrics['topics_ece']:.3f})" in labels
        assert f"tone (ECE {metrics['tone_ece']:.3f})" in labels
        topics_bars, tone_bars = counts.containers[:2]
        assert sum(b.get_height() for b in topics_bars) == data.truth[0].size
        assert sum(b.get_height() for b in tone_bars) == len(data.truth[1])
        assert f"ECE: topics {metrics['topics_ece']:.3f}, tone {metrics['tone_ece']:.3f}" in text


def test_per_topic_legend_does_not_cover_bars(fitted):
    _, _, figures = fitted
    for split in SPLITS:
        fig = figures[f"{split}-per-topic.png"]
        [ax] = fig.axes
        renderer = FigureCanvasAgg(fig).get_renderer()  # the figure is closed
        legend = ax.get_legend().get_window_extent(renderer)
        bars = [p for container in ax.containers for p in container]
        assert len(bars) == 3 * len(SCHEMA.topics)
        for bar in bars:
            assert not legend.overlaps(bar.get_window_extent(renderer))
        assert ax.get_ylim()[1] > max(bar.get_height() for bar in bars)
