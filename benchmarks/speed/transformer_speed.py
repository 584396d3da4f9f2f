"""Transformer: fine-tuning time on the gold training set, and inference speed of the
predictor against a plain loop on the same texts, side by side in one run.

    python -m benchmarks.speed.transformer_speed [--model <model folder>] [--texts N]
        [overrides...]

Without --model it first fine-tunes with the default CPU config (`python -m topictone.train
model=transformer data=gold`, plus any Hydra overrides given) and reports its wall time
(target: at most 10 minutes on a 2-core CPU) and its gold dev metrics. Then, on the gold
dev texts, it times ``predictor.predict_scores`` (length-sorted batches, dynamic padding,
windows for long texts) against a plain loop (tokenise with padding to ``max_length`` in
input order, batches of 32, ``torch.no_grad``) with the same weights, and prints docs/s
of each and their ratio (target: at least 2).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.common import gold_rows, print_cpu, require_gold, timed, train_cli


def plain_loop(predictor, texts: list[str], batch_size: int = 32) -> None:
    import torch

    tokenizer, model = predictor.tokenizer, predictor.model
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = [
                predictor.prefix + t
                for t in predictor.preprocess(texts[start : start + batch_size])
            ]
            enc = tokenizer(
                batch,
                padding="max_length",
                truncation=True,
                max_length=predictor.max_length,
                return_tensors="pt",
            )
            model(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                doc_index=torch.arange(len(batch)),
            )


def fine_tune(run: Path, overrides: list[str]) -> Path:
    """Fine-tunes into ``run`` by the training command; prints its time and dev metrics."""
    command = ["model=transformer", "data=gold", f"hydra.run.dir={run}", "model.progress=false"]
    train_s = train_cli([*command, *overrides])
    dev = json.loads((run / "metrics.json").read_text())["dev"]
    print(f"fine-tuning on gold/train.jsonl (whole command): {train_s / 60:.1f} min (target <= 10)")
    print(
        f"gold dev: topics macro-F1 {dev['topics/macro_f1']:.4f}, "
        f"micro-F1 {dev['topics/micro_f1']:.4f}, tone macro-F1 {dev['tone/macro_f1']:.4f}, "
        f"tone accuracy {dev['tone/accuracy']:.4f} (0.5 thresholds)"
    )
    return run / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--texts", type=int, default=450, help="gold dev texts to time on")
    parser.add_argument(
        "--run-dir", type=Path, help="keep the fine-tuning run here (default: a temp dir)"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    require_gold("train.jsonl", "dev.jsonl", word="error")
    from topictone import infer

    print_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        run = (args.run_dir or Path(tmp) / "run").resolve()
        model = args.model or fine_tune(run, args.overrides)
        predictor = infer.load(model, batch_size=64)
        texts = [r["text"] for r in gold_rows("dev", limit=args.texts)]
        predictor.predict_scores(texts[:8])  # warm-up
        ours, _ = timed(predictor.predict_scores, texts)
        plain, _ = timed(plain_loop, predictor, texts)

    print(f"inference on {len(texts)} gold dev texts, max_length {predictor.max_length}:")
    print(f"  predictor:  {len(texts) / ours:7.1f} docs/s")
    print(f"  plain loop: {len(texts) / plain:7.1f} docs/s")
    print(f"  ratio predictor / plain loop: {plain / ours:.2f} (target >= 2)")


if __name__ == "__main__":
    main()
