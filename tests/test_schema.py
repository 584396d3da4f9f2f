import pytest

from infer.errors import TopictoneError
from infer.schema import LabelSchema, Prediction


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
