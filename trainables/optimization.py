"""Everything a strategy says about updating weights, for any task: optimizer and LR schedule,
the regularizers that act in the loop, mixed precision, and the checks around a step."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces import Strategy
from spaces.optimizers import OPTIMIZERS
from spaces.regularizers import REGULARIZERS, LoopRegularizer
from spaces.schedules import SCHEDULES


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Precision:
    """Autocast and gradient scaling: bfloat16 where the GPU has it, else float16 with a scaler."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"training diverged: loss is {loss.item()} at epoch {epoch}, step {step}; "
            "a lower learning rate or gradient clipping may help"
        )


def loop_regularizers(strategy: Strategy, model: nn.Module) -> list[LoopRegularizer]:
    """The strategy's regularizers that act in the loop, bound to `model`, in registry order."""
    built = []
    for name in REGULARIZERS.names():
        build = REGULARIZERS[name].build
        if name in strategy.regularizers and build is not None:  # the model reads the others (dropout)
            regularizer = build(**strategy.regularizers[name])
            regularizer.bind(model)
            built.append(regularizer)
    return built


class Optimization:
    """The optimizer, the LR schedule, the loop's regularizers and mixed-precision scaling.

    A loop adds `penalty()` to its loss, calls `step(objective)` after each batch and
    `end_epoch(metric)` after each validation.
    """

    def __init__(self, strategy: Strategy, model: nn.Module, max_epochs: int, steps_per_epoch: int, precision: Precision, metric_mode: str) -> None:
        optimizer_name, optimizer_params = strategy.optimizer
        self.optimizer = OPTIMIZERS[optimizer_name].build(model.parameters(), **optimizer_params)
        schedule_name, schedule_params = strategy.schedule
        self.schedule = SCHEDULES[schedule_name].build(
            self.optimizer, steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, mode=metric_mode, **schedule_params,
        )
        self.model = model
        self.precision = precision
        regularizers = loop_regularizers(strategy, model)
        self.penalties = [r for r in regularizers if type(r).penalty is not LoopRegularizer.penalty]
        self.regularizers = regularizers
        self.unscale = any(r.uses_gradients for r in regularizers)

    def penalty(self) -> torch.Tensor | float:
        """The terms the regularizers add to the loss (0.0 when none does)."""
        total: torch.Tensor | float = 0.0
        for regularizer in self.penalties:
            total = total + regularizer.penalty()
        return total

    def step(self, objective: torch.Tensor) -> None:
        self.backward(objective)
        self.apply()

    def backward(self, objective: torch.Tensor, *, accumulate: bool = False) -> None:
        """Gradients of `objective` (scaled for mixed precision), added to the present ones when `accumulate`."""
        if not accumulate:
            self.optimizer.zero_grad(set_to_none=True)
        self.precision.scaler.scale(objective).backward()

    def apply(self) -> None:
        """The regularizers' gradient hooks, then the optimizer and schedule step."""
        scaler = self.precision.scaler
        if self.unscale:
            scaler.unscale_(self.optimizer)
        for regularizer in self.regularizers:
            regularizer.on_gradients(self.model)
        for regularizer in self.regularizers:
            regularizer.before_step(self.optimizer)
        scaler.step(self.optimizer)
        scaler.update()
        self.schedule.after_batch()

    def end_epoch(self, metric: float) -> None:
        self.schedule.after_epoch(metric)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "scaler": self.precision.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.precision.scaler.load_state_dict(state["scaler"])
