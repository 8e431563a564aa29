"""Quality: does the search beat the published baseline on the same split, and the published best?

    .venv/bin/python bench/quality.py mpqa mr subj sst2 wnut17          # the CPU rows (hours on 2 cores)
    .venv/bin/python bench/quality.py mpqa --trials 8 --max-epochs 4 --folds 3   # a smaller, stated budget

Per dataset, in one run:
1. a search with a declared budget (trials, max epochs, concurrency) on the shipped study
   (`studies/DATASET.yaml`), its space and its baseline (the research's model class, trial 0,
   never stopped by ASHA). Datasets without a fixed split (MR, SUBJ, MPQA, CR) are cut into
   `--folds` folds (seeded); the search sees only fold 0's training part, with a dev split carved
   from it, and never fold 0's test part;
2. the search's best config and the baseline config, each retrained to the full epoch budget and
   scored on test: on every fold (seed = fold) for the cross-validated sets, else with `--seeds`
   seeds on the dataset's own split;
3. one row: model class, published baseline and best, our baseline and our best (mean and standard
   deviation), the budget used (trials, epochs trained, CPU-hours), the winning strategy.
The rows are printed, written to `bench/RESULTS.md` (with the machine, the command and the date)
and summed up in a RESULT line. IMDB, CoNLL-2003 and SQuAD are sized for a GPU machine: their rows
say so unless asked for by name.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_DATA_ROOT, REPO, quiet_ray_environment, result_line  # noqa: E402

# Published test figures (%, the research's tables; ../shared/DESIGN.md): model class, baseline, best, what the best used.
PUBLISHED = {
    "mr": ("TextCNN", 77.3, 78.5, "best of L1, L2"),
    "subj": ("TextCNN", 92.5, 93.6, "best of L1, L2"),
    "mpqa": ("TextCNN", 85.7, 86.3, "best of L1, L2"),
    "cr": ("TextCNN", None, None, "no published figure"),
    "sst2": ("BiLSTM", 84.2, 85.4, "LayerNorm"),
    "wnut17": ("BiLSTM-CRF", 41.9, 45.0, "GHM loss (entity F1)"),
    "imdb": ("TextCNN", 89.2, 91.5, "multi-head self-attention"),
    "conll2003": ("BiLSTM-CRF", 89.7, 91.8, "focal loss (entity F1)"),
    "squad": ("BiDAF", None, None, "+2.4 EM, +1.8 F1 with contrastive terms"),
}
CROSS_VALIDATED = {"mr": "sentence/mr/rt-polarity.all", "subj": "sentence/subj/subj.all", "mpqa": "sentence/mpqa/mpqa.all", "cr": "sentence/cr/custrev.all"}
GPU_SIZED = ("imdb", "conll2003", "squad")
RESULTS = REPO / "bench" / "RESULTS.md"


@dataclass
class Row:
    dataset: str
    model_class: str
    published_baseline: float | None
    published_best: float | None
    baseline: list[float]
    best: list[float]
    trials: int
    epochs_trained: int
    cpu_hours: float
    strategy: str
    protocol: str

    def cells(self) -> list[str]:
        def spread(scores: list[float]) -> str:
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            return f"{100 * statistics.mean(scores):.1f} ± {100 * std:.1f}"

        published = lambda value: "–" if value is None else f"{value:.1f}"  # noqa: E731
        return [
            self.dataset, self.model_class, published(self.published_baseline), published(self.published_best),
            spread(self.baseline), spread(self.best), f"{100 * (statistics.mean(self.best) - statistics.mean(self.baseline)):+.1f}",
            f"{self.trials} trials, {self.epochs_trained} epochs, {self.cpu_hours:.2f} CPU-h", self.protocol, f"`{self.strategy}`",
        ]


HEADER = ["dataset", "model class", "published baseline", "published best", "our baseline", "our best", "gain", "budget", "test protocol", "winning strategy"]


def folds_of(lines: list[bytes], folds: int, seed: int = 0) -> list[tuple[list[bytes], list[bytes]]]:
    """(train, test) lines of each fold: a seeded permutation cut into `folds` near-equal parts."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(lines))
    parts = np.array_split(order, folds)
    return [([lines[i] for j, part in enumerate(parts) if j != k for i in part], [lines[i] for i in parts[k]]) for k in range(folds)]


def write_fold(root: Path, dataset: str, k: int, train: list[bytes], test: list[bytes]) -> dict[str, str]:
    files = {"train": f"{dataset}/fold{k}/train", "test": f"{dataset}/fold{k}/test"}
    for split, lines in (("train", train), ("test", test)):
        path = root / files[split]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
    return files


def study_for(dataset: str, storage: str, args: argparse.Namespace, files: dict[str, str] | None) -> Any:
    """The shipped study with the declared budget; for a fold, its files and a dev split carved from train."""
    import yaml

    from search.config import parse_study

    path = REPO / "studies" / f"{dataset}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["name"] = f"quality_{dataset}"
    raw["storage"] = storage
    raw["budget"] = {**raw["budget"], "trials": args.trials, "max_epochs": args.max_epochs, "concurrency": args.concurrency,
                     "resources": {"cpu": 1, "gpu": 0}}
    raw["asha"] = {**raw.get("asha", {}), "grace_period": min(raw.get("asha", {}).get("grace_period", 1), args.max_epochs)}
    if files is not None:
        raw["data"] = {**raw["data"], "local": {**raw["data"]["local"], "files": files}, "carve": {"validation": 0.1}}
        raw["data"].pop("hub", None)
    return parse_study(raw, str(path), dataset)


