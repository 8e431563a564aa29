"""Consistency terms for classification, each switched on or off per trial (a toggle family).

- rdrop: R-Drop (Liang et al. 2021): the batch goes through the model twice (two dropout masks);
  the task loss is the mean of both, and `weight` x the symmetric KL divergence between the two
  predicted distributions is added.

The task offers `TWO_PASSES` when its outputs are class distributions; the family is opt-in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces._base import Component, Float, positive, registry

TWO_PASSES = "two_passes"  # what a task offers: logits over classes it can compute twice per batch


class RDrop:
    reads = TWO_PASSES

    def __init__(self, *, weight: float) -> None:
        self.weight = weight

    def __call__(self, first_logits: torch.Tensor, second_logits: torch.Tensor) -> torch.Tensor:
        """weight x (KL(p1 || p2) + KL(p2 || p1)) / 2, averaged over examples, in float32."""
        first = F.log_softmax(first_logits.float(), dim=-1)
        second = F.log_softmax(second_logits.float(), dim=-1)
        both_ways = F.kl_div(first, second, log_target=True, reduction="batchmean") + F.kl_div(second, first, log_target=True, reduction="batchmean")
        return self.weight * both_ways / 2


CONSISTENCY = registry(
    "consistency",
    "toggle",
    [
        Component("rdrop", {"weight": Float(0.1, 5.0, log=True, limits=positive(), doc="an R-Drop weight")}, RDrop,
                  "symmetric KL between two dropout passes (Liang et al. 2021)", frozenset({TWO_PASSES})),
    ],
    opt_in=True,
)
