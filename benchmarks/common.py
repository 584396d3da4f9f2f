"""What the benchmarks share, so that no benchmark imports another.

Paths (the repository root, the gold data in ``../shared`` beside it, the demo corpus),
the machine line every speed and memory figure prints, timing and table helpers, the two
command lines run as subprocesses, a run's saved files read back, the statistics the
quality tables print, and the few training internals some benchmarks truly need: each
imported here alone (section "training internals"), so that a restructured
``topictone.train`` is followed in this one file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent  # the repository root
DEMO = ROOT / "data" / "demo"  # the embedded demo corpus
SHARED = ROOT.parent / "shared"  # beside the repository root; never copied into it
GOLD = SHARED / "data" / "gold"  # train, dev, dev_articles (licensed separately)
SEED_EXAMPLE = SHARED / "examples" / "india-israel-defence-mou.hi.txt"
# torch, oneDNN (and OpenVINO's oneDNN), MKL and numpy held to AVX2 kernels: a stand-in on
# an AVX-512 machine for the AVX2 CPUs most users have (no AVX-512, no bfloat16, no VNNI).
AVX2_ONLY = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": " ".join(
        (
            "AVX512F",
            "AVX512CD",
            "AVX512_SKX",
            "AVX512_CLX",
            "AVX512_CNL",
            "AVX512_ICL",
            "AVX512_SPR",
        )
    ),
}
MIXED = ("dev", "dev_articles")  # the mixed set: conf/data/gold.yaml's dev split, in its order
WARM_UP = ["Army tests a new missile", "सेना ने नई मिसाइल का परीक्षण किया"]  # not in the mixed set
OOF_SCORES = Path("oof") / "scores.npz"  # what a run with decision.oof_folds > 1 writes

# --- training internals ---------------------------------------------------------------
# The benchmarks use topictone's public names, its command lines and the files a run
# writes. Where one truly needs a function of topictone.train, it calls one of the
# functions below, each importing that internal inside its body: when topictone.train
# moves or reshapes it, this section is the one place to change, and a benchmark that
# does not use it (or asks for --help) never imports it (these modules take seconds).


def load_splits(data_cfg: Any, schema: Any) -> dict:
    """The configured splits, read and validated exactly as a run reads them (fields,
    units, ids), for benchmarks that fit or score outside a run."""
    from topictone.train.data.labelled import load_splits as load

    return load(data_cfg, schema)


def read_labelled(path: Path, data_cfg: Any, schema: Any) -> Any:
    """One labelled file as a run reads it (``data_cfg``: ``fields`` and ``keep``)."""
    from topictone.train.data.labelled import read_labelled as read

    return read(path, data_cfg, schema)


def targets(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot topic truth and tone indices of a split read by ``load_splits``."""
    from topictone.train.data.labelled import targets as truth_of

    return truth_of(dataset)


def f1_thresholds(schema: Any, topic_scores: np.ndarray, topic_true: np.ndarray) -> dict:
    """Per-topic thresholds by the presets' rule (``decision.thresholds=f1``), tuned on
    these texts: the rule a run fits, applied to scores no run saved."""
    from topictone.train.decisions.thresholds import ThresholdRule

    return ThresholdRule("f1", 0.5).tune(schema, topic_scores, topic_true)


def crossfit_f1(
    schema: Any, topic_scores: np.ndarray, topic_true: np.ndarray, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Topic decisions for each text from F1 thresholds tuned on the other folds only: an
    honest figure from one set of texts (calibration is monotone per topic, so it cannot
    move these decisions)."""
    from sklearn.model_selection import KFold

    decided = np.zeros_like(topic_true, dtype=int)
    for fit_rows, held_rows in KFold(folds, shuffle=True, random_state=seed).split(topic_scores):
        thresholds = f1_thresholds(schema, topic_scores[fit_rows], topic_true[fit_rows])
        decided[held_rows] = decide(topic_scores[held_rows], schema, thresholds)
    return decided


def crossfit_ensemble(
    ensemble: Any, raw: dict[str, tuple], labels: tuple, method: str
) -> tuple[np.ndarray, tuple]:
    """An ensemble's whole decision (member calibrations by ``method``, the mean's
    calibration, F1 thresholds) cross-fitted over these texts from its members' ``raw``
    scores, as a run cross-fits dev: topic decisions and calibrated scores."""
    from topictone.train.decisions.fitting import crossfit_estimate
    from topictone.train.decisions.scores import Scored, ScoreTree
    from topictone.train.decisions.thresholds import ThresholdRule

    tree = ScoreTree(None, {name: ScoreTree(scores) for name, scores in raw.items()})
    rows = np.arange(len(labels[1]))
    rule = ThresholdRule("f1", 0.5, 0.8)
    return crossfit_estimate(ensemble, Scored(tree, labels), rows, method, rule)


def compute_metrics(*args: Any) -> dict[str, Any]:
    """The figures metrics.json holds (per-topic F1, macro-F1, tone accuracy...), so a
    benchmark's figures compare with a run's: ``topictone.train.metrics.compute``'s
    ``compute_metrics(schema, topic_scores, tone_probs, topic_true, tone_true, thresholds)``."""
    from topictone.train.metrics.compute import compute_metrics as compute

    return compute(*args)


def bootstrap_interval(
    topic_decided: np.ndarray, topic_true: np.ndarray, tone_pred: np.ndarray, tone_true: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Bootstrap 95% intervals of the macro-F1 figures, as a run's report gives them."""
    from topictone.train.metrics.compute import bootstrap_interval as interval

    return interval(topic_decided, topic_true, tone_pred, tone_true)


