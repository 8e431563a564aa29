"""Paired comparison of the opt-in training families: one base strategy trained with and without
each family, on the same split and the same seeds, scored on dev and test.

    .venv/bin/python bench/families.py                     # SST-2, TextCNN, 3 seeds x 5 epochs
    .venv/bin/python bench/families.py --task ner          # WNUT-17, the published BiLSTM-CRF
    .venv/bin/python bench/families.py --base best.yaml    # a search's best config (`search export`)
    .venv/bin/python bench/families.py --seeds 1 --epochs 2 --train-sentences 1000   # smoke run

With `--base` (a `search export --format yaml` file) the task, the data section and the config are
the file's: each family is compared as the base with it against the base without it (a family the
base already uses is set to the variant compared, or removed), so "does EMA help my best config?"
has an answer. Every run trains in this process with the trial runner (no Ray, no search): what
differs between two runs of a pair is the family alone. Printed per family: the mean test and dev
gain over its pair in points, and the spread (standard deviation of the per-seed gains); then a
RESULT line.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
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
# The published BiLSTM-CRF (trainables.ner's baseline) at the batch size studies/wnut17.yaml gives it.
NER_BASE = {
    "char_encoder": {"name": "lstm", "lstm": {"char_dim": 25, "hidden": 25}},
    "encoder": {"name": "bilstm", "bilstm": {"hidden": 256, "layers": 1}},
    "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": False}},
    "head": {"name": "crf"},
    "loss": {"name": "cross_entropy"},
    "regularizers": {"dropout": {"enabled": True, "p": 0.5}},
    "optimizer": {"name": "adam", "adam": {"lr": 1e-3}},
    "schedule": {"name": "constant"},
    "train": {"batch_size": 32},
    "model": {"embedding_dim": 100},
}
WNUT17_FILES = {"train": "wnut17/wnut17train.conll", "validation": "wnut17/emerging.dev.conll", "test": "wnut17/emerging.test.annotated"}
EVERY_TASK = ("text_classification", "ner")
CLASSIFICATION = ("text_classification",)
# family variant -> (the tasks it serves, its config entry)
FAMILIES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "fgm": (EVERY_TASK, {"adversarial": {"name": "fgm", "fgm": {"epsilon": 1.0}}}),
    "pgd": (EVERY_TASK, {"adversarial": {"name": "pgd", "pgd": {"epsilon": 1.0, "step_size": 0.4, "steps": 2}}}),
    "ema": (EVERY_TASK, {"averaging": {"name": "ema", "ema": {"decay": 0.999}}}),
    "swa": (EVERY_TASK, {"averaging": {"name": "swa", "swa": {"start_fraction": 0.6, "lr": 5e-4}}}),
    "rdrop": (CLASSIFICATION, {"consistency": {"rdrop": {"enabled": True, "weight": 1.0}}}),
    "supcon": (CLASSIFICATION, {"consistency": {"supcon": {"enabled": True, "weight": 0.1, "temperature": 0.3}}}),
    "eda": (CLASSIFICATION, {"augmentation": {"eda": {"enabled": True, "probability": 0.2, "rate": 0.1}}}),
    "mixup": (CLASSIFICATION, {"augmentation": {"mixup": {"enabled": True, "probability": 0.5, "alpha": 0.2}}}),
    "mention_replacement": (("ner",), {"augmentation": {"mention_replacement": {"enabled": True, "probability": 0.3, "rate": 0.5}}}),
    "token_replacement": (("ner",), {"augmentation": {"token_replacement": {"enabled": True, "probability": 0.3, "rate": 0.1}}}),
    "xavier_uniform": (EVERY_TASK, {"initialization": {"name": "xavier_uniform"}}),
    "kaiming_normal": (EVERY_TASK, {"initialization": {"name": "kaiming_normal"}}),
    "orthogonal": (("ner",), {"initialization": {"name": "orthogonal"}}),  # recurrent weights: the BiLSTM
}
METRICS = {"text_classification": "accuracy", "ner": "f1"}


def _is_choice(entry: Mapping[str, Any]) -> bool:
    return "name" in entry


def with_family(config: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    """`config` using the family `variant` names: a chosen component replaces the family's, a
    switched-on one joins the family's others."""
    result = copy.deepcopy(dict(config))
    for family, entry in variant.items():
        result[family] = copy.deepcopy(dict(entry)) if _is_choice(entry) else {**result.get(family, {}), **copy.deepcopy(dict(entry))}
    return result


