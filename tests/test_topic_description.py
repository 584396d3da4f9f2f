"""A topic from its description: the encoder's prototype head (train/fitters/prototype.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, compose_train
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema

SCHEMA = LabelSchema(
    topics=("defence", "counterterrorism", "technology"), tones=("positive", "neutral", "negative")
)
TECH = "New smartphone chips and software apps for the internet"


def old_heads(fitter, x, topic_true, tone_true, n_tones):
    """The heads exactly as ``EncoderFitter.fit_heads`` fitted them before descriptions."""
    from topictone.train.fitters.base import logistic_head

    topic_w, topic_b = [], []
    for i in range(topic_true.shape[1]):
        head = logistic_head(fitter.topic_C, fitter).fit(
            x, topic_true[:, i], sample_weight=np.ones(len(x))
        )
        topic_w.append(head.coef_[0])
        topic_b.append(head.intercept_[0])
    tone = logistic_head(fitter.tone_C, fitter).fit(x, tone_true, sample_weight=np.ones(len(x)))
    tone_w, tone_b = np.zeros((n_tones, x.shape[1])), np.full(n_tones, -1e4)
    tone_w[tone.classes_], tone_b[tone.classes_] = tone.coef_, tone.intercept_
    return {
        "topic_weight": np.asarray(topic_w),
        "topic_bias": np.asarray(topic_b),
        "tone_weight": tone_w,
        "tone_bias": tone_b,
    }


def synthetic(n: int = 150, dimension: int = 12, seed: int = 0):
    """Unit embeddings, three topics with 10-40% positives, three tones."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dimension))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    topic_true = (rng.random((n, 3)) < [0.1, 0.25, 0.4]).astype(int)
    return x, topic_true, rng.integers(0, 3, n)


def assert_same(new: dict, old: dict) -> None:
    assert set(new) == set(old)
    for name in old:
        assert np.array_equal(new[name], old[name]), name


def test_without_descriptions_the_heads_are_unchanged():
    from topictone.train.fitters.encoder import EncoderFitter
    from topictone.train.fitters.prototype import Anchor

    x, topic_true, tone_true = synthetic()
    fitter = EncoderFitter(progress=False)
    before = old_heads(fitter, x, topic_true, tone_true, 3)
    assert_same(fitter.fit_heads(x, topic_true, tone_true, None, 3), before)
    # A described topic with enough positives keeps its logistic head, the others too.
    described = EncoderFitter(progress=False, prototype_below=5)
    anchors = {0: Anchor(x[0], np.zeros((0, x.shape[1])))}
    assert_same(described.fit_heads(x, topic_true, tone_true, None, 3, anchors), before)


@pytest.fixture(scope="module")
def demo_train():
    from topictone.train.data.labelled import read_labelled

    cfg = compose_train(["model=encoder"])
    return read_labelled(DEMO / "train.jsonl", cfg.data, SCHEMA)


def tiny_fitter(backbone: Path, cache: Path, **settings):
    from topictone.train.fitters.encoder import EncoderFitter

    options = {"dtype": "float32", "max_length": 32, "stride": 8, "progress": False}
    return EncoderFitter(backbone=str(backbone), cache_dir=str(cache), **options | settings)


def test_a_fit_without_descriptions_gives_the_old_heads(tiny_backbone, tmp_path, demo_train):
    from topictone.train.data.labelled import targets

    fitter = tiny_fitter(tiny_backbone, tmp_path).fit(demo_train, SCHEMA)
    topic_true, tone_true = targets(demo_train)
    before = old_heads(fitter, fitter.train_embeddings_, topic_true, tone_true, 3)
    assert_same(fitter.predictor_.heads, before)


def normalising_folder(backbone: Path, folder: Path) -> Path:
    """The tiny BERT as a sentence-transformers folder that mean-pools and normalises
    (no dense layer: a random tanh layer would saturate every text to one vector)."""
    shutil.copytree(backbone, folder)
    kinds = ("Transformer", "Pooling", "Normalize")
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (kind, path) in enumerate(zip(kinds, ("", "1_Pooling", "2_Normalize"), strict=True))
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    return folder


