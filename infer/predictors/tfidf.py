"""TF-IDF features with linear models: the fast, inspectable baseline."""

from __future__ import annotations

import importlib
import json
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from topictone.infer.artifact import MANIFEST, Manifest, check_stored_schema
from topictone.infer.decision import Calibration
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.base import Predictor, Scores, checked_sizes
from topictone.infer.predictors.folded import FoldedScorer, folded_scorer
from topictone.infer.predictors.ngrams import fast_transform
from topictone.infer.schema import LabelSchema, Prediction
from topictone.infer.text import lead

WEIGHTS = "model.skops"
VOCABULARY = "vocabulary.json"
# Exactly the types and skops node kinds that the TF-IDF fitter saves (calibration lives
# in the manifest),
# as listed by a fresh save (tests/test_artifact_safety.py checks both directions). Any
# other type in a file, even one skops itself would trust, is refused before loading.
TRUSTED_TYPES = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.str",
        "builtins.tuple",
        "numpy.float64",
        "numpy.ndarray",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.multiclass.OneVsRestClassifier",
        "sklearn.pipeline.FeatureUnion",
        "sklearn.preprocessing._label.LabelBinarizer",
    }
)
TRUSTED_NODES = frozenset(
    {"DictNode", "JsonNode", "ListNode", "NdArrayNode", "ObjectNode", "TupleNode", "TypeNode"}
)
OBJECTS = ("vectorizer", "topics", "tone")
MAX_SCHEMA_BYTES = 64 << 20  # the object tree of a skops file (weights are separate arrays)
MAX_VOCABULARY_BYTES = 256 << 20  # the gold preset's vocabularies take 9 MiB
# A skops file is a zip archive: what its members inflate to is bounded before any is
# read. skops stores members uncompressed (ratio 1); a deflated one may shrink a few
# times, never a hundred (1.6 MB of zeros inflated to 2.3 GB of "weights").
MAX_UNPACKED_BYTES = 1 << 30  # all members together (the folder cap of a TF-IDF model)
MAX_RATIO = 20  # inflated / stored, for members above SMALL_MEMBER
SMALL_MEMBER = 1 << 20
MAX_DIRECTORY_BYTES = 4 << 20  # the zip's central directory: ours holds a few dozen entries
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
EOCD = struct.Struct("<4s4H2LH")  # zip's end-of-central-directory record


