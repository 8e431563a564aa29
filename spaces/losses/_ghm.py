"""Gradient harmonizing loss (GHM-C; Li et al., AAAI 2019), generalised from sigmoid to softmax.

The gradient norm of softmax cross-entropy with respect to the target logit is g = 1 - p_t. GHM-C
buckets g into equal bins over [0, 1] and weights each example by the inverse density of its bin,
so that the many easy examples (g ~ 0) and the few outliers (g ~ 1) do not dominate the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces._base import Component, Float, Int, at_least, between
from spaces.losses._common import CLASSES, GOLD_LOG_PROB, ClassificationLoss

# Added to the last bin edge, as in the authors' code, so that g == 1 falls inside the last bin.
_LAST_EDGE_MARGIN = 1e-6


class GHMLoss(ClassificationLoss):
    """GHM-C weighted cross-entropy.

    Per batch, with N valid examples, bin counts c_b and M non-empty bins:
    weight_i = N / c_{bin(i)} / M and loss = sum_i weight_i * CE_i / N. The weights are constants
    (no gradient flows through them). With momentum > 0 the counts are replaced by an exponential
    moving average kept in the buffer `ema_counts`. As in the authors' implementation, the average
    starts at 0 and only bins that are non-empty in the current batch are updated. The average is
    updated in training mode only, so that evaluation batches leave it untouched.

    Args:
        num_classes: The number of classes C.
        bins: The number of equal-width gradient-norm bins over [0, 1].
        momentum: The moving-average momentum for the bin counts; 0 uses each batch's own counts.
    """

    ema_counts: torch.Tensor

    def __init__(self, num_classes: int, bins: int, momentum: float = 0.0) -> None:
        super().__init__(num_classes)
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.bins = int(bins)
        self.momentum = float(momentum)
        # A buffer, so that the average follows .to(device) and is saved in checkpoints.
        self.register_buffer("ema_counts", torch.zeros(self.bins))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, safe_targets, valid = self._prepare(logits, targets)
        log_pt = F.log_softmax(logits, dim=-1).gather(1, safe_targets.unsqueeze(1)).squeeze(1)
        return self.from_gold_log_prob(log_pt, valid)

    def from_gold_log_prob(self, log_p: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        log_p = log_p.float()
        valid = torch.ones_like(log_p, dtype=torch.bool) if valid is None else valid
        weights = self._weights(log_p.detach(), valid)
        # where() rather than a product: an ignored row's cross-entropy may be inf, and inf * 0 is nan.
        weighted = torch.where(valid, weights * -log_p, log_p.new_zeros(()))
        return weighted.sum() / valid.sum().clamp(min=1)

    @torch.no_grad()
    def _weights(self, log_pt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Per-example harmonizing weights (0 for ignored examples), without host syncs."""
        grad_norm = (-torch.expm1(log_pt)).clamp(0.0, 1.0)  # g = 1 - p_t
        # Bin b is [b / bins, (b + 1) / bins); bucketize against the inner edges gives b directly.
        inner_edges = torch.arange(1, self.bins, device=log_pt.device, dtype=log_pt.dtype) / self.bins
        bin_index = torch.bucketize(grad_norm, inner_edges, right=True)
        # Ignored examples go to an overflow slot that is dropped after counting. scatter_add_ rather
        # than bincount: CUDA bincount reads the maximum back to the host, a sync on every step.
        slot = torch.where(valid, bin_index, self.bins)
        counts = torch.zeros(self.bins + 1, dtype=torch.long, device=log_pt.device)
        counts = counts.scatter_add_(0, slot, torch.ones_like(slot))[: self.bins].float()

        non_empty = counts > 0
        if self.momentum > 0:
            averaged = self.momentum * self.ema_counts + (1.0 - self.momentum) * counts
            density = torch.where(non_empty, averaged, self.ema_counts)
            if self.training:
                self.ema_counts.copy_(density)
        else:
            density = counts
        num_valid = counts.sum()
        num_non_empty = non_empty.sum().clamp(min=1)
        # Empty bins get weight 0; the clamp only keeps their (discarded) quotient finite.
        bin_weight = torch.where(non_empty, num_valid / density.clamp(min=1e-12), 0.0) / num_non_empty
        return torch.where(valid, bin_weight[bin_index], 0.0)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, bins={self.bins}, momentum={self.momentum:g}"


def _build_ghm(num_classes: int, *, bins: int, momentum: float) -> GHMLoss:
    return GHMLoss(num_classes, bins=bins, momentum=momentum)


GHM = Component(
    "ghm",
    {
        "bins": Int(5, 30, limits=at_least(1), doc="the number of GHM gradient-norm bins"),
        "momentum": Float(
            0.0, 0.9, limits=between(0.0, 1.0, exclusive_maximum=True), doc="the GHM bin-count momentum"
        ),
    },
    _build_ghm,
    "cross-entropy re-weighted by inverse gradient-norm density (GHM-C, Li et al. 2019)",
    supports=frozenset({CLASSES, GOLD_LOG_PROB}),
)
