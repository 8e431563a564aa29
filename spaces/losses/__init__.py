"""Losses, one family member per training strategy.

Every builder has the signature `build(num_classes, **hparams) -> torch.nn.Module`. A loss says in
its component's `supports` which output forms it can score:

- `CLASSES`: the module maps logits [N, C] and targets [N] to the mean loss over examples whose
  target is not `IGNORE_INDEX`, computed in float32 whatever the autocast dtype;
- `GOLD_LOG_PROB`: `module.from_gold(GoldLogProb(...))` scores structured outputs (a CRF's tag
  sequences, a span's start and end) from each example's gold log-probability.

A task offers the forms it has (`trainables.task.Task.offers`); the space refuses a loss that
supports none of them when the study is loaded.
"""

from __future__ import annotations

from spaces._base import registry
from spaces.losses._common import CLASSES, GOLD_LOG_PROB, IGNORE_INDEX, ClassificationLoss, GoldLogProb, mean_over_valid
from spaces.losses._focal import FOCAL, FocalLoss
from spaces.losses._ghm import GHM, GHMLoss
from spaces.losses._simple import CROSS_ENTROPY, LABEL_SMOOTHING, CrossEntropyLoss

LOSSES = registry("loss", "choice", [CROSS_ENTROPY, FOCAL, GHM, LABEL_SMOOTHING])

__all__ = [
    "CLASSES",
    "GOLD_LOG_PROB",
    "IGNORE_INDEX",
    "ClassificationLoss",
    "GoldLogProb",
    "LOSSES",
    "CrossEntropyLoss",
    "FocalLoss",
    "GHMLoss",
    "mean_over_valid",
]