class TfidfPredictor(Predictor):
    """Holds a fitted vectoriser, a one-vs-rest topic model and a tone model.

    With ``lead_chars``, a second vectoriser (its own vocabulary and IDF) reads each
    text's first ``lead_chars`` characters and its columns follow the first's: a long
    article's subject, stated in its title and opening, is not diluted by the rest.
    """

    kind: ClassVar[str] = "tfidf"
    requirements: ClassVar[tuple[str, ...]] = ("scikit-learn", "skops", "numpy", "scipy")

    def __init__(
        self,
        schema: LabelSchema,
        vectorizer: Any,
        topic_model: Any,
        tone_model: Any,
        thresholds: dict[str, float] | None = None,
        calibration: Calibration | dict[str, Any] | None = None,
        lead_vectorizer: Any = None,
        lead_chars: int = 0,
    ) -> None:
        super().__init__(schema, thresholds, calibration)
        self.vectorizer = vectorizer
        self.topic_model = topic_model
        self.tone_model = tone_model
        self.lead_vectorizer = lead_vectorizer
        self.lead_chars = lead_chars if lead_vectorizer is not None else 0
        self._feature_names: np.ndarray | None = None
        self._transform: Any = None
        self._lead_transform: Any = None
        self._scorer: FoldedScorer | Literal[False] | None = None

    def features(self, texts: list[str]) -> Any:
        """The vectorisers' matrix for ``texts``, by the exact vectorised path where there
        is one (:mod:`topictone.infer.predictors.ngrams`)."""
        if self._transform is None:
            self._transform = fast_transform(self.vectorizer)
        matrix = self._transform(texts)
        if not self.lead_chars:
            return matrix
        if self._lead_transform is None:
            self._lead_transform = fast_transform(self.lead_vectorizer)
        leads = self._lead_transform([lead(t, self.lead_chars) for t in texts])
        return sp.hstack([matrix, leads], format="csr")

    def settings(self) -> dict[str, Any]:
        return {"lead_chars": self.lead_chars} if self.lead_chars else {}

    def _forward(self, texts: list[str]) -> Scores:
        if self._scorer is None:  # built once: False where it would not be exact
            self._scorer = (
                folded_scorer(
                    self.vectorizer,
                    self.topic_model,
                    self.tone_model,
                    len(self.schema.topics),
                    self.lead_vectorizer,
                    self.lead_chars,
                )
                or False
            )
        if self._scorer:
            topic_scores, tone = self._scorer(texts)
        else:
            features = self.features(texts)
            topic_scores = self.topic_model.predict_proba(features)
            tone = self.tone_model.predict_proba(features)
        tone_probs = np.zeros((len(texts), len(self.schema.tones)))
        tone_probs[:, self.tone_model.classes_] = tone
        return np.asarray(topic_scores, dtype=float), tone_probs

    def explain(self, text: str, prediction: Prediction, top_k: int = 5) -> dict:
        """Feature contributions (tf-idf value × coefficient) of the decided labels."""
        if self._feature_names is None:
            names = [self.vectorizer.get_feature_names_out()]
            if self.lead_chars:
                names.append("lead:" + self.lead_vectorizer.get_feature_names_out().astype(object))
            self._feature_names = np.concatenate(names)
        row = self.features([text]).tocsr()
        weights = {
            topic: _coefficients(self.topic_model.estimators_[self.schema.topics.index(topic)])[0]
            for topic in prediction.topics
        }
        tone_coef = _coefficients(self.tone_model)
        tone_index = list(self.tone_model.classes_).index(self.schema.tones.index(prediction.tone))
        weights[prediction.tone] = tone_coef[tone_index] if len(tone_coef) > 1 else tone_coef[0]
        out = {}
        for label, coef in weights.items():
            # Char n-grams with and without their boundary spaces read the same: summed.
            terms: dict[str, float] = {}
            for index, value in zip(row.indices, row.data * coef[row.indices], strict=True):
                term = _readable(self._feature_names[index])
                terms[term] = terms.get(term, 0.0) + float(value)
            ranked = sorted(terms.items(), key=lambda item: -item[1])[:top_k]
            out[label] = [(term, round(value, 4)) for term, value in ranked if value > 0]
        return out

    def save_weights(self, folder: Path) -> list[str]:
        # Vocabularies (hundreds of thousands of n-grams) go to JSON: skops stores a
        # dict item by item and takes seconds to load one; JSON takes a fraction.
        vectorizers = _vectorizers(
            self.vectorizer, self.lead_vectorizer if self.lead_chars else None
        )
        vocabularies = {name: vec.vocabulary_ for name, vec in vectorizers.items()}
        with (folder / VOCABULARY).open("w", encoding="utf-8") as handle:
            json.dump(
                {name: sorted(v, key=v.get) for name, v in vocabularies.items()},
                handle,
                ensure_ascii=False,
            )
        try:
            for vec in vectorizers.values():
                del vec.vocabulary_
                vec.__dict__.pop("stop_words_", None)  # pruned terms: not needed to predict
            objects = {
                "schema": self.schema.to_dict(),  # label order, checked against the manifest
                "vectorizer": self.vectorizer,
                "topics": self.topic_model,
                "tone": self.tone_model,
            }
            if self.lead_chars:
                objects["lead"] = self.lead_vectorizer
            skops_io().dump(objects, folder / WEIGHTS)
        finally:
            for name, vec in vectorizers.items():
                vec.vocabulary_ = vocabularies[name]
        return [WEIGHTS, VOCABULARY]

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> TfidfPredictor:
        path = folder / WEIGHTS
        types, nodes = skops_contents(path)
        refused = sorted(types - TRUSTED_TYPES) + sorted(f"node {n}" for n in nodes - TRUSTED_NODES)
        if refused:
            raise TopictoneError(
                f"{path}: refused, it holds types a topictone model never saves: "
                + ", ".join(refused[:5])
            )
        try:
            objects = skops_io().load(path, trusted=sorted(types))
        except Exception as err:  # a malformed file: one line, never a traceback
            raise TopictoneError(f"{path}: unreadable skops file ({type(err).__name__})") from None
        lead_chars = checked_sizes(
            folder / MANIFEST, {"lead_chars": 0, **manifest.settings}, ["lead_chars"]
        )["lead_chars"]
        expected = {*OBJECTS, "schema", *(["lead"] if lead_chars else [])}
        if not isinstance(objects, dict) or set(objects) != expected:
            raise TopictoneError(f"{path}: not a topictone TF-IDF model")
        check_stored_schema(path, objects["schema"], manifest.schema)
        vectorizers = _vectorizers(objects["vectorizer"], objects.get("lead"))
        columns = getattr(objects["tone"], "n_features_in_", None)
        for name, terms in read_vocabularies(folder / VOCABULARY, vectorizers, columns).items():
            vectorizers[name].vocabulary_ = {term: i for i, term in enumerate(terms)}
        predictor = cls(
            manifest.schema,
            objects["vectorizer"],
            objects["topics"],
            objects["tone"],
            thresholds=manifest.thresholds,
            calibration=manifest.calibration,
            lead_vectorizer=objects.get("lead"),
            lead_chars=lead_chars,
        )
        check_predicts(path, predictor)
        return predictor


