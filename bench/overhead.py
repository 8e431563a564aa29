"""Engine overhead: the same search through the engine (Ray Tune + Optuna + ASHA) and as plain Optuna.

Both sides run the same trainable (`trainables.text_classification`, a small TextCNN on SST-2 at
1-2 s per epoch on one core), the same space, seed, sampler (`search.engine.make_sampler`), trials,
epochs and concurrency, in this one process, one after the other:

- plain: `optuna.create_study(...).optimize(objective, n_jobs=concurrency)` with Optuna's
  `SuccessiveHalvingPruner` (same grace period and reduction factor as ASHA), the engine's SQLite
  settings (`search.engine.open_storage`), no checkpoints;
- engine: `search.engine.run_search` itself, as `search run` calls it (Ray started and stopped by it,
  checkpoints as the study default paces them, every trial recorded in the study's SQLite file).

Time inside trials is measured by the trainable (`trial_seconds`: training + dev evaluation of every
epoch). From it: efficiency = time inside trials / (concurrency x wall) and overhead per trial =
(concurrency x wall - time inside trials) / trials. `wall` is the search span (first trial asked to
last trial told, read from each side's Optuna DB); the whole call, with Ray's start and stop, is
printed too (`*_call_s`, `*_efficiency_call`). Where the slot time that is not training went is
read from the DB too (see `bench._common.trial_figures`): slots empty between trials, slots empty
at the end of the search (`tail`), start-up in each slot's first trial, and what each later trial
spends not training. Peak memory is the PSS of this process and all its descendants (Ray's GCS,
raylet and workers), sampled every 0.25 s; before each side, what the other freed is handed back
to the OS (`malloc_trim`), so that neither is charged for the other's garbage.

The overhead restated in three figures, per side (each trial stamps when it starts training,
`bench._common.TrainingStart`):

- fixed start-up per search: from the call to the first trial training (data, the study, for the
  engine Ray's start, its worker processes and their imports); `fixed_end_s`, the same at the end;
- steady overhead per trial: what a slot loses per trial once started (a later trial's time not
  training, plus slot time empty between trials); target: within 0.1 s of plain Optuna's;
- memory per additional concurrent trial: for the engine one trial worker process (its PSS at the
  peak), for plain Optuna what the trials added to the process, per slot (an upper bound: it
  includes what the first trial imports once).

`--rounds N` runs N [plain, engine] pairs with seeds SEED .. SEED + N - 1 and reports medians: with
one seed, how the last trials of the budget happen to line up (one long trial running alone at the
end) weighs on one side and not the other, the same way every time.

    python bench/overhead.py [--rounds 1] [--trials 24] [--max-epochs 8] [--concurrency 2] [--train-sentences 6920]

The last line is `RESULT ...` for scripts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/overhead.py` without installing the project

from bench._common import (  # noqa: E402, I001
    trial_figures,
    DEFAULT_DATA_ROOT, TRIAL_WORKER, TrainingStart, TreeMemory, first_training_start, quiet_ray_environment, require_sst2,
    result_line, sst2_study, sst2_subset, tree_pss_kib,
)

# Small TextCNN strategies that train in 1-2 s per epoch on one core on the full SST-2 training set (6,920 sentences; 0.4-0.7 s with the first 2,500).
# Self-attention is left out: it takes several times longer per epoch than the rest of the space.
SPACE: dict[str, Any] = {
    "encoder": {"choices": ["textcnn"], "params": {"textcnn": {"filters": [64, 128], "layers": 1}}},
    "addons": ["layernorm"],
    "loss": ["cross_entropy", "focal", "label_smoothing"],
    "regularizers": {"search": ["weight_decay", "grad_clip"], "always": ["dropout"]},
    "optimizer": {"choices": ["adam", "adamw", "rmsprop"], "params": {
        "adam": {"lr": [0.0005, 0.005]}, "adamw": {"lr": [0.0005, 0.005]}, "rmsprop": {"lr": [0.0002, 0.002]}}},
    "schedule": ["constant", "linear", "cosine"],
    "batch_size": [32, 64],
    "embedding_dim": 64,
}


# ---- plain side ---------------------------------------------------------------------------------


def run_plain(config: Any, data_root: Path, folder: Path) -> dict[str, Any]:
    """Plain Optuna in this process: the same trainable, sampler and budget; SuccessiveHalvingPruner."""
    import optuna

    from search.engine import make_sampler, open_storage
    from spaces import Strategy, suggest, unflatten
    from trainables.runner import TrialSettings

    task = config.get_task()
    trainable = TrainingStart(task.trainable, folder / "stamps-plain")
    started_at, started = time.time(), time.perf_counter()
    data = task.load_data(config.data, data_root, config.seed)
    settings = TrialSettings(metric=config.metric, mode=config.mode, max_epochs=config.budget.max_epochs,
                             seed=config.seed, threads=1, checkpoint=False)

    def objective(trial: optuna.Trial) -> float:
        trial_config = unflatten(suggest(trial, config.space))
        trial.set_user_attr("strategy", Strategy.from_config(trial_config).summary())
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any], _directory: str | None) -> None:
            last.clear()
            last.update(metrics)
            trial.set_user_attr("metrics", {"trial_seconds": metrics["trial_seconds"]})
            trial.set_user_attr("epochs_trained", metrics["epoch"])
            trial.report(metrics[config.metric], metrics["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        trainable(trial_config, data, settings, report=report)
        return last[config.metric]

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(f"  plain  | trial {trial.number:3d} {trial.state.name:<8} after {trial.user_attrs.get('epochs_trained', 0)} epochs "
              f"({trial.user_attrs.get('metrics', {}).get('trial_seconds', 0.0):.1f} s inside)", flush=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=config.name, storage=open_storage(config.storage), direction=config.direction,
        sampler=make_sampler(config.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=config.asha.grace_period, reduction_factor=int(config.asha.reduction_factor)),
    )
    before_trials_mib = tree_pss_kib() / 1024  # data loaded, study open: what the trials add comes on top
    study.optimize(objective, n_trials=config.budget.trials, n_jobs=config.budget.concurrency, callbacks=[progress])
    return {**trial_figures(study, config.budget.concurrency), "call_s": time.perf_counter() - started, "best": study.best_value,
            "started_at": started_at, "ended_at": time.time(), "first_training_at": first_training_start(trainable.folder),
            "before_trials_mib": before_trials_mib}


# ---- engine side --------------------------------------------------------------------------------


def run_engine(config: Any, data_root: Path, folder: Path) -> dict[str, Any]:
    """`search.engine.run_search`, as the command line runs it."""
    import optuna

    from search.engine import run_search

    trainable = TrainingStart(config.get_task().trainable, folder / "stamps-engine")  # trains as the task's own
    started_at, started = time.time(), time.perf_counter()
    summary = run_search(config, data_root=data_root, storage_path=folder / "ray_results", ray_temp_dir=folder / "ray",
                         trainable=trainable, log=lambda line: print(f"  engine | {line}", flush=True))
    call = time.perf_counter() - started
    study = optuna.load_study(study_name=config.name, storage=config.storage)
    return {**trial_figures(study, config.budget.concurrency), "call_s": call, "best": summary.best_value,
            "started_at": started_at, "ended_at": time.time(), "first_training_at": first_training_start(trainable.folder)}


# ---- main ---------------------------------------------------------------------------------------


def release_garbage() -> None:
    """Returns what the previous side freed to the OS (glibc keeps freed heap in its arenas), so
    that neither side is charged for the other's garbage in this shared process."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def derived(side: dict[str, Any], concurrency: int) -> dict[str, float]:
    capacity = concurrency * side["span_s"]
    return {
        # What a search costs once: from the call to the first trial training (data, Ray, workers,
        # imports), and from the last trial told to the call's return (for the engine: the best
        # trial scored on test, Ray stopped).
        "fixed_startup_s": side["first_training_at"] - side["started_at"],
        "fixed_end_s": side["ended_at"] - side["last_told_at"],
        "efficiency": side["busy_s"] / capacity,
        "overhead_per_trial_s": (capacity - side["busy_s"]) / side["trials"],
        "efficiency_call": side["busy_s"] / (concurrency * side["call_s"]),
        "wall_per_epoch_s": side["span_s"] / max(1, side["epochs"]),
        # The same, less the end of the search (slots emptying once the budget is spent): what the
        # engine costs per trial, apart from how the last trials happen to line up.
        "efficiency_before_tail": side["busy_s"] / (capacity - side["tail_idle_s"]),
        "overhead_per_trial_before_tail_s": (capacity - side["tail_idle_s"] - side["busy_s"]) / side["trials"],
    }


