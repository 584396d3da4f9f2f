"""Multi-label topic metrics as an `evaluate` module, loaded by local path (no hub)."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

_DESCRIPTION = """Per-label precision, recall and F1, micro and macro F1, and subset
accuracy for multi-label predictions given as multi-hot vectors."""

_INPUTS = """
Args:
    predictions: list of multi-hot lists (one 0/1 per label).
    references: list of multi-hot lists, same shape.
    labels: optional label names, in column order (used as keys).
Returns:
    dict with `<label>_precision`, `<label>_recall`, `<label>_f1`, `<label>_support`,
    `micro_f1`, `macro_f1`, `subset_accuracy`.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class MultilabelF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references, labels=None):
        pred, ref = np.asarray(predictions), np.asarray(references)
        names = list(labels) if labels is not None else [str(i) for i in range(ref.shape[1])]
        precision, recall, f1, support = precision_recall_fscore_support(
            ref, pred, average=None, zero_division=0
        )
        result = {}
        for i, name in enumerate(names):
            result[f"{name}_precision"] = float(precision[i])
            result[f"{name}_recall"] = float(recall[i])
            result[f"{name}_f1"] = float(f1[i])
            result[f"{name}_support"] = int(support[i])
        result["micro_f1"] = float(f1_score(ref, pred, average="micro", zero_division=0))
        result["macro_f1"] = float(f1_score(ref, pred, average="macro", zero_division=0))
        result["subset_accuracy"] = float(accuracy_score(ref, pred))
        return result