# Latin, Devanagari and digits: both vectorisers' paths, word and character n-grams.
PROBE = "Army tests a new missile near the border; सेना ने नई मिसाइल का परीक्षण किया (2024)."


def check_predicts(path: Path, predictor: TfidfPredictor) -> None:
    """One prediction before the model is handed out. The skops types are checked, the
    objects' attributes are not: a crafted tree (an estimator without coefficients, NaN
    weights) fails here in one line, rather than on a user's text or silently."""
    try:
        topics, tones = (
            np.asarray(s, dtype=np.float64) for s in predictor.predict_scores_clean([PROBE])
        )
    except TopictoneError:
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise TopictoneError(
            f"{path}: the objects load but cannot predict ({type(err).__name__}: {first})"
        ) from None
    schema = predictor.schema
    if not (
        topics.shape == (1, len(schema.topics))
        and tones.shape == (1, len(schema.tones))
        and np.isfinite(topics).all()
        and np.isfinite(tones).all()
        and ((topics >= 0) & (topics <= 1)).all()
        and ((tones >= 0) & (tones <= 1)).all()
        and abs(tones.sum() - 1) < 1e-6
    ):
        raise TopictoneError(
            f"{path}: the objects give no valid scores (NaN, infinite, out of [0, 1] or misshapen)"
        )


# scikit-learn's array-API shim for torch: importing it imports torch (3 s here).
TORCH_SHIM = "sklearn.externals.array_api_compat.torch"


def skops_io() -> Any:
    """``skops.io``, imported without importing torch.

    At import, skops lists scikit-learn's estimators, and the package walk behind that
    imports every subpackage, the array-API shim for torch among them: where torch is
    installed, every TF-IDF load paid 3 s for it (half of ``import skops.io``). The shim
    holds no estimator and is skipped by the listing anyway; it is hidden only while
    skops imports, then importable as before (tests/test_tfidf_run.py checks both)."""
    if "skops.io" in sys.modules or TORCH_SHIM in sys.modules:
        return importlib.import_module("skops.io")
    sys.modules[TORCH_SHIM] = None  # type: ignore[assignment]  # import fails: walk skips it
    try:
        return importlib.import_module("skops.io")
    finally:
        if sys.modules.get(TORCH_SHIM, False) is None:
            del sys.modules[TORCH_SHIM]


def read_vocabularies(path: Path, vectorizers: dict[str, Any], columns: Any) -> dict[str, list]:
    """Each vectoriser's terms in column order, checked against the weights: a bounded
    file, one list of distinct strings per vectoriser, as many as its IDF has entries and
    ``columns`` in all (a term list out of step with the weights would score every text
    wrongly, silently)."""
    if path.stat().st_size > MAX_VOCABULARY_BYTES:
        raise TopictoneError(f"{path}: larger than {MAX_VOCABULARY_BYTES} bytes")
    try:
        with path.open(encoding="utf-8") as handle:
            terms = json.load(handle)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise TopictoneError(f"{path}: not JSON ({type(err).__name__})") from None
    if not isinstance(terms, dict) or set(terms) != set(vectorizers):
        raise TopictoneError(f"{path}: not the vocabularies of this model")
    for name, vec in vectorizers.items():
        listed = terms[name]
        try:  # a crafted vectoriser may have no IDF, or a malformed one
            idf = len(vec.idf_) if getattr(vec, "use_idf", False) is True else None
        except (AttributeError, TypeError, ValueError):
            raise TopictoneError(f"{path}: the model's {name!r} has no usable IDF") from None
        if (
            not isinstance(listed, list)
            or not all(isinstance(term, str) for term in listed)
            or len(set(listed)) != len(listed)
            or (idf is not None and len(listed) != idf)
        ):
            raise TopictoneError(f"{path}: {name!r} is not one distinct term per IDF entry")
    if type(columns) is not int or sum(len(listed) for listed in terms.values()) != columns:
        raise TopictoneError(f"{path}: the terms are not the {columns} columns of the weights")
    return terms