def memory_per_trial_mib(side: str, figures: dict[str, Any], tree: TreeMemory, concurrency: int) -> float:
    """What one more concurrent trial adds to the peak: for the engine, a trial worker process (its
    mean PSS at the peak); for plain Optuna, a share of what the trials added to this process."""
    if side == "engine":
        return tree.peak_mean_pss_mib(TRIAL_WORKER) or float("nan")
    return (tree.peak_pss_kib / 1024 - figures["before_trials_mib"]) / concurrency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--train-sentences", type=int, default=6920, help="first N SST-2 training sentences (sets the epoch time; default all 6,920)")
    parser.add_argument("--seed", type=int, default=0, help="round k runs both sides with seed SEED + k - 1")
    parser.add_argument("--reduction-factor", type=int, default=3, help="ASHA's and SuccessiveHalvingPruner's")
    parser.add_argument("--rounds", type=int, default=1,
                        help="[plain, engine] pairs, each with its own seed (both sides of a pair share it); medians are reported")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/")
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases and Ray's files in this folder")
    args = parser.parse_args(argv)
    if min(args.trials, args.max_epochs, args.concurrency, args.train_sentences, args.rounds) < 1:
        parser.error("--trials, --max-epochs, --concurrency, --train-sentences and --rounds must be positive")
    quiet_ray_environment()
    require_sst2(args.data_root)

    import datasets
    import torch

    from search.config import parse_study

    datasets.disable_progress_bars()  # as `search run` does
    torch.set_num_threads(1)  # plain trials share this process; each trial also sets 1 thread itself
    print(f"overhead: {args.trials} trials, up to {args.max_epochs} epochs, {args.concurrency} at a time, "
          f"ASHA grace 1 / reduction {args.reduction_factor}, {args.train_sentences} SST-2 sentences; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}", flush=True)

    rows: dict[str, list[dict[str, Any]]] = {"plain": [], "engine": []}
    memory: dict[str, list[TreeMemory]] = {"plain": [], "engine": []}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as scratch:
        root = args.keep.resolve() if args.keep else Path(scratch)
        data_root = sst2_subset(args.data_root, root / "data", args.train_sentences)
        for round_ in range(1, args.rounds + 1):
            folder = root / f"round{round_}"
            folder.mkdir(parents=True, exist_ok=True)
            # Plain first: its memory tree is this process alone, before Ray has started anything.
            for side, run in (("plain", run_plain), ("engine", run_engine)):
                raw = sst2_study(f"overhead-{side}", storage=f"sqlite:///{folder / (side + '.db')}", trials=args.trials,
                                 max_epochs=args.max_epochs, concurrency=args.concurrency, seed=args.seed + round_ - 1, space=SPACE,
                                 reduction_factor=args.reduction_factor)
                config = parse_study(raw, f"bench/overhead.py ({side})", side)
                release_garbage()
                print(f"round {round_}: {side} (seed {args.seed + round_ - 1}) ...", flush=True)
                with TreeMemory() as tree:
                    figures = run(config, data_root, folder)
                figures.update(derived(figures, args.concurrency))
                figures["memory_per_trial_mib"] = memory_per_trial_mib(side, figures, tree, args.concurrency)
                rows[side].append(figures)
                memory[side].append(tree)
                print(f"round {round_}: {side:<6} span {figures['span_s']:.1f} s (call {figures['call_s']:.1f} s), "
                      f"{figures['trials']} trials {figures['states']}, {figures['epochs']} epochs, "
                      f"{figures['busy_s']:.1f} s inside trials, efficiency {figures['efficiency']:.3f}, "
                      f"overhead {figures['overhead_per_trial_s']:.2f} s/trial, peak {tree.peak_pss_gib:.2f} GiB PSS "
                      f"({tree.peak_rss_gib:.2f} GiB RSS sum, {tree.peak_processes} processes)", flush=True)
                print(f"round {round_}: {side:<6} where the {args.concurrency} x {figures['span_s']:.1f} s went: {figures['busy_s']:.1f} s "
                      f"training, {figures['gap_idle_s']:.1f} s slots empty between trials, {figures['tail_idle_s']:.1f} s slots empty at the end of the search, "
                      f"{figures['first_trials_overhead_s']:.1f} s in the first trial of each slot not training (start-up), "
                      f"{figures['steady_trial_overhead_s']:.2f} s per later trial not training", flush=True)
                print(f"round {round_}: {side:<6} fixed: {figures['fixed_startup_s']:.1f} s from the call to the first trial training, "
                      f"{figures['fixed_end_s']:.1f} s from the last trial told to the return; per trial: "
                      f"{figures['steady_overhead_per_trial_s']:.2f} s not training once started, "
                      f"{figures['memory_per_trial_mib']:.0f} MiB per concurrent trial", flush=True)
                print(f"round {round_}: {side:<6} peak PSS by process, MiB: {tree.describe_peak()} "
                      f"(the tree at the side's start: {tree.start_pss_kib / 1024:.0f})", flush=True)

    def median(side: str, key: str) -> float:
        return statistics.median(float(row[key]) for row in rows[side])

    def peak(side: str) -> float:
        # Plain: the first round only. Later rounds start in a process that holds Ray's modules and
        # the engine's leftovers, which would inflate the reference. The engine's driver carries the
        # plain side's imports every round (against the engine): the median of its rounds.
        if side == "plain":
            return memory[side][0].peak_pss_gib
        return statistics.median(tree.peak_pss_gib for tree in memory[side])

    print()
    print("gap s / tail s: slot time with no trial, between trials / at the end of the search; start s: time the first trial of")
    print("each slot spent not training (worker start-up); effic.-tail: efficiency leaving out the tail;")
    print("s/trial: time each later trial spent not training (set-up, result round trips, checkpoints)")
    print(f"{'side':<7} {'span s':>7} {'call s':>7} {'epochs':>6} {'inside s':>8} {'s/epoch':>7} {'effic.':>6} "
          f"{'effic.call':>10} {'ovh s/trial':>11} {'effic.-tail':>11} {'gap s':>5} {'tail s':>6} {'start s':>7} {'s/trial':>7} {'peak GiB':>8} {'best':>6}")
    for side in rows:
        print(f"{side:<7} {median(side, 'span_s'):7.1f} {median(side, 'call_s'):7.1f} {median(side, 'epochs'):6.0f} "
              f"{median(side, 'busy_s'):8.1f} {median(side, 'wall_per_epoch_s'):7.2f} {median(side, 'efficiency'):6.3f} "
              f"{median(side, 'efficiency_call'):10.3f} {median(side, 'overhead_per_trial_s'):11.2f} {median(side, 'efficiency_before_tail'):11.3f} "
              f"{median(side, 'gap_idle_s'):5.1f} {median(side, 'tail_idle_s'):6.1f} "
              f"{median(side, 'first_trials_overhead_s'):7.1f} {median(side, 'steady_trial_overhead_s'):7.2f} {peak(side):8.2f} "
              f"{median(side, 'best'):6.3f}")
    figures = {}
    for side in ("engine", "plain"):
        figures.update({
            f"{side}_span_s": median(side, "span_s"), f"{side}_call_s": median(side, "call_s"),
            f"{side}_epochs": int(median(side, "epochs")), f"{side}_inside_s": median(side, "busy_s"),
            f"{side}_efficiency": median(side, "efficiency"), f"{side}_efficiency_call": median(side, "efficiency_call"),
            f"{side}_overhead_per_trial_s": median(side, "overhead_per_trial_s"), f"{side}_peak_gib": peak(side),
            f"{side}_efficiency_before_tail": median(side, "efficiency_before_tail"),
            f"{side}_overhead_per_trial_before_tail_s": median(side, "overhead_per_trial_before_tail_s"),
            f"{side}_gap_idle_s": median(side, "gap_idle_s"), f"{side}_tail_idle_s": median(side, "tail_idle_s"),
            f"{side}_first_trials_overhead_s": median(side, "first_trials_overhead_s"),
            f"{side}_steady_trial_overhead_s": median(side, "steady_trial_overhead_s"),
            f"{side}_fixed_startup_s": median(side, "fixed_startup_s"), f"{side}_fixed_end_s": median(side, "fixed_end_s"),
            f"{side}_steady_overhead_per_trial_s": median(side, "steady_overhead_per_trial_s"),
            f"{side}_memory_per_trial_mib": median(side, "memory_per_trial_mib"),
        })
    figures.update({
        "ratio_wall_per_epoch": median("engine", "wall_per_epoch_s") / median("plain", "wall_per_epoch_s"),
        "ratio_efficiency": figures["engine_efficiency"] / figures["plain_efficiency"],
        "ratio_overhead_per_trial": figures["engine_overhead_per_trial_s"] / max(1e-9, figures["plain_overhead_per_trial_s"]),
        "ratio_peak_memory": figures["engine_peak_gib"] / figures["plain_peak_gib"],
        "steady_overhead_difference_s": figures["engine_steady_overhead_per_trial_s"] - figures["plain_steady_overhead_per_trial_s"],
        "trials": args.trials, "max_epochs": args.max_epochs, "concurrency": args.concurrency, "rounds": args.rounds,
    })
    print()
    print("the overhead in three figures (issue 25; medians):")
    for side, bound in (("engine", "  "), ("plain", "<=")):  # plain's includes what its first trial imports once
        print(f"  {side:<6} fixed start-up per search {figures[f'{side}_fixed_startup_s']:6.1f} s, "
              f"steady overhead per trial {figures[f'{side}_steady_overhead_per_trial_s']:5.2f} s, "
              f"memory per additional concurrent trial {bound}{figures[f'{side}_memory_per_trial_mib']:4.0f} MiB")
    print(f"  targets: steady overhead per trial within 0.1 s of plain's: {figures['steady_overhead_difference_s']:+.2f} s "
          f"({'met' if figures['steady_overhead_difference_s'] <= 0.1 else 'not met'}); efficiency engine / plain >= 0.98 at "
          f"100 trials: {figures['ratio_efficiency']:.3f} at {args.trials} trials"
          + ("" if args.trials >= 100 else " (run --trials 100 for the target's size)"))
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
