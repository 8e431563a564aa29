"""GPU packing: aggregate training throughput of 1, 2, 4 and 8 trials sharing one GPU, relative to 1.

Each packing is one `search.engine.run_search` call with `budget.resources.gpu = 1 / k` and
concurrency k, so Ray places k trials on the one GPU at once (`gpu: 0.25` -> 4 trials share it),
with mixed precision on (the trainable's default on CUDA: bfloat16 autocast where the GPU has it,
else float16 with a gradient scaler). Every trial trains the same TextCNN strategy on SST-2 for
`--epochs` epochs (no early stopping: ASHA's grace period is the epoch count), with `--trials-per-slot`
trials per concurrent slot so that every packing keeps the GPU busy for several trials.

Throughput = training examples processed by all trials / the search span (first trial asked to last
trial told, from the study's records). The figure is that throughput over the one at 1 trial per GPU.
All packings run in this process, one after the other.

Needs a CUDA GPU and a CUDA build of torch; elsewhere it exits with status 3 and says so.

    python bench/gpu_packing.py [--packings 1,2,4,8] [--epochs 3] [--trials-per-slot 2]

The last line is `RESULT ...` for scripts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/gpu_packing.py` without installing the project

from bench._common import DEFAULT_DATA_ROOT, quiet_ray_environment, require_sst2, result_line, sst2_study, trial_figures  # noqa: E402

# One fixed strategy: the catalogue's TextCNN size (embedding 300, 100 filters per kernel), Adam.
SPACE: dict[str, Any] = {
    "encoder": {"choices": ["textcnn"], "params": {"textcnn": {"filters": 100, "layers": 1}}},
    "addons": {"search": [], "always": []},
    "loss": "cross_entropy",
    "regularizers": {"search": [], "always": ["dropout"]},
    "optimizer": {"choices": ["adam"], "params": {"adam": {"lr": 0.001}}},
    "schedule": "constant",
    "batch_size": 64,
    "embedding_dim": 300,
}


def run_packing(per_gpu: int, args: argparse.Namespace, root: Path) -> dict[str, float]:
    import optuna

    from search.config import parse_study
    from search.engine import run_search

    trials = per_gpu * args.trials_per_slot
    raw = sst2_study(f"packing-{per_gpu}", storage=f"sqlite:///{root / 'packing.db'}", trials=trials, max_epochs=args.epochs,
                     concurrency=per_gpu, seed=0, space=SPACE, grace_period=args.epochs, gpu=1.0 / per_gpu)
    config = parse_study(raw, f"bench/gpu_packing.py ({per_gpu} per GPU)", f"packing-{per_gpu}")
    run_search(config, data_root=args.data_root, storage_path=root / f"ray_results-{per_gpu}", ray_temp_dir=root / f"ray-{per_gpu}",
               log=lambda line: print(f"  {per_gpu} per GPU | {line}", flush=True) if "progress:" in line or "note:" in line else None)
    study = optuna.load_study(study_name=config.name, storage=config.storage)
    failed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
    if failed:
        raise RuntimeError(f"{len(failed)} trials failed at {per_gpu} per GPU, e.g.: {failed[0].user_attrs.get('error')}")
    figures = trial_figures(study)
    examples = figures["epochs"] * args.train_examples
    return {"span_s": figures["span_s"], "examples_per_s": examples / figures["span_s"], "inside_s": figures["busy_s"], "trials": figures["trials"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packings", default="1,2,4,8", help="trials per GPU to measure; the first is the reference")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials-per-slot", type=int, default=2, help="trials per concurrent slot (k trials per GPU run k x this many)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/")
    args = parser.parse_args(argv)
    try:
        packings = [int(value) for value in args.packings.split(",")]
    except ValueError:
        parser.error(f"--packings {args.packings!r}: give comma-separated integers such as 1,2,4,8")
    if not packings or min(packings) < 1 or args.epochs < 1 or args.trials_per_slot < 1:
        parser.error("--packings, --epochs and --trials-per-slot must be positive")

    import torch

    if not torch.cuda.is_available():
        print(f"error: no CUDA GPU here (torch {torch.__version__}, torch.cuda.is_available() is False): gpu_packing.py measures "
              "trials sharing a GPU and needs one; run it on a GPU machine with a CUDA build of torch", file=sys.stderr)
        return 3
    quiet_ray_environment()
    require_sst2(args.data_root)

    import datasets

    datasets.disable_progress_bars()
    args.train_examples = sum(1 for line in (args.data_root / "sentence/sst2/stsa.binary.train").read_bytes().splitlines() if line.strip())
    name = torch.cuda.get_device_name(0)
    bf16 = torch.cuda.is_bf16_supported()
    print(f"gpu_packing: {name}, torch {torch.__version__}, mixed precision {'bfloat16' if bf16 else 'float16 + GradScaler'}; "
          f"packings {packings}, {args.epochs} epochs per trial, {args.trials_per_slot} trials per slot, "
          f"{args.train_examples} SST-2 training sentences", flush=True)

    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        for per_gpu in packings:
            rows[per_gpu] = row = run_packing(per_gpu, args, Path(scratch))
            print(f"{per_gpu} per GPU: {row['trials']} trials in {row['span_s']:.1f} s, {row['examples_per_s']:.0f} examples/s "
                  f"({row['examples_per_s'] / rows[packings[0]]['examples_per_s']:.2f}x)", flush=True)
    reference = rows[packings[0]]["examples_per_s"]
    figures: dict[str, Any] = {}
    for per_gpu, row in rows.items():
        figures[f"per_gpu_{per_gpu}_examples_per_s"] = row["examples_per_s"]
        figures[f"per_gpu_{per_gpu}_relative"] = row["examples_per_s"] / reference
    figures.update({"gpu": name, "amp": "bf16" if bf16 else "fp16", "epochs": args.epochs, "trials_per_slot": args.trials_per_slot})
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
