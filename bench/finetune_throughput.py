"""Fine-tuning throughput and memory: one engine trial against `transformers.Trainer`, same work.

The same model (MiniLM-L6, `minilm`), the same data (the first N sentences of the SST-2 training
set), batch size, maximum length (sub-words), epochs, threads and optimizer settings (the plain
Hugging Face fine-tune: AdamW, lr 5e-5, linear decay, no warmup, clipping at 1.0):

- engine: one trial through the engine's runner (`trainables.text_classification.TASK`, what Ray
  runs), data tokenized once in the driver, batches padded per batch and grouped by length;
  examples per second from the `train_seconds` it reports (training only, not the dev pass);
- trainer: `transformers.Trainer` with its usual `DataCollatorWithPadding` (padding per batch,
  random batches), no evaluation and no saving; its own `train_samples_per_second`.

Each side runs in a fresh process (this script again, `--side`), one after the other, so its
peak memory is its own: the process's peak RSS (`ru_maxrss`), and on a GPU the peak CUDA memory.
Background load on a shared machine hits both sides, unevenly: `--rounds` alternates them and
reports medians, and each side also reports its examples per CPU-second of training (the
process's CPU time, all threads), which such load does not skew.

    python bench/finetune_throughput.py [--examples 6920] [--epochs 1] [--batch-size 32] [--max-length 128]
                                        [--threads 2] [--rounds 1] [--data-root DIR] [--model minilm]

The last line is `RESULT engine_eps=... trainer_eps=... speedup=... ...` for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/finetune_throughput.py` without installing the project

from bench._common import DEFAULT_DATA_ROOT, GIB, SST2_FILES, quiet_ray_environment, require_sst2, result_line  # noqa: E402

LR, SEED = 5e-5, 0


def hf_default_config(batch_size: int, model: str = "minilm") -> dict[str, Any]:
    """The plain Hugging Face fine-tune as the engine's nested config (the model's own head)."""
    return {
        "encoder": {"name": "transformer", "transformer": {"model": model}},
        "finetune": {"name": "full", "full": {"head_lr_multiplier": 1.0, "layer_decay": 1.0, "freeze_embeddings": False, "freeze_layers": 0, "accumulation": 1}},
        "pooling": {"name": "first"},
        "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": False}},
        "loss": {"name": "cross_entropy"},
        "regularizers": {"weight_decay": {"enabled": False}, "grad_clip": {"enabled": True, "max_norm": 1.0}},
        "optimizer": {"name": "adamw", "adamw": {"lr": LR}},
        "schedule": {"name": "linear", "linear": {"warmup_fraction": 0.0}},
        "train": {"batch_size": batch_size},
        "model": {"embedding_dim": 128},
    }


def data_spec(args: argparse.Namespace) -> Any:
    from trainables.data import LocalSource, TextDataSpec
    from trainables.data.subwords import with_pretrained

    spec = TextDataSpec(name="sst2", local=LocalSource("label_text", SST2_FILES), max_examples={"train": args.examples},
                        subword_max_length=args.max_length)
    return with_pretrained(spec, [args.model])


def peak_memory() -> dict[str, float]:
    """This process's peak resident memory, and the peak CUDA memory where a GPU ran."""
    import torch

    figures = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}
    if torch.cuda.is_available():
        figures["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / GIB
    return figures


def run_engine(args: argparse.Namespace) -> dict[str, float]:
    """One trial through the runner: training examples per second over all epochs."""
    from trainables.runner import TrialSettings
    from trainables.text_classification import TASK

    data = TASK.load_data(data_spec(args), str(args.data_root), SEED)
    epochs: list[dict[str, Any]] = []
    cpu_seconds: list[float] = []
    batches_of = TASK.train_batches

    def timed_batches(*batch_args: Any) -> Iterator[Any]:
        # The runner trains between the batches it draws: the CPU time from the first to the
        # last covers the epoch's training, as its train_seconds do (not the dev pass).
        started = time.process_time()
        yield from batches_of(*batch_args)
        cpu_seconds.append(time.process_time() - started)

    TASK.train_batches = timed_batches  # this process runs nothing else
    settings = TrialSettings(metric="accuracy", mode="max", max_epochs=args.epochs, seed=SEED, threads=args.threads, checkpoint=False)
    TASK.trainable(hf_default_config(args.batch_size, args.model), data, settings, lambda metrics, _: epochs.append(metrics))
    examples = len(data.train) * args.epochs
    seconds = sum(epoch["train_seconds"] for epoch in epochs)
    return {"examples_per_second": examples / seconds, "train_seconds": seconds, "cpu_seconds": sum(cpu_seconds),
            "examples_per_cpu_second": examples / sum(cpu_seconds), **peak_memory()}


def run_trainer(args: argparse.Namespace) -> dict[str, float]:
    """`transformers.Trainer` on the same sentences with its usual collator."""
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from trainables.data.subwords import quiet_transformers, resolve_model
    from trainables.data.text import load_splits

    torch.set_num_threads(args.threads)
    quiet_transformers()
    splits, _ = load_splits(data_spec(args), str(args.data_root), SEED)
    labels = sorted(set(splits["train"]["label"]), key=int)
    location = resolve_model(args.model, args.data_root)
    tokenizer = AutoTokenizer.from_pretrained(location)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=args.max_length)
        encoded["labels"] = [labels.index(label) for label in batch["label"]]
        return encoded

    train = datasets.Dataset.from_dict({"text": splits["train"]["text"], "label": splits["train"]["label"]})
    train = train.map(tokenize, batched=True, remove_columns=["text", "label"])
    torch.manual_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=len(labels))
    with tempfile.TemporaryDirectory(prefix="trainer-") as out:
        arguments = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs, learning_rate=LR,
            lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, seed=SEED,
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
        started = time.process_time()
        metrics = trainer.train().metrics
        cpu_seconds = time.process_time() - started
    examples = len(train) * args.epochs
    return {"examples_per_second": float(metrics["train_samples_per_second"]), "train_seconds": float(metrics["train_runtime"]),
            "cpu_seconds": cpu_seconds, "examples_per_cpu_second": examples / cpu_seconds, **peak_memory()}


