"""Time to quality: how soon each way of searching finds a good strategy, at the same wall clock.

The same space, data (SST-2 from ../shared/data), wall-clock budget and concurrency, `--seeds`
seeds each, in one run:

  (a) engine: TPE + ASHA            (`search.engine.run_search`, the study's default sampler)
  (b) engine: random search + ASHA  (`sampler: random`)
  (c) engine: TPE, no early stopping    (ASHA's grace period = max epochs: it never stops a trial)
  (d) engine: random, no early stopping
  (e) plain Optuna: TPE + SuccessiveHalvingPruner, `study.optimize(timeout=...)` in this process

Every arm runs until its wall clock (`--budget-s`) is spent: the engine through `budget.time_budget_s`
(Ray Tune's time budget), plain Optuna through `optimize(timeout=...)`. The clock of an arm starts
when its first trial is created (read from its Optuna DB): `ray.init` and the data loading of
either side are left out; the engine's trial workers starting (importing torch in a new process)
are in, as they are in every search. What an arm had found by time t is the best dev accuracy any of its
trials had reported by then, as far as the DB tells: a trial's best intermediate value counts from
the time it finished (pruned or complete; a trial cut off by the budget counts from the budget's end).

Printed: the mean best dev accuracy against wall time for each arm (and `--plot FILE`, an HTML
plot), the target (the `--target-quantile` of all arms' final bests), and for each arm the mean
time to reach it over the seeds that did (with how many did); then a RESULT line. Targets (issue
25): (a) reaches the target in at most half the time of (d), and no later than (e).

    .venv/bin/python bench/time_to_quality.py                      # 5 seeds x 5 arms x 180 s (~90 min on 2 cores)
    .venv/bin/python bench/time_to_quality.py --seeds 1 --budget-s 30 --train-sentences 1000   # smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import DEFAULT_DATA_ROOT, quiet_ray_environment, require_sst2, result_line, sst2_study, sst2_subset  # noqa: E402
from bench.overhead import SPACE  # noqa: E402  (small TextCNN strategies: 1-2 s per epoch on one core)

ARMS = {
    "a": "engine TPE + ASHA",
    "b": "engine random + ASHA",
    "c": "engine TPE, no early stopping",
    "d": "engine random, no early stopping",
    "e": "plain Optuna TPE + SuccessiveHalvingPruner",
}
TRIALS_CAP = 10_000  # the wall clock ends every arm long before this many trials


@dataclass
class Curve:
    """One arm with one seed: (seconds since its first trial started, best dev so far), in time order."""

    points: list[tuple[float, float]]
    trials: int

    def best_at(self, seconds: float) -> float:
        best = math.nan
        for at, value in self.points:
            if at > seconds:
                break
            best = value
        return best

    @property
    def final(self) -> float:
        return self.points[-1][1] if self.points else math.nan

    def time_to(self, target: float) -> float | None:
        return next((at for at, value in self.points if value >= target), None)


def curve_from_study(study: Any, budget_s: float) -> Curve:
    """What the arm had found by each moment, from its Optuna DB alone."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    if not trials:
        return Curve([], 0)
    origin = min(t.datetime_start for t in trials).timestamp()
    found: list[tuple[float, float]] = []
    for trial in trials:
        values = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
        if not values:
            continue
        ended = trial.datetime_complete.timestamp() - origin if trial.datetime_complete else budget_s
        found.append((min(ended, budget_s), max(values)))
    points, best = [], -math.inf
    for at, value in sorted(found):
        if value > best:
            best = value
            points.append((at, best))
    return Curve(points, len(trials))


