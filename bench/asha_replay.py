"""Ray's ASHA replayed on the learning curves of a search that ran every trial to the end.

A search without early stopping holds what each trial scored after every epoch: the reference side
of `bench/asha.py` (its studies are kept with `--keep-studies DIR`), a study of this engine whose
`asha.grace_period` equals `budget.max_epochs`, or any Optuna study whose trials report every epoch
as an intermediate value. This script feeds those curves to Ray Tune's own `ASHAScheduler`
(`bench.asha_rule.run_asha`: the calls Tune's controller makes, `--concurrency` slots taking the
trials in the order of their numbers) at each grace period and reduction factor asked, `--orders`
times, each epoch timed anew within +-10% of its trial's measured pace (its time from start to end
over its epochs). Printed per study and on average: the share of trials x max epochs that ASHA
would train, and how far the best trial it lets finish falls below the best of all trials, in
points (hundredths of the metric). Which trial ASHA keeps depends on which ones reach a rung
first; the mean over orders is what these trials give, whatever their timing.

On `bench/asha.py`'s draws the replay gives what the real ASHA run on the same trials gave (see
`bench/README.md`).

    python bench/asha_replay.py STUDY.db [STUDY.db ...] [--graces 1,2] [--reduction-factors 2,3,4]
                                [--orders 200] [--concurrency 2] [--study-name NAME] [--seed 0]

A STUDY is an SQLite file or a storage URL. The last line is `RESULT ...` for scripts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/asha_replay.py` without installing the project

from bench._common import quiet_ray_environment, result_line  # noqa: E402


class ReplayError(ValueError):
    """A study that cannot be replayed; the message names it and says why."""


def curves_from_study(study: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, pace, left out) of a study's finished trials that reported every epoch.

    `scores[i, t]`: trial i's value after epoch t + 1, negated for a study that minimizes (the
    scheduler is driven as "higher is better"); `pace[i]`: its seconds per epoch. Trials with
    fewer epochs than the longest (stopped, failed) are left out and counted."""
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.intermediate_values),
                    key=lambda t: t.number)
    if not trials:
        raise ReplayError(f"study {study.study_name!r} has no finished trial with intermediate values (epoch scores)")
    max_epochs = max(max(t.intermediate_values) for t in trials)
    whole = [t for t in trials if sorted(t.intermediate_values) == list(range(1, max_epochs + 1))]
    if len(whole) < 2:
        raise ReplayError(f"study {study.study_name!r}: {len(whole)} trial(s) reported all {max_epochs} epochs; "
                          "a replay needs at least 2 trials of a search without early stopping")
    sign = -1.0 if study.direction.name == "MINIMIZE" else 1.0
    scores = sign * np.array([[t.intermediate_values[epoch] for epoch in range(1, max_epochs + 1)] for t in whole])
    pace = np.array([(t.datetime_complete - t.datetime_start).total_seconds() / max_epochs for t in whole])
    return scores, pace, len(trials) - len(whole)


def replay(scores: np.ndarray, pace: np.ndarray, *, reduction_factor: int, grace_period: int, concurrency: int,
           orders: int, rng: np.random.Generator) -> tuple[float, float]:
    """Mean over `orders` timings of (share of the epochs ASHA trains, gap in points between the best
    final score of all trials and of those ASHA lets finish)."""
    from bench.asha_rule import run_asha

    shares, gaps = [], []
    for _ in range(orders):
        run = run_asha(scores, pace, reduction_factor, concurrency, rng, grace_period=grace_period)
        shares.append(run.epochs / scores.size)
        gaps.append(100 * (scores[:, -1].max() - scores[run.finished, -1].max()))
    return float(np.mean(shares)), float(np.mean(gaps))


def open_study(location: str, study_name: str | None) -> Any:
    import optuna

    url = location if "://" in location else f"sqlite:///{Path(location).resolve()}"
    if "://" not in location and not Path(location).is_file():
        raise ReplayError(f"{location}: no such file (give an SQLite file or a storage URL)")
    try:
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True)  # read only: never add tables to a file
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    except Exception as error:  # not a database, or not Optuna's
        raise ReplayError(f"{location}: not a readable Optuna storage: {type(error).__name__}: {str(error).splitlines()[0]}") from None
    if study_name is None and len(names) != 1:
        raise ReplayError(f"{location} holds {len(names)} studies ({', '.join(names) or 'none'}); choose one with --study-name")
    name = study_name or names[0]
    if name not in names:
        raise ReplayError(f"{location} has no study {name!r}; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="SQLite files or storage URLs of searches without early stopping")
    parser.add_argument("--study-name", default=None, help="the study to read in each (default: the only one)")
    parser.add_argument("--graces", default="1,2", help="comma-separated grace periods (default 1,2)")
    parser.add_argument("--reduction-factors", default="2,3,4")
    parser.add_argument("--orders", type=int, default=200, help="timings replayed per setting (default 200)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        graces = [int(part) for part in args.graces.split(",")]
        factors = [int(part) for part in args.reduction_factors.split(",")]
    except ValueError as error:
        parser.error(f"--graces and --reduction-factors take integers separated by commas ({error})")
    if min(graces + [args.orders, args.concurrency]) < 1 or min(factors) < 2:
        parser.error("grace periods, --orders and --concurrency must be positive, reduction factors at least 2")
    quiet_ray_environment()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(args.seed)
    curves = []
    for location in args.studies:
        try:
            scores, pace, left_out = curves_from_study(open_study(location, args.study_name))
        except ReplayError as error:
            print(f"asha_replay: {error}", file=sys.stderr)
            return 2
        max_epochs = scores.shape[1]
        if max(graces) >= max_epochs:
            print(f"asha_replay: {location}: grace period {max(graces)} leaves no rung before the last of its {max_epochs} epochs", file=sys.stderr)
            return 2
        note = f", {left_out} trial(s) with fewer epochs left out" if left_out else ""
        print(f"{location}: {scores.shape[0]} trials x {max_epochs} epochs{note}", flush=True)
        curves.append((scores, pace))

    figures: dict[str, Any] = {}
    print(f"\nRay's ASHAScheduler on these curves, {args.concurrency} at a time, {args.orders} timings each: "
          "epochs trained (share of trials x max epochs) / best-score gap in points")
    print(f"{'grace':>5} {'rf':>3} {'mean':>16}   per study")
    for grace in graces:
        for rf in factors:
            outcomes = [replay(scores, pace, reduction_factor=rf, grace_period=grace, concurrency=args.concurrency,
                               orders=args.orders, rng=rng) for scores, pace in curves]
            share, gap = float(np.mean([o[0] for o in outcomes])), float(np.mean([o[1] for o in outcomes]))
            per_study = ", ".join(f"{o[0]:.1%} / {o[1]:.2f}" for o in outcomes)
            print(f"{grace:>5} {rf:>3} {share:>7.1%} / {gap:>5.2f}   {per_study}", flush=True)
            figures[f"g{grace}_rf{rf}_epochs_fraction"] = share
            figures[f"g{grace}_rf{rf}_gap_points"] = gap
    figures.update({"studies": len(curves), "orders": args.orders, "concurrency": args.concurrency})
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
