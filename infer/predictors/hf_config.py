"""A transformer model folder as Hugging Face sees it: ``config.json`` is a
``TopicToneConfig`` (model type ``topictone``) carrying the label schema (``id2label``
for topics, ``tone_id2label`` for tones), the problem types, the windowing and pooling,
and the encoder's own config nested under ``encoder``.

Importing this module registers the type with ``AutoConfig`` (``topictone.infer.predictors.network``
registers the torch model with ``AutoModel``): ``from_pretrained`` works on a folder
without ``trust_remote_code``. No torch here: a folder with an ONNX graph reads it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from topictone.infer.schema import LabelSchema

MODEL_TYPE = "topictone"
PREFIX = "network."  # weight names: TopicTonePreTrainedModel.network.<TopicToneModel keys>


@strict
class TopicToneConfig(PreTrainedConfig):
    """Encoder + multi-label topic head + single-label tone head over pooled windows."""

    model_type = MODEL_TYPE
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")
    }

    encoder: PreTrainedConfig | dict | None = None
    tone_id2label: dict | None = None
    tone_problem_type: str = "single_label_classification"
    topic_pooling: str = "max"
    tone_pooling: str = "mean"
    max_length: int = 256
    stride: int = 32
    max_windows: int = 4
    prefix: str = ""


AutoConfig.register(MODEL_TYPE, TopicToneConfig, exist_ok=True)


def topictone_config(
    encoder: PreTrainedConfig, schema: LabelSchema, settings: Mapping[str, Any]
) -> TopicToneConfig:
    return TopicToneConfig(
        encoder=encoder,
        id2label=dict(enumerate(schema.topics)),
        problem_type="multi_label_classification",
        tone_id2label={str(i): tone for i, tone in enumerate(schema.tones)},
        **{
            key: settings[key]
            for key in ("topic_pooling", "tone_pooling", "max_length", "stride", "max_windows")
            if key in settings
        },
        prefix=settings.get("prefix") or "",
    )


def encoder_config(config: PreTrainedConfig) -> PreTrainedConfig:
    """The encoder's config: nested in a topictone folder, the whole file in older ones."""
    # The field's declared type is what @strict accepts; __post_init__ makes it a config
    # (the bert default when absent).
    return cast(PreTrainedConfig, config.encoder) if isinstance(config, TopicToneConfig) else config


def config_labels(config: PreTrainedConfig) -> list[list[str]] | None:
    """(topics, tones) as the config names them, or None for an older bare encoder config."""
    if not isinstance(config, TopicToneConfig):
        return None
    # As read from config.json: a crafted file without them fails here (TypeError), which
    # the caller reports as not a usable config.
    id2label = cast("dict[int, str]", config.id2label)
    tone_id2label = cast("dict[str, str]", config.tone_id2label)
    topics = [id2label[i] for i in sorted(id2label)]
    tones = [tone_id2label[k] for k in sorted(tone_id2label, key=int)]
    return [topics, tones]
