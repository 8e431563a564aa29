"""A search that starts its own local Ray: its trial workers get the engine's environment variables
(MALLOC_ARENA_MAX, bench/overhead.py) and one worker per slot runs the slot's trials (reuse_actors);
`search run` starts it quiet and lean (no banners, no web dashboard, no idle workers) unless asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from bench._common import process_title, process_tree
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


def run_watched(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict[int, set[str]]]:
    """`search ARGS` on a local Ray of its own, with the command lines each process it started
    showed (Ray retitles its workers: `ray::IDLE`, `ray::ImplicitFunc.train`), read from /proc while it ran."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO_ROOT)}
    for name in ("RAY_ADDRESS", "SEARCH_RAY_ADDRESS", "SEARCH_CLASSIC_RAY_START", "RAY_AIR_NEW_OUTPUT", "RAY_AUTH_MODE"):
        env.pop(name, None)  # as a user's shell has it: Ray would print its token notice, its banners
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env["RAY_TMPDIR"] = ray_tmp
    titles: dict[int, set[str]] = {}
    try:
        process = subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            for pid in process_tree(process.pid)[1:]:
                titles.setdefault(pid, set()).add(process_title(pid))
            time.sleep(0.05)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), titles


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_search_run_starts_ray_quiet_and_lean(tmp_path: Path, sentiment_root: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'quiet.db'}"
    (tmp_path / "toy.yaml").write_text(toy_study_yaml(storage, trials=2, max_epochs=1, concurrency=2))

    done, titles = run_watched(["run", "toy.yaml", "--data-root", str(sentiment_root)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    # Only the engine's lines: `search:` lines and indented ones. None of Ray's banners (the
    # "Configuration for experiment" box, where the results are, the TensorBoard command, the
    # token authentication notice) and none of its log lines.
    foreign = [line for line in (done.stdout + done.stderr).splitlines() if line.strip() and not line.startswith(("search:", "  "))]
    assert not foreign, foreign
    assert "trial 0" in done.stdout and "search: done" in done.stdout

    # Ray always starts a dashboard process; without the dashboard it is a stub with no web UI.
    dashboards = [title for seen in titles.values() for title in seen if "dashboard/dashboard.py" in title]
    assert dashboards and all("--disable-frontend" in title for title in dashboards), dashboards
    # One worker per trial slot and no more: no idle workers prestarted beside them.
    workers = [seen for seen in titles.values() if any(title.startswith("ray::") and "Agent" not in title for title in seen)]
    assert len(workers) == 2, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_verbose_search_run_shows_rays_own_output(tmp_path: Path, sentiment_root: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'verbose.db'}"
    (tmp_path / "toy.yaml").write_text(toy_study_yaml(storage, trials=2, max_epochs=1, concurrency=2))
    done, _ = run_watched(["run", "toy.yaml", "--data-root", str(sentiment_root), "--verbose"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "Configuration for experiment" in output and "Token authentication is enabled" in output
