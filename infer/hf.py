"""Transformer model folders through Hugging Face's auto classes.

``import infer.hf`` registers the ``topictone`` model type (no ``trust_remote_code``):
``AutoConfig.from_pretrained(<folder>)`` gives its ``TopicToneConfig`` and
``AutoModel.from_pretrained(<folder>)`` its ``TopicTonePreTrainedModel`` (encoder and both
heads, trained weights). ``import infer`` alone does not: it stays free of torch.
"""

from infer.predictors.hf_config import TopicToneConfig
from infer.predictors.network import TopicTonePreTrainedModel

__all__ = ["TopicToneConfig", "TopicTonePreTrainedModel"]
