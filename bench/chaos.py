"""Chaos under load: a search that keeps losing trial workers.

`search run` runs a text-classification search (SST-2, `--trials` small trials, `--concurrency` at
a time, a checkpoint after every epoch) in its own process session, with a local Ray. Meanwhile a
killer sends SIGKILL to one of that search's trial workers (Ray's `ray::ImplicitFunc` actor
processes in the search's session, nothing else on the machine, at least `--min-worker-age`
seconds old so that most kills cost trained epochs rather than a start-up) every `--kill-every`
seconds, give or take half. Ray restarts a killed trial from its last checkpoint, up to `budget.max_failures`
times (`--max-failures`, high by default so that a trial unlucky enough to be hit again and again
is still restored rather than given up).

Then, from the study's Optuna database alone:
- every trial ended COMPLETE, PRUNED or FAIL; none is left RUNNING or WAITING (`left_running`);
- the trials that count toward the budget are exactly `--trials` (`budget_ok`);
- restored trials (`restored_at_epochs`) resumed from their checkpoints: each counted trial has
  its whole learning curve, epochs 1 to the last it trained, none missing (`curves_ok`);
- the best value is that of a trial that really trained: COMPLETE, all `max_epochs` epochs, its
  value its last epoch's (`best_ok`);
- `lost`: trials that failed because of the kills (Ray gave up on them) plus any left running or
  with a broken curve; the target is 0.

    python bench/chaos.py [--trials 40] [--concurrency 3] [--max-epochs 6] [--kill-every 8]
                          [--min-worker-age 5] [--max-kills N] [--train-sentences 6920] [--data-root DIR] [--keep DIR]

The last line is `RESULT kills=... trials=... ... lost=...` for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/chaos.py` without installing the project

from bench._common import DEFAULT_DATA_ROOT, quiet_ray_environment, require_sst2, result_line, sst2_study, sst2_subset  # noqa: E402

TRIAL_WORKER = "ray::ImplicitFunc"  # the title Ray gives the actor that runs a function trainable
SPACE = {
    "encoder": {"choices": ["textcnn"], "params": {"textcnn": {"filters": 32, "layers": 1}}},
    "addons": ["layernorm"],
    "loss": ["cross_entropy", "focal"],
    "regularizers": {"search": ["weight_decay"], "always": ["dropout"]},
    "optimizer": {"choices": ["adam", "sgd"], "params": {"adam": {"lr": [0.001, 0.01]}, "sgd": {"lr": [0.01, 0.1], "momentum": 0.9}}},
    "schedule": ["constant", "cosine"],
    "batch_size": 64,
    "embedding_dim": 32,
}


@dataclass
class Chaos:
    """What the killer did."""

    kills: list[tuple[float, int, str]] = field(default_factory=list)  # (seconds since start, pid, title)


def trial_workers(session: int, min_age_s: float = 0.0) -> list[tuple[int, str]]:
    """(pid, title) of the trial workers in process session `session` (the search's own) that
    have run at least `min_age_s` seconds (past their start-up, a kill costs trained epochs)."""
    from search.recovery import process_start_ticks

    with open("/proc/uptime") as handle:
        uptime = float(handle.read().split()[0])
    workers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) != session:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                title = handle.read().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue  # ended meanwhile, or not ours to see
        started = process_start_ticks(pid)
        if title.startswith(TRIAL_WORKER) and started is not None and uptime - started / os.sysconf("SC_CLK_TCK") >= min_age_s:
            workers.append((pid, title))
    return workers


def run_chaos(
    study: dict[str, Any], data_root: Path, folder: Path, *, kill_every: float, min_worker_age_s: float = 0.0,
    max_kills: int | None = None, seed: int = 0, timeout_s: float = 3600, log: Any = print,
) -> tuple[Chaos, subprocess.CompletedProcess]:
    """Runs `search run` on `study` in its own session while killing one of its trial workers every
    `kill_every` seconds (x 0.5-1.5), among those `min_worker_age_s` old, `max_kills` at most (a
    machine so loaded that restarts take longer than the kill interval would make no progress).
    A search still running after `timeout_s` is killed. Returns what was killed and how it ended."""
    import yaml

    study_file = folder / "chaos.yaml"
    study_file.write_text(yaml.safe_dump(study, sort_keys=False))
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    command = [sys.executable, "-m", "search.cli", "run", str(study_file), "--data-root", str(data_root),
               "--storage-path", str(folder / "ray_results"), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_tmp}
    output = folder / "search.log"
    rng, chaos, started = random.Random(seed), Chaos(), time.monotonic()
    with open(output, "w") as sink:
        search = subprocess.Popen(command, cwd=folder, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            next_kill = started + kill_every * rng.uniform(0.5, 1.5)
            while search.poll() is None and time.monotonic() - started < timeout_s:
                time.sleep(0.2)
                if time.monotonic() < next_kill or (max_kills is not None and len(chaos.kills) >= max_kills):
                    continue
                workers = trial_workers(search.pid, min_worker_age_s)
                if workers:
                    pid, title = rng.choice(workers)
                    try:
                        os.kill(pid, signal.SIGKILL)
                        chaos.kills.append((time.monotonic() - started, pid, title))
                        log(f"[{time.monotonic() - started:6.0f}s] killed {title} (pid {pid}); {len(chaos.kills)} kills")
                    except ProcessLookupError:
                        pass
                next_kill = time.monotonic() + kill_every * rng.uniform(0.5, 1.5)
        finally:
            if search.poll() is None:
                os.killpg(search.pid, signal.SIGKILL)
            search.wait()
    return chaos, subprocess.CompletedProcess(command, search.returncode, output.read_text(), "")


def study_figures(storage: str, name: str, *, trials: int, max_epochs: int) -> dict[str, Any]:
    """What the study's database says after a chaos run (see the module docstring)."""
    import optuna
    from optuna.trial import TrialState

    from search.recovery import counts_toward_budget

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    all_trials = study.trials
    states = {state.name: sum(t.state == state for t in all_trials) for state in TrialState}
    counted = [t for t in all_trials if counts_toward_budget(t)]
    broken = [
        t.number for t in counted if t.state != TrialState.FAIL
        and set(t.intermediate_values) != set(range(1, int(t.user_attrs.get("epochs_trained", 0)) + 1))
    ]
    killed = [t.number for t in counted if t.state == TrialState.FAIL and _died_with_its_worker(t.user_attrs.get("error", ""))]
    left_running = states["RUNNING"] + states["WAITING"]
    completed = [t for t in all_trials if t.state == TrialState.COMPLETE]
    best_ok = False
    if completed:
        best = study.best_trial
        best_ok = (best.user_attrs.get("epochs_trained") == max_epochs
                   and best.intermediate_values.get(max_epochs) == best.value and len(best.intermediate_values) == max_epochs)
    restored = [t for t in all_trials if t.user_attrs.get("restored_at_epochs")]
    return {
        "trials": len(all_trials),
        "counted": len(counted),
        "complete": states["COMPLETE"],
        "pruned": states["PRUNED"],
        "failed": states["FAIL"],
        "failed_by_kills": len(killed),
        "left_running": left_running,
        "restored_trials": len(restored),
        "restores": sum(len(t.user_attrs["restored_at_epochs"]) for t in restored),
        "budget_ok": len(counted) == trials,
        "curves_ok": not broken,
        "best_ok": best_ok,
        "best_value": study.best_value if completed else float("nan"),
        "lost": len(killed) + left_running + len(broken),
    }


def _died_with_its_worker(error: str) -> bool:
    return any(marker in error for marker in ("RayActorError", "ActorDiedError", "died unexpectedly", "WorkerCrashedError"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--kill-every", type=float, default=8.0, help="seconds between kills, on average")
    parser.add_argument("--min-worker-age", type=float, default=5.0, help="kill only workers this many seconds old (past start-up)")
    parser.add_argument("--max-kills", type=int, help="stop killing after this many (default: no limit)")
    parser.add_argument("--max-failures", type=int, default=20, help="restarts Ray allows a trial (budget.max_failures)")
    parser.add_argument("--train-sentences", type=int, default=6920, help="SST-2 training sentences (epoch length; all of them by default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--keep", type=Path, help="keep the study database, the search's log and Ray's results here")
    args = parser.parse_args()
    quiet_ray_environment()
    require_sst2(args.data_root)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    data_root = sst2_subset(args.data_root, folder / "data", args.train_sentences)
    storage = f"sqlite:///{folder / 'chaos.db'}"
    study = sst2_study("chaos", storage=storage, trials=args.trials, max_epochs=args.max_epochs,
                       concurrency=args.concurrency, seed=args.seed, space=SPACE, reduction_factor=2)
    study["budget"].update(max_failures=args.max_failures, checkpoint_every_s=0)
    print(f"chaos: {args.trials} trials, {args.concurrency} at a time, a trial worker killed every ~{args.kill_every:g} s; in {folder}", flush=True)
    started = time.monotonic()
    chaos, search = run_chaos(study, data_root, folder, kill_every=args.kill_every, min_worker_age_s=args.min_worker_age,
                              max_kills=args.max_kills, seed=args.seed, log=lambda line: print(line, flush=True))
    wall_s = time.monotonic() - started
    if search.returncode != 0:
        print(search.stdout[-3000:])
    figures = {"kills": len(chaos.kills), "search_exit": search.returncode, "wall_s": wall_s,
               **study_figures(storage, "chaos", trials=args.trials, max_epochs=args.max_epochs)}
    print(json.dumps(figures, indent=2))
    print(result_line(figures))
    return 0 if figures["lost"] == 0 and figures["budget_ok"] and figures["best_ok"] and search.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