def resolve_encoder(name_or_path: str) -> Path:
    """Where the encoder's weights are on this machine; a TopictoneError where they are
    absent (the benchmarks then skip in one line)."""
    from topictone.train.fitters.encoder import resolve_encoder as resolve

    return resolve(name_or_path)


def cache_loaded_embeddings(predictor: Any, folder: Path) -> None:
    """Attaches the embedding cache a run of the encoder left, so a loaded ensemble does
    not embed gold again."""
    from topictone.train.fitters.encoder import cache_loaded_embeddings as attach

    attach(predictor, folder)


def tfidf_fitter(**settings: Any) -> Any:
    """The TF-IDF fitter with its constructor's defaults and ``settings`` (model.* values
    outside any preset), fitted per fold by quality.tfidf_settings."""
    from topictone.train.fitters.tfidf import TfidfFitter

    return TfidfFitter(**settings)


# The labelling loop's simulation measures the shipped code: the samplers `label select`
# runs and the decision fitting a training run does.


def product_sampler(strategy: str, max_similarity: float, seed: int) -> Any:
    """``label select``'s sampler for ``strategy`` (all topics)."""
    from topictone.train.label.selection import sampler

    return sampler(strategy, None, max_similarity, seed)


def pool_scores(predictor: Any, texts: list[str]) -> Any:
    """The pool's calibrated scores and the model's thresholds, as ``label select`` hands
    them to a sampler."""
    from topictone.train.label.selection import PoolScores

    topics, tones = predictor.predict_scores(texts)
    thresholds = np.array([predictor.thresholds[t] for t in predictor.schema.topics])
    return PoolScores(topics, tones, thresholds)


def scored(predictor: Any, dataset: Any) -> Any:
    """Raw scores and truth of ``dataset``, as a run scores a split."""
    from topictone.train.decisions.scores import score_split

    return score_split(predictor, dataset)


def fit_decisions(predictor: Any, dev: Any, decision: Any, oof: Any) -> Any:
    """Calibrations and thresholds fitted as a run fits them, installed on ``predictor``;
    its ``crossfit`` holds dev's decisions and calibrated scores."""
    from topictone.train.decisions.fitting import fit_decisions as fit

    return fit(predictor, dev, decision, oof)


# --- the machine, timing, tables ------------------------------------------------------


def cpu_line() -> str:
    """The CPU's name, cores and the flags its numeric kernels may use: a speed or memory
    figure means little without it."""
    from topictone.infer.machine import describe

    return f"CPU: {describe()}"


def print_cpu() -> None:
    print(cpu_line(), flush=True)


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Wall seconds of one call, and what it returned."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def row(*cells: object) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def print_header(*columns: str) -> None:
    """A Markdown table's header and its separator line."""
    print(row(*columns))
    print("|" + "---|" * len(columns))


def joined(values: Sequence[float], digits: int = 3) -> str:
    """``0.812 / 0.640 / 0.901``: one figure per topic in a cell."""
    return " / ".join(f"{v:.{digits}f}" for v in values)


def one_line_errors(main: Callable[[], None]) -> None:
    """Runs a benchmark's ``main``: a bad run folder or file ends in one line, not a
    traceback."""
    from topictone.infer import TopictoneError

    try:
        main()
    except TopictoneError as err:
        sys.exit(f"error: {err}")


# --- data -----------------------------------------------------------------------------


