"""How many epochs Ray's ASHA trains, by search size: Ray's own scheduler fed made-up learning curves.

`bench/asha.py` measures real searches (24 trials of at most 8 epochs by default); their epoch
share swings with the draw. This script asks what to expect on average, how far one search strays
from it, and how that changes with the number of trials. It drives Ray
Tune's `ASHAScheduler` itself (`on_trial_add`, `on_trial_result`, as Tune's controller calls them;
grace period 1, one bracket, as the engine sets it) with simulated trials:

- `--concurrency` slots take the trials in order; every epoch of a trial takes a random time (a
  trial's own pace times per-epoch jitter), so trials reach the rungs in a random order, as in a
  real search;
- a trial's score at epoch t is sqrt(c) * quality + sqrt(1 - c) * noise_t: with c = 1 every epoch
  ranks the trials the same way, with c = 0 the rankings of different epochs are unrelated. Real
  searches lie in between (`--correlations`).

Printed: the mean share of the full budget (trials x max epochs) that ASHA trains and the standard
deviation of one search's share, for each number of trials, reduction factor and correlation; and, for comparison, the share in the limit of a long
search, where each rung keeps exactly 1/rf of the trials. The first trial to reach a rung always
goes on (Ray's ASHA has nothing to compare it with) and the next few face a cutoff set by few
results, so small searches train more than the limit.

    python bench/asha_rule.py [--trials 16,24,32,64,128] [--reduction-factors 2,3,4] [--max-epochs 8]
                              [--correlations 0,0.5,1] [--repeats 1000] [--concurrency 2] [--seed 0]

Takes about 4 minutes on one core; no data, no Ray cluster (the scheduler is plain Python). The last
line is `RESULT ...` for scripts.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/asha_rule.py` without installing the project

from bench._common import quiet_ray_environment, result_line  # noqa: E402


def rungs(max_epochs: int, reduction_factor: int, grace_period: int = 1) -> list[int]:
    """Ray's rung milestones: grace x rf^k below max_t (the last epoch is no rung)."""
    count = int(math.log(max_epochs / grace_period) / math.log(reduction_factor) + 1)
    milestones = [grace_period * reduction_factor**k for k in range(count)]
    return [milestone for milestone in milestones if milestone < max_epochs]


def limit_share(max_epochs: int, reduction_factor: int) -> float:
    """The epoch share when every rung keeps exactly 1/rf of the trials that reach it."""
    milestones = rungs(max_epochs, reduction_factor) + [max_epochs]
    epochs, alive, previous = 0.0, 1.0, 0
    for index, milestone in enumerate(milestones):
        epochs += alive * (milestone - previous)
        previous = milestone
        if index < len(milestones) - 1:
            alive /= reduction_factor
    return epochs / max_epochs


def simulate(trials: int, reduction_factor: int, max_epochs: int, correlation: float, concurrency: int,
             rng: np.random.Generator) -> int:
    """One made-up search of `trials` trials: epochs trained under Ray's ASHAScheduler."""
    quality = rng.standard_normal(trials)
    noise = rng.standard_normal((trials, max_epochs))
    scores = math.sqrt(correlation) * quality[:, None] + math.sqrt(1 - correlation) * noise
    pace = rng.lognormal(0.0, 0.3, trials)  # some strategies train faster than others
    return run_asha(scores, pace, reduction_factor, concurrency, rng).epochs


class AshaRun(NamedTuple):
    epochs: int  # epochs trained, all trials together
    finished: list[int]  # the trials that ran to the last epoch


