"""bench/defaults.py's study files and arithmetic (no search here)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from bench import defaults
from search.config import load_study_file
from search.start import AROUND_BASELINE


@pytest.mark.parametrize("dataset", list(defaults.DATASETS))
def test_each_study_is_what_a_new_user_writes_and_loads(tmp_path: Path, dataset: str) -> None:
    path = tmp_path / f"{dataset}.yaml"
    path.write_text(defaults.study_text(dataset, seed=2, storage="sqlite:///x.db", trials=16, max_epochs=6, concurrency=2))
    raw = yaml.safe_load(path.read_text())
    assert not {"space", "baseline", "sampler", "startup"} & set(raw)  # every default
    config = load_study_file(path)
    assert (config.seed, config.budget.trials, config.budget.max_epochs, config.budget.concurrency) == (2, 16, 6, 2)
    assert config.baseline is not None and config.baseline.source.startswith("baseline (task default: published ")
    assert config.startup == AROUND_BASELINE and config.sampler.name == "tpe" and not config.sampler.options
    # Every family of the task is searched (none is fixed by the file).
    assert all(len(fam.candidates) > 1 or fam.registry.kind == "toggle" for fam in config.space.families.values())


def test_the_summary_averages_seeds_and_says_win_or_loss(capsys: pytest.CaptureFixture) -> None:
    args = argparse.Namespace(trials=16, concurrency=2, target=1.0)
    outcomes = [
        defaults.Outcome("cr", 0, 0.78, 0.77, 0.80, 0.79, 5, "s", 400.0, 60.0),  # +2 points on test
        defaults.Outcome("cr", 1, 0.78, 0.78, 0.79, 0.78, 3, "s", 560.0, 40.0),  # +0
        defaults.Outcome("mpqa", 0, 0.85, 0.86, 0.86, 0.85, 2, "s", 100.0, 50.0),  # -1
    ]
    figures = defaults.summarize(outcomes, args)
    assert figures["cr_test_gain_points"] == pytest.approx(1.0) and figures["cr_wins"] == "true"
    assert figures["cr_dev_gain_points"] == pytest.approx(1.5)
    # 480 s mean against 16 trials x 50 s / 2 at a time = 400 s.
    assert figures["cr_time_ratio"] == pytest.approx(1.2)
    assert figures["mpqa_test_gain_points"] == pytest.approx(-1.0) and figures["mpqa_wins"] == "false"
    assert figures["all_win"] == "false"
    printed = capsys.readouterr().out
    assert "cr: " in printed and "WIN" in printed and "LOSS" in printed
