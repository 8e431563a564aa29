"""Tests for spaces.optimizers: every registry entry builds, optimises, and carries no weight decay."""

from __future__ import annotations

import inspect
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


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_on_cpu_and_the_same_steps_as_the_plain_implementation(name: str) -> None:
    hparams = {**_lowest_hparams(name), **({"momentum": 0.9} if name == "sgd" else {})}
    torch.manual_seed(0)
    fused_model = torch.nn.Linear(8, 3)
    plain_model = torch.nn.Linear(8, 3)
    plain_model.load_state_dict(fused_model.state_dict())
    fused = OPTIMIZERS[name].build(fused_model.parameters(), **hparams)
    accepted = inspect.signature(type(fused)).parameters
    plain = type(fused)(plain_model.parameters(), **{k: v for k, v in fused.defaults.items() if k in accepted and k != "fused"})
    assert fused.defaults["fused"] is True
    inputs, targets = torch.randn(16, 8), torch.randint(0, 3, (16,))
    for model, optimizer in ((fused_model, fused), (plain_model, plain)):
        for _ in range(5):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
    for fused_parameter, plain_parameter in zip(fused_model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(fused_parameter, plain_parameter)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_parameters_without_a_fused_kernel_get_the_plain_implementation(name: str) -> None:
    model = torch.nn.Linear(4, 2, device="meta")  # no fused kernel for the meta device: refused at the first step
    optimizer = OPTIMIZERS[name].build(model.parameters(), **_lowest_hparams(name))
    assert not optimizer.defaults.get("fused")
