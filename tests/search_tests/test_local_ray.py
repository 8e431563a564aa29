"""A search that starts its own local Ray: its trial workers get the engine's environment variables
(MALLOC_ARENA_MAX, bench/overhead.py) and one worker per slot runs the slot's trials (reuse_actors)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

from tests.conftest import REPO_ROOT, toy_study_yaml

# Run in a process of its own: the test session's shared Ray would make run_search join it.
SCRIPT = r"""
import json, os, sys
from pathlib import Path
from search.config import load_study_file
from search.engine import run_search
from trainables.text_classification import train_text_classification

tmp, ray_tmp = Path(sys.argv[1]), sys.argv[2]
records = tmp / "workers"
records.mkdir()

def recording(config, data, settings):
    (records / f"{os.getpid()}-{len(list(records.iterdir()))}.json").write_text(json.dumps({
        "pid": os.getpid(), "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX")}))
    train_text_classification(config, data, settings)

config = load_study_file(tmp / "toy.yaml")
os.environ.pop("MALLOC_ARENA_MAX", None)  # the engine sets it for the workers, not inherited from here
run_search(config, data_root=tmp / "data", storage_path=tmp / "ray_results", ray_temp_dir=ray_tmp,
           trainable=recording, verbose=0, log=lambda _: None)
"""


def test_own_local_ray_workers_get_the_engine_environment_and_are_reused(tmp_path: Path, sentiment_root: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'local.db'}"
    (tmp_path / "toy.yaml").write_text(toy_study_yaml(storage, trials=4, max_epochs=1, concurrency=2))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RAY_ADDRESS", None)
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), ray_tmp], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]

    trials = optuna.load_study(study_name="toy", storage=storage).trials
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
    workers = [json.loads(path.read_text()) for path in (tmp_path / "workers").iterdir()]
    assert len(workers) == 4 and all(w["MALLOC_ARENA_MAX"] == "2" for w in workers)
    # Reused across trials: one worker per slot.
    assert len({w["pid"] for w in workers}) == 2
