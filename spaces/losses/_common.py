"""Shared plumbing for the losses: the output forms a loss can score, target masking and the masked mean."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

IGNORE_INDEX = -100
"""Targets equal to this value (padding, sub-word continuations) do not count in any loss."""

# The forms in which a task hands its outputs to the loss (a loss component's `supports`):
CLASSES = "classes"
"""Logits over a fixed set of classes [N, C] and gold class ids [N]: `loss(logits, targets)`.
Text classification, and NER tokens under the softmax head."""
GOLD_LOG_PROB = "gold_log_prob"
"""Only each example's log-probability of its gold outcome, when the outcomes are structured (a
tag sequence under a CRF, an answer's start and end among a context's tokens): `loss.from_gold(GoldLogProb)`."""


@dataclass(frozen=True)
class GoldLogProb:
    """A structured output as a loss sees it (the `GOLD_LOG_PROB` form).

    Attributes:
        log_p: [N] log-probability of each example's gold outcome.
        valid: [N] which examples count (None: all).
        uniform_nll: The mean negative log-probability of a uniform target over the output's
            parts (a CRF's tags per token, a span's context tokens), per unit; what label smoothing
            mixes in. Called only by losses that need it.
        per_unit: The gold term is divided by this, so that the loss is per unit (per token for a
            CRF's sentences) and learning rates compare across heads.
    """

    log_p: torch.Tensor
    uniform_nll: Callable[[], torch.Tensor]
    valid: torch.Tensor | None = None
    per_unit: torch.Tensor | float = 1.0


class ClassificationLoss(nn.Module):
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
        A loss that needs more than log p(gold) does not support `GOLD_LOG_PROB` by this method
        alone; it overrides `from_gold`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support the {GOLD_LOG_PROB} form")

    def from_gold(self, output: GoldLogProb) -> torch.Tensor:
        """The loss of a structured output (the `GOLD_LOG_PROB` form), per unit."""
        return self.from_gold_log_prob(output.log_p, output.valid) / output.per_unit

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


def mean_over_valid(per_example: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `per_example` over the counted examples; 0 (still attached to the graph) if there are none.

    Written without a data-dependent branch so that it never forces a GPU-to-host sync.
    """
    # where() rather than a multiplication: an ignored row's loss may be inf, and inf * 0 is nan.
    total = torch.where(valid, per_example, per_example.new_zeros(())).sum()
    return total / valid.sum().clamp(min=1)
