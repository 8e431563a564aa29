"""Defaults: does a first search with the space omitted beat the hand-set baseline on a new dataset?

    .venv/bin/python bench/defaults.py                          # sst2 cr mpqa wnut17: 16 trials x 6 epochs, 2 at a time, 3 seeds
    .venv/bin/python bench/defaults.py cr --trials 3 --max-epochs 1 --seeds 1   # a smoke run

Per dataset and seed, in one run:
1. a study file written as a new user would: the task, the data files (a dev and a test split
   carved from the one file of CR and MPQA), the metric and a budget (`--trials`, `--max-epochs`,
   `--concurrency`); no `space:` (every family, default ranges), no `baseline:` (the task's
   published baseline), no `sampler:` or `startup:` (the defaults). It is written to the run's
   work folder and read with `load_study_file`, as `search run` reads it;
2. the search (`run_search`), whose trial 0 is that baseline trained to the full `--max-epochs` with
   the study's seed: the hand-set model the issue compares with, trained as `search train` would;
3. the dev score of the baseline and of the best trial, and both scored on test by the engine
   (study attributes `baseline_test`, `best_trial_test`), with the win or loss on test in points.
Per dataset: the means over seeds, and whether the search won by at least `--target` points on
test (issue 28's target); the search's wall time against `--trials` baseline-sized trials run
`--concurrency` at a time. A RESULT line sums it up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_DATA_ROOT, quiet_ray_environment, result_line  # noqa: E402

# What a new user writes in `data:` for each dataset (files under the data root), the task and its metric.
DATASETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sst2": ("text_classification", "accuracy", {"local": {"format": "label_text", "files": {
        "train": "sentence/sst2/stsa.binary.train", "validation": "sentence/sst2/stsa.binary.dev", "test": "sentence/sst2/stsa.binary.test"}}}),
    "cr": ("text_classification", "accuracy", {"local": {"format": "label_text", "files": {"train": "sentence/cr/custrev.all"}},
                                               "carve": {"validation": 0.1, "test": 0.1}}),
    "mpqa": ("text_classification", "accuracy", {"local": {"format": "label_text", "files": {"train": "sentence/mpqa/mpqa.all"}},
                                                 "carve": {"validation": 0.1, "test": 0.1}}),
    "mr": ("text_classification", "accuracy", {"local": {"format": "label_text", "files": {"train": "sentence/mr/rt-polarity.all"}},
                                               "carve": {"validation": 0.1, "test": 0.1}}),
    "subj": ("text_classification", "accuracy", {"local": {"format": "label_text", "files": {"train": "sentence/subj/subj.all"}},
                                                 "carve": {"validation": 0.1, "test": 0.1}}),
    "wnut17": ("ner", "f1", {"local": {"format": "conll", "scheme": "iob2", "files": {
        "train": "wnut17/wnut17train.conll", "validation": "wnut17/emerging.dev.conll", "test": "wnut17/emerging.test.annotated"}},
        "scheme": "iob2"}),
}
DEFAULT_DATASETS = ("sst2", "cr", "mpqa", "wnut17")


def study_text(dataset: str, *, seed: int, storage: str, trials: int, max_epochs: int, concurrency: int) -> str:
    """The study file a new user writes for `dataset`: no space, no baseline, no sampler."""
    import yaml

    task, metric, data = DATASETS[dataset]
    study = {
        "name": f"defaults_{dataset}_seed{seed}",
        "task": task,
        "seed": seed,
        "data": {"name": dataset, **data},
        "metric": metric,
        "budget": {"trials": trials, "max_epochs": max_epochs, "concurrency": concurrency, "resources": {"cpu": 1, "gpu": 0}},
        "storage": storage,
    }
    command = f"# Run: search run {dataset}.yaml --data-root DIR   (written by bench/defaults.py: the space omitted)\n"
    return command + yaml.safe_dump(study, sort_keys=False)


@dataclass
class Outcome:
    """One search: the baseline (trial 0) and the best trial, on dev and on test."""

    dataset: str
    seed: int
    baseline_dev: float
    baseline_test: float
    best_dev: float
    best_test: float
    best_trial: int
    best_strategy: str
    search_s: float
    baseline_trial_s: float  # the baseline trial's own training time

    @property
    def test_gain_points(self) -> float:
        return 100 * (self.best_test - self.baseline_test)

    def line(self) -> str:
        verdict = "win" if self.best_test > self.baseline_test else ("tie" if self.best_test == self.baseline_test else "loss")
        return (f"  [{self.dataset} seed {self.seed}] baseline dev {self.baseline_dev:.4f} test {self.baseline_test:.4f}; "
                f"best (trial {self.best_trial}) dev {self.best_dev:.4f} test {self.best_test:.4f}: {verdict} "
                f"{self.test_gain_points:+.1f} points on test ({self.best_strategy}); search {self.search_s:.0f} s")


def run_one(dataset: str, seed: int, args: argparse.Namespace, work: Path) -> Outcome:
    import optuna

    from search import run_search
    from search.config import load_study_file

    storage = f"sqlite:///{work / f'{dataset}.db'}"
    path = work / f"{dataset}_seed{seed}.yaml"
    path.write_text(study_text(dataset, seed=seed, storage=storage, trials=args.trials, max_epochs=args.max_epochs, concurrency=args.concurrency))
    config = load_study_file(path)
    log = (lambda line: print(f"  [{dataset} seed {seed}] {line}", flush=True)) if args.verbose else (lambda line: None)
    summary = run_search(config, data_root=args.data_root, storage_path=work / "ray_results", ray_temp_dir=work / "ray", verbose=int(args.verbose), log=log)
    comparison = summary.baseline
    if comparison is None or comparison.baseline_value is None or comparison.best_value is None:
        raise SystemExit(f"{dataset} seed {seed}: the search has no completed baseline to compare with ({summary.states})")
    if comparison.baseline_test is None or comparison.best_test is None:
        raise SystemExit(f"{dataset} seed {seed}: the baseline or the best trial was not scored on test")
    study = optuna.load_study(study_name=config.name, storage=storage)
    baseline = study.trials[comparison.baseline_trial]
    best = study.trials[comparison.best_trial]
    return Outcome(dataset, seed, comparison.baseline_value, comparison.baseline_test, comparison.best_value, comparison.best_test,
                   best.number, best.user_attrs.get("strategy", "?"), summary.wall_seconds,
                   float(baseline.user_attrs.get("metrics", {}).get("trial_seconds", 0.0)))


def summarize(outcomes: list[Outcome], args: argparse.Namespace) -> dict[str, Any]:
    """Per dataset: mean dev and test of each side over seeds, the test gain, the verdict, the time ratio."""
    figures: dict[str, Any] = {}
    for dataset in dict.fromkeys(o.dataset for o in outcomes):
        mine = [o for o in outcomes if o.dataset == dataset]
        gain = statistics.mean(o.test_gain_points for o in mine)
        # What the same budget of baseline-sized trials takes: trials x one baseline trial, `concurrency` at a time.
        baseline_budget_s = statistics.mean(o.baseline_trial_s for o in mine) * args.trials / args.concurrency
        time_ratio = statistics.mean(o.search_s for o in mine) / baseline_budget_s if baseline_budget_s else float("nan")
        print(f"{dataset}: baseline dev {statistics.mean(o.baseline_dev for o in mine):.4f} test {statistics.mean(o.baseline_test for o in mine):.4f}; "
              f"best dev {statistics.mean(o.best_dev for o in mine):.4f} test {statistics.mean(o.best_test for o in mine):.4f}; "
              f"test gain {gain:+.2f} points over {len(mine)} seed(s): {'WIN' if gain >= args.target else 'LOSS'} "
              f"(target +{args.target:g}); search wall time {time_ratio:.2f}x that of {args.trials} baseline-sized trials", flush=True)
        figures[f"{dataset}_test_gain_points"] = gain
        figures[f"{dataset}_dev_gain_points"] = statistics.mean(100 * (o.best_dev - o.baseline_dev) for o in mine)
        figures[f"{dataset}_wins"] = str(gain >= args.target).lower()
        figures[f"{dataset}_time_ratio"] = time_ratio
    figures["all_win"] = str(all(figures[key] == "true" for key in figures if key.endswith("_wins"))).lower()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="*", default=list(DEFAULT_DATASETS), help=f"default: {' '.join(DEFAULT_DATASETS)}; accepted: {', '.join(DATASETS)}")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3, help="searches per dataset, study seeds 0..N-1")
    parser.add_argument("--target", type=float, default=1.0, help="test points the search must win by, on average over seeds")
    parser.add_argument("--keep", type=Path, help="keep the study files and databases in this folder")
    parser.add_argument("--verbose", action="store_true", help="print the searches' progress lines")
    args = parser.parse_args()
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; accepted: {', '.join(DATASETS)}")
    if min(args.trials, args.max_epochs, args.concurrency, args.seeds) < 1:
        parser.error("--trials, --max-epochs, --concurrency and --seeds must be >= 1")
    for dataset in args.datasets:
        missing = [f for f in DATASETS[dataset][2]["local"]["files"].values() if not (args.data_root / f).is_file()]
        if missing:
            parser.error(f"{dataset}: missing under {args.data_root}: {', '.join(missing)} (pass --data-root DIR)")
    quiet_ray_environment()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" per search
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="defaults-") as folder:
        work = args.keep or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            print(f"{dataset}: {args.seeds} search(es) of {args.trials} trials x {args.max_epochs} epochs, {args.concurrency} at a time, space omitted", flush=True)
            for seed in range(args.seeds):
                outcomes.append(run_one(dataset, seed, args, work))
                print(outcomes[-1].line(), flush=True)
    print(result_line({"trials": args.trials, "max_epochs": args.max_epochs, "seeds": args.seeds, **summarize(outcomes, args)}))


if __name__ == "__main__":
    main()
