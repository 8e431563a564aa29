"""Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"), multi-class form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces._base import Component, Float, at_least
from spaces.losses._common import CLASSES, GOLD_LOG_PROB, ClassificationLoss, mean_over_valid

# Floor for 1 - p_t inside the power: with gamma < 1 the derivative of x**gamma is infinite at x = 0,
# which a saturated float32 softmax (p_t == 1) reaches.
_MIN_ONE_MINUS_PT = 1e-12


class FocalLoss(ClassificationLoss):
    """-(1 - p_t)**gamma * log p_t, averaged over non-ignored examples.

    Args:
        num_classes: The number of classes C.
        gamma: The focusing exponent; 0 gives plain cross-entropy.
    """

    def __init__(self, num_classes: int, gamma: float) -> None:
        super().__init__(num_classes)
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, safe_targets, valid = self._prepare(logits, targets)
        log_pt = F.log_softmax(logits, dim=-1).gather(1, safe_targets.unsqueeze(1)).squeeze(1)
        return self.from_gold_log_prob(log_pt, valid)

    def from_gold_log_prob(self, log_p: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        log_p = log_p.float()
        valid = torch.ones_like(log_p, dtype=torch.bool) if valid is None else valid
        # -expm1(log p) is 1 - p without the cancellation that 1 - exp(log p) suffers near p = 1.
        one_minus_p = (-torch.expm1(log_p)).clamp(min=_MIN_ONE_MINUS_PT)
        return mean_over_valid(-one_minus_p.pow(self.gamma) * log_p, valid)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, gamma={self.gamma:g}"


def _build_focal(num_classes: int, *, gamma: float) -> FocalLoss:
    return FocalLoss(num_classes, gamma=gamma)


FOCAL = Component(
    "focal",
    {"gamma": Float(0.5, 3.0, limits=at_least(0.0), doc="the focal-loss exponent gamma")},  # 5 lost 4.4 points (bench/DEFAULTS.md)
    _build_focal,
    "cross-entropy down-weighting well-classified examples by (1 - p_t)^gamma (Lin et al. 2017)",
    supports=frozenset({CLASSES, GOLD_LOG_PROB}),
)