def skops_contents(path: Path) -> tuple[set[str], set[str]]:
    """Every type (module.name) and node kind named anywhere in a skops file's object tree."""
    check_directory(path)
    try:
        with zipfile.ZipFile(path) as archive:
            check_members(path, archive.infolist())
            tree = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, zlib.error) as err:
        raise TopictoneError(f"{path}: not a skops file ({type(err).__name__})") from None
    except RecursionError:
        raise TopictoneError(f"{path}: object tree nested too deeply") from None
    types: set[str] = set()
    nodes: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__module__" in node or "__class__" in node:
                types.add(f"{node.get('__module__')}.{node.get('__class__')}")
            if "__loader__" in node:
                nodes.add(str(node["__loader__"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return types, nodes


def check_directory(path: Path) -> None:
    """Bound the zip's central directory before ``zipfile`` reads it whole into memory:
    a plain end record (no zip64, which may claim any size) naming a small directory."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - EOCD.size - 0xFFFF))  # the record, then its comment
        tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < EOCD.size:
        raise TopictoneError(f"{path}: not a skops file (no zip directory)")
    *_, entries, directory, _offset, _comment = EOCD.unpack_from(tail, at)
    if (
        entries == 0xFFFF
        or directory == 0xFFFFFFFF
        or tail[max(0, at - 20) : at][:4] == b"PK\x06\x07"
    ):
        raise TopictoneError(f"{path}: a zip64 archive; topictone saves plain zip files")
    if directory > MAX_DIRECTORY_BYTES:
        raise TopictoneError(f"{path}: zip directory of {directory} bytes is too large")


def check_members(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """What the members declare they inflate to, bounded in all and against what each
    takes in the file; zipfile never returns more than the declared size."""
    total = 0
    for info in members:
        if info.flag_bits & 0x1:
            raise TopictoneError(f"{path}: member {info.filename!r:.60} is encrypted")
        if info.compress_type not in ZIP_METHODS:
            raise TopictoneError(
                f"{path}: member {info.filename!r:.60} uses an unknown compression"
            )
        if info.file_size > max(MAX_RATIO * info.compress_size, SMALL_MEMBER):
            raise TopictoneError(
                f"{path}: member {info.filename!r:.60} inflates {info.compress_size} bytes to "
                f"{info.file_size}; refused"
            )
        total += info.file_size
    if total > MAX_UNPACKED_BYTES:
        raise TopictoneError(f"{path}: members inflate to {total} bytes, over {MAX_UNPACKED_BYTES}")
    schema = next((i for i in members if i.filename == "schema.json"), None)
    if schema is not None and schema.file_size > MAX_SCHEMA_BYTES:
        raise TopictoneError(f"{path}: object tree of {schema.file_size} bytes is too large")


def _vectorizers(vectorizer: Any, lead_vectorizer: Any = None) -> dict[str, Any]:
    """The fitted text vectorisers by name: the parts of a FeatureUnion, or the one itself;
    then the lead vectoriser's, named ``lead:<name>``."""
    parts = (
        dict(vectorizer.transformer_list)
        if hasattr(vectorizer, "transformer_list")
        else {"vectorizer": vectorizer}
    )
    if lead_vectorizer is not None:
        parts |= {f"lead:{k}": v for k, v in _vectorizers(lead_vectorizer).items()}
    return parts


def _coefficients(model: Any) -> np.ndarray:
    """The linear weights of a linear classifier."""
    if hasattr(model, "coef_"):
        return np.asarray(model.coef_)
    raise TopictoneError(f"cannot explain a {type(model).__name__}: no linear coefficients")


def _readable(feature: str) -> str:
    """'word__missile test' → 'missile test'; 'char__ मिस' → '…मिस…'."""
    kind, _, term = feature.partition("__")
    return f"…{term.strip()}…" if kind.removeprefix("lead:").startswith("char") else term
