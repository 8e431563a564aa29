"""Peak memory of a reading-comprehension trial: the SQuAD dev file against the same file made 10x larger.

Two files: the official SQuAD v1.1 dev file, and a file of the same format whose article list is the
dev file's repeated ten times (written to a temporary folder, never into the repository). Each is
split by article (validation 10%, test 10%) and encoded as a search would do it, then one trial's
training runs a fixed number of steps on it. Every phase runs in its own fresh process, so each
peak (`ru_maxrss`) is that phase's own:

- load: `load_reading_comprehension` (read the JSON through `datasets`, flatten, tokenize, encode),
  as the search driver does once; its result is pickled, as Ray ships it to the trials.
- trial: unpickle the data, build the model, and train `--steps` steps of `--batch-size` questions.
  Every step uses questions whose window is a full `--max-context-tokens` tokens, so both files train
  on batches of the same shape and the difference between the two peaks is what the dataset's size
  costs a trial.

    .venv/bin/python bench/reading_comprehension_memory.py                      # about 2 min on 2 cores
    .venv/bin/python bench/reading_comprehension_memory.py --steps 5 --repeat 2 # quick smoke run

The last line can be read by a script:
`RESULT dev_trial_peak_mib=... x10_trial_peak_mib=... trial_ratio=... dev_load_peak_mib=...
x10_load_peak_mib=... dev_data_mib=... x10_data_mib=... steps=... batch_size=... max_context_tokens=...`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_FILE = "squad/dev-v1.1.json.gz"

# BiDAF at the catalogue's sizes (embedding 100, hidden 100, 1 layer, dropout 0.2), char CNN.
CONFIG = {
    "char_encoder": {"name": "cnn", "cnn": {"char_dim": 50, "filters": 100}},
    "encoder": {"name": "bilstm", "bilstm": {"hidden": 100, "layers": 1}},
    "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": True}},
    "loss": {"name": "cross_entropy", "cross_entropy": {}},
    "loss_terms": {"infonce": {"enabled": True, "weight": 0.1, "temperature": 0.1}},
    "decoder": {"name": "best_span", "best_span": {"max_answer_length": 15}},
    "regularizers": {"dropout": {"enabled": True, "p": 0.2}},
    "optimizer": {"name": "adam", "adam": {"lr": 0.001}},
    "schedule": {"name": "constant"},
    "train": {"batch_size": 32},
    "model": {"embedding_dim": 100},
}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def data_mib(data: object) -> float:
    """The bytes of every numpy array the encoded data holds."""
    import numpy as np

    total = 0
    for split in (data.train, data.validation, data.test):
        if split is not None:
            total += sum(value.nbytes for value in vars(split).values() if isinstance(value, np.ndarray))
    return (total + data.type_words.nbytes + data.type_chars.nbytes) / 2**20


def spec(path: Path, max_context_tokens: int) -> object:
    from trainables.data import ReadingComprehensionDataSpec, SquadFiles

    return ReadingComprehensionDataSpec("squad", local=SquadFiles({"train": str(path)}), carve={"validation": 0.1, "test": 0.1}, max_context_tokens=max_context_tokens)


def child_load(args: argparse.Namespace) -> None:
    from trainables.data import load_reading_comprehension

    data = load_reading_comprehension(spec(Path(args.file), args.max_context_tokens), None, seed=0)
    with open(args.out, "wb") as handle:
        pickle.dump(data, handle, protocol=pickle.HIGHEST_PROTOCOL)
    print(json.dumps({"peak_mib": peak_mib(), "data_mib": data_mib(data), "questions": len(data.train) + len(data.validation) + len(data.test)}))


def child_train(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from spaces import Strategy
    from spaces.loss_terms import LOSS_TERMS
    from trainables.optimization import Optimization, Precision
    from trainables.reading_comprehension import TASK, batches

    with open(args.data, "rb") as handle:
        data = pickle.load(handle)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = {**CONFIG, "train": {"batch_size": args.batch_size}}
    strategy = Strategy.from_config(config)
    trial = TASK.build(strategy, data)
    model = trial.model
    contrastive = LOSS_TERMS["infonce"].build(**strategy.toggles["loss_terms"]["infonce"])
    optimization = Optimization(strategy, model, 1, args.steps, Precision(torch.device("cpu"), False), "max")
    after_setup = peak_mib()

    split = data.train
    trainable = np.flatnonzero(split.answer_start >= 0)
    full = trainable[np.minimum(split.context_lengths()[trainable], data.max_context_tokens) == data.max_context_tokens]
    questions = np.resize(full, args.steps * args.batch_size)  # cycled: same shapes in every run
    model.train()
    started = time.perf_counter()
    for batch in batches(split, data, questions, args.batch_size, shuffle=False):
        scores = TASK.forward(model, batch)
        objective = TASK.loss(trial, scores, batch) + contrastive(*TASK.paired_encodings(scores, batch))
        optimization.step(objective)
    print(json.dumps({"peak_mib": peak_mib(), "setup_peak_mib": after_setup, "train_seconds": time.perf_counter() - started, "full_window_questions": len(full)}))


def run_child(*arguments: str, env: dict[str, str]) -> dict:
    output = subprocess.run([sys.executable, __file__, *arguments], check=True, capture_output=True, text=True, env=env, cwd=REPO)
    return json.loads(output.stdout.strip().splitlines()[-1])


def write_repeated(source: Path, target: Path, repeat: int) -> None:
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        document = json.load(handle)
    document["data"] = document["data"] * repeat
    with gzip.open(target, "wt", encoding="utf-8") as handle:
        json.dump(document, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-context-tokens", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=("load", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "load":
        return child_load(args)
    if args.child == "train":
        return child_train(args)

    dev = Path(args.data_root) / DEV_FILE
    if not dev.exists():
        print(f"SQuAD dev file not found: {dev} (give --data-root)", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="qa-memory-") as folder:
        folder_path = Path(folder)
        # The datasets cache of the big file goes to the temporary folder too, not ~/.cache.
        env = {**os.environ, "HF_DATASETS_CACHE": str(folder_path / "hf-cache"), "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
        repeated = folder_path / f"dev-x{args.repeat}.json.gz"
        write_repeated(dev, repeated, args.repeat)
        common = ["--max-context-tokens", str(args.max_context_tokens), "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        figures = {}
        for label, path in (("dev", dev), (f"x{args.repeat}", repeated)):
            pickled = folder_path / f"{label}.pkl"
            load = run_child("--child", "load", "--file", str(path), "--out", str(pickled), *common, env=env)
            trial = run_child("--child", "train", "--data", str(pickled), *common, env=env)
            figures[label] = (load, trial)
            print(
                f"{label:>4}: {load['questions']:>7} questions, encoded data {load['data_mib']:.1f} MiB, load peak {load['peak_mib']:.0f} MiB; "
                f"trial peak {trial['peak_mib']:.0f} MiB (after setup {trial['setup_peak_mib']:.0f} MiB), "
                f"{args.steps} steps in {trial['train_seconds']:.1f} s"
            )
    big = f"x{args.repeat}"
    (dev_load, dev_trial), (big_load, big_trial) = figures["dev"], figures[big]
    print(
        f"RESULT dev_trial_peak_mib={dev_trial['peak_mib']:.0f} {big}_trial_peak_mib={big_trial['peak_mib']:.0f} "
        f"trial_ratio={big_trial['peak_mib'] / dev_trial['peak_mib']:.3f} dev_load_peak_mib={dev_load['peak_mib']:.0f} "
        f"{big}_load_peak_mib={big_load['peak_mib']:.0f} dev_data_mib={dev_load['data_mib']:.1f} {big}_data_mib={big_load['data_mib']:.1f} "
        f"steps={args.steps} batch_size={args.batch_size} max_context_tokens={args.max_context_tokens}"
    )


if __name__ == "__main__":
    main()
