"""Fixed start-up of a search and the memory of Ray's own processes: the lean start against the classic one.

Each round runs `search run` twice, each time as a fresh command (a new process, as a user types
it), on the same small SST-2 study (`bench/overhead.py`'s space, 2 trials of 1 epoch, 2 at a time,
the first `--train-sentences` training sentences): once as Ray was started before the lean start
(`SEARCH_CLASSIC_RAY_START=1`: idle workers prestarted, Ray's banners and init log lines printed),
once as `search run` starts it now. The order alternates from round to round. Measured per run:

- `startup_s`: from the command's start to the first trial training (the trial's first call,
  stamped by the trial itself, `bench._common.TrainingStart`);
- `startup_cpu_s`: the CPU seconds the command's process tree spent until then, less sensitive than
  the wall clock to other jobs on the machine;
- `ray_services_mib`: the peak PSS summed over Ray's own processes (everything the command started
  except its trial workers: GCS, raylet, dashboard, agents, monitors, idle workers), sampled every
  0.5 s from /proc (Linux);
- the lines of output that are not the engine's (Ray's banners and log lines).

Ratios are after / before, the median of the rounds' own ratios (both runs of a round share the
machine's load of the moment).

    python bench/startup.py [--rounds 6] [--train-sentences 1000] [--data-root DIR]

The last line is `RESULT ...` for scripts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/startup.py` without installing the project

from bench._common import (  # noqa: E402, I001
    DEFAULT_DATA_ROOT, TRIAL_WORKER, TrainingStart, cpu_seconds, first_training_start, memory_kib, process_name,
    process_title, process_tree, require_sst2, result_line, sst2_study, sst2_subset,
)
from bench.overhead import SPACE  # noqa: E402

# The environment of each side's command: the classic Ray start (`search.engine.CLASSIC_RAY_START_ENV`,
# named here so that this process does not import the engine), and the lean one `search run` uses.
SIDES = {"before": {"SEARCH_CLASSIC_RAY_START": "1"}, "after": {}}


# ---- the command, in its own process --------------------------------------------------------------


def run_command(study_file: str, data_root: str, storage_path: str, stamps: str) -> int:
    """`search run STUDY` as the command line runs it, with its trials stamping when they start training."""
    import search
    from search import cli

    def stamped_run_search(config: Any, **kwargs: Any) -> Any:
        from search.engine import run_search

        return run_search(config, trainable=TrainingStart(config.get_task().trainable, Path(stamps)), **kwargs)

    search.run_search = stamped_run_search  # what the command's `from search import run_search` finds
    return cli.main(["run", study_file, "--data-root", data_root, "--storage-path", storage_path])


# ---- one run, watched from outside ------------------------------------------------------------------


def is_engine_line(line: str) -> bool:
    """The engine's own output: `search:` lines, indented lines (steps, progress, summary), blanks."""
    return not line.strip() or line.startswith(("search:", "  "))


def watch_run(side: str, study_file: Path, data_root: Path, folder: Path) -> dict[str, Any]:
    """Runs the command once for `side` and returns its figures."""
    stamps = folder / f"stamps-{side}"
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {name: value for name, value in os.environ.items() if name not in SIDES["before"]}
    env.update(SIDES[side], RAY_TMPDIR=ray_temp, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0",
               HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, str(Path(__file__).resolve()), "--run-command", str(study_file), str(data_root),
               str(folder / f"ray_results-{side}"), str(stamps)]
    lines: list[tuple[float, str]] = []
    started = time.time()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.time() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    cpu: dict[int, float] = {}  # pid -> CPU seconds at its last reading
    cpu_samples: list[tuple[float, dict[int, float]]] = []  # (seconds since start, pid -> CPU seconds so far)
    pss_samples: list[dict[int, int]] = []  # pid -> PSS KiB, every 0.5 s
    names: dict[int, str] = {}
    trial_workers: set[int] = set()
    tick = 0
    while process.poll() is None:
        pids = process_tree(process.pid)
        for pid in pids:
            cpu[pid] = max(cpu.get(pid, 0.0), cpu_seconds(pid))
            title = process_title(pid)
            if title.startswith(TRIAL_WORKER):
                trial_workers.add(pid)
            if pid not in names or names[pid] in ("?", "python"):
                names[pid] = process_name(pid)
        cpu_samples.append((time.time() - started, dict(cpu)))
        if tick % 5 == 0:
            pss_samples.append({pid: memory_kib(pid)[0] for pid in pids if pid != process.pid})
        tick += 1
        time.sleep(0.1)
    reader.join(timeout=10)
    wait_gone(names.keys(), timeout_s=30)  # the next run should not share the machine with this one's teardown
    shutil.rmtree(ray_temp, ignore_errors=True)
    output = "\n".join(line for _, line in lines)
    if process.returncode != 0:
        raise SystemExit(f"{side}: `search run` exited with {process.returncode}:\n{output[-3000:]}")

    first_training = first_training_start(stamps)
    if first_training is None:
        raise SystemExit(f"{side}: no trial started training:\n{output[-3000:]}")
    startup = first_training - started
    cpu_until = next((sample for at, sample in reversed(cpu_samples) if at <= startup), {})
    cpu_by_name: dict[str, float] = {}
    for pid, seconds in cpu_until.items():
        name = "driver" if pid == process.pid else "trial worker" if pid in trial_workers else names.get(pid, "?")
        cpu_by_name[name] = cpu_by_name.get(name, 0.0) + seconds

    def services(sample: dict[int, int]) -> int:
        return sum(kib for pid, kib in sample.items() if pid not in trial_workers)

    peak = max(pss_samples, key=services)
    breakdown: dict[str, int] = {}
    for pid, kib in peak.items():
        if pid not in trial_workers:
            breakdown[names.get(pid, "?")] = breakdown.get(names.get(pid, "?"), 0) + kib
    first_line = {prefix: next((at for at, line in lines if prefix in line), float("nan"))
                  for prefix in ("data: local", "  started  ")}
    return {
        "startup_s": startup, "startup_cpu_s": sum(cpu_until.values()),
        "cpu_breakdown": ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(cpu_by_name.items(), key=lambda item: -item[1])),
        "ray_services_mib": services(peak) / 1024,
        "ray_processes": len({pid for sample in pss_samples for pid in sample} - trial_workers),
        "foreign_lines": sum(1 for _, line in lines if not is_engine_line(line)),
        "data_loaded_s": first_line["data: local"], "first_trial_started_s": first_line["  started  "],
        "breakdown": ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in sorted(breakdown.items(), key=lambda item: -item[1])),
        "foreign": [line for _, line in lines if not is_engine_line(line)],
    }