def without_family(config: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    """`config` without what `variant` turns on: a chosen family left out (an opt-in family left
    out is off), a switched-on component switched off, the family's other components kept."""
    result = copy.deepcopy(dict(config))
    for family, entry in variant.items():
        if family not in result:
            continue
        if _is_choice(entry):
            del result[family]
        else:
            result[family] = {name: params for name, params in result[family].items() if name not in entry}
            if not any(params.get("enabled") for params in result[family].values()):
                del result[family]
    return result


def train_and_score(task_name: str, config: dict[str, Any], data: Any, epochs: int, seed: int) -> tuple[float, float]:
    """(dev metric after the last epoch, test metric of the saved model)."""
    from search.tasks import get_task
    from trainables import TrialSettings

    task, metric = get_task(task_name), METRICS[task_name]
    settings = TrialSettings(metric=metric, mode="max", max_epochs=epochs, seed=seed, threads=2)
    with tempfile.TemporaryDirectory() as folder:
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            last.update(metrics)
            if checkpoint_dir:
                Path(folder, "state.pt").write_bytes(Path(checkpoint_dir, "state.pt").read_bytes())

        task.trainable(config, data, settings, report)
        test = task.evaluate_checkpoint(config, data, settings, folder, "test")
    return last[metric], test[metric]


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def wnut17_subset(data_root: Path, folder: Path, train_sentences: int | None) -> Path:
    """A data root holding WNUT-17 with only the first `train_sentences` training sentences."""
    for split, relative in WNUT17_FILES.items():
        source, target = data_root / relative, folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        if split == "train" and train_sentences is not None:
            text = "\n\n".join(re.split(r"\n\s*\n", text.strip())[:train_sentences]) + "\n"  # blank lines may hold spaces
        target.write_text(text, encoding="utf-8")
    return folder


def _load(args: argparse.Namespace, task_name: str, data_section: Mapping[str, Any] | None, folder: Path) -> Any:
    from search.config import parse_data_section
    from search.tasks import get_task

    if data_section is not None:
        root = args.data_root
    elif task_name == "ner":
        missing = [path for path in WNUT17_FILES.values() if not (args.data_root / path).is_file()]
        if missing:
            sys.exit(f"error: WNUT-17 not found under {args.data_root} (missing {', '.join(missing)}); pass --data-root DIR")
        root = wnut17_subset(args.data_root, folder, args.train_sentences)
        data_section = {"name": "wnut17", "local": {"format": "conll", "scheme": "iob2", "files": WNUT17_FILES}, "scheme": "iob2"}
    else:
        require_sst2(args.data_root)
        root = sst2_subset(args.data_root, folder, args.train_sentences)
        data_section = {"name": "sst2", "local": {"format": "label_text", "files": SST2_FILES}}
    spec = parse_data_section(task_name, data_section, str(args.base or "bench/families.py"))
    return get_task(task_name).load_data(spec, str(root), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--task", choices=sorted(METRICS), default="text_classification", help="without --base: SST-2 (text_classification) or WNUT-17 (ner)")
    parser.add_argument("--base", type=Path, default=None, help="a `search export --format yaml` file: its task, data and config are the base")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-sentences", type=int, default=None, help="without --base: the first N training sentences (default all)")
    parser.add_argument("--families", default=None, help=f"comma-separated, among {', '.join(FAMILIES)} (default: every one the task can use)")
    args = parser.parse_args()

    base, data_section, task_name = (BASE if args.task == "text_classification" else NER_BASE), None, args.task
    if args.base is not None:
        import yaml

        document = yaml.safe_load(args.base.read_text())
        if not isinstance(document, Mapping) or not {"task", "data", "config"} <= set(document):
            parser.error(f"--base {args.base}: not a `search export --format yaml` file (it needs task, data and config)")
        task_name, data_section, base = document["task"], document["data"], document["config"]
        if task_name not in METRICS:
            parser.error(f"--base {args.base}: task {task_name!r}; this bench compares {', '.join(METRICS)}")
    serving = [name for name, (tasks, _) in FAMILIES.items() if task_name in tasks]
    families = [name for name in args.families.split(",") if name] if args.families else serving
    unknown = sorted(set(families) - set(serving))
    if unknown:
        parser.error(f"--families: {unknown} not for task {task_name}; accepted: {', '.join(serving)}")

    with tempfile.TemporaryDirectory() as folder:
        data = _load(args, task_name, data_section, Path(folder))
    test_size = len(data.test) if data.test is not None else 0
    print(f"{task_name}: {len(data.train)} train, {len(data.validation)} dev, {test_size} test; {args.epochs} epochs, seeds 0-{args.seeds - 1}", flush=True)

    started = time.perf_counter()
    runs: dict[str, list[tuple[float, float]]] = {}  # a config (as JSON) -> its (dev, test) per seed

    def scores(config: dict[str, Any], label: str) -> list[tuple[float, float]]:
        key = json.dumps(config, sort_keys=True)
        if key not in runs:
            runs[key] = [train_and_score(task_name, config, data, args.epochs, seed) for seed in range(args.seeds)]
            dev, test = zip(*runs[key])
            print(f"  {label:24s} dev {statistics.mean(dev):.4f}  test {statistics.mean(test):.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
        return runs[key]

    scores(base, "base")
    pairs = {}
    for name in families:
        variant = FAMILIES[name][1]
        pairs[name] = (scores(with_family(base, variant), f"with {name}"), scores(without_family(base, variant), f"without {name}"))

    print(f"\n{'family':20s} {'test gain':>10s} {'spread':>7s} {'dev gain':>9s} {'spread':>7s}  (points, paired by seed)")
    figures: dict[str, Any] = {"task": task_name, "seeds": args.seeds, "epochs": args.epochs, "base_test": statistics.mean(t for _, t in scores(base, "base"))}
    for name, (with_it, without_it) in pairs.items():
        test_gains = [100 * (t - b) for (_, t), (_, b) in zip(with_it, without_it)]
        dev_gains = [100 * (d - b) for (d, _), (b, _) in zip(with_it, without_it)]
        print(f"{name:20s} {statistics.mean(test_gains):+10.2f} {_spread(test_gains):7.2f} {statistics.mean(dev_gains):+9.2f} {_spread(dev_gains):7.2f}")
        figures[f"{name}_test_gain"] = statistics.mean(test_gains)
    print(result_line(figures))


if __name__ == "__main__":
    main()
