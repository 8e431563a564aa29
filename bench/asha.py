"""What ASHA saves and what it costs: the same trials with ASHA and without early stopping, on SST-2.

Both searches go through `search.engine.run_search` on the full SST-2 training set
(`../shared/data/sentence/sst2/`), in this process, one after the other, and train the very same
strategies: the trial configurations are drawn once (seeded) from the space and queued in both
studies (`optuna.Study.enqueue_trial`), so the sampler's adaptivity cannot make the two sides differ.
Each trial is seeded identically on both sides, so a trial ASHA keeps trains exactly as it does
without early stopping.

- ASHA: the engine's scheduler with grace period 1 and reduction factor 3 (the study default);
- no early stopping: the same scheduler with grace period = max epochs (no rung before the end).

Printed: epochs trained as a fraction of the full budget (trials x max epochs), the best dev
accuracy of each side (completed trials, last epoch), and the gap in points. Targets: at most 40%
of the epochs, best score within 0.5 point.

    python bench/asha.py [--trials 16] [--max-epochs 6] [--concurrency 2] [--reduction-factor 3]

The last line is `RESULT ...` for scripts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/asha.py` without installing the project

from bench._common import DEFAULT_DATA_ROOT, quiet_ray_environment, require_sst2, result_line, sst2_study  # noqa: E402

# TextCNN strategies that differ in what matters to ASHA: some learn fast, some slowly, some not
# at all (SGD with a small learning rate), as in a real search. No self-attention (several times
# slower per epoch than the rest).
SPACE: dict[str, Any] = {
    "encoder": {"choices": ["textcnn"], "params": {"textcnn": {"filters": [64, 128], "layers": 1}}},
    "addons": ["layernorm"],
    "loss": ["cross_entropy", "focal", "label_smoothing"],
    "regularizers": {"search": ["weight_decay", "embedding_dropout", "grad_clip"], "always": ["dropout"]},
    "optimizer": {"choices": ["sgd", "adam", "adamw", "rmsprop"], "params": {
        "sgd": {"lr": [0.001, 0.1], "momentum": [0.8, 0.95]}, "adam": {"lr": [0.0002, 0.005]},
        "adamw": {"lr": [0.0002, 0.005]}, "rmsprop": {"lr": [0.0001, 0.002]}}},
    "schedule": ["constant", "linear", "cosine"],
    "batch_size": [32, 64],
    "embedding_dim": 128,
}


def draw_trials(config: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` strategies drawn at random (seeded) from the space: the flat params both sides queue."""
    import optuna

    from spaces import suggest

    study = optuna.create_study(direction=config.direction, sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(count):
        trial = study.ask()
        suggest(trial, config.space)
        drawn.append(dict(trial.params))
        study.tell(trial, 0.0)
    return drawn


def run_side(config: Any, trials: list[dict[str, Any]], data_root: Path, folder: Path, label: str) -> dict[str, Any]:
    import optuna

    from search.engine import open_storage, prepare_study, run_search

    study = prepare_study(open_storage(config.storage), config)
    for params in trials:
        study.enqueue_trial(params)
    started = time.perf_counter()
    run_search(config, data_root=data_root, storage_path=folder / "ray_results", ray_temp_dir=folder / "ray",
               log=lambda line: print(f"  {label} | {line}", flush=True) if "progress:" in line or "test:" in line else None)
    seconds = time.perf_counter() - started
    study = optuna.load_study(study_name=config.name, storage=config.storage)
    finished = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished()), key=lambda t: t.number)
    return {
        "seconds": seconds,
        "epochs": sum(int(t.user_attrs.get("epochs_trained", 0)) for t in finished),
        "best": study.best_value,
        "best_trial": study.best_trial.number,
        "curves": [dict(t.intermediate_values) for t in finished],
        "states": [t.state.name for t in finished],
        "failed": sum(t.state.name == "FAIL" for t in finished),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--train-sentences", type=int, default=None, help="first N SST-2 training sentences (default: all 6,920)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/")
    args = parser.parse_args(argv)
    if min(args.trials, args.max_epochs, args.concurrency) < 1 or args.reduction_factor < 2:
        parser.error("--trials, --max-epochs and --concurrency must be positive, --reduction-factor at least 2")
    quiet_ray_environment()
    require_sst2(args.data_root)

    import datasets

    from bench._common import sst2_subset
    from search.config import parse_study

    datasets.disable_progress_bars()
    budget = args.trials * args.max_epochs
    print(f"asha: {args.trials} trials x {args.max_epochs} epochs ({budget} epochs without early stopping), "
          f"{args.concurrency} at a time, ASHA grace 1 / reduction {args.reduction_factor}, SST-2", flush=True)
    sides: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-asha-") as scratch:
        root = Path(scratch)
        data_root = sst2_subset(args.data_root, root / "data", args.train_sentences) if args.train_sentences else args.data_root
        trials: list[dict[str, Any]] = []
        for side, grace in (("asha", 1), ("full", args.max_epochs)):
            raw = sst2_study(f"asha-{side}", storage=f"sqlite:///{root / (side + '.db')}", trials=args.trials,
                             max_epochs=args.max_epochs, concurrency=args.concurrency, seed=args.seed, space=SPACE,
                             grace_period=grace, reduction_factor=args.reduction_factor)
            config = parse_study(raw, f"bench/asha.py ({side})", side)
            trials = trials or draw_trials(config, args.trials, args.seed)
            print(f"{side}: running ...", flush=True)
            sides[side] = result = run_side(config, trials, data_root, root / side, side)
            print(f"{side}: {result['epochs']} epochs ({result['epochs'] / budget:.0%} of {budget}), best dev accuracy "
                  f"{result['best']:.4f} (trial {result['best_trial']}), {result['seconds']:.0f} s", flush=True)

    asha, full = sides["asha"], sides["full"]
    print()
    print(f"{'trial':>5} {'ASHA':>8} {'epochs':>6} {'no early stop':>13} {'its best epoch':>14}")
    for number, (curve_a, curve_f, state) in enumerate(zip(asha["curves"], full["curves"], asha["states"])):
        last_a = curve_a[max(curve_a)] if curve_a else float("nan")
        last_f = curve_f[max(curve_f)] if curve_f else float("nan")
        print(f"{number:5d} {last_a:8.4f} {max(curve_a, default=0):6d} {last_f:13.4f} {max(curve_f.values(), default=float('nan')):14.4f}  {state}")
    gap = 100 * (full["best"] - asha["best"])
    fraction = asha["epochs"] / budget
    print(f"epochs with ASHA: {fraction:.1%} of the full budget (target <= 40%); best dev accuracy {asha['best']:.4f} vs "
          f"{full['best']:.4f} without early stopping: {gap:+.2f} points (target <= 0.5)")
    print(result_line({
        "epochs_fraction": fraction, "asha_epochs": asha["epochs"], "full_epochs": full["epochs"],
        "asha_best": asha["best"], "full_best": full["best"], "gap_points": gap,
        "same_best_trial": int(asha["best_trial"] == full["best_trial"]),
        "asha_s": asha["seconds"], "full_s": full["seconds"], "failed": asha["failed"] + full["failed"],
        "trials": args.trials, "max_epochs": args.max_epochs, "reduction_factor": args.reduction_factor,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
