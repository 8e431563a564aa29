"""Tests for spaces.optimizers: every registry entry builds, optimises, and carries no weight decay."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from spaces.optimizers import OPTIMIZERS
from tests.spaces_tests._helpers import lowest


def _lowest_hparams(name: str) -> dict[str, Any]:
    return {key: lowest(p) for key, p in OPTIMIZERS[name].params.items()}


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_steps_lower_a_quadratic(name: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    target = torch.randn(1, 4)

    def quadratic() -> torch.Tensor:
        return ((model.weight - target) ** 2).sum() + (model.bias**2).sum()

    optimizer = OPTIMIZERS[name].build(model.parameters(), **_lowest_hparams(name))
    start = quadratic().item()
    for _ in range(5):
        optimizer.zero_grad()
        quadratic().backward()
        optimizer.step()
    end = quadratic().item()
    assert end < start
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_weight_decay_is_zero_in_every_group(name: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    groups = [
        {"params": list(model[0].parameters())},
        {"params": list(model[1].parameters()), "lr": 1e-3},
    ]
    optimizer = OPTIMIZERS[name].build(groups, **_lowest_hparams(name))
    assert len(optimizer.param_groups) == 2
    assert all(group["weight_decay"] == 0 for group in optimizer.param_groups)
    assert optimizer.param_groups[1]["lr"] == 1e-3


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_group_weight_decay_is_refused(name: str) -> None:
    model = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="decoupled"):
        OPTIMIZERS[name].build([{"params": list(model.parameters()), "weight_decay": 0.1}], **_lowest_hparams(name))


def test_adamw_overrides_its_default_decay() -> None:
    optimizer = OPTIMIZERS["adamw"].build(torch.nn.Linear(2, 1).parameters(), lr=1e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["weight_decay"] == 0


@pytest.mark.parametrize(("momentum", "nesterov", "expected"), [(0.0, True, False), (0.9, True, True), (0.9, False, False)])
def test_sgd_nesterov_needs_momentum(momentum: float, nesterov: bool, expected: bool) -> None:
    optimizer = OPTIMIZERS["sgd"].build(torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=momentum, nesterov=nesterov)
    assert optimizer.param_groups[0]["nesterov"] is expected


def test_rmsprop_passes_its_hyperparameters() -> None:
    optimizer = OPTIMIZERS["rmsprop"].build(torch.nn.Linear(2, 1).parameters(), lr=1e-3, alpha=0.95, momentum=0.5)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["alpha"], group["momentum"]) == (1e-3, 0.95, 0.5)
