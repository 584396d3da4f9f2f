"""Hostile /predict bodies: never a 500, and the answer is the Python API's.

Texts mix any Unicode with what breaks naive services (lone surrogates as JSON escapes,
NUL, zero-width and invisible characters): the service answers a 422 at the text that
``predictor.predict`` refuses, else exactly its predictions. Any JSON where the texts go
is a 200 or a located 422, and a key given twice a 422. Bounded here; a longer run is
behind ``-m slow``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the HTTP service needs topictone[serve]")
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from topictone import infer
from topictone.infer.errors import TextError
from topictone.infer.service.app import create_app

ODD = st.sampled_from(["\ud800", "\udfff", "\u200b", "\x00", "\ufeff", "\u00ad", " ", "\n"])
TEXTS = st.lists(
    st.text(alphabet=st.one_of(st.characters(), ODD), max_size=30), min_size=1, max_size=5
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.one_of(st.characters(), ODD), max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
JSON = {"content-type": "application/json"}


def fuzz(examples: int) -> Any:
    return settings(max_examples=examples, deadline=None, database=None)


@pytest.fixture(scope="module")
def predictor(tfidf_run: Path) -> infer.Predictor:
    return infer.load(tfidf_run / "model")


@pytest.fixture(scope="module")
def client(predictor: infer.Predictor, tfidf_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(predictor, tfidf_run / "model")) as client:
        yield client


def assert_short_422(response: Any) -> list[dict]:
    assert response.status_code == 422, response.text
    assert len(response.content) < 3000, response.text
    detail = response.json()["detail"]
    assert detail and all(set(item) == {"loc", "msg"} for item in detail), detail
    return detail


def check_texts(client: TestClient, predictor: infer.Predictor, texts: list[str]) -> None:
    response = client.post("/predict", content=json.dumps({"texts": texts}), headers=JSON)
    try:
        expected = predictor.predict(texts)
    except TextError as err:
        [item] = assert_short_422(response)
        assert item["loc"] == ["body", "texts", err.index], item
    else:
        assert response.status_code == 200, response.text
        got = response.json()["predictions"]
        assert got == json.loads(json.dumps([p.to_dict() for p in expected]))


def check_any_json(client: TestClient, value: Any) -> None:
    response = client.post("/predict", content=json.dumps({"texts": value}), headers=JSON)
    if response.status_code != 200:
        assert_short_422(response)


def check_duplicate(client: TestClient, texts: list[str], key: str) -> None:
    body = json.dumps({"texts": texts, "thresholds": {"defence": 0.5}})
    body = body[:-1] + f", {json.dumps(key)}: {json.dumps(texts)}}}"
    response = client.post("/predict", content=body, headers=JSON)
    if key in ("texts", "thresholds"):
        [item] = assert_short_422(response)
        assert item["msg"].startswith(f"invalid JSON: duplicate key '{key}'"), item
    else:
        assert_short_422(response)  # an unknown field (or a key given twice)


@fuzz(40)
@given(TEXTS)
def test_texts_are_answered_as_the_python_api_answers(
    client: TestClient, predictor: infer.Predictor, texts: list[str]
) -> None:
    check_texts(client, predictor, texts)


@fuzz(40)
@given(JSON_VALUES)
def test_any_json_in_place_of_texts_is_a_200_or_a_located_422(
    client: TestClient, value: Any
) -> None:
    check_any_json(client, value)


@fuzz(20)
@given(TEXTS, st.sampled_from(["texts", "thresholds", "explain", "text"]))
def test_a_key_given_twice_is_never_silently_dropped(
    client: TestClient, texts: list[str], key: str
) -> None:
    check_duplicate(client, texts, key)


@pytest.mark.slow
@fuzz(1000)
@given(TEXTS, JSON_VALUES)
def test_hostile_bodies_at_length(
    client: TestClient, predictor: infer.Predictor, texts: list[str], value: Any
) -> None:
    check_texts(client, predictor, texts)
    check_any_json(client, value)
