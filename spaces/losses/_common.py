"""Shared plumbing for the classification losses: target masking and the masked mean."""

from __future__ import annotations

import torch
from torch import nn

IGNORE_INDEX = -100
"""Targets equal to this value (padding, sub-word continuations) do not count in any loss."""


class _ClassificationLoss(nn.Module):
    """Base class: checks shapes, masks ignored targets and averages over the rest.

    Args:
        num_classes: The number of classes C; logits must have shape [N, C].
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes

    def from_gold_log_prob(self, log_p: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The loss from each example's log-probability of its gold outcome, shape [N].

        This also serves structured outputs, where an example is a whole sequence and `log_p` its
        CRF log-likelihood: focal and GHM then weigh sentences, as they weigh tokens in `forward`.
        Losses that need the whole predicted distribution (label smoothing) do not have it.
        """
        raise NotImplementedError(f"{type(self).__name__} needs the whole predicted distribution, not only log p(gold)")

    def _prepare(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns float32 logits, targets safe to index with, and the mask of counted examples."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have shape [N, {self.num_classes}], got {list(logits.shape)}")
        if targets.shape != logits.shape[:1]:
            raise ValueError(f"targets must have shape [{logits.shape[0]}], got {list(targets.shape)}")
        if targets.dtype != torch.long:
            raise TypeError(f"targets must be class indices (torch.long), got {targets.dtype}")
        valid = targets != IGNORE_INDEX
        # Ignored rows get class 0 so that gather() stays in range; their loss is masked out below.
        safe_targets = targets.masked_fill(~valid, 0)
        # float32 even under fp16/bf16 autocast: log-probabilities of confident examples underflow otherwise.
        return logits.float(), safe_targets, valid


def _mean_over_valid(per_example: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `per_example` over the counted examples; 0 (still attached to the graph) if there are none.

    Written without a data-dependent branch so that it never forces a GPU-to-host sync.
    """
    # where() rather than a multiplication: an ignored row's loss may be inf, and inf * 0 is nan.
    total = torch.where(valid, per_example, per_example.new_zeros(())).sum()
    return total / valid.sum().clamp(min=1)
