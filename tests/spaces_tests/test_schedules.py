"""Tests for spaces.schedules: every registry entry runs; warmup/decay endpoints; plateau; checkpoints."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from spaces.schedules import SCHEDULES, LRSchedule, warmup_decay_multiplier
from tests.spaces_tests._helpers import lowest

BASE_LR = 0.1
STEPS_PER_EPOCH = 4
MAX_EPOCHS = 3




def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=BASE_LR)


def _build(name: str, optimizer: torch.optim.Optimizer, mode: str = "max", **hparams: Any) -> LRSchedule:
    params = {key: lowest(p) for key, p in SCHEDULES[name].params.items()} | hparams
    return SCHEDULES[name].build(
        optimizer, steps_per_epoch=STEPS_PER_EPOCH, max_epochs=MAX_EPOCHS, mode=mode, **params
    )


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def _train_steps(optimizer: torch.optim.Optimizer, schedule: LRSchedule, steps: int) -> None:
    for _ in range(steps):
        optimizer.step()
        schedule.after_batch()


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("name", SCHEDULES.names())
def test_runs_with_finite_non_negative_lr(name: str, mode: str) -> None:
    optimizer = _optimizer()
    schedule = _build(name, optimizer, mode=mode)
    seen = [_lr(optimizer)]
    for epoch in range(MAX_EPOCHS):
        for _ in range(STEPS_PER_EPOCH):
            optimizer.step()
            schedule.after_batch()
            seen.append(_lr(optimizer))
        schedule.after_epoch(metric=0.5)  # a flat metric, so that plateau acts too
        seen.append(_lr(optimizer))
    assert all(math.isfinite(lr) and lr >= 0 for lr in seen)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_warmup_reaches_base_lr_and_decays_to_zero(name: str) -> None:
    optimizer = _optimizer()
    schedule = _build(name, optimizer, warmup_fraction=0.25)  # 3 of 12 steps
    assert 0 < _lr(optimizer) < BASE_LR
    _train_steps(optimizer, schedule, 3)
    assert _lr(optimizer) == pytest.approx(BASE_LR, abs=1e-8)
    _train_steps(optimizer, schedule, STEPS_PER_EPOCH * MAX_EPOCHS - 3 - 1)
    assert _lr(optimizer) > 0  # the last update still moves the weights
    _train_steps(optimizer, schedule, 1)
    assert _lr(optimizer) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_without_warmup_starts_at_base_lr(name: str) -> None:
    optimizer = _optimizer()
    _build(name, optimizer, warmup_fraction=0.0)
    assert _lr(optimizer) == pytest.approx(BASE_LR, abs=1e-8)


def test_multiplier_is_monotone_in_each_phase() -> None:
    for shape in ("linear", "cosine"):
        factors = [warmup_decay_multiplier(s, warmup_steps=10, total_steps=50, shape=shape) for s in range(60)]
        assert factors[:11] == sorted(factors[:11])
        assert factors[10:] == sorted(factors[10:], reverse=True)
        assert factors[10] == 1.0 and factors[50:] == [0.0] * 10
    assert warmup_decay_multiplier(20, warmup_steps=0, total_steps=40, shape="cosine") == pytest.approx(0.5)


def test_warmup_never_fills_the_whole_run() -> None:
    optimizer = _optimizer()
    schedule = SCHEDULES["linear"].build(optimizer, steps_per_epoch=1, max_epochs=2, mode="max", warmup_fraction=0.9)
    _train_steps(optimizer, schedule, 2)
    assert _lr(optimizer) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("patience", [0, 2])
@pytest.mark.parametrize(("mode", "improving"), [("max", [1.0, 2.0, 3.0, 4.0, 5.0]), ("min", [5.0, 4.0, 3.0, 2.0, 1.0])])
def test_plateau_lowers_lr_after_patience_plus_one_bad_epochs(mode: str, improving: list[float], patience: int) -> None:
    optimizer = _optimizer()
    schedule = _build("plateau", optimizer, mode=mode, factor=0.5, patience=patience)
    for metric in improving:  # improvements in the study's direction never lower the lr
        schedule.after_epoch(metric)
    assert _lr(optimizer) == BASE_LR
    for _ in range(patience):
        schedule.after_epoch(improving[0])  # worse than the best so far
        assert _lr(optimizer) == BASE_LR
    schedule.after_epoch(improving[0])
    assert _lr(optimizer) == pytest.approx(BASE_LR * 0.5)


def test_plateau_ignores_batches() -> None:
    optimizer = _optimizer()
    schedule = _build("plateau", optimizer, patience=0)
    _train_steps(optimizer, schedule, 10)
    assert _lr(optimizer) == BASE_LR


def test_step_and_exponential_decay_per_epoch() -> None:
    optimizer = _optimizer()
    schedule = _build("step", optimizer, step_epochs=2, gamma=0.5)
    _train_steps(optimizer, schedule, STEPS_PER_EPOCH)
    schedule.after_epoch(0.0)
    assert _lr(optimizer) == BASE_LR
    schedule.after_epoch(0.0)
    assert _lr(optimizer) == pytest.approx(BASE_LR * 0.5)

    optimizer = _optimizer()
    schedule = _build("exponential", optimizer, gamma=0.9)
    _train_steps(optimizer, schedule, STEPS_PER_EPOCH)
    assert _lr(optimizer) == BASE_LR
    schedule.after_epoch(0.0)
    assert _lr(optimizer) == pytest.approx(BASE_LR * 0.9)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_state_dict_round_trip_resumes_the_schedule(name: str) -> None:
    optimizer = _optimizer()
    schedule = _build(name, optimizer, mode="min")
    _train_steps(optimizer, schedule, 5)
    schedule.after_epoch(1.0)
    schedule.after_epoch(1.0)
    saved_optimizer, saved_schedule = optimizer.state_dict(), schedule.state_dict()

    resumed_optimizer = _optimizer()
    resumed = _build(name, resumed_optimizer, mode="min")
    resumed_optimizer.load_state_dict(saved_optimizer)
    resumed.load_state_dict(saved_schedule)
    for run_optimizer, run_schedule in ((optimizer, schedule), (resumed_optimizer, resumed)):
        _train_steps(run_optimizer, run_schedule, 3)
        run_schedule.after_epoch(1.0)
    assert _lr(resumed_optimizer) == pytest.approx(_lr(optimizer))


def test_bad_run_description_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        _build("constant", _optimizer(), mode="maximize")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        SCHEDULES["cosine"].build(_optimizer(), steps_per_epoch=0, max_epochs=3, mode="max", warmup_fraction=0.1)
