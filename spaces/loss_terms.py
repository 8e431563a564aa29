"""Auxiliary terms added to a task's loss, each switched on or off per trial (a toggle family).

- infonce: a contrastive InfoNCE term (van den Oord et al. 2018) between paired representations,
  e.g. each question and its own context in reading comprehension: in-batch pairs are positives,
  the other rows of the batch negatives. `weight` scales the term added to the task loss and
  `temperature` sharpens the cosine similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces._base import Component, Float, positive, registry

PAIRED_ENCODINGS = "paired_encodings"
"""The form a loss term needs: two encodings per example that should match (a question and its
context), and optionally a group per example (rows of one group are not each other's negatives)."""


class InfoNCE(nn.Module):
    """weight x symmetric InfoNCE over cosine similarities / temperature.

    Rows that share a group (two questions about one paragraph) are not used as each other's
    negatives: a paragraph is the right answer for all of its questions.

    Args:
        weight: The factor of the term in the total loss.
        temperature: The softmax temperature over similarities.
    """

    def __init__(self, *, weight: float, temperature: float) -> None:
        super().__init__()
        if weight <= 0 or temperature <= 0:
            raise ValueError(f"InfoNCE needs weight > 0 and temperature > 0, got {weight} and {temperature}")
        self.weight = float(weight)
        self.temperature = float(temperature)

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        """anchors, positives [N, D] (row i of each forms a pair); groups [N] optional. Returns a scalar."""
        # float32 under autocast: a low temperature makes the logits large.
        anchors, positives = F.normalize(anchors.float(), dim=-1), F.normalize(positives.float(), dim=-1)
        logits = anchors @ positives.T / self.temperature
        if groups is not None:
            same_group = groups[:, None] == groups[None, :]
            same_group.fill_diagonal_(False)
            logits = logits.masked_fill(same_group, float("-inf"))
        targets = torch.arange(len(logits), device=logits.device)
        both_ways = F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)
        return self.weight * both_ways / 2

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, temperature={self.temperature:g}"


LOSS_TERMS = registry(
    "loss_terms",
    "toggle",
    [
        Component(
            "infonce",
            {
                "weight": Float(0.01, 1.0, log=True, limits=positive(), doc="a contrastive-term weight"),
                "temperature": Float(0.05, 1.0, log=True, limits=positive(), doc="an InfoNCE temperature"),
            },
            InfoNCE,
            "InfoNCE between paired representations, in-batch negatives (van den Oord et al. 2018)",
            supports=frozenset({PAIRED_ENCODINGS}),
        ),
    ],
)
