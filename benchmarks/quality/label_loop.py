"""The labelling loop simulated on gold: what each selection strategy buys per 100 labels.

    python -m benchmarks.quality.label_loop [--kinds tfidf,encoder] [--seeds 0,1,2]
        [--tfidf-seeds 0,1] [--start 500] [--step 100] [--until 2000] [--until-active N]
        [--strategies random,uncertainty,diverse] [--folds 3] [--jobs 1] [--out runs/label-loop]
    python -m benchmarks.quality.label_loop --tables-from runs/label-loop/results.json [more.json]

Per kind and seed, ``--start`` gold train texts are drawn uniformly (seeded) and labelled;
the rest of train is the pool, whose labels stay with an :class:`Oracle` (the annotator)
until a strategy picks them. Each round fits the ``experiment=gold_<kind>`` preset's model
on the labelled texts and fits its decisions as the preset does (``decision.use_dev=false``):
calibrations and F1 thresholds on ``--folds``-fold out-of-fold scores over the labelled
texts alone (``--folds`` more fits; the preset uses 5). That model scores the pool with its
calibrated scores and thresholds, the product's sampler
(``topictone.train.label.selection``, as ``label select`` runs it) picks ``--step`` texts,
and the oracle reveals their labels. After each fit, gold dev + dev_articles are decided by
that model: nothing is fitted on dev, so its macro-F1 is honest. Random goes to
``--until``; uncertainty and diverse stop at ``--until-active`` (default ``--until``).

The first fit of a seed (the start texts) is shared by the strategies; ``--jobs N`` runs N
(kind, seed) simulations at once in processes of their own. The encoder's frozen
embeddings are read from its on-disk cache once and kept in memory: each round refits heads.

Prints the CPU line, then per kind a table labels x strategy of mean topic and tone
macro-F1 over seeds [min-max], the gain per 100 labels by span, and the labels at which
each strategy reaches random's F1 at ``--until``. Writes ``label_loop.md``,
``results.json`` (every round, with the ids each round revealed: the tables are rebuilt
from it with ``--tables-from``, which also joins runs of other seeds) and
``label_loop.png`` (where matplotlib is installed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    bootstrap_interval,
    configured_splits,
    cpu_line,
    fit_decisions,
    one_line_errors,
    pool_scores,
    product_sampler,
    require_gold,
    row,
    scored,
    targets,
)
from benchmarks.curves import Point, curve_table, preset_fitter, runs_table, summary

KINDS = ("tfidf", "encoder")
STRATEGIES = ("random", "uncertainty", "diverse")
NO_INTERVAL = (math.nan, math.nan)  # bootstrap intervals (6 s each) only at a run's last round


# --- the loop -------------------------------------------------------------------------------


@dataclass
class Settings:
    """How a simulated run proceeds (the command line's numbers)."""

    start: int = 500
    step: int = 100
    until: int = 2000
    until_active: int = 2000  # uncertainty and diverse stop here; random at ``until``
    folds: int = 3
    max_similarity: float = 0.6  # conf/label/select.yaml
    strategies: tuple[str, ...] = STRATEGIES

    def limit(self, strategy: str) -> int:
        return self.until if strategy == "random" else self.until_active


@dataclass
class Round:
    """One fit of one simulated run: its dev figures (``point``: model "<kind> <strategy>",
    size = labels) and the ids revealed just before it (the start draw, or the last picks)."""

    kind: str
    strategy: str
    point: Point
    added: list[str] = field(default_factory=list)


class Oracle:
    """The annotator: holds train's labels and hands over only the rows revealed, so no
    model or sampler can read a pool label before the pool text is picked."""

    def __init__(self, train: Any) -> None:
        self._train = train
        self.texts: list[str] = list(train["text"])
        self.ids: list[str] = [str(i) for i in train["id"]]
        self._revealed: list[int] = []

    def reveal(self, rows: Sequence[int]) -> list[str]:
        """Labels ``rows`` (each once); their ids."""
        rows = [int(r) for r in rows]
        if len(set(rows)) != len(rows) or set(rows) & set(self._revealed):
            raise ValueError("a text was picked twice")
        self._revealed += rows
        return [self.ids[r] for r in rows]

    def pool(self) -> np.ndarray:
        """The rows still unlabelled, in train order."""
        return np.setdiff1d(np.arange(len(self.texts)), self._revealed)

    def labelled(self) -> Any:
        """The labelled rows (texts and labels), in the order revealed."""
        return self._train.select(self._revealed)


def out_of_fold(
    make_fitter: Callable[[int], Any], schema: Any, labelled: Any, seed: int, folds: int
) -> Any:
    """Raw scores of every labelled text from a model fitted without it (``folds`` fits)."""
    from sklearn.model_selection import KFold

    parts = []
    splitter = KFold(folds, shuffle=True, random_state=seed)
    for train_rows, scored_rows in splitter.split(np.arange(len(labelled))):
        fitter = make_fitter(seed).fit(labelled.select(train_rows), schema)
        parts.append(scored(fitter.predictor_, labelled.select(scored_rows)))
    return reduce(lambda a, b: a.concat(b), parts)


def fit_round(
    make_fitter: Callable[[int], Any],
    schema: Any,
    decision: Any,
    labelled: Any,
    dev: Any,
    seed: int,
    folds: int,
) -> tuple[Any, Any]:
    """The model a user has after training on ``labelled`` with the preset (decisions on
    out-of-fold scores over it alone), and its dev decisions: nothing was fitted on dev."""
    predictor = make_fitter(seed).fit(labelled, schema).predictor_
    oof = out_of_fold(make_fitter, schema, labelled, seed, folds)
    fitted = fit_decisions(predictor, scored(predictor, dev), decision, oof)
    return predictor, fitted.crossfit


def dev_point(
    model: str,
    seed: int,
    schema: Any,
    labelled: Any,
    dev_truth: tuple,
    crossfit: tuple,
    interval: bool,
) -> Point:
    """Dev's honest figures under one round's model (bootstrap intervals if ``interval``)."""
    from sklearn.metrics import f1_score

    decided, (_, tone_probs) = crossfit
    tone_pred = tone_probs.argmax(axis=1)
    topic_f1 = f1_score(dev_truth[0], decided, average=None, zero_division=0)
    tones = range(len(schema.tones))
    tone_f1 = f1_score(dev_truth[1], tone_pred, labels=tones, average=None, zero_division=0)
    known_topics, known_tones = targets(labelled)
    counts = [*known_topics.sum(axis=0), *np.bincount(known_tones, minlength=len(tones))]
    ci = bootstrap_interval(decided, dev_truth[0], tone_pred, dev_truth[1]) if interval else {}
    return Point(
        model=model,
        size=len(labelled),
        seed=seed,
        topics_f1=float(topic_f1.mean()),
        tone_f1=float(tone_f1.mean()),
        topics_ci=ci.get("topics/macro_f1", NO_INTERVAL),
        tone_ci=ci.get("tone/macro_f1", NO_INTERVAL),
        per_topic={t: float(f) for t, f in zip(schema.topics, topic_f1, strict=True)},
        per_tone={t: float(f) for t, f in zip(schema.tones, tone_f1, strict=True)},
        positives={n: int(c) for n, c in zip([*schema.topics, *schema.tones], counts, strict=True)},
    )


def pick(
    predictor: Any, oracle: Oracle, strategy: str, max_similarity: float, seed: int, n: int
) -> np.ndarray:
    """The train rows the product's sampler picks from the pool: it sees the pool's texts
    and the model's scores, never a pool label."""
    pool = oracle.pool()
    texts = [oracle.texts[i] for i in pool]
    chosen = product_sampler(strategy, max_similarity, seed).pick(
        texts, pool_scores(predictor, texts), n
    )
    return pool[np.asarray(chosen, dtype=int)]


@dataclass
class Simulation:
    """What every simulated run of one kind shares: the preset's fitter (``seed`` ->
    fitter), its schema and decision config, the splits and the settings."""

    kind: str
    make_fitter: Callable[[int], Any]
    schema: Any
    decision: Any
    train: Any
    dev: Any
    settings: Settings
    log: Callable[[str], None] = lambda _: None

    def fit(self, labelled: Any, seed: int) -> tuple[Any, Any]:
        return fit_round(
            self.make_fitter,
            self.schema,
            self.decision,
            labelled,
            self.dev,
            seed,
            self.settings.folds,
        )

    def record(
        self,
        strategy: str,
        seed: int,
        labelled: Any,
        crossfit: tuple,
        added: list[str],
        started: float,
    ) -> Round:
        """The round's figures on dev, logged."""
        last = len(labelled) >= min(self.settings.limit(strategy), len(self.train))
        model = f"{self.kind} {strategy}"
        point = dev_point(model, seed, self.schema, labelled, targets(self.dev), crossfit, last)
        point.seconds = time.perf_counter() - started
        self.log(
            f"{model} seed {seed}: {point.size} labels, topics {point.topics_f1:.3f} "
            f"tone {point.tone_f1:.3f} ({point.seconds:.0f} s)"
        )
        return Round(self.kind, strategy, point, added)

    def run(self, seed: int) -> list[Round]:
        """Every strategy from the same start draw of ``seed``; its first fit is shared."""
        started = time.perf_counter()
        start = np.random.default_rng(seed).choice(
            len(self.train), self.settings.start, replace=False
        )
        first = Oracle(self.train)
        added = first.reveal(start)
        predictor, crossfit = self.fit(first.labelled(), seed)
        rounds = []
        for strategy in self.settings.strategies:
            oracle = Oracle(self.train)
            oracle.reveal(start)
            rounds.append(self.record(strategy, seed, oracle.labelled(), crossfit, added, started))
            rounds += self.continue_run(strategy, seed, oracle, predictor)
            started = time.perf_counter()
        return rounds

    def continue_run(self, strategy: str, seed: int, oracle: Oracle, predictor: Any) -> list[Round]:
        """Pick, reveal, refit, measure, until the strategy's limit or an empty pool."""
        rounds = []
        limit = self.settings.limit(strategy)
        labels = len(oracle.labelled())
        while labels < limit and len(oracle.pool()):
            started = time.perf_counter()
            n = min(self.settings.step, limit - labels)
            round_seed = seed * 10_000 + len(rounds) + 1  # random: a new sample each round
            added = oracle.reveal(
                pick(predictor, oracle, strategy, self.settings.max_similarity, round_seed, n)
            )
            labelled = oracle.labelled()
            labels = len(labelled)
            predictor, crossfit = self.fit(labelled, seed)
            rounds.append(self.record(strategy, seed, labelled, crossfit, added, started))
        return rounds


class SharedEncoder:
    """``seed`` -> the preset's fitter; encoder fitters share one loaded encoder, whose
    memory keeps every embedding read from the disk cache (each fit then only fits heads)."""

    def __init__(self, make_fitter: Callable[[int], Any]) -> None:
        self.make_fitter = make_fitter
        self.encoder: Any = None

    def __call__(self, seed: int) -> Any:
        fitter = self.make_fitter(seed)
        if getattr(fitter, "kind", None) == "encoder":
            if self.encoder is None:
                self.encoder = fitter.encoder()
            fitter.encoder = lambda: self.encoder
        return fitter


# --- tables, figure, files ---------------------------------------------------------------


def cell(figures: tuple[float, float, float]) -> str:
    mean, low, high = figures
    return f"{mean:.3f} [{low:.3f}–{high:.3f}]"


def strategy_table(rounds: Sequence[Round], kind: str) -> list[str]:
    """labels | each strategy's topics macro-F1 | each strategy's tone macro-F1 (mean
    over seeds [min–max])."""
    strategies = list(dict.fromkeys(r.strategy for r in rounds if r.kind == kind))
    entries = {(e["model"], e["size"]): e for e in summary([r.point for r in rounds])}
    sizes = sorted({r.point.size for r in rounds if r.kind == kind})
    header = [f"topics: {s}" for s in strategies] + [f"tone: {s}" for s in strategies]
    lines = [row("labels", *header), "|" + "---|" * (1 + len(header))]
    for size in sizes:
        found = [entries.get((f"{kind} {s}", size)) for s in strategies]
        cells = [cell(e[what]) if e else "–" for what in ("topics", "tone") for e in found]
        lines.append(row(f"{size:,}", *cells))
    return lines


def gains_table(rounds: Sequence[Round], kind: str, span: int) -> list[str]:
    """Gain per 100 labels of the mean macro-F1 over spans of ``span`` labels."""
    entries = [e for e in summary([r.point for r in rounds]) if e["model"].split(" ")[0] == kind]
    lines = [
        row("strategy", "labels", "topics gain per 100", "tone gain per 100"),
        "|---|---|---|---|",
    ]
    for model in dict.fromkeys(e["model"] for e in entries):
        mine = {e["size"]: e for e in entries if e["model"] == model}
        sizes = sorted(mine)
        marks = [s for s in sizes if (s - sizes[0]) % span == 0 or s == sizes[-1]]
        for low, high in itertools.pairwise(marks):
            gain = [
                (mine[high][w][0] - mine[low][w][0]) * 100 / (high - low)
                for w in ("topics", "tone")
            ]
            lines.append(
                row(
                    model.split(" ", 1)[1],
                    f"{low:,}–{high:,}",
                    f"{gain[0]:+.4f}",
                    f"{gain[1]:+.4f}",
                )
            )
    return lines


def first_reaching(curve: dict[int, float], target: float) -> int | None:
    """The fewest labels at which ``curve`` (labels -> mean F1) reaches ``target``."""
    return next((size for size in sorted(curve) if curve[size] >= target - 1e-12), None)


def reached(
    rounds: Sequence[Round], kind: str, what: str = "topics"
) -> tuple[str, dict[str, int | None]]:
    """The line "random reaches X at 2,000 labels (first at K); uncertainty reaches it at N
    labels; diverse: not reached by 1,500 (Y there)", and the labels each other strategy
    needed (None: not reached). Random's own first crossing says how flat its curve is."""
    means: dict[str, dict[int, float]] = {}
    for e in summary([r.point for r in rounds if r.kind == kind]):
        means.setdefault(e["model"].split(" ", 1)[1], {})[e["size"]] = e[what][0]
    if "random" not in means:
        return f"{kind}: no random run to compare with", {}
    top = max(means["random"])
    target = means["random"][top]
    first = first_reaching(means["random"], target)
    parts = [f"{kind} {what}: random reaches {target:.4f} at {top:,} labels (first at {first:,})"]
    needed: dict[str, int | None] = {}
    for strategy, curve in means.items():
        if strategy != "random":
            needed[strategy] = first_reaching(curve, target)
            last = max(curve)
            parts.append(
                f"{strategy} reaches it at {needed[strategy]:,} labels"
                if needed[strategy]
                else f"{strategy}: not reached by {last:,} ({curve[last]:.4f} there)"
            )
    return "; ".join(parts), needed


def verdicts(rounds: Sequence[Round], budget: int = 1200) -> list[str]:
    """Per kind: whether uncertainty + diversity (``diverse``) reaches random's topic
    F1 at its last size with at most ``budget`` labels."""
    lines = []
    for kind in dict.fromkeys(r.kind for r in rounds):
        _, needed = reached(rounds, kind)
        if "diverse" in needed:
            labels = needed["diverse"]
            met = labels is not None and labels <= budget
            lines.append(
                f"{kind}: target (diverse at most {budget:,} labels): {'met' if met else 'not met'}"
            )
    return lines


def report_lines(rounds: Sequence[Round], settings: Settings) -> list[str]:
    """Every kind's tables and lines, as printed and saved."""
    lines = []
    for kind in dict.fromkeys(r.kind for r in rounds):
        seeds = sorted({r.point.seed for r in rounds if r.kind == kind})
        lines += [
            f"## {kind}: macro-F1 on gold dev + dev_articles, mean over seeds {seeds} [min–max]",
            "",
        ]
        lines += [*strategy_table(rounds, kind), ""]
        lines += [*gains_table(rounds, kind, 5 * settings.step), ""]
        lines += [reached(rounds, kind)[0], "", reached(rounds, kind, "tone")[0], ""]
    return lines + verdicts(rounds)


def plot(rounds: Sequence[Round], path: Path) -> bool:
    """Mean macro-F1 against labels per strategy (band: min–max over seeds), one row per
    kind, topics and tone side by side; False where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    kinds = list(dict.fromkeys(r.kind for r in rounds))
    figure, axes = plt.subplots(len(kinds), 2, figsize=(11, 4 * len(kinds)), squeeze=False)
    entries = summary([r.point for r in rounds])
    for axis_row, kind in zip(axes, kinds, strict=True):
        for axis, what in zip(axis_row, ("topics", "tone"), strict=True):
            for model in dict.fromkeys(
                e["model"] for e in entries if e["model"].startswith(f"{kind} ")
            ):
                mine = [e for e in entries if e["model"] == model]
                mean, low, high = zip(*(e[what] for e in mine), strict=True)
                sizes = [e["size"] for e in mine]
                axis.plot(sizes, mean, marker=".", label=model.split(" ", 1)[1])
                axis.fill_between(sizes, low, high, alpha=0.2)
            axis.set(
                xlabel="labelled gold train texts", ylabel=f"{what} macro-F1 (dev + dev_articles)"
            )
            axis.set_title(f"{kind}: {what} (band: min–max over seeds)")
            axis.grid(alpha=0.3)
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def to_json(value: Any) -> Any:
    """NaN (no interval) as null: strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(saved: dict) -> list[Round]:
    """The rounds of a ``results.json``."""
    rounds = []
    for r in saved["rounds"]:
        point = dict(r["point"])
        for ci in ("topics_ci", "tone_ci"):
            point[ci] = tuple(math.nan if v is None else v for v in point[ci])
        rounds.append(Round(r["kind"], r["strategy"], Point(**point), r["added"]))
    return rounds


def write_outputs(out: Path, rounds: Sequence[Round], settings: Settings, facts: dict) -> list[str]:
    """``label_loop.md``, ``results.json`` and ``label_loop.png`` into ``out``; the tables."""
    out.mkdir(parents=True, exist_ok=True)
    tables = report_lines(rounds, settings)
    last = [r.point for r in rounds if not math.isnan(r.point.topics_ci[0])]
    report = [
        "# The labelling loop simulated on gold",
        "",
        facts["cpu"],
        "",
        f"Command: `{facts['command']}`; wall time {facts['wall_s']:.0f} s. {facts['method']}",
        "",
        *tables,
        "",
        "## Every round (gain per 100 labels against the previous round)",
        "",
        *curve_table([r.point for r in rounds]),
        "",
        "## Each run's last round (bootstrap 95% intervals)",
        "",
        *runs_table(last),
        "",
    ]
    (out / "label_loop.md").write_text("\n".join(report), encoding="utf-8")
    saved = facts | {"settings": asdict(settings), "rounds": [asdict(r) for r in rounds]}
    (out / "results.json").write_text(json.dumps(to_json(saved), indent=1), encoding="utf-8")
    if plot(rounds, out / "label_loop.png"):
        tables.append(
            f"wrote {out / 'label_loop.md'}, {out / 'results.json'}, {out / 'label_loop.png'}"
        )
    else:
        tables.append(
            f"wrote {out / 'label_loop.md'}, {out / 'results.json'}; no PNG: no matplotlib"
        )
    return tables


METHOD = (
    "Each round: the preset's model fitted on the labelled texts, calibrations and F1 "
    "thresholds fitted on {folds}-fold out-of-fold scores over them alone; the pool scored "
    "by that model (calibrated scores, its thresholds) and {step} texts picked by the "
    "product's sampler; dev decided by that model. Nothing fitted on dev."
)


def simulate_kind(
    kind: str, seeds: Sequence[int], settings: Settings, log: Callable[[str], None]
) -> list[Round]:
    """Every seed's runs for ``kind`` with its gold preset."""
    overrides = [f"experiment=gold_{kind}", "decision.use_dev=false"]
    cfg, schema, splits = configured_splits(overrides)
    make = SharedEncoder(preset_fitter(kind))
    simulation = Simulation(
        kind, make, schema, cfg.decision, splits["train"], splits["dev"], settings, log
    )
    return [r for seed in seeds for r in simulation.run(seed)]


def log_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def simulate_one(task: tuple[str, int, Settings]) -> list[Round]:
    """One (kind, seed) task, in a worker process of its own where ``--jobs`` > 1."""
    kind, seed, settings = task
    return simulate_kind(kind, [seed], settings, log_line)


def simulate_all(seeds: dict[str, Sequence[int]], settings: Settings, jobs: int) -> list[Round]:
    """Every kind's seeds (``seeds``: kind -> seeds), in order; ``jobs`` processes at once
    (the runs are independent, each fit single-threaded: on 2 cores two take half the time)."""
    tasks = [(kind, seed, settings) for kind, mine in seeds.items() for seed in mine]
    if jobs < 2:
        return [r for task in tasks for r in simulate_one(task)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context) as pool:
        return [r for rounds in pool.map(simulate_one, tasks) for r in rounds]


def comma_list(kind: Callable[[str], Any]) -> Callable[[str], list]:
    return lambda text: [kind(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", type=comma_list(str), default=list(KINDS))
    parser.add_argument("--seeds", type=comma_list(int), default=[0, 1, 2])
    parser.add_argument(
        "--tfidf-seeds",
        type=comma_list(int),
        help="TF-IDF's seeds (default: --seeds): its rounds take about 10 times the encoder's",
    )
    parser.add_argument("--start", type=int, default=500)
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--until", type=int, default=2000, help="labels random goes to")
    parser.add_argument(
        "--until-active",
        type=int,
        default=None,
        help="labels uncertainty and diverse go to (default: --until)",
    )
    parser.add_argument("--strategies", type=comma_list(str), default=list(STRATEGIES))
    parser.add_argument(
        "--folds", type=int, default=3, help="out-of-fold fits for each round's decisions"
    )
    parser.add_argument(
        "--max-similarity", type=float, default=0.6, help="diverse: near-duplicates skipped"
    )
    parser.add_argument("--out", type=Path, default=Path("runs") / "label-loop")
    parser.add_argument("--jobs", type=int, default=1, help="(kind, seed) runs at once")
    parser.add_argument(
        "--tables-from",
        type=Path,
        nargs="+",
        help="results.json files of runs with the same settings (e.g. one seed each): "
        "rebuild their joint tables and figure, fit nothing",
    )
    args = parser.parse_args(argv)
    if set(args.kinds) - set(KINDS) or set(args.strategies) - set(STRATEGIES):
        parser.error(f"kinds: {', '.join(KINDS)}; strategies: {', '.join(STRATEGIES)}")
    if min(args.start, args.step) < 1 or args.folds < 2:
        parser.error("--start and --step must be positive, --folds at least 2")
    return args


def rebuild(paths: Sequence[Path], out: Path) -> None:
    """The joint tables and figure of saved ``results.json`` files, written into ``out``.

    Runs join only when their settings agree and no (kind, seed) is in two of them."""
    saved = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    settings = {json.dumps(s["settings"], sort_keys=True) for s in saved}
    if len(settings) > 1:
        raise SystemExit(f"error: {', '.join(map(str, paths))}: runs with other settings")
    seen: dict[tuple[str, int], Path] = {}
    for path, s in zip(paths, saved, strict=True):
        mine = {(r["kind"], r["point"]["seed"]) for r in s["rounds"]}
        if twice := sorted(mine & seen.keys()):
            kind, seed = twice[0]
            raise SystemExit(f"error: {path}: {kind} seed {seed} is also in {seen[kind, seed]}")
        seen.update(dict.fromkeys(mine, path))
    first = saved[0]["settings"]
    facts = {
        "command": "; ".join(s["command"] for s in saved),
        "cpu": saved[0]["cpu"],
        "wall_s": sum(s["wall_s"] for s in saved),
        "method": saved[0]["method"],
    }
    rounds = [r for s in saved for r in from_json(s)]
    joined = Settings(**(first | {"strategies": tuple(first["strategies"])}))
    print("\n".join(write_outputs(out, rounds, joined, facts)))


def main(argv: Sequence[str] | None = None) -> None:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.tables_from:
        return rebuild(args.tables_from, args.out)
    cpu = cpu_line()
    print(cpu, flush=True)
    require_gold("train.jsonl", "dev.jsonl", "dev_articles.jsonl", word="error")
    until_active = args.until if args.until_active is None else args.until_active
    settings = Settings(
        args.start,
        args.step,
        args.until,
        until_active,
        args.folds,
        args.max_similarity,
        tuple(args.strategies),
    )
    seeds = {kind: args.seeds for kind in args.kinds}
    if "tfidf" in seeds and args.tfidf_seeds:
        seeds["tfidf"] = args.tfidf_seeds
    rounds = simulate_all(seeds, settings, args.jobs)
    command = "python -m benchmarks.quality.label_loop " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    facts = {"command": command, "cpu": cpu, "wall_s": time.perf_counter() - started}
    facts["method"] = METHOD.format(folds=settings.folds, step=settings.step)
    print("\n".join(write_outputs(args.out, rounds, settings, facts)))
    print(f"wall time {facts['wall_s']:.0f} s")


if __name__ == "__main__":
    one_line_errors(main)
