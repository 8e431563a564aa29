"""Consistency terms for classification, each switched on or off per trial (a toggle family).

- rdrop: R-Drop (Liang et al. 2021): the batch goes through the model twice (two dropout masks);
  the task loss is the mean of both, and `weight` x the symmetric KL divergence between the two
  predicted distributions is added.
- supcon: a supervised contrastive term (Khosla et al. 2020, the L_out form) on the pooled
  representations, L2-normalised: for each example with another of its class in the batch,
  -mean over those positives p of log(exp(z.z_p / t) / sum over the other examples a of
  exp(z.z_a / t)), averaged over such examples, x `weight` (the `temperature` t sharpens).

The task offers `TWO_PASSES` when its outputs are class distributions, `POOLED` when it has a
pooled representation per example with a class label; the family is opt-in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces._base import Component, Float, positive, registry

TWO_PASSES = "two_passes"  # what a task offers: logits over classes it can compute twice per batch
POOLED = "pooled"  # ... a pooled representation per example, and its class label


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


class SupervisedContrastive:
    reads = POOLED

    def __init__(self, *, weight: float, temperature: float) -> None:
        self.weight = weight
        self.temperature = temperature

    def __call__(self, pooled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """weight x the supervised contrastive loss of `pooled` [N, D] with class `labels` [N], in
        float32; 0 (attached to the graph) when no two examples share a class."""
        z = F.normalize(pooled.float(), dim=-1)
        itself = torch.eye(len(z), dtype=torch.bool, device=z.device)
        similarity = (z @ z.T / self.temperature).masked_fill(itself, float("-inf"))
        log_prob = similarity - similarity.logsumexp(dim=1, keepdim=True)  # over every other example
        positives = (labels[:, None] == labels[None, :]) & ~itself
        count = positives.sum(dim=1)
        # where() rather than a product: the diagonal's log-probability is -inf, and -inf x 0 is nan.
        per_anchor = -torch.where(positives, log_prob, 0.0).sum(dim=1) / count.clamp(min=1)
        anchors = count > 0
        return self.weight * torch.where(anchors, per_anchor, 0.0).sum() / anchors.sum().clamp(min=1)


CONSISTENCY = registry(
    "consistency",
    "toggle",
    [
        Component("rdrop", {"weight": Float(0.1, 5.0, log=True, limits=positive(), doc="an R-Drop weight")}, RDrop,
                  "symmetric KL between two dropout passes (Liang et al. 2021)", frozenset({TWO_PASSES})),
        Component("supcon", {"weight": Float(0.05, 1.0, log=True, limits=positive(), doc="a supervised contrastive weight"),
                             "temperature": Float(0.05, 1.0, log=True, limits=positive(), doc="a supervised contrastive temperature")},
                  SupervisedContrastive, "supervised contrastive term on the pooled representations (Khosla et al. 2020)", frozenset({POOLED})),
    ],
    opt_in=True,
)
