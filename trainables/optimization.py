"""Everything a strategy says about updating weights, for any task: optimizer and LR schedule,
the regularizers that act in the loop, mixed precision, and the checks around a step."""

from __future__ import annotations

import contextlib
import math
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces import Strategy
from spaces.finetuning import accumulation_steps
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

    A loop adds `penalty()` to its loss, calls `step(objective)` after each of the epoch's
    `batches_per_epoch` batches and `end_epoch(metric)` after each validation. With gradient
    accumulation (k micro-batches per step, `spaces.finetuning`), `step` sums the gradients of k
    batches, each weighed 1/k, and updates the weights after the k-th and after the epoch's last
    batch; the schedule counts updates, not batches. A model that groups its own parameters (one
    learning rate per layer: `parameter_groups(lr)`) hands the optimizer those groups.
    """

    def __init__(self, strategy: Strategy, model: nn.Module, max_epochs: int, batches_per_epoch: int, precision: Precision, metric_mode: str) -> None:
        optimizer_name, optimizer_params = strategy.optimizer
        grouping = getattr(model, "parameter_groups", None)
        parameters = grouping(optimizer_params["lr"]) if grouping is not None else model.parameters()
        self.optimizer = OPTIMIZERS[optimizer_name].build(parameters, **optimizer_params)
        self.accumulation = accumulation_steps(strategy)
        self.batches_per_epoch = batches_per_epoch
        self._batch = 0  # batches of this epoch so far
        schedule_name, schedule_params = strategy.schedule
        self.schedule = SCHEDULES[schedule_name].build(
            self.optimizer, steps_per_epoch=math.ceil(batches_per_epoch / self.accumulation), max_epochs=max_epochs,
            mode=metric_mode, **schedule_params,
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

    def _micro_batch(self) -> tuple[int, int]:
        """(position of this batch within its update's micro-batches, how many that update has)."""
        position = self._batch % self.accumulation
        first = self._batch - position
        group = min(self.accumulation, self.batches_per_epoch - first) if first < self.batches_per_epoch else self.accumulation
        return position, group

    def backward(self, objective: torch.Tensor, *, accumulate: bool = False) -> None:
        """Gradients of `objective` (scaled for mixed precision, weighed 1/k over an update's k
        micro-batches), added to the present ones within an update or when `accumulate` (another
        pass over the same batch, as adversarial training makes)."""
        position, group = self._micro_batch()
        if position == 0 and not accumulate:
            self.optimizer.zero_grad(set_to_none=True)
        self.precision.scaler.scale(objective / group if group > 1 else objective).backward()

    def apply(self) -> bool:
        """Ends a batch. After an update's last micro-batch: the regularizers' gradient hooks, then
        the optimizer and schedule step. Returns whether the weights changed."""
        position, group = self._micro_batch()
        self._batch += 1
        if position + 1 < group:
            return False  # more micro-batches to add before this update
        if self._batch >= self.batches_per_epoch:
            self._batch = 0
        scaler = self.precision.scaler
        if self.unscale:
            scaler.unscale_(self.optimizer)
        for regularizer in self.regularizers:
            regularizer.on_gradients(self.model)
        for regularizer in self.regularizers:
            regularizer.before_step(self.optimizer)
        scaler.step(self.optimizer)
        scaler.update()
        # Freed now, not before the next backward: the next forward pass then runs without a
        # model's worth of gradients held (as Trainer does; 90 MiB for MiniLM-L6).
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.after_batch()
        return True

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
