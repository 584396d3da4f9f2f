"""Transformer model folders through Hugging Face's auto classes.

``import topictone.infer.predictors.hf_auto`` registers the ``topictone`` model type (no
``trust_remote_code``): ``AutoConfig.from_pretrained(<folder>)`` gives its ``TopicToneConfig`` and
``AutoModel.from_pretrained(<folder>)`` its ``TopicTonePreTrainedModel`` (encoder and both
heads, trained weights). ``import infer`` alone does not: it stays free of torch.
"""

from topictone.infer.predictors.hf_config import TopicToneConfig
from topictone.infer.predictors.network import TopicTonePreTrainedModel

__all__ = ["TopicToneConfig", "TopicTonePreTrainedModel"]
