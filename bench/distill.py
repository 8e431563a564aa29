"""Distillation and compression on SST-2: how much of a teacher's score a small student keeps.

    .venv/bin/python bench/distill.py --teacher runs/minilm-sst2      # a folder `search train --out` wrote
    .venv/bin/python bench/distill.py --teacher DIR --trials 4 --max-epochs 2 --train-sentences 500   # smoke run

1. The teacher: its dev and test accuracy (`search train`'s metrics.json) and its parameters.
2. A search of students (BiLSTM and TextCNN, small embeddings) with and without distillation
   (`distillation: [none, kl, mse]`), through the engine (`run_search`: Ray, ASHA, the Optuna DB),
   the teacher's logits computed once and cached.
3. The best distilled student with at least 90% fewer parameters than the teacher (else the
   smallest-ratio one, said so), trained again in this process with the runner: as found, without
   distillation (same architecture, same seed: the gain distillation gives), quantized, and pruned
   (half its weights, one fine-tuning epoch); each scored on dev and test.
4. The Pareto front of dev accuracy against CPU latency per example (batch 1) over every model of
   the run (the search's completed trials and the follow-ups).
Ends with a RESULT line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_DATA_ROOT, quiet_ray_environment, require_sst2, result_line, sst2_study, sst2_subset  # noqa: E402

STUDENT_SPACE = {
    "encoder": {"choices": ["bilstm", "textcnn"], "params": {"bilstm": {"hidden": [64, 192], "layers": [1, 2]}, "textcnn": {"filters": [64, 192], "layers": 1}}},
    "addons": [],
    "loss": ["cross_entropy"],
    "regularizers": {"search": ["weight_decay"], "always": ["dropout"], "params": {"dropout": {"p": [0.2, 0.5]}}},
    "optimizer": {"choices": ["adam"], "params": {"adam": {"lr": [0.0005, 0.005]}}},
    "schedule": ["constant", "cosine"],
    "distillation": {"choices": ["none", "kl", "mse"], "params": {"kl": {"temperature": [1.0, 10.0]}}},
    "batch_size": [32, 64],
    "embedding_dim": [64, 128],  # small: the embedding table is most of a student's parameters
}
PRUNE = {"name": "prune", "prune": {"amount": 0.5, "finetune": True}}


def teacher_figures(folder: Path) -> dict[str, float]:
    """The teacher's dev and test accuracy (its metrics.json) and parameters (its safetensors' shapes)."""
    from safetensors import safe_open

    metrics = json.loads((folder / "metrics.json").read_text())
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        params = sum(_numel(weights.get_slice(name).get_shape()) for name in weights.keys())
    return {"dev": metrics["dev"]["accuracy"], "test": metrics["test"]["accuracy"], "params": params}


def _numel(shape: list[int]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def train_and_score(task: Any, config: dict[str, Any], data: Any, epochs: int, seed: int) -> dict[str, Any]:
    """One strategy trained by the runner in this process: its last epoch's report and its saved
    model's test accuracy (compressed as the strategy says)."""
    from trainables import TrialSettings, run_trial

    # One thread, as a search trial has (cpu: 1): latency figures compare with the trials'.
    settings = TrialSettings(metric="accuracy", mode="max", max_epochs=epochs, seed=seed, threads=1)
    with tempfile.TemporaryDirectory() as folder:
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            last.update(metrics)
            if checkpoint_dir:
                Path(folder, "state.pt").write_bytes(Path(checkpoint_dir, "state.pt").read_bytes())

        run_trial(task, config, task.data_for(config, data), settings, report)
        last["test_accuracy"] = task.evaluate_checkpoint(config, data, settings, folder, "test")["accuracy"]
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", type=Path, required=True, help="a folder `search train --out` wrote for SST-2 (e.g. MiniLM fine-tuned)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-sentences", type=int, default=None, help="first N SST-2 training sentences (default all 6,920)")
    args = parser.parse_args()
    require_sst2(args.data_root)
    teacher_folder = args.teacher.expanduser().resolve()
    if not (teacher_folder / "metrics.json").is_file():
        parser.error(f"--teacher {teacher_folder}: no metrics.json; give a folder `search train --out` wrote")
    quiet_ray_environment()

    import optuna
    import yaml
    from optuna.trial import TrialState

    from search.config import load_study_file
    from search.engine import load_teacher, run_search
    from search.report import nondominated

    teacher = teacher_figures(teacher_folder)
    print(f"teacher {teacher_folder.name}: dev {teacher['dev']:.4f} test {teacher['test']:.4f}, {teacher['params'] / 1e6:.2f}M parameters", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-distill-") as temp:
        folder = Path(temp)
        root = sst2_subset(args.data_root, folder / "data", args.train_sentences)
        study = sst2_study("distill", storage=f"sqlite:///{folder / 'study.db'}", trials=args.trials, max_epochs=args.max_epochs,
                           concurrency=args.concurrency, seed=args.seed, space=STUDENT_SPACE, reduction_factor=3)
        study["teacher"] = {"path": str(teacher_folder)}
        study_file = folder / "distill.yaml"
        study_file.write_text(yaml.safe_dump(study, sort_keys=False))
        config = load_study_file(study_file)

        started = time.perf_counter()
        run_search(config, data_root=root, storage_path=folder / "ray_results", ray_temp_dir=folder / "ray",
                   log=lambda line: print(f"  search | {line}", flush=True))
        search_s = time.perf_counter() - started
        trials = [t for t in optuna.load_study(study_name="distill", storage=config.storage).trials if t.state == TrialState.COMPLETE]
        if not trials:
            print("error: no trial completed", file=sys.stderr)
            sys.exit(1)

        # 3) the best distilled student small enough (at most 10% of the teacher's parameters).
        distilled = [t for t in trials if t.params["distillation/name"] != "none"] or trials
        small = [t for t in distilled if t.user_attrs["metrics"]["model_params"] <= 0.1 * teacher["params"]]
        best = max(small or distilled, key=lambda t: t.value)
        best_config = best.user_attrs["config"]
        task = config.get_task()
        data = load_teacher(config, task, task.load_data(config.data, str(root), config.seed), str(root))
        variants = {
            "student": best_config,
            "no_distillation": {**best_config, "distillation": {"name": "none"}},
            "quantized": {**best_config, "compression": {"name": "quantize"}},
            "pruned": {**best_config, "compression": PRUNE},
        }
        runs = {}
        for name, variant in variants.items():
            runs[name] = train_and_score(task, variant, data, args.max_epochs, args.seed)
            run = runs[name]
            print(f"  {name:16s} dev {run['accuracy']:.4f} test {run['test_accuracy']:.4f}  {run['model_params'] / 1e6:.2f}M params "
                  f"({run['nonzero_params'] / 1e6:.2f}M non-zero), {run['model_bytes'] / 1e6:.2f} MB, {run['latency_ms_b1']:.3f} ms/example at batch 1, "
                  f"{run['latency_ms_b32']:.3f} at 32", flush=True)

    student, plain = runs["student"], runs["no_distillation"]
    points = [(f"trial {t.number} {t.user_attrs['strategy']}", t.value, t.user_attrs["metrics"]["latency_ms_b1"]) for t in trials]
    points += [(f"{name} (trial {best.number})", run["accuracy"], run["latency_ms_b1"]) for name, run in runs.items()]
    front = nondominated(points)  # the report's front (search.report), over the follow-ups too
    print(f"\nsearch: {len(trials)} completed trials in {search_s:.0f} s; best distilled student: trial {best.number}, "
          f"{best.params['distillation/name']}, {student['model_params'] / teacher['params']:.1%} of the teacher's parameters")
    print(f"Pareto front, dev accuracy against CPU latency per example (batch 1), {len(front)} points:")
    for name, accuracy, latency in front:
        print(f"  {latency:8.3f} ms  {accuracy:.4f}  {name}")
    figures = {
        "teacher_dev": teacher["dev"], "teacher_test": teacher["test"], "teacher_params": teacher["params"],
        "student_dev": student["accuracy"], "student_test": student["test_accuracy"], "student_params": student["model_params"],
        "params_reduction": 1 - student["model_params"] / teacher["params"],
        "kept_of_teacher_test": student["test_accuracy"] / teacher["test"],
        "no_distillation_test": plain["test_accuracy"], "distillation_gain_test": student["test_accuracy"] - plain["test_accuracy"],
        "distillation_gain_dev": student["accuracy"] - plain["accuracy"],
        # The compressed runs train the student's config with its seed again, then compress it.
        "quantized_dev_change": runs["quantized"]["accuracy"] - runs["quantized"]["uncompressed_accuracy"],
        "quantized_test_change": runs["quantized"]["test_accuracy"] - student["test_accuracy"],
        "quantized_latency_ratio": runs["quantized"]["latency_ms_b1"] / runs["quantized"]["uncompressed_latency_ms_b1"],
        "pruned_dev_change": runs["pruned"]["accuracy"] - runs["pruned"]["uncompressed_accuracy"],
        "pruned_test_change": runs["pruned"]["test_accuracy"] - student["test_accuracy"],
        "pruned_latency_ratio": runs["pruned"]["latency_ms_b1"] / runs["pruned"]["uncompressed_latency_ms_b1"],
        "pareto_points": len(front), "trials": len(trials), "search_s": search_s,
    }
    print(result_line(figures))


if __name__ == "__main__":
    main()
