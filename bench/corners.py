"""Corners of the default space: does a value at the edge of a default range train at all?

    .venv/bin/python bench/corners.py                                   # SST-2, 2,000 training sentences, 3 epochs
    .venv/bin/python bench/corners.py --train-sentences 6920 --max-epochs 6 --seeds 3

Each corner is the published TextCNN baseline (what `baseline:` omitted gives a text-classification
study with the space omitted: Adam 1e-3, batch 64, cross-entropy, constant learning rate, dropout
0.5) with one family changed, trained with `run_trial` in this process (no Ray, no search) on SST-2
and scored on dev after every epoch. Printed: one line per corner, its best and last dev accuracy
(mean over seeds) and the gap to the baseline in points, and a RESULT line. `bench/DEFAULTS.md`
says which default ranges these figures moved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_DATA_ROOT, SST2_FILES, require_sst2, result_line, sst2_subset  # noqa: E402

# name -> the flat values changed from the baseline (a choice of component drops the old one's values).
CORNERS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "sgd_lr1e-3_plain": {"optimizer/name": "sgd", "optimizer/sgd/lr": 1e-3, "optimizer/sgd/momentum": 0.0, "optimizer/sgd/nesterov": False},
    "sgd_lr1e-2_momentum0.9": {"optimizer/name": "sgd", "optimizer/sgd/lr": 1e-2, "optimizer/sgd/momentum": 0.9, "optimizer/sgd/nesterov": False},
    "sgd_lr0.1_momentum0.9": {"optimizer/name": "sgd", "optimizer/sgd/lr": 0.1, "optimizer/sgd/momentum": 0.9, "optimizer/sgd/nesterov": False},
    "adagrad_lr1e-3": {"optimizer/name": "adagrad", "optimizer/adagrad/lr": 1e-3},
    "adagrad_lr3e-2": {"optimizer/name": "adagrad", "optimizer/adagrad/lr": 3e-2},
    "adam_lr1e-4": {"optimizer/adam/lr": 1e-4},
    "rmsprop_lr1e-2_momentum0.9": {"optimizer/name": "rmsprop", "optimizer/rmsprop/lr": 1e-2, "optimizer/rmsprop/alpha": 0.99, "optimizer/rmsprop/momentum": 0.9},
    "ghm_bins30_momentum0": {"loss/name": "ghm", "loss/ghm/bins": 30, "loss/ghm/momentum": 0.0},
    "ghm_bins10_momentum0.75": {"loss/name": "ghm", "loss/ghm/bins": 10, "loss/ghm/momentum": 0.75},
    "label_smoothing_0.3": {"loss/name": "label_smoothing", "loss/label_smoothing/epsilon": 0.3},
    "focal_gamma5": {"loss/name": "focal", "loss/focal/gamma": 5.0},
    "step_gamma0.1_every_epoch": {"schedule/name": "step", "schedule/step/step_epochs": 1, "schedule/step/gamma": 0.1},
    "weight_decay_1e-2": {"regularizers/weight_decay/enabled": True, "regularizers/weight_decay/decay": 1e-2},
}


def baseline_config() -> dict[str, Any]:
    """The published TextCNN as a study with its space omitted runs it (trial 0)."""
    from search.start import read_baseline
    from search.tasks import get_task
    from spaces import build_space

    task = get_task("text_classification")
    # The default space fits the published values as they are (Adam 1e-3, batch 64, embedding 300).
    space = build_space({}, task.registries, offers=task.offers, task=task.name)
    return read_baseline("textcnn", task, space, "corners").config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corners", nargs="*", default=list(CORNERS), help=f"default: all ({', '.join(CORNERS)})")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--train-sentences", type=int, default=2000)
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    unknown = [name for name in args.corners if name not in CORNERS]
    if unknown:
        parser.error(f"unknown corner(s) {', '.join(unknown)}; accepted: {', '.join(CORNERS)}")
    require_sst2(args.data_root)

    from search.config import parse_study
    from spaces import Strategy, with_overrides
    from trainables import TrialSettings, run_trial

    base = baseline_config()
    with tempfile.TemporaryDirectory(prefix="corners-") as folder:
        root = sst2_subset(args.data_root, Path(folder), args.train_sentences)
        study = parse_study({
            "task": "text_classification", "metric": "accuracy", "budget": {"trials": 1, "max_epochs": args.max_epochs},
            "data": {"name": "sst2", "local": {"format": "label_text", "files": dict(SST2_FILES)}, "max_length": 50},
            "baseline": "none",
        }, "corners", "corners")
        task = study.get_task()
        data = task.load_data(study.data, root, 0)
        figures: dict[str, Any] = {}
        results: dict[str, tuple[float, float]] = {}
        for name in ["baseline", *(n for n in args.corners if n != "baseline")]:
            config = with_overrides(base, CORNERS[name])
            best, last = [], []
            for seed in range(args.seeds):
                curve: list[float] = []
                settings = TrialSettings(metric="accuracy", mode="max", max_epochs=args.max_epochs, seed=seed, threads=1, checkpoint=False)
                run_trial(task, config, data, settings, lambda metrics, _dir: curve.append(float(metrics["accuracy"])))
                best.append(max(curve))
                last.append(curve[-1])
            results[name] = (statistics.mean(best), statistics.mean(last))
            gap = 100 * (results[name][1] - results["baseline"][1])
            print(f"{name:28s} best dev {results[name][0]:.4f}  last {results[name][1]:.4f}  vs baseline {gap:+6.1f} points  "
                  f"({Strategy.from_config(config).summary()})", flush=True)
            figures[f"{name}_gap_points"] = gap
        print(result_line({"train_sentences": args.train_sentences, "max_epochs": args.max_epochs, "seeds": args.seeds, **figures}))


if __name__ == "__main__":
    main()