def require_gold(*files: str, word: str = "skipped") -> None:
    """Exits with one line where a gold file (default ``dev.jsonl``) is absent."""
    for name in files or ("dev.jsonl",):
        if not (GOLD / name).is_file():
            sys.exit(f"{word}: {GOLD / name} not found (needs ../shared beside the repository)")


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """A JSONL file's rows (the first ``limit`` of them)."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return rows[:limit] if limit else rows


def gold_rows(*splits: str, limit: int | None = None) -> list[dict]:
    """The rows of gold files (``dev``, ``dev_articles``...), each cut to ``limit``."""
    return [r for split in splits for r in read_jsonl(GOLD / f"{split}.jsonl", limit)]


def truth(rows: Sequence[dict], schema: Any) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot topic truth (int) and tone indices of labelled rows."""
    topics = np.array([[t in r["topics"] for t in schema.topics] for r in rows], dtype=int)
    tones = np.array([schema.tones.index(r["tone"]) for r in rows], dtype=int)
    return topics.reshape(len(rows), len(schema.topics)), tones


def demo_texts() -> list[str]:
    """Every text of the demo corpus (train, dev, test), in file order."""
    return [
        r["text"] for split in ("train", "dev", "test") for r in read_jsonl(DEMO / f"{split}.jsonl")
    ]


def demo_model(model: Path | None, work: Path) -> Path:
    """``model`` if given, else the default TF-IDF trained on the demo corpus into ``work``."""
    if model is not None:
        return model
    train_cli(["report=false", f"hydra.run.dir={work / 'run'}"], output="quiet")
    return work / "run" / "model"


# --- the command lines ----------------------------------------------------------------


def train_cli(overrides: Sequence[str], output: str = "show") -> float:
    """Runs ``python -m topictone.train <overrides>`` from the repository root; its wall
    seconds. ``output``: ``show`` (passed through), ``stderr`` (stdout dropped, the
    command echoed to stderr) or ``quiet`` (captured; shown only if it fails)."""
    command = [sys.executable, "-m", "topictone.train", *overrides]
    if output == "stderr":
        print(f"$ python -m topictone.train {' '.join(overrides)}", file=sys.stderr, flush=True)
    quiet = output == "quiet"
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE if quiet else subprocess.DEVNULL if output == "stderr" else None,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
    )
    if done.returncode != 0:
        if quiet:
            sys.stderr.write(done.stderr[-4000:])
        sys.exit(f"error: python -m topictone.train exited with {done.returncode}")
    return time.perf_counter() - start


@dataclass(frozen=True)
class CliRun:
    """One ``python -m topictone.infer`` run: wall seconds, peak RSS, exit code, and the
    first line it wrote to stderr."""

    seconds: float
    peak_mib: float
    code: int
    first_error: str