def retrain(task: Any, config: dict[str, Any], data: Any, study: Any, seed: int) -> float:
    """The test score of `config` trained to the full budget with `seed` (last epoch's model)."""
    from trainables import TrialSettings, run_trial

    settings = TrialSettings(metric=study.metric, mode=study.mode, max_epochs=study.budget.max_epochs, seed=seed, threads=os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as folder:
        def keep(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            if checkpoint_dir:
                Path(folder, "state.pt").write_bytes(Path(checkpoint_dir, "state.pt").read_bytes())

        run_trial(task, config, data, settings, keep)
        return task.evaluate_checkpoint(config, data, settings, folder, "test")[study.metric]


def run_dataset(dataset: str, args: argparse.Namespace, work: Path) -> Row:
    import optuna

    from search import run_search

    started, cpu_started = time.perf_counter(), time.process_time()
    storage = f"sqlite:///{work / f'{dataset}.db'}"
    fold_files: list[dict[str, str]] = []
    data_root = args.data_root
    if dataset in CROSS_VALIDATED:
        data_root = work / "folds"
        lines = (args.data_root / CROSS_VALIDATED[dataset]).read_bytes().splitlines(keepends=True)
        lines = [line for line in lines if line.strip()]
        fold_files = [write_fold(data_root, dataset, k, train, test) for k, (train, test) in enumerate(folds_of(lines, args.folds))]
    study = study_for(dataset, storage, args, fold_files[0] if fold_files else None)
    summary = run_search(study, data_root=data_root, storage_path=work / "ray_results", ray_temp_dir=work / "ray", verbose=0,
                         log=lambda line: print(f"  [{dataset}] {line}", flush=True) if args.verbose else None)
    trials = optuna.load_study(study_name=study.name, storage=storage).trials
    best = next(t for t in trials if t.number == summary.best_trial)
    baseline = next(t for t in trials if t.user_attrs.get("baseline"))
    epochs = sum(int(t.user_attrs.get("epochs_trained", 0)) for t in trials)
    print(f"  [{dataset}] search: best trial {best.number} dev {best.value:.4f} ({best.user_attrs['strategy']}); "
          f"baseline trial {baseline.number} dev {baseline.value:.4f}", flush=True)

    task = study.get_task()
    scores: dict[str, list[float]] = {"baseline": [], "best": []}
    runs = [(k, study_for(dataset, storage, args, files)) for k, files in enumerate(fold_files)] or [(seed, study) for seed in range(args.seeds)]
    for seed, run_study in runs:
        data = task.load_data(run_study.data, data_root, run_study.seed)
        for side, trial in (("baseline", baseline), ("best", best)):
            scores[side].append(retrain(task, trial.user_attrs["config"], data, run_study, seed))
        print(f"  [{dataset}] {'fold' if fold_files else 'seed'} {seed}: baseline {scores['baseline'][-1]:.4f}, best {scores['best'][-1]:.4f}", flush=True)
    model_class, published_baseline, published_best, _ = PUBLISHED[dataset]
    protocol = f"{args.folds}-fold CV (search on fold 0's train)" if fold_files else f"{args.seeds} seeds, own split"
    wall = time.perf_counter() - started
    cpu_hours = max(time.process_time() - cpu_started, wall * min(args.concurrency, os.cpu_count() or 1)) / 3600
    return Row(dataset, model_class, published_baseline, published_best, scores["baseline"], scores["best"], len(trials), epochs,
               cpu_hours, best.user_attrs["strategy"], protocol)


def write_results(rows: list[Row], command: str) -> None:
    """bench/RESULTS.md: one table per run of this script, newest first, below the header text."""
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU, Python {platform.python_version()}"
    table = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)] + ["| " + " | ".join(row.cells()) + " |" for row in rows]
    section = "\n".join([f"## {datetime.date.today().isoformat()}: `{command}`", "", f"Machine: {machine}.", "", *table, ""])
    intro = "# Quality: the search against the published figures\n\nWritten by `bench/quality.py` (see its docstring); newest run first. Scores are test %.\n"
    old = RESULTS.read_text().split("\n## ", 1) if RESULTS.exists() else [intro]
    rest = "\n## " + old[1] if len(old) > 1 else ""
    RESULTS.write_text(intro + "\n" + section + rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="+", choices=sorted(PUBLISHED))
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=5, help="retraining seeds on datasets with their own split")
    parser.add_argument("--folds", type=int, default=10, help="cross-validation folds for MR, SUBJ, MPQA, CR")
    parser.add_argument("--verbose", action="store_true", help="print the search's progress lines")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    if args.folds < 2 or args.seeds < 1:
        parser.error("--folds must be >= 2 and --seeds >= 1")
    quiet_ray_environment()
    rows = []
    with tempfile.TemporaryDirectory(prefix="quality-") as folder:
        for dataset in args.datasets:
            print(f"{dataset}: searching ({args.trials} trials x {args.max_epochs} epochs, {args.concurrency} at a time)", flush=True)
            rows.append(run_dataset(dataset, args, Path(folder)))
    print("\n| " + " | ".join(HEADER) + " |")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    if not args.no_write:
        write_results(rows, "python bench/quality.py " + shlex.join(sys.argv[1:]))
    figures: dict[str, Any] = {}
    for row in rows:
        gain = statistics.mean(row.best) - statistics.mean(row.baseline)
        spread = statistics.stdev(row.best) if len(row.best) > 1 else 0.0
        figures[f"{row.dataset}_gain_points"] = 100 * gain
        figures[f"{row.dataset}_beats_baseline_by_more_than_std"] = str(gain > spread).lower()
    print(result_line(figures))


if __name__ == "__main__":
    main()
