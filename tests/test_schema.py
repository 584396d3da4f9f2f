import pytest

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema, Prediction


def test_schema_round_trip():
    schema = LabelSchema(topics=("a", "b"), tones=("pos", "neg"))
    assert LabelSchema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize(
    "topics,tones",
    [(("a", "a"), ("x", "y")), ((), ("x", "y")), (("a",), ("x",)), (("",), ("x", "y"))],
)
def test_schema_rejects_bad_names(topics, tones):
    with pytest.raises(TopictoneError):
        LabelSchema(topics=topics, tones=tones)


def test_prediction_flat_columns():
    p = Prediction(["a"], {"a": 0.9, "b": 0.1}, "pos", {"pos": 0.7, "neg": 0.3})
    flat = p.to_flat()
    assert flat["pred_topics"] == "a"
    assert flat["pred_topic_score.b"] == 0.1
    assert flat["pred_tone"] == "pos"
    assert "explanation" not in p.to_dict()


@pytest.mark.parametrize("explanation", [None, {"a": [("missile", 0.4), ("army", 0.1)]}])
def test_prediction_dict_is_asdict_in_fresh_containers(explanation):
    from dataclasses import asdict

    p = Prediction(["a"], {"a": 0.9, "b": 0.1}, "pos", {"pos": 0.7, "neg": 0.3}, explanation)
    expected = {k: v for k, v in asdict(p).items() if v is not None}
    data = p.to_dict()
    assert data == expected and list(data) == list(expected)
    data["topics"].append("b")
    data["topic_scores"]["a"] = 0.0
    assert p.topics == ["a"] and p.topic_scores["a"] == 0.9  # a copy, not a view
