"""Adversarial training on the embeddings: after the clean backward pass, the word embeddings are
moved along their gradient, the batch's loss is computed again and its gradient added, then the
embeddings are put back (the optimizer steps on the sum of both gradients).

- none: no adversarial pass.
- fgm: one step of norm `epsilon` along the gradient (Miyato et al. 2017).
- pgd: `steps` steps of norm `step_size`, each projected back into the ball of radius `epsilon`
  around the clean embeddings (Madry et al. 2018); only the last step's gradient is kept.

The task offers its embedding tables (`EMBEDDINGS`); the family is opt-in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from spaces._base import Component, Float, Int, at_least, positive, registry

EMBEDDINGS = "embeddings"  # what a task offers: the embedding tables its inputs are looked up in


def _unit_direction(gradient: torch.Tensor) -> torch.Tensor | None:
    norm = gradient.norm()
    if norm == 0 or not torch.isfinite(norm):
        return None
    return gradient / norm


class FGM:
    """Fast gradient method on embedding tables."""

    def __init__(self, *, epsilon: float) -> None:
        self.epsilon = epsilon

    def attack(self, embeddings: Sequence[nn.Parameter], adversarial_backward: Callable[[], None], parameters: Sequence[nn.Parameter] = ()) -> None:
        """`adversarial_backward` recomputes the loss and adds its gradient to every parameter's
        (`parameters`: the model's, which PGD's intermediate steps must leave as they were)."""
        clean = [table.detach().clone() for table in embeddings]
        with torch.no_grad():
            for table in embeddings:
                direction = None if table.grad is None else _unit_direction(table.grad)
                if direction is not None:
                    table.add_(self.epsilon * direction)
        adversarial_backward()
        with torch.no_grad():
            for table, original in zip(embeddings, clean):
                table.copy_(original)


class PGD(FGM):
    """Projected gradient descent on embedding tables."""

    def __init__(self, *, epsilon: float, step_size: float, steps: int) -> None:
        super().__init__(epsilon=epsilon)
        self.step_size = step_size
        self.steps = steps

    def attack(self, embeddings: Sequence[nn.Parameter], adversarial_backward: Callable[[], None], parameters: Sequence[nn.Parameter] = ()) -> None:
        clean = [table.detach().clone() for table in embeddings]
        # The clean gradients of every parameter, restored before the last adversarial pass adds its own.
        saved = [None if p.grad is None else p.grad.detach().clone() for p in parameters]
        for step in range(self.steps):
            with torch.no_grad():
                for table, original in zip(embeddings, clean):
                    direction = None if table.grad is None else _unit_direction(table.grad)
                    if direction is not None:
                        table.add_(self.step_size * direction)
                        self.project(table, original)
            if step < self.steps - 1:
                for p in embeddings:
                    p.grad = None  # the next step follows this step's gradient alone
                adversarial_backward()
            else:
                for p, grad in zip(parameters, saved):
                    p.grad = None if grad is None else grad.clone()
                adversarial_backward()
        with torch.no_grad():
            for table, original in zip(embeddings, clean):
                table.copy_(original)

    def project(self, table: torch.Tensor, original: torch.Tensor) -> None:
        """Back into the ball of radius epsilon around the clean table (in place)."""
        delta = table - original
        norm = delta.norm()
        if norm > self.epsilon:
            table.copy_(original + delta * (self.epsilon / norm))


ADVERSARIAL = registry(
    "adversarial",
    "choice",
    [
        Component("none", {}, None, "no adversarial pass"),
        Component("fgm", {"epsilon": Float(0.1, 2.0, log=True, limits=positive(), doc="an FGM radius")}, FGM,
                  "one gradient step on the embeddings (Miyato et al. 2017)", frozenset({EMBEDDINGS})),
        Component(
            "pgd",
            {
                "epsilon": Float(0.1, 2.0, log=True, limits=positive(), doc="a PGD radius"),
                "step_size": Float(0.05, 1.0, log=True, limits=positive(), doc="a PGD step size"),
                "steps": Int(1, 3, limits=at_least(1), doc="a number of PGD steps"),
            },
            PGD, "projected gradient steps on the embeddings (Madry et al. 2018)", frozenset({EMBEDDINGS}),
        ),
    ],
    opt_in=True,
)