def run_asha(scores: np.ndarray, pace: np.ndarray, reduction_factor: int, concurrency: int, rng: np.random.Generator,
             jitter: float = 0.1, grace_period: int = 1) -> AshaRun:
    """What Ray's ASHAScheduler (one bracket) trains when it decides after every epoch.

    `scores[i, t]` is trial i's score after epoch t + 1 (higher is better); `pace[i]` its time per
    epoch, each epoch drawn within +-`jitter` of it. `concurrency` slots take the trials in order."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    trials, max_epochs = scores.shape
    scheduler = ASHAScheduler(time_attr="training_iteration", metric="score", mode="max", max_t=max_epochs,
                              grace_period=grace_period, reduction_factor=reduction_factor, brackets=1)
    handles = [SimpleNamespace(trial_id=f"t{number}") for number in range(trials)]
    events: list[tuple[float, int, int]] = []  # (time the epoch ends, trial, epoch)
    next_trial, epochs, finished = 0, 0, []

    def epoch_time(number: int) -> float:
        return float(pace[number] * rng.uniform(1 - jitter, 1 + jitter))

    def start(now: float) -> None:
        nonlocal next_trial
        if next_trial < trials:
            scheduler.on_trial_add(None, handles[next_trial])
            heapq.heappush(events, (now + epoch_time(next_trial), next_trial, 1))
            next_trial += 1

    for _ in range(concurrency):
        start(0.0)
    while events:
        now, number, epoch = heapq.heappop(events)
        epochs += 1
        result = {"training_iteration": epoch, "score": float(scores[number, epoch - 1])}
        if scheduler.on_trial_result(None, handles[number], result) == TrialScheduler.CONTINUE and epoch < max_epochs:
            heapq.heappush(events, (now + epoch_time(number), number, epoch + 1))
        else:
            scheduler.on_trial_complete(None, handles[number], result)
            if epoch == max_epochs:
                finished.append(number)
            start(now)
    return AshaRun(epochs, finished)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="16,24,32,64,128", help="comma-separated search sizes")
    parser.add_argument("--reduction-factors", default="2,3,4")
    parser.add_argument("--correlations", default="0,0.5,1", help="between the scores of two epochs of a trial, 0 to 1")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1000, help="simulated searches per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        sizes = [int(part) for part in args.trials.split(",")]
        factors = [int(part) for part in args.reduction_factors.split(",")]
        correlations = [float(part) for part in args.correlations.split(",")]
    except ValueError as error:
        parser.error(f"--trials and --reduction-factors take integers, --correlations numbers, separated by commas ({error})")
    if min(sizes + [args.max_epochs, args.concurrency, args.repeats]) < 1 or min(factors) < 2 or not all(0 <= c <= 1 for c in correlations):
        parser.error("sizes, --max-epochs, --concurrency and --repeats must be positive, reduction factors at least 2, correlations in [0, 1]")
    quiet_ray_environment()
    rng = np.random.default_rng(args.seed)

    print(f"asha_rule: Ray's ASHAScheduler, grace 1, max {args.max_epochs} epochs, {args.concurrency} at a time, "
          f"{args.repeats} simulated searches per setting; share of trials x max epochs trained: mean +- standard deviation of one search", flush=True)
    header = f"{'rf':>3} {'rungs':>10} {'corr':>5} " + " ".join(f"{str(n) + ' trials':>14}" for n in sizes) + f" {'limit':>7}"
    print(header)
    figures: dict[str, float | int | str] = {}
    for rf in factors:
        limit = limit_share(args.max_epochs, rf)
        figures[f"rf{rf}_limit"] = limit
        for correlation in correlations:
            row = f"{rf:>3} {'/'.join(map(str, rungs(args.max_epochs, rf))):>10} {correlation:>5.2g} "
            for size in sizes:
                shares = np.array([simulate(size, rf, args.max_epochs, correlation, args.concurrency, rng)
                                   for _ in range(args.repeats)]) / (size * args.max_epochs)
                figures[f"rf{rf}_c{correlation:g}_n{size}"] = float(shares.mean())
                # one search's spread: what a few-draw mean of bench/asha.py may stray by
                figures[f"rf{rf}_c{correlation:g}_n{size}_sd"] = float(shares.std(ddof=1)) if len(shares) > 1 else 0.0
                row += f" {shares.mean():>6.1%} +-{shares.std():>4.1%}"
            print(row + f" {limit:>7.1%}", flush=True)
    figures.update({"max_epochs": args.max_epochs, "concurrency": args.concurrency, "repeats": args.repeats})
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
