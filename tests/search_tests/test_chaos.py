"""Chaos under load, CI-sized (`bench/chaos.py` runs the large one): a real search that keeps
losing trial workers to SIGKILL ends with every trial accounted for in the Optuna DB."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.chaos import run_chaos, study_figures
from tests.conftest import toy_study_yaml, write_sentiment_csv

TRIALS, MAX_EPOCHS = 10, 8


def test_a_search_that_keeps_losing_workers_loses_no_trial(tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    (data_root / "toy").mkdir(parents=True)
    write_sentiment_csv(data_root / "toy", {"train": 6000, "validation": 300, "test": 300})  # epochs of about a second
    storage = f"sqlite:///{tmp_path / 'chaos.db'}"
    study = yaml.safe_load(toy_study_yaml(storage, name="chaos", trials=TRIALS, max_epochs=MAX_EPOCHS, concurrency=2, checkpoint_every_s=0))
    study["budget"]["max_failures"] = 20  # restored every time, however often one trial is hit

    # At most 6 kills, each of a worker past its start-up: on a loaded machine, kills as frequent as
    # restarts are slow would keep the search from progressing at all.
    chaos, search = run_chaos(study, data_root, tmp_path, kill_every=5, min_worker_age_s=5, max_kills=6, seed=1, timeout_s=480, log=lambda _: None)

    assert search.returncode == 0, f"exit {search.returncode} (-9: still running after 480 s), kills {chaos.kills}\n{search.stdout[-3000:]}"
    assert len(chaos.kills) >= 2, f"too few kills to test anything: {chaos.kills}"
    figures = study_figures(storage, "chaos", trials=TRIALS, max_epochs=MAX_EPOCHS)
    assert figures["left_running"] == 0 and figures["budget_ok"] and figures["curves_ok"], figures
    assert figures["failed_by_kills"] == 0 and figures["lost"] == 0, figures
    assert figures["best_ok"], figures
