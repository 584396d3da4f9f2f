"""The HTTP service, through FastAPI's test client (no port opened)."""

import pytest

pytest.importorskip("fastapi", reason="the HTTP service needs topictone[serve]")
from fastapi.testclient import TestClient

import infer
from infer.serve import create_app


@pytest.fixture(scope="module")
def client(tfidf_run):
    return TestClient(create_app(infer.load(tfidf_run / "model")))


def test_health_describes_the_model(client):
    body = client.get("/health").json()
    assert body["kind"] == "tfidf" and body["topics"] == [
        "defence",
        "counterterrorism",
        "technology",
    ]


def test_predict_matches_the_python_api(client, tfidf_run):
    texts = ["Army tests new missile", "आतंकी हमले में जवान शहीद"]
    body = client.post("/predict", json={"texts": texts}).json()
    expected = infer.load(tfidf_run / "model").predict(texts)
    assert [p["topics"] for p in body["predictions"]] == [p.topics for p in expected]
    assert [p["tone"] for p in body["predictions"]] == [p.tone for p in expected]


def test_predict_rejects_bad_requests(client):
    assert client.post("/predict", json={"texts": []}).status_code == 422
    assert client.post("/predict", json={"texts": [""]}).json()["detail"] == "texts[0]: empty text"
    response = client.post("/predict", json={"texts": ["x"], "thresholds": {"sport": 0.1}})
    assert response.status_code == 422 and "unknown topic" in response.json()["detail"]