def test_a_described_topic_without_labels_scores_texts_like_its_description(
    tiny_backbone, tmp_path, demo_train
):
    """On a normalising encoder the score is a·cos(e, p) + b, so the description's own
    words score highest (the random tiny BERT knows no meaning: every text lies within a
    cosine of 0.85-0.97 of every other)."""
    from topictone.train.fitters.prototype import PRIOR_SHARE

    folder = normalising_folder(tiny_backbone, tmp_path / "st")
    unlabelled = demo_train.map(lambda r: {"topics": [*r["topics"][:2], 0]})
    fitter = tiny_fitter(
        folder, tmp_path, prompt_name=None, topic_descriptions={"technology": TECH}
    )
    predictor = fitter.fit(unlabelled, SCHEMA).predictor_
    scores, _ = predictor.predict_scores([TECH, "Heavy rain expected in the north this week"])
    assert scores[0, 2] > max(0.5, scores[1, 2])
    flagged, _ = predictor.predict_scores(demo_train["text"])
    assert (flagged[:, 2] >= 0.5).mean() == pytest.approx(PRIOR_SHARE, abs=0.03)
    # Without the description the same labels cannot be fitted at all.
    with pytest.raises(TopictoneError, match="no positive"):
        tiny_fitter(folder, tmp_path, prompt_name=None).fit(unlabelled, SCHEMA)


def test_few_positives_join_the_description_in_the_prototype():
    from topictone.train.fitters.encoder import EncoderFitter
    from topictone.train.fitters.prototype import Anchor, description_weight, prototype

    x, topic_true, tone_true = synthetic()
    rng = np.random.default_rng(1)
    centre = rng.normal(size=x.shape[1])  # a topic: texts and description near one direction
    x[:12] = centre + rng.normal(size=(12, x.shape[1])) * 0.4
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    topic_true[:, 0] = 0
    topic_true[:6, 0] = 1  # six of its twelve texts labelled
    description = centre + rng.normal(size=x.shape[1])
    anchor = Anchor(description / np.linalg.norm(description), np.zeros((0, x.shape[1])))
    heads = EncoderFitter(progress=False).fit_heads(x, topic_true, tone_true, None, 3, {0: anchor})
    chosen = description_weight(anchor, x, topic_true[:, 0])
    assert chosen < np.inf  # the positives share a direction the description only nears
    direction = prototype(anchor, x[:6], x.mean(axis=0), chosen)
    weight = heads["topic_weight"][0]
    assert np.allclose(weight / np.linalg.norm(weight), direction)  # a > 0: a·p/|p|
    assert not np.allclose(direction, anchor.description)  # the positives moved it
    unseen = x[6:12] @ weight + heads["topic_bias"][0]  # the topic's texts not labelled
    assert np.median(unseen) > np.quantile(x[12:] @ weight + heads["topic_bias"][0], 0.9)


def topic_pool(description_noise: float, text_noise: float, seed: int = 0):
    """Unit embeddings: 40 texts of a topic (its direction plus noise), 400 others, and a
    description that many units of noise away from the topic's direction."""
    rng = np.random.default_rng(seed)
    topic = rng.normal(size=64)
    texts = np.vstack([topic + rng.normal(size=(40, 64)) * text_noise, rng.normal(size=(400, 64))])
    description = topic + rng.normal(size=64) * description_noise
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    return unit(texts), np.r_[np.ones(40), np.zeros(400)], unit(description)


def test_the_description_weighs_less_where_the_texts_know_better():
    """A vague description and a tight topic: the positives' direction wins (W small); an
    exact description and scattered positives: the description alone or nearly (W large)."""
    from topictone.train.fitters.prototype import Anchor, description_weight

    x, y, description = topic_pool(description_noise=3.0, text_noise=0.3)
    anchor = Anchor(description, np.zeros((0, 64)))
    assert description_weight(anchor, x, y) == 8
    x, y, description = topic_pool(description_noise=0.0, text_noise=3.0)
    assert description_weight(Anchor(description, np.zeros((0, 64))), x, y) >= 128


def test_no_positive_or_no_negative_keeps_the_default_weight():
    from topictone.train.fitters.prototype import DESCRIPTION_WEIGHT, Anchor, description_weight

    x, _, description = topic_pool(1.0, 0.5)
    anchor = Anchor(description, np.zeros((0, 64)))
    assert description_weight(anchor, x, np.zeros(len(x))) == DESCRIPTION_WEIGHT
    assert description_weight(anchor, x, np.ones(len(x))) == DESCRIPTION_WEIGHT