def run_side(side: str, args: argparse.Namespace) -> dict[str, Any]:
    """This script in a fresh process for one side; its figures (JSON on its last line)."""
    command = [sys.executable, __file__, "--side", side, *(f"--{key.replace('_', '-')}={value}" for key, value in
               (("examples", args.examples), ("epochs", args.epochs), ("batch_size", args.batch_size),
                ("max_length", args.max_length), ("threads", args.threads), ("data_root", args.data_root), ("model", args.model)))]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"the {side} side failed (exit {done.returncode})")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_seconds"] = time.perf_counter() - started
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=6920, help="first N SST-2 training sentences (6920: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128, help="sub-words per sentence, special tokens included")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the sides this many times; medians are reported")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--model", default="minilm", help="minilm, a model folder (absolute or under the data root) or a hub name")
    parser.add_argument("--side", choices=["engine", "trainer"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_ray_environment()
    if args.side:
        figures = run_engine(args) if args.side == "engine" else run_trainer(args)
        print(json.dumps(figures))
        return 0

    require_sst2(args.data_root)
    print(f"{args.model} on the first {args.examples} SST-2 training sentences: batch {args.batch_size}, at most {args.max_length} "
          f"sub-words, {args.epochs} epoch(s), {args.threads} threads, {args.rounds} round(s)")
    runs: dict[str, list[dict[str, Any]]] = {"engine": [], "trainer": []}
    for round_ in range(1, args.rounds + 1):
        for side in runs:
            figures = run_side(side, args)
            runs[side].append(figures)
            memory = f"peak RSS {figures['peak_rss_gib']:.2f} GiB" + (f", CUDA {figures['peak_cuda_gib']:.2f} GiB" if "peak_cuda_gib" in figures else "")
            print(f"  round {round_} {side:7}: {figures['examples_per_second']:7.1f} examples/s ({figures['train_seconds']:.1f} s training), "
                  f"{figures['examples_per_cpu_second']:.2f} examples per CPU-second, {memory}")
    median = {side: {key: statistics.median(run[key] for run in done) for key in done[0] if isinstance(done[0][key], float)} for side, done in runs.items()}
    engine, trainer = median["engine"], median["trainer"]
    memory_key = "peak_cuda_gib" if "peak_cuda_gib" in engine else "peak_rss_gib"
    speedup = engine["examples_per_second"] / trainer["examples_per_second"]
    cpu_speedup = engine["examples_per_cpu_second"] / trainer["examples_per_cpu_second"]
    memory_ratio = engine[memory_key] / trainer[memory_key]
    print(f"engine / Trainer: {speedup:.2f}x the examples per second ({cpu_speedup:.2f}x per CPU-second, which background load "
          f"on a shared machine does not skew), {memory_ratio:.2f}x the peak memory ({memory_key})")
    print(result_line({
        "engine_eps": engine["examples_per_second"], "trainer_eps": trainer["examples_per_second"], "speedup": speedup,
        "cpu_speedup": cpu_speedup,
        "engine_peak_gib": engine[memory_key], "trainer_peak_gib": trainer[memory_key], "memory_ratio": memory_ratio,
        "memory": memory_key, "examples": args.examples, "epochs": args.epochs, "batch": args.batch_size,
        "max_length": args.max_length, "threads": args.threads, "rounds": args.rounds, "model": args.model,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
