"""Classification losses, one family member per training strategy.

Every builder has the signature `build(num_classes, **hparams) -> torch.nn.Module`; the module maps
logits [N, C] and targets [N] to the mean loss over examples whose target is not `IGNORE_INDEX`,
computed in float32 whatever the autocast dtype.
"""

from __future__ import annotations

from spaces._base import registry
from spaces.losses._common import IGNORE_INDEX
from spaces.losses._focal import FOCAL, FocalLoss
from spaces.losses._ghm import GHM, GHMLoss
from spaces.losses._simple import CROSS_ENTROPY, LABEL_SMOOTHING, CrossEntropyLoss

LOSSES = registry("loss", "choice", [CROSS_ENTROPY, FOCAL, GHM, LABEL_SMOOTHING])

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "CrossEntropyLoss",
    "FocalLoss",
    "GHMLoss",
]