def run_engine_arm(arm: str, seed: int, args: argparse.Namespace, data_root: Path, folder: Path) -> Curve:
    import optuna

    from search.config import parse_study
    from search.engine import run_search

    early_stopping = arm in ("a", "b")
    raw = sst2_study(f"ttq-{arm}-{seed}", storage=f"sqlite:///{folder / f'{arm}-{seed}.db'}", trials=TRIALS_CAP,
                     max_epochs=args.max_epochs, concurrency=args.concurrency, seed=seed, space=SPACE,
                     grace_period=1 if early_stopping else args.max_epochs, reduction_factor=args.reduction_factor)
    raw["budget"]["time_budget_s"] = args.budget_s
    raw["baseline"] = "none"  # every arm samples from its first trial
    if arm in ("b", "d"):
        raw["sampler"] = "random"
    config = parse_study(raw, f"bench/time_to_quality.py (arm {arm})", raw["name"])
    run_search(config, data_root=data_root, storage_path=folder / "ray_results", ray_temp_dir=folder / "ray", verbose=0, log=lambda _: None)
    return curve_from_study(optuna.load_study(study_name=config.name, storage=config.storage), args.budget_s)


def run_plain_arm(seed: int, args: argparse.Namespace, data_root: Path, folder: Path) -> Curve:
    """Plain Optuna in this process: the same trainable, space and sampler as (a)."""
    import optuna

    from search.config import parse_study
    from search.engine import open_storage
    from search.sampler import SamplerChoice, build_sampler
    from spaces import suggest, unflatten
    from trainables.runner import TrialSettings

    raw = sst2_study(f"ttq-e-{seed}", storage=f"sqlite:///{folder / f'e-{seed}.db'}", trials=TRIALS_CAP,
                     max_epochs=args.max_epochs, concurrency=args.concurrency, seed=seed, space=SPACE, reduction_factor=args.reduction_factor)
    raw["baseline"] = "none"
    config = parse_study(raw, "bench/time_to_quality.py (arm e)", raw["name"])
    task = config.get_task()
    data = task.load_data(config.data, data_root, config.seed)
    settings = TrialSettings(metric=config.metric, mode=config.mode, max_epochs=config.budget.max_epochs, seed=seed, threads=1, checkpoint=False)

    def objective(trial: optuna.Trial) -> float:
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any], _directory: str | None) -> None:
            last.update(metrics)
            trial.report(metrics[config.metric], metrics["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        task.trainable(unflatten(suggest(trial, config.space)), data, settings, report=report)
        return last[config.metric]

    study = optuna.create_study(
        study_name=config.name, storage=open_storage(config.storage), direction=config.direction,
        sampler=build_sampler(SamplerChoice(), seed, config.space),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=args.reduction_factor),
    )
    study.optimize(objective, n_trials=TRIALS_CAP, timeout=args.budget_s, n_jobs=args.concurrency)
    return curve_from_study(study, args.budget_s)


def mean_curve(curves: list[Curve], grid: list[float]) -> list[float]:
    """The mean over seeds of the best found by each time (seeds with nothing yet left out)."""
    means = []
    for at in grid:
        found = [c.best_at(at) for c in curves]
        found = [v for v in found if not math.isnan(v)]
        means.append(statistics.mean(found) if found else math.nan)
    return means


def write_plot(path: Path, grid: list[float], means: dict[str, list[float]], target: float) -> None:
    import plotly.graph_objects as go

    figure = go.Figure()
    for arm, values in means.items():
        figure.add_trace(go.Scatter(x=grid, y=values, mode="lines", name=f"({arm}) {ARMS[arm]}"))
    figure.add_hline(y=target, line_dash="dot", annotation_text=f"target {target:.4f}")
    figure.update_layout(title="Mean best dev accuracy against wall time (SST-2)", xaxis_title="seconds since the first trial started",
                         yaxis_title="best dev accuracy so far (mean over seeds)")
    figure.write_html(path, include_plotlyjs="cdn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=180.0, help="wall clock per arm and seed, from its first trial's start")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--arms", default="abcde", help="which arms to run, e.g. ade")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--reduction-factor", type=int, default=3, help="ASHA's and SuccessiveHalvingPruner's")
    parser.add_argument("--train-sentences", type=int, default=None, help="first N SST-2 training sentences (default all 6,920)")
    parser.add_argument("--target-quantile", type=float, default=0.9, help="target = this quantile of all arms' final bests")
    parser.add_argument("--plot", type=Path, default=REPO / "bench" / "time_to_quality.html")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/")
    args = parser.parse_args(argv)
    arms = [arm for arm in args.arms if arm in ARMS]
    if not arms or len(arms) != len(args.arms) or args.seeds < 1 or args.budget_s <= 0 or not 0 < args.target_quantile < 1:
        parser.error(f"--arms takes letters of {''.join(ARMS)}; --seeds >= 1; --budget-s > 0; 0 < --target-quantile < 1")
    quiet_ray_environment()
    require_sst2(args.data_root)

    import datasets
    import optuna
    import torch

    datasets.disable_progress_bars()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    print(f"time to quality: arms {', '.join(arms)}, {args.seeds} seeds, {args.budget_s:g} s each, {args.concurrency} at a time, "
          f"up to {args.max_epochs} epochs; {os.cpu_count()} CPUs, torch {torch.__version__}", flush=True)

    curves: dict[str, list[Curve]] = {arm: [] for arm in arms}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ttq-") as scratch:
        folder = Path(scratch)
        data_root = sst2_subset(args.data_root, folder / "data", args.train_sentences)
        for seed in range(args.seeds):
            for arm in arms:  # interleaved: a slow spell of a shared machine hits every arm alike
                curve = run_plain_arm(seed, args, data_root, folder) if arm == "e" else run_engine_arm(arm, seed, args, data_root, folder)
                curves[arm].append(curve)
                print(f"  seed {seed} arm ({arm}) {ARMS[arm]}: {curve.trials} trials, best dev {curve.final:.4f}"
                      f"{f' after {curve.points[-1][0]:.0f} s' if curve.points else ''}", flush=True)

    finals = sorted(c.final for cs in curves.values() for c in cs if not math.isnan(c.final))
    if not finals:
        print("error: no arm reported a dev score within its budget; raise --budget-s", file=sys.stderr)
        return 1
    target = finals[min(len(finals) - 1, int(args.target_quantile * len(finals)))]
    grid = [args.budget_s * k / 20 for k in range(1, 21)]
    means = {arm: mean_curve(cs, grid) for arm, cs in curves.items()}
    print(f"\nmean best dev accuracy by time (s): {'  '.join(f'{at:6.0f}' for at in grid[3::4])}")
    for arm, values in means.items():
        print(f"  ({arm}) {ARMS[arm]:<44} {'  '.join(f'{v:6.4f}' for v in values[3::4])}")

    figures: dict[str, Any] = {"target": target}
    print(f"\ntarget: {target:.4f} dev accuracy (the {args.target_quantile:g} quantile of all {len(finals)} final bests)")
    for arm, cs in curves.items():
        times = [t for t in (c.time_to(target) for c in cs) if t is not None]
        mean_time = statistics.mean(times) if times else math.inf
        figures[f"{arm}_time_to_target_s"] = mean_time
        figures[f"{arm}_reached"] = f"{len(times)}/{len(cs)}"
        figures[f"{arm}_final_mean"] = statistics.mean(c.final for c in cs if not math.isnan(c.final)) if any(not math.isnan(c.final) for c in cs) else math.nan
        print(f"  ({arm}) {ARMS[arm]:<44} reached it in {len(times)}/{len(cs)} seeds, mean time {mean_time:.0f} s; "
              f"final best {figures[f'{arm}_final_mean']:.4f}")
    if "a" in curves and "d" in curves:
        figures["a_over_d"] = figures["a_time_to_target_s"] / figures["d_time_to_target_s"] if math.isfinite(figures["d_time_to_target_s"]) else math.nan
    if "a" in curves and "e" in curves:
        figures["a_over_e"] = figures["a_time_to_target_s"] / figures["e_time_to_target_s"] if math.isfinite(figures["e_time_to_target_s"]) else math.nan
    write_plot(args.plot, grid, means, target)
    print(f"\nplot: {args.plot}; {time.perf_counter() - started:.0f} s in all")
    print(result_line({**figures, "seeds": args.seeds, "budget_s": args.budget_s, "concurrency": args.concurrency, "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
