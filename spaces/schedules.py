"""Learning-rate schedules, one family member per training strategy.

Every builder has the signature
`build(optimizer, *, steps_per_epoch, max_epochs, mode, **hparams) -> LRSchedule`, where `mode` is
"max" or "min", the direction in which the validation metric improves. The training loop calls
`after_batch()` after every optimizer step and `after_epoch(metric)` after every validation; each
schedule acts on whichever of the two it is defined over.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import ExponentialLR, LambdaLR, LRScheduler, ReduceLROnPlateau, StepLR

from spaces._base import Component, Float, Int, at_least, between, registry

_Cadence = Literal["batch", "epoch", "metric"]

# (0, 1]: a decay factor of 0 would zero the learning rate for good. `between` has no exclusive minimum.
_DECAY_FACTOR = between(0.0, 1.0, exclusive_minimum=True)
# (0, 1): ReduceLROnPlateau refuses factor >= 1.
_REDUCTION_FACTOR = between(0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)


class LRSchedule:
    """A `torch.optim.lr_scheduler` object and the training-loop event it steps on.

    Args:
        scheduler: The wrapped scheduler.
        cadence: "batch" steps it after every optimizer step, "epoch" after every epoch, and
            "metric" after every epoch with the validation metric (ReduceLROnPlateau).
    """

    def __init__(self, scheduler: LRScheduler | ReduceLROnPlateau, cadence: _Cadence) -> None:
        self.scheduler = scheduler
        self.cadence = cadence

    def after_batch(self) -> None:
        """Called after every optimizer step."""
        if self.cadence == "batch":
            self.scheduler.step()

    def after_epoch(self, metric: float) -> None:
        """Called after each epoch's validation, with the metric the study optimises."""
        if self.cadence == "epoch":
            self.scheduler.step()
        elif self.cadence == "metric":
            self.scheduler.step(metric)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped scheduler's state, for checkpoints."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a state from `state_dict()` into a schedule built with the same settings."""
        self.scheduler.load_state_dict(state)

    def __repr__(self) -> str:
        return f"LRSchedule({type(self.scheduler).__name__}, cadence={self.cadence!r})"


def warmup_decay_multiplier(
    step: int, *, warmup_steps: int, total_steps: int, shape: Literal["linear", "cosine"]
) -> float:
    """The factor applied to the base learning rate after `step` optimizer steps.

    Args:
        step: Optimizer steps taken so far (0 before the first).
        warmup_steps: Steps of linear warmup; the factor reaches 1 at `step == warmup_steps`.
        total_steps: Steps in the whole run; the factor reaches 0 at `step == total_steps`.
        shape: How the factor decays from 1 to 0 after warmup.

    Returns:
        A factor in [0, 1].
    """
    # 1) linear warmup; (step + 1) so that the first update does not use a learning rate of 0
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    # 2) past the end of the run, stay at 0
    if step >= total_steps:
        return 0.0
    # 3) in between, decay from 1 to 0
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    if shape == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_run(steps_per_epoch: int, max_epochs: int, mode: str) -> int:
    """Validates the run description shared by every builder and returns the total step count."""
    if steps_per_epoch < 1 or max_epochs < 1:
        raise ValueError(f"steps_per_epoch and max_epochs must be >= 1, got {steps_per_epoch} and {max_epochs}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    return steps_per_epoch * max_epochs


def _constant_multiplier(step: int) -> float:
    return 1.0


def _build_constant(
    optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, max_epochs: int, mode: str
) -> LRSchedule:
    _check_run(steps_per_epoch, max_epochs, mode)
    return LRSchedule(LambdaLR(optimizer, _constant_multiplier), "batch")


def _warmup_decay(
    shape: Literal["linear", "cosine"],
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    max_epochs: int,
    mode: str,
    warmup_fraction: float,
) -> LRSchedule:
    total_steps = _check_run(steps_per_epoch, max_epochs, mode)
    # At most total_steps - 1, so that the decay phase is never empty (it divides by its length).
    warmup_steps = min(max(round(warmup_fraction * total_steps), 0), total_steps - 1)
    multiplier = functools.partial(
        warmup_decay_multiplier, warmup_steps=warmup_steps, total_steps=total_steps, shape=shape
    )
    return LRSchedule(LambdaLR(optimizer, multiplier), "batch")


def _build_linear(
    optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, max_epochs: int, mode: str, warmup_fraction: float
) -> LRSchedule:
    return _warmup_decay(
        "linear", optimizer, steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, mode=mode,
        warmup_fraction=warmup_fraction,
    )


def _build_cosine(
    optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, max_epochs: int, mode: str, warmup_fraction: float
) -> LRSchedule:
    return _warmup_decay(
        "cosine", optimizer, steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, mode=mode,
        warmup_fraction=warmup_fraction,
    )


def _build_step(
    optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, max_epochs: int, mode: str,
    step_epochs: int, gamma: float,
) -> LRSchedule:
    _check_run(steps_per_epoch, max_epochs, mode)
    return LRSchedule(StepLR(optimizer, step_size=step_epochs, gamma=gamma), "epoch")


def _build_exponential(
    optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, max_epochs: int, mode: str, gamma: float
) -> LRSchedule:
    _check_run(steps_per_epoch, max_epochs, mode)
    return LRSchedule(ExponentialLR(optimizer, gamma=gamma), "epoch")


def _build_plateau(
    optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, max_epochs: int, mode: str,
    factor: float, patience: int,
) -> LRSchedule:
    _check_run(steps_per_epoch, max_epochs, mode)
    return LRSchedule(ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience), "metric")


def _warmup_fraction() -> Float:
    return Float(
        0.0, 0.2, limits=between(0.0, 1.0, exclusive_maximum=True), doc="the warmup fraction of training steps"
    )


SCHEDULES = registry(
    "schedule",
    "choice",
    [
        Component("constant", {}, _build_constant, "the base learning rate throughout"),
        Component(
            "linear",
            {"warmup_fraction": _warmup_fraction()},
            _build_linear,
            "linear warmup, then linear decay to 0 at the end of training",
        ),
        Component(
            "cosine",
            {"warmup_fraction": _warmup_fraction()},
            _build_cosine,
            "linear warmup, then cosine decay to 0 at the end of training (Loshchilov & Hutter 2017)",
        ),
        Component(
            "step",
            {
                "step_epochs": Int(1, 5, limits=at_least(1), doc="the number of epochs between decays"),
                # 0.1 every epoch froze training by epoch 3 (bench/DEFAULTS.md)
                "gamma": Float(0.5, 0.9, limits=_DECAY_FACTOR, doc="the step decay factor gamma"),
            },
            _build_step,
            "multiply the learning rate by gamma every step_epochs epochs",
        ),
        Component(
            "exponential",
            {"gamma": Float(0.5, 0.99, limits=_DECAY_FACTOR, doc="the exponential decay factor gamma")},
            _build_exponential,
            "multiply the learning rate by gamma every epoch",
        ),
        Component(
            "plateau",
            {
                "factor": Float(0.1, 0.7, limits=_REDUCTION_FACTOR, doc="the plateau reduction factor"),
                "patience": Int(0, 3, limits=at_least(0), doc="the plateau patience in epochs"),
            },
            _build_plateau,
            "multiply the learning rate by factor when the validation metric stops improving",
        ),
    ],
)

__all__ = ["LRSchedule", "SCHEDULES", "warmup_decay_multiplier"]
