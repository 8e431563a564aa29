"""Cross-entropy, with optional label smoothing (Szegedy et al. 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces._base import Component, Float, between
from spaces.losses._common import CLASSES, GOLD_LOG_PROB, IGNORE_INDEX, GoldLogProb, ClassificationLoss, mean_over_valid


class CrossEntropyLoss(ClassificationLoss):
    """Softmax cross-entropy averaged over non-ignored examples.

    Args:
        num_classes: The number of classes C.
        label_smoothing: The probability mass spread uniformly over all classes (0 = none).
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__(num_classes)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, _, valid = self._prepare(logits, targets)
        # A sum divided by the count, not reduction="mean": the mean is nan when every target is ignored.
        total = F.cross_entropy(
            logits, targets, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=self.label_smoothing
        )
        return total / valid.sum().clamp(min=1)

    def from_gold_log_prob(self, log_p: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_smoothing:
            return super().from_gold_log_prob(log_p, valid)
        return self._gold_nll(log_p, valid)

    def from_gold(self, output: GoldLogProb) -> torch.Tensor:
        """Label smoothing of a structured output: (1 - epsilon) x its NLL per unit + epsilon x the
        NLL of a uniform target over its parts (a CRF's tags per token, a span's context tokens)."""
        if not self.label_smoothing:
            return super().from_gold(output)
        epsilon = self.label_smoothing
        return (1 - epsilon) * (self._gold_nll(output.log_p, output.valid) / output.per_unit) + epsilon * output.uniform_nll()

    @staticmethod
    def _gold_nll(log_p: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        log_p = log_p.float()
        return mean_over_valid(-log_p, torch.ones_like(log_p, dtype=torch.bool) if valid is None else valid)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, label_smoothing={self.label_smoothing:g}"


def _build_cross_entropy(num_classes: int) -> CrossEntropyLoss:
    return CrossEntropyLoss(num_classes)


def _build_label_smoothing(num_classes: int, *, epsilon: float) -> CrossEntropyLoss:
    return CrossEntropyLoss(num_classes, label_smoothing=epsilon)


CROSS_ENTROPY = Component(
    "cross_entropy",
    {},
    _build_cross_entropy,
    "softmax cross-entropy",
    supports=frozenset({CLASSES, GOLD_LOG_PROB}),
)

LABEL_SMOOTHING = Component(
    "label_smoothing",
    {
        "epsilon": Float(
            0.01, 0.3, limits=between(0.0, 1.0, exclusive_maximum=True), doc="the label-smoothing epsilon"
        ),
    },
    _build_label_smoothing,
    "cross-entropy against targets smoothed towards the uniform distribution (Szegedy et al. 2016)",
    supports=frozenset({CLASSES, GOLD_LOG_PROB}),
)
