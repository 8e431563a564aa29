"""Paired comparison of the opt-in training families: one base strategy trained with and without
each family, on the same split and the same seeds, scored on dev and test.

    .venv/bin/python bench/families.py                     # SST-2, TextCNN, 3 seeds x 5 epochs
    .venv/bin/python bench/families.py --seeds 1 --epochs 2 --train-sentences 1000   # smoke run

Every run trains in this process with the trial runner (no Ray, no search): what differs between
two runs of a pair is the family alone. Printed per family: the mean test and dev gain over the
base in points, and the spread (standard deviation of the per-seed gains); then a RESULT line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_DATA_ROOT, SST2_FILES, require_sst2, result_line, sst2_subset  # noqa: E402

BASE = {  # the research's TextCNN (128 filters, dropout 0.5) with Adam 1e-3, batch 64, cross-entropy, constant LR
    "encoder": {"name": "textcnn", "textcnn": {"filters": 128, "layers": 1}},
    "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": False}},
    "loss": {"name": "cross_entropy"},
    "regularizers": {"dropout": {"enabled": True, "p": 0.5}},
    "optimizer": {"name": "adam", "adam": {"lr": 1e-3}},
    "schedule": {"name": "constant"},
    "train": {"batch_size": 64},
    "model": {"embedding_dim": 128},
}
FAMILIES = {
    "fgm": {"adversarial": {"name": "fgm", "fgm": {"epsilon": 1.0}}},
    "pgd": {"adversarial": {"name": "pgd", "pgd": {"epsilon": 1.0, "step_size": 0.4, "steps": 2}}},
    "ema": {"averaging": {"name": "ema", "ema": {"decay": 0.999}}},
    "swa": {"averaging": {"name": "swa", "swa": {"start_fraction": 0.6, "lr": 5e-4}}},
    "rdrop": {"consistency": {"rdrop": {"enabled": True, "weight": 1.0}}},
    "supcon": {"consistency": {"supcon": {"enabled": True, "weight": 0.1, "temperature": 0.3}}},
    "eda": {"augmentation": {"eda": {"enabled": True, "probability": 0.2, "rate": 0.1}}},
    "mixup": {"augmentation": {"mixup": {"enabled": True, "probability": 0.5, "alpha": 0.2}}},
    "xavier_uniform": {"initialization": {"name": "xavier_uniform"}},
    "kaiming_normal": {"initialization": {"name": "kaiming_normal"}},
}


def train_and_score(config: dict[str, Any], data: Any, epochs: int, seed: int) -> tuple[float, float]:
    """(dev accuracy after the last epoch, test accuracy of the saved model)."""
    from trainables import TrialSettings, run_trial
    from trainables.text_classification import TASK

    settings = TrialSettings(metric="accuracy", mode="max", max_epochs=epochs, seed=seed, threads=2)
    with tempfile.TemporaryDirectory() as folder:
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            last.update(metrics)
            if checkpoint_dir:
                Path(folder, "state.pt").write_bytes(Path(checkpoint_dir, "state.pt").read_bytes())

        run_trial(TASK, config, data, settings, report)
        test = TASK.evaluate_checkpoint(config, data, settings, folder, "test")
    return last["accuracy"], test["accuracy"]


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-sentences", type=int, default=None, help="first N SST-2 training sentences (default all 6,920)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, among {', '.join(FAMILIES)}")
    args = parser.parse_args()
    require_sst2(args.data_root)
    families = [name for name in args.families.split(",") if name]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"--families: unknown {unknown}; accepted: {', '.join(FAMILIES)}")

    from search.config import parse_data_section
    from trainables.text_classification import TASK

    with tempfile.TemporaryDirectory() as folder:
        root = sst2_subset(args.data_root, Path(folder), args.train_sentences)
        section = {"name": "sst2", "local": {"format": "label_text", "files": SST2_FILES}}
        spec = parse_data_section("text_classification", section, "bench/families.py")
        data = TASK.load_data(spec, str(root), 0)
    print(f"SST-2: {len(data.train)} train, {len(data.validation)} dev, {len(data.test)} test; {args.epochs} epochs, seeds 0-{args.seeds - 1}", flush=True)

    started = time.perf_counter()
    scores: dict[str, list[tuple[float, float]]] = {}
    for name in ["base", *families]:
        config = {**BASE, **FAMILIES.get(name, {})}
        scores[name] = [train_and_score(config, data, args.epochs, seed) for seed in range(args.seeds)]
        dev, test = zip(*scores[name])
        print(f"  {name:15s} dev {statistics.mean(dev):.4f}  test {statistics.mean(test):.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"\n{'family':15s} {'test gain':>10s} {'spread':>7s} {'dev gain':>9s} {'spread':>7s}  (points, paired by seed)")
    figures: dict[str, Any] = {"seeds": args.seeds, "epochs": args.epochs, "base_test": statistics.mean(t for _, t in scores["base"])}
    for name in families:
        test_gains = [100 * (t - b) for (_, t), (_, b) in zip(scores[name], scores["base"])]
        dev_gains = [100 * (d - b) for (d, _), (b, _) in zip(scores[name], scores["base"])]
        print(f"{name:15s} {statistics.mean(test_gains):+10.2f} {_spread(test_gains):7.2f} {statistics.mean(dev_gains):+9.2f} {_spread(dev_gains):7.2f}")
        figures[f"{name}_test_gain"] = statistics.mean(test_gains)
    print(result_line(figures))


if __name__ == "__main__":
    main()
