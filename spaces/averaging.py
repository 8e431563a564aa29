"""Weight averaging: the dev split (and the saved model's test score) is read with averaged weights.

- none: the trained weights as they are.
- ema: an exponential moving average of the weights after every optimizer step (decay 0.99-0.9999).
- swa: stochastic weight averaging (Izmailov et al. 2018): from `start_fraction` of the epochs on,
  the learning rate is held at `lr` and the weights are averaged equally at the end of each epoch.
  The catalogue's models have no BatchNorm, so no pass to recompute its statistics is needed.

Both use `torch.optim.swa_utils.AveragedModel`. The family is opt-in: a study that does not name
it trains as before.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from spaces._base import Component, Float, between, positive, registry

AVERAGED_WEIGHTS = "averaged_weights"  # what a task offers: its model can be read with other weights


class WeightAverage:
    """Hooks the trial runner calls; `model_to_evaluate` gives the weights to score."""

    def __init__(self) -> None:
        self.average: AveragedModel | None = None

    def bind(self, model: nn.Module, max_epochs: int) -> None:
        self.average = self._averaged(model)
        self.max_epochs = max_epochs

    def _averaged(self, model: nn.Module) -> AveragedModel:
        raise NotImplementedError

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """After every optimizer step (and the LR schedule's)."""

    def end_epoch(self, model: nn.Module, epoch: int) -> None:
        """After the last batch of an epoch, before the dev evaluation."""

    def model_to_evaluate(self, model: nn.Module) -> nn.Module:
        assert self.average is not None
        return self.average.module if int(self.average.n_averaged) > 0 else model

    def state_dict(self) -> dict[str, Any]:
        assert self.average is not None
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.average is not None
        self.average.load_state_dict(state)


class ExponentialMovingAverage(WeightAverage):
    def __init__(self, *, decay: float) -> None:
        super().__init__()
        self.decay = decay

    def _averaged(self, model: nn.Module) -> AveragedModel:
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        assert self.average is not None
        self.average.update_parameters(model)


class StochasticWeightAverage(WeightAverage):
    def __init__(self, *, start_fraction: float, lr: float) -> None:
        super().__init__()
        self.start_fraction = start_fraction
        self.lr = lr

    def _averaged(self, model: nn.Module) -> AveragedModel:
        return AveragedModel(model, use_buffers=True)

    def first_epoch(self) -> int:
        return max(1, math.ceil(self.start_fraction * self.max_epochs))

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        if epoch >= self.first_epoch():  # SWA's constant learning rate replaces the schedule's
            for group in optimizer.param_groups:
                group["lr"] = self.lr

    def end_epoch(self, model: nn.Module, epoch: int) -> None:
        assert self.average is not None
        if epoch >= self.first_epoch():
            self.average.update_parameters(model)


AVERAGING = registry(
    "averaging",
    "choice",
    [
        Component("none", {}, None, "the trained weights as they are"),
        Component(
            "ema", {"decay": Float(0.99, 0.9999, log=True, limits=between(0.0, 1.0, exclusive_maximum=True), doc="an EMA decay")},
            ExponentialMovingAverage, "exponential moving average of the weights", frozenset({AVERAGED_WEIGHTS}),
        ),
        Component(
            "swa",
            {
                "start_fraction": Float(0.5, 0.9, limits=between(0.0, 1.0), doc="the fraction of the epochs before averaging starts"),
                "lr": Float(1e-4, 1e-2, log=True, limits=positive(), doc="the SWA learning rate"),
            },
            StochasticWeightAverage, "stochastic weight averaging at a constant learning rate (Izmailov et al. 2018)",
            frozenset({AVERAGED_WEIGHTS}),
        ),
    ],
    opt_in=True,
)