def wait_gone(pids: Iterable[int], timeout_s: float) -> None:
    """Waits until none of `pids` runs any more (Ray's processes outlive the command by a moment)."""
    deadline = time.monotonic() + timeout_s
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


# ---- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run-command"]:
        return run_command(*argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6,
                        help="[before, after] pairs, the order alternating (default 6; an even number gives each order as many rounds)")
    parser.add_argument("--train-sentences", type=int, default=1000, help="first N SST-2 training sentences (default 1000)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/")
    args = parser.parse_args(argv)
    if min(args.rounds, args.train_sentences) < 1:
        parser.error("--rounds and --train-sentences must be positive")
    require_sst2(args.data_root)
    import yaml

    print(f"startup: `search run` before (SEARCH_CLASSIC_RAY_START=1) and after the lean start, {args.rounds} rounds, "
          f"2 trials x 1 epoch on {args.train_sentences} SST-2 sentences; {os.cpu_count()} CPUs", flush=True)

    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
        root = Path(scratch)
        data_root = sst2_subset(args.data_root, root / "data", args.train_sentences)
        for round_ in range(1, args.rounds + 1):
            order = list(SIDES) if round_ % 2 else list(reversed(SIDES))
            for side in order:
                folder = root / f"round{round_}-{side}"
                folder.mkdir()
                raw = sst2_study("startup", storage=f"sqlite:///{folder / 'study.db'}", trials=2, max_epochs=1,
                                 concurrency=2, seed=round_, space=SPACE)
                study_file = folder / "startup.yaml"
                study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
                figures = watch_run(side, study_file, data_root, folder)
                rows[side].append(figures)
                print(f"round {round_}: {side:<6} start-up {figures['startup_s']:5.1f} s ({figures['startup_cpu_s']:5.1f} CPU s; "
                      f"data loaded at {figures['data_loaded_s']:.1f} s, first trial started at {figures['first_trial_started_s']:.1f} s), "
                      f"Ray's processes {figures['ray_services_mib']:.0f} MiB PSS ({figures['ray_processes']} processes), "
                      f"{figures['foreign_lines']} lines of output not the engine's", flush=True)
                if round_ == 1:
                    print(f"         {side:<6} Ray's processes at their peak, MiB: {figures['breakdown']}")
                    print(f"         {side:<6} CPU seconds until the first trial trained: {figures['cpu_breakdown']}")
                    for line in figures["foreign"][:12]:
                        print(f"         {side:<6} | {line[:110]}")

    def median(side: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[side])

    def ratio(key: str) -> float:
        return statistics.median(after[key] / before[key] for before, after in zip(rows["before"], rows["after"]))

    def spread(side: str, key: str) -> str:
        values = [row[key] for row in rows[side]]
        return f"{min(values):.1f}-{max(values):.1f}"

    print()
    print(f"{'side':<7} {'start-up s':>10} {'(range)':>11} {'CPU s':>6} {'(range)':>11} {'Ray MiB':>8} {'processes':>9} {'foreign lines':>13}")
    for side in SIDES:
        print(f"{side:<7} {median(side, 'startup_s'):10.1f} {spread(side, 'startup_s'):>11} {median(side, 'startup_cpu_s'):6.1f} "
              f"{spread(side, 'startup_cpu_s'):>11} {median(side, 'ray_services_mib'):8.0f} {median(side, 'ray_processes'):9.0f} "
              f"{median(side, 'foreign_lines'):13.0f}")
    figures = {
        "startup_ratio": ratio("startup_s"), "startup_cpu_ratio": ratio("startup_cpu_s"),
        "ray_services_ratio": ratio("ray_services_mib"),
    }
    for key in ("startup_s", "startup_cpu_s", "ray_services_mib"):
        print(f"{key} after / before, round by round: "
              + ", ".join(f"{after[key] / before[key]:.2f}" for before, after in zip(rows["before"], rows["after"])))
    print(f"after / before (median of the rounds' ratios): start-up {figures['startup_ratio']:.2f} (target <= 0.60), "
          f"its CPU seconds {figures['startup_cpu_ratio']:.2f}, Ray's processes' memory {figures['ray_services_ratio']:.2f} (target <= 0.70)")
    for side in SIDES:
        figures.update({
            f"{side}_startup_s": median(side, "startup_s"), f"{side}_startup_cpu_s": median(side, "startup_cpu_s"),
            f"{side}_ray_services_mib": median(side, "ray_services_mib"), f"{side}_ray_processes": int(median(side, "ray_processes")),
            f"{side}_foreign_lines": int(median(side, "foreign_lines")),
        })
    figures.update({"rounds": args.rounds, "train_sentences": args.train_sentences, "cpus": os.cpu_count()})
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
