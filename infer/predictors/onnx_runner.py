"""The transformer's per-window logits from an ONNX graph, on ONNX Runtime (no torch).

A graph is untrusted input like every file of a model folder: its checksum is checked
with the folder's, and it must hold all its weights itself — a graph may name external
data files anywhere on disk, so one that does is refused before ONNX Runtime opens it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema

INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("topic_logits", "tone_logits")


def check_graph(path: Path) -> None:
    """Refuse a graph that reads weights from outside itself (external data)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # a malformed protobuf: one line
        raise TopictoneError(f"{path}: unreadable ONNX graph ({type(err).__name__})") from None
    if any(uses_external_data(t) for t in _get_all_tensors(graph)):
        raise TopictoneError(f"{path}: refers to external data files; a graph must be one file")


class OnnxRunner:
    """One ONNX Runtime session on the CPU; inputs and outputs checked against the schema."""

    runtime = "onnx"

    def __init__(
        self, path: Path, schema: LabelSchema, precision: str, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        check_graph(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TopictoneError(f"{path}: ONNX Runtime cannot load it ({first})") from None
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        widths = {"topic_logits": len(schema.topics), "tone_logits": len(schema.tones)}
        if (
            inputs != INPUTS
            or set(outputs) != set(OUTPUTS)
            or any(outputs[name][-1] != width for name, width in widths.items())
        ):
            raise TopictoneError(
                f"{path}: not a topictone graph (inputs {list(inputs)}, outputs {outputs})"
            )
        self.path, self.precision = path, precision

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        topic, tone = self.session.run(
            list(OUTPUTS), {"input_ids": input_ids, "attention_mask": attention_mask}
        )
        return topic, tone
