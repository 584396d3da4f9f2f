"""Single-label tone metrics as an `evaluate` module, loaded by local path (no hub)."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

_DESCRIPTION = """Accuracy, macro F1 and per-class precision, recall and F1 for a
single-label classification given as class indices."""

_INPUTS = """
Args:
    predictions: list of class indices.
    references: list of class indices.
    labels: class names in index order (all classes are scored, present or not).
Returns:
    dict with `accuracy`, `macro_f1` and `<class>_precision`, `<class>_recall`, `<class>_f1`.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class ToneF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, labels):
        pred, ref = np.asarray(predictions), np.asarray(references)
        precision, recall, f1, _ = precision_recall_fscore_support(
            ref, pred, labels=list(range(len(labels))), average=None, zero_division=0
        )
        result = {"accuracy": float(accuracy_score(ref, pred)), "macro_f1": float(np.mean(f1))}
        for i, name in enumerate(labels):
            result[f"{name}_precision"] = float(precision[i])
            result[f"{name}_recall"] = float(recall[i])
            result[f"{name}_f1"] = float(f1[i])
        return result