def infer_cli(args: Sequence[str]) -> CliRun:
    """Runs ``python -m topictone.infer <args> progress=false`` from the repository root,
    measuring the process's own peak RSS (``wait4``)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "topictone.infer", *args, "progress=false"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = process.stderr.read() if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    line = (err.splitlines() or [""])[0]
    return CliRun(seconds, usage.ru_maxrss / 1024, process.returncode, line)


def train_config(overrides: Sequence[str]) -> Any:
    """The composed ``conf/train.yaml`` with ``overrides``, as ``python -m topictone.train``
    sees it."""
    from hydra import compose, initialize_config_dir

    import topictone.infer.resources
    import topictone.train  # noqa: F401  (registers the typed schemas the configs name)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def configured_splits(overrides: Sequence[str]) -> tuple[Any, Any, dict]:
    """The config of ``overrides``, its label schema and its data splits, read as a run
    reads them."""
    from topictone.infer import LabelSchema

    cfg = train_config(overrides)
    schema = LabelSchema.from_dict(cfg.labels)
    return cfg, schema, load_splits(cfg.data, schema)


def configured_fitter(cfg: Any) -> Any:
    """The fitter ``cfg.model`` describes, as a run builds it (Hydra's ``instantiate``)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    model = OmegaConf.to_container(cfg.model, resolve=True)
    return instantiate({k: v for k, v in model.items() if k != "kind"})


# --- a run's saved files --------------------------------------------------------------


def prediction_rows(path: Path, schema: Any, fields: dict[str, str]) -> list[dict]:
    """A saved predictions file's rows, each checked for its truth and the ``prediction``
    fields a benchmark reads (``fields``: each field's content, ``topics`` or ``tones``
    for a score per name, ``topic list`` for decided topics): a bad file gets one line
    naming file, line and field, not a traceback."""
    from topictone.infer import InputError
    from topictone.infer.io.readers import read_rows

    rows = []
    for line, found, _ in read_rows(path, "jsonl"):
        for name, ok, expected in row_checks(found, schema, fields):
            if not ok:
                raise InputError(expected, path, line, name)
        rows.append(found)
    return rows


def row_checks(found: dict, schema: Any, fields: dict[str, str]) -> list[tuple[str, bool, str]]:
    """(field, whether it is well formed, what was expected) for one predictions row."""

    def labels(value: Any, names: Sequence[str]) -> bool:
        return isinstance(value, list) and all(v in names for v in value)

    def scores(value: Any, names: Sequence[str]) -> bool:
        return isinstance(value, dict) and all(
            isinstance(value.get(n), (int, float)) and not isinstance(value[n], bool) for n in names
        )

    topics, tones = list(schema.topics), list(schema.tones)
    prediction = found.get("prediction")
    checks = [
        ("id", isinstance(found.get("id"), (str, int)), "expected a text or a number"),
        ("topics", labels(found.get("topics"), topics), f"expected a list of {topics}"),
        ("tone", found.get("tone") in tones, f"expected one of {tones}"),
        ("prediction", isinstance(prediction, dict), "expected an object"),
    ]
    for field, what in fields.items() if isinstance(prediction, dict) else ():
        names = topics if what.startswith("topic") else tones
        ok = (labels if what == "topic list" else scores)(prediction.get(field), names)
        expected = "a list of" if what == "topic list" else "a number for each of"
        checks.append((f"prediction.{field}", ok, f"expected {expected} {names}"))
    return checks


def dev_predictions(run: Path) -> tuple:
    """A run's saved dev predictions: manifest, schema, rows, (topic truth, tone truth),
    (calibrated topic scores, tone distributions)."""
    from topictone.infer import read_manifest

    manifest = read_manifest(run / "model", verify=False)
    schema = manifest.schema
    read = {"topic_scores": "topics", "tone_scores": "tones"}
    rows = prediction_rows(run / "predictions" / "dev.jsonl", schema, read)
    scores = np.array([[r["prediction"]["topic_scores"][t] for t in schema.topics] for r in rows])
    probs = np.array([[r["prediction"]["tone_scores"][t] for t in schema.tones] for r in rows])
    return manifest, schema, rows, truth(rows, schema), (scores, probs)


def crossfit_predictions(run: Path, schema: Any, rows: list[dict]) -> tuple | None:
    """The run's honest dev outputs (``predictions/dev_crossfit.jsonl``: each text decided
    by calibrations and thresholds fitted without it): topic decisions, tone distributions."""
    path = run / "predictions" / "dev_crossfit.jsonl"
    if not path.is_file():
        return None
    honest = prediction_rows(path, schema, {"topics": "topic list", "tone_scores": "tones"})
    if [r["id"] for r in honest] != [r["id"] for r in rows]:
        sys.exit(f"error: {path} does not match the run's dev predictions")
    decided = np.array([[t in r["prediction"]["topics"] for t in schema.topics] for r in honest])
    probs = np.array([[r["prediction"]["tone_scores"][t] for t in schema.tones] for r in honest])
    return decided.astype(int), probs


# --- decisions and statistics ---------------------------------------------------------


def decide(topic_scores: np.ndarray, schema: Any, thresholds: dict[str, float]) -> np.ndarray:
    """Topic decisions (0/1) at per-topic thresholds, as a predictor decides."""
    cut = np.array([thresholds[t] for t in schema.topics])
    return (topic_scores >= cut).astype(int)


def macro_f1(truth: np.ndarray, decided: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, decided, average="macro", zero_division=0))


def tone_macro_f1(truth: np.ndarray, predicted: np.ndarray, tones: int = 3) -> float:
    """Macro-F1 over every tone (indices), a tone never predicted counting 0."""
    from sklearn.metrics import f1_score

    labels = list(range(tones))
    return float(f1_score(truth, predicted, average="macro", labels=labels, zero_division=0))


def paired_interval(
    truth: np.ndarray, base: np.ndarray, other: np.ndarray, rounds: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap 95% interval of ``other``'s macro-F1 less ``base``'s, the same texts
    resampled for both: narrower than either's own interval where both err alike."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        rows = rng.integers(0, len(truth), len(truth))
        diffs.append(macro_f1(truth[rows], other[rows]) - macro_f1(truth[rows], base[rows]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)
