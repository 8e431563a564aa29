"""Size and latency figures: counts and sizes against hand computations, latency bounded in time,
and every trial reporting them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from spaces import Strategy

from trainables.footprint import latency_ms, measure, parameter_counts, saved_bytes


def test_parameter_counts_and_saved_size_against_hand_counts() -> None:
    model = nn.Sequential(nn.Linear(10, 4), nn.Linear(4, 2))  # 44 + 10 parameters
    with torch.no_grad():
        model[0].weight[:2].zero_()  # 20 zeros
    assert parameter_counts(model) == (54, 34)
    size = saved_bytes(model)
    assert 54 * 4 < size < 54 * 4 + 1024  # float32 values plus a small header


def test_latency_is_a_median_per_example_within_its_time_bound() -> None:
    calls = []

    def run() -> None:
        calls.append(1)
        time.sleep(0.01)

    started = time.perf_counter()
    per_example = latency_ms(run, batch_size=4, budget_s=0.1)
    assert time.perf_counter() - started < 0.5
    assert 3 + 2 <= len(calls) <= 50 + 2
    assert 10 / 4 <= per_example < 25 / 4  # 10 ms per call, over 4 examples


class _Batch:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def to(self, device: torch.device) -> _Batch:
        return _Batch(self.x.to(device))

    def __len__(self) -> int:
        return len(self.x)


def test_measure_reports_every_figure_and_leaves_the_model_in_training_mode() -> None:
    model = nn.Linear(8, 2)
    figures = measure(model, lambda m, b: m(b.x), lambda n: _Batch(torch.randn(n, 8)), budget_s=0.02)
    assert set(figures) == {"model_params", "nonzero_params", "model_bytes", "latency_ms_b1", "latency_ms_b32"}
    assert figures["model_params"] == 18 and figures["latency_ms_b1"] > 0 and model.training


def test_every_trial_reports_its_footprint(tmp_path: Path) -> None:
    from search.config import parse_data_section
    from tests.conftest import write_sentiment_csv
    from tests.trainables_tests.test_teacher import TOY_DATA, tiny_config
    from trainables.runner import TrialSettings
    from trainables.text_classification import TASK

    (tmp_path / "toy").mkdir()
    write_sentiment_csv(tmp_path / "toy", {"train": 64, "validation": 32, "test": 32})
    data = TASK.load_data(parse_data_section(TASK.name, TOY_DATA, "toy"), str(tmp_path), 0)
    reports: list[dict[str, Any]] = []
    TASK.trainable(tiny_config(), data, TrialSettings(metric="accuracy", mode="max", max_epochs=2, checkpoint=False, latency_budget_s=0.05), lambda m, _: reports.append(m))
    model = TASK.build(Strategy.from_config(tiny_config()), data).model
    for metrics in reports:
        assert metrics["model_params"] == sum(p.numel() for p in model.parameters())
        assert metrics["nonzero_params"] <= metrics["model_params"]
        assert metrics["model_bytes"] >= 4 * metrics["model_params"]
        assert 0 < metrics["latency_ms_b32"] and 0 < metrics["latency_ms_b1"]
    assert reports[0]["latency_ms_b1"] == reports[1]["latency_ms_b1"]  # measured once per trial