@settings(max_examples=60, deadline=None)
@given(
    positive=st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=12),
    negative=st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=12),
)
def test_auc_is_scikit_learns(positive, negative):
    from sklearn.metrics import roc_auc_score

    from topictone.train.fitters.prototype import _auc

    truth = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    expected = roc_auc_score(truth, np.r_[positive, negative])
    assert _auc(np.array(positive), np.array(negative)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"topic_descriptions": {"sport": "Football"}},
            "labels.descriptions: unknown topic 'sport'",
        ),
        ({"topic_examples": {"sport": ["Goal!"]}}, "labels.examples: unknown topic 'sport'"),
        ({"topic_examples": {"defence": ["Army"]}}, "labels.examples.defence: give the topic a"),
        ({"topic_descriptions": {"defence": " "}}, "labels.descriptions.defence: must be a non"),
        (
            {"topic_descriptions": {"defence": "Army"}, "topic_examples": {"defence": "Navy"}},
            "labels.examples.defence: must be a list of non-empty texts",
        ),
    ],
)
def test_descriptions_are_checked_in_one_line(
    tiny_backbone, tmp_path, demo_train, settings, message
):
    with pytest.raises(TopictoneError, match=message) as caught:
        tiny_fitter(tiny_backbone, tmp_path, **settings).fit(demo_train, SCHEMA)
    assert "\n" not in str(caught.value)


def test_the_query_prompt_embeds_descriptions(tmp_path):
    from topictone.train.fitters.prototype import _query_prompt

    assert _query_prompt(tmp_path, "classify: ") == "classify: "  # no prompts: the model's
    prompts = {"Classification": "task: classification | query: ", "query": "q: "}
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    assert _query_prompt(tmp_path, "classify: ") == "q: "


@pytest.mark.parametrize("model, member", [("encoder", None), ("cascade", "expensive")])
def test_label_descriptions_reach_the_encoder(model, member):
    overrides = [f"model={model}", "+labels.descriptions.technology=Phones and chips"]
    cfg = compose_train([*overrides, "+labels.examples.technology=[New phone]"])
    settings = OmegaConf.to_container(cfg.model, resolve=True)
    settings = settings["members"][member] if member else settings
    assert settings["topic_descriptions"] == {"technology": "Phones and chips"}
    assert settings["topic_examples"] == {"technology": ["New phone"]}
    assert LabelSchema.from_dict(cfg.labels) == SCHEMA  # the saved schema is as before
    plain = OmegaConf.to_container(compose_train([f"model={model}"]).model, resolve=True)
    assert (plain["members"][member] if member else plain)["topic_descriptions"] == {}


@pytest.mark.parametrize(
    "model, reads",
    [
        ("tfidf", False),
        ("static", False),
        ("encoder", True),
        ("cascade", True),
        ("ensemble", False),
    ],
)
def test_a_model_that_cannot_read_descriptions_is_refused(model, reads, tmp_path):
    """A description a model would silently ignore is one line, before any fitting."""
    from hydra.utils import instantiate

    from topictone.train.run import fit_model

    cfg = compose_train([f"model={model}", "+labels.descriptions.technology=Phones and chips"])
    assert instantiate(cfg.model).reads_descriptions is reads
    if reads:
        return
    with pytest.raises(TopictoneError, match=f"labels.descriptions: a '{model}' model does not"):
        fit_model(cfg, cfg.model, {}, SCHEMA, tmp_path)


def test_a_run_trains_a_described_topic_that_has_no_labels(tiny_backbone, tmp_path):
    """The label-count check lets a described topic through with no positive; without
    the description the same data is refused in one line, as before."""
    from conftest import train_run
    from test_encoder import encoder_overrides

    from topictone.infer.errors import InputError

    rows = [json.loads(line) for line in (DEMO / "train.jsonl").open(encoding="utf-8")]
    for row in rows:
        row["topics"] = [t for t in row["topics"] if t != "technology"]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    folder = normalising_folder(tiny_backbone, tmp_path / "st")
    overrides = [
        *encoder_overrides(folder, tmp_path / "cache"),
        "model.prompt_name=null",
        f"data.train={train}",
    ]
    with pytest.raises(InputError, match="topic 'technology' has 0 positive"):
        train_run(overrides, tmp_path / "refused")
    train_run([*overrides, f"+labels.descriptions.technology={TECH}"], tmp_path / "run")
    from topictone import infer

    model = infer.load(tmp_path / "run" / "model")
    scores, _ = model.predict_scores([TECH, "Heavy rain expected in the north this week"])
    assert scores[0, 2] > scores[1, 2]  # the calibration keeps the description's order
