"""What ASHA saves and what it costs: the same trials with ASHA and without early stopping, on SST-2.

Both searches go through `search.engine.run_search` on the full SST-2 training set
(`../shared/data/sentence/sst2/`), in this process, one after the other, and train the very same
strategies: the trial configurations are drawn once (seeded) from the space and queued in both
studies (`optuna.Study.enqueue_trial`), so the sampler's adaptivity cannot make the two sides differ.
Each trial is seeded identically on both sides, so a trial ASHA keeps trains exactly as it does
without early stopping.

- ASHA: the engine's scheduler with grace period 1 and reduction factor 4 (the study default), or
  each of `--reduction-factors`, all on the same trials;
- no early stopping: the same scheduler with grace period = max epochs (no rung before the end).

Printed: epochs trained as a fraction of the full budget (trials x max epochs), the best dev
accuracy of each side (completed trials, last epoch), and the gap in points. Then Ray's ASHA is
replayed on the draw's curves without early stopping (`bench/asha_replay.py`), at each grace
period of `--replay-graces` (default 1 and 2) and each reduction factor, over 200 timings: what
these trials give on average, whichever reach a rung first, and what a longer grace period would
change. `--draws N` repeats this with N seeds (N draws of trials) and reports the means: one draw
of 24 trials, scored on 872 dev sentences, does not settle a gap of half a point, and its epoch
share swings by +-8 points (`bench/asha_rule.py`). Targets: at most 40% of the epochs, best score within 0.5 point.

The default shape is the search of the performance issue: 24 trials, at most 8 epochs, 2 at a
time (about 8 minutes per draw on bench/README's AMD VM, 30 on its slower Intel VM).

    python bench/asha.py [--draws 5] [--trials 24] [--max-epochs 8] [--concurrency 2] [--reduction-factors 4]
                         [--replay-graces 1,2] [--keep-studies DIR]

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
    summary = run_search(config, data_root=data_root, storage_path=folder / "ray_results", ray_temp_dir=folder / "ray",
                         log=lambda line: print(f"  {label} | {line}", flush=True) if "progress:" in line or "test:" in line else None)
    seconds = time.perf_counter() - started
    study = optuna.load_study(study_name=config.name, storage=config.storage)
    finished = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished()), key=lambda t: t.number)
    return {
        "seconds": seconds,
        "epochs": sum(int(t.user_attrs.get("epochs_trained", 0)) for t in finished),
        "best": study.best_value,
        "best_trial": study.best_trial.number,
        # The dev-best trial scored on the test split (1,821 sentences): whether a dev gap carries over.
        "best_test": (summary.test_metrics or {}).get(config.metric, float("nan")),
        "curves": [dict(t.intermediate_values) for t in finished],
        "states": [t.state.name for t in finished],
        "failed": sum(t.state.name == "FAIL" for t in finished),
        "study": study,
    }


def run_draw(args: argparse.Namespace, seed: int, data_root: Path, root: Path) -> tuple[dict[str, dict[str, Any]], dict[tuple[int, int], tuple[float, float]]]:
    """One draw of trials, run without early stopping and with ASHA at each reduction factor; and
    ASHA replayed on the curves without early stopping, per (grace period, reduction factor)."""
    from search.config import parse_study

    sides: dict[str, dict[str, Any]] = {}
    budget = args.trials * args.max_epochs
    trials: list[dict[str, Any]] = []
    import numpy as np

    from bench.asha_replay import curves_from_study, replay

    plan = [("full", args.max_epochs, args.reduction_factors[0])] + [(f"asha_rf{rf}", 1, rf) for rf in args.reduction_factors]
    for side, grace, reduction_factor in plan:
        folder = (args.keep_studies or root) / f"seed{seed}-{side}"
        folder.mkdir(parents=True)
        raw = sst2_study(f"asha-{side}", storage=f"sqlite:///{folder / 'study.db'}", trials=args.trials,
                         max_epochs=args.max_epochs, concurrency=args.concurrency, seed=seed, space=SPACE,
                         grace_period=grace, reduction_factor=reduction_factor)
        config = parse_study(raw, f"bench/asha.py ({side})", side)
        trials = trials or draw_trials(config, args.trials, seed)
        print(f"draw {seed}: {side} running ...", flush=True)
        sides[side] = result = run_side(config, trials, data_root, folder, f"{seed}:{side}")
        print(f"draw {seed}: {side}: {result['epochs']} epochs ({result['epochs'] / budget:.0%} of {budget}), best dev accuracy "
              f"{result['best']:.4f} (trial {result['best_trial']}, test {result['best_test']:.4f}), {result['seconds']:.0f} s", flush=True)
    full = sides["full"]
    print(f"\ndraw {seed}: {'trial':>5} {'no early stop':>13} " + " ".join(f"{'ASHA rf' + str(rf):>10} {'epochs':>6}" for rf in args.reduction_factors))
    for number, curve_f in enumerate(full["curves"]):
        row = f"draw {seed}: {number:5d} {curve_f[max(curve_f)] if curve_f else float('nan'):13.4f} "
        for rf in args.reduction_factors:
            curve = sides[f"asha_rf{rf}"]["curves"][number]
            row += f" {curve[max(curve)] if curve else float('nan'):10.4f} {max(curve, default=0):6d}"
        print(row)
    for rf in args.reduction_factors:
        asha = sides[f"asha_rf{rf}"]
        asha["fraction"] = asha["epochs"] / budget
        asha["gap"] = 100 * (full["best"] - asha["best"])
        asha["test_gap"] = 100 * (full["best_test"] - asha["best_test"])
        print(f"draw {seed}: ASHA rf {rf}: {asha['fraction']:.1%} of the epochs, best {asha['best']:.4f} vs {full['best']:.4f} "
              f"without early stopping: gap {asha['gap']:+.2f} points (on test, of the dev-best trials: {asha['test_gap']:+.2f})", flush=True)
    # Ray's ASHA replayed on this draw's curves without early stopping, over many timings: what
    # these trials give whichever of them reach a rung first (one real ASHA run is one timing).
    replays = {}
    scores, pace, _ = curves_from_study(full["study"])
    for grace in args.replay_graces:
        for rf in args.reduction_factors:
            replays[grace, rf] = replay(scores, pace, reduction_factor=rf, grace_period=grace, concurrency=args.concurrency,
                                        orders=args.replay_orders, rng=np.random.default_rng(seed))
            print(f"draw {seed}: replayed on these curves ({args.replay_orders} timings), grace {grace} rf {rf}: "
                  f"{replays[grace, rf][0]:.1%} of the epochs, gap {replays[grace, rf][1]:+.2f} points", flush=True)
    return sides, replays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--reduction-factors", default=None,
                        help="comma-separated ASHA reduction factors, each run on the same trials (default: the study default, search.config.Asha; "
                             "the targets apply to the first)")
    parser.add_argument("--draws", type=int, default=5,
                        help="independent draws of trials (seeds SEED, SEED+1, ...); figures are their means (one draw does not settle half a point)")
    parser.add_argument("--replay-graces", default="1,2",
                        help="grace periods at which Ray's ASHA is replayed on each draw's curves without early stopping (default 1,2)")
    parser.add_argument("--replay-orders", type=int, default=200, help="timings per replay (default 200)")
    parser.add_argument("--keep-studies", type=Path, default=None,
                        help="keep each side's study (DIR/seedN-SIDE/study.db) and Ray files here, e.g. for bench/asha_replay.py (default: a temporary folder)")
    parser.add_argument("--train-sentences", type=int, default=None, help="first N SST-2 training sentences (default: all 6,920)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/")
    args = parser.parse_args(argv)
    try:
        if args.reduction_factors is None:
            from search.config import Asha

            args.reduction_factors = str(int(Asha.reduction_factor))
        args.reduction_factors = [int(part) for part in args.reduction_factors.split(",")]
        args.replay_graces = [int(part) for part in args.replay_graces.split(",")] if args.replay_graces else []
    except ValueError:
        parser.error(f"--reduction-factors {args.reduction_factors!r}, --replay-graces {args.replay_graces!r}: expected integers separated by commas, e.g. 3 or 3,2")
    if min(args.trials, args.max_epochs, args.concurrency, args.draws, args.replay_orders) < 1 or min(args.reduction_factors) < 2:
        parser.error("--trials, --max-epochs, --concurrency, --draws and --replay-orders must be positive, reduction factors at least 2")
    if any(not 1 <= grace < args.max_epochs for grace in args.replay_graces):
        parser.error(f"--replay-graces {args.replay_graces}: each must be at least 1 and below --max-epochs {args.max_epochs}")
    if args.keep_studies and args.keep_studies.exists() and any(args.keep_studies.iterdir()):
        parser.error(f"--keep-studies {args.keep_studies}: the folder is not empty; give a new or empty one")
    quiet_ray_environment()
    require_sst2(args.data_root)

    import datasets

    from bench._common import sst2_subset

    datasets.disable_progress_bars()
    budget = args.trials * args.max_epochs
    print(f"asha: {args.draws} draw(s) of {args.trials} trials x {args.max_epochs} epochs ({budget} epochs without early "
          f"stopping), {args.concurrency} at a time, ASHA grace 1, reduction factor(s) {args.reduction_factors}, SST-2", flush=True)
    draws: list[dict[str, dict[str, Any]]] = []
    replays: list[dict[tuple[int, int], tuple[float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-asha-") as scratch:
        root = Path(scratch)
        data_root = sst2_subset(args.data_root, root / "data", args.train_sentences) if args.train_sentences else args.data_root
        for seed in range(args.seed, args.seed + args.draws):
            sides, replayed = run_draw(args, seed, data_root, root)
            draws.append(sides)
            replays.append(replayed)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    print()
    figures: dict[str, Any] = {}
    for index, rf in enumerate(args.reduction_factors):
        sides = [draw[f"asha_rf{rf}"] for draw in draws]
        fractions, gaps = [side["fraction"] for side in sides], [side["gap"] for side in sides]
        test_gaps = [side["test_gap"] for side in sides]
        print(f"ASHA rf {rf} over {len(draws)} draw(s): epochs {mean(fractions):.1%} of the full budget (per draw "
              f"{', '.join(f'{f:.1%}' for f in fractions)}; target <= 40%), best dev accuracy gap {mean(gaps):+.2f} points "
              f"(per draw {', '.join(f'{g:+.2f}' for g in gaps)}; target <= 0.5); test accuracy of the dev-best trials: "
              f"gap {mean(test_gaps):+.2f} points (per draw {', '.join(f'{g:+.2f}' for g in test_gaps)})")
        keys = {"epochs_fraction": mean(fractions), "gap_points": mean(gaps), "gap_points_max": max(gaps),
                "test_gap_points": mean(test_gaps),
                "same_best_trial": sum(side["best_trial"] == draw["full"]["best_trial"] for side, draw in zip(sides, draws)),
                "asha_s": mean([side["seconds"] for side in sides])}
        if index == 0:
            figures.update(keys)
        if len(args.reduction_factors) > 1:
            figures.update({f"rf{rf}_{key}": value for key, value in keys.items()})
    for grace, rf in replays[0]:
        shares, gaps = [replayed[grace, rf][0] for replayed in replays], [replayed[grace, rf][1] for replayed in replays]
        print(f"replayed, grace {grace} rf {rf}, over {len(draws)} draw(s): epochs {mean(shares):.1%} (per draw "
              f"{', '.join(f'{f:.1%}' for f in shares)}), best dev accuracy gap {mean(gaps):+.2f} points (per draw "
              f"{', '.join(f'{g:+.2f}' for g in gaps)})")
        figures.update({f"replay_g{grace}_rf{rf}_epochs_fraction": mean(shares), f"replay_g{grace}_rf{rf}_gap_points": mean(gaps)})
    figures.update({
        "full_best": mean([draw["full"]["best"] for draw in draws]), "full_test": mean([draw["full"]["best_test"] for draw in draws]),
        "full_s": mean([draw["full"]["seconds"] for draw in draws]),
        "failed": sum(side["failed"] for draw in draws for side in draw.values()),
        "draws": args.draws, "trials": args.trials, "max_epochs": args.max_epochs,
        "reduction_factors": "/".join(str(rf) for rf in args.reduction_factors),
    })
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
