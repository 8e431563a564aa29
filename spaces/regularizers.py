"""Regularizers. Each is switched on or off per trial. A regularizer acts in one of two places,
which its component's `supports` says:

- "loop": the trial runner applies it through the hooks of `LoopRegularizer` (its builder returns
  one), whatever the task: `weight_decay` (decoupled, AdamW-style, for every optimizer), `l2` and
  `l1` penalties over weight matrices (not embeddings, biases or norms), `grad_clip` (global
  gradient norm);
- "model": the task's model reads its hyperparameters when it is built: `dropout` (on encoder
  features and between stacked layers), `embedding_dropout` (drops whole token embeddings).

A task offers the places it honours (`trainables.task.Task.offers`); the space refuses a
regularizer that acts where the task does not look.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces._base import Component, Float, between, positive, registry

LOOP = "loop"
MODEL = "model"


class LoopRegularizer:
    """A regularizer the trial runner applies. Every hook is an optional no-op."""

    # True when `on_gradients` needs the true (unscaled) gradients: the runner unscales them first.
    uses_gradients = False

    def bind(self, model: nn.Module) -> None:
        """Called once, with the model, before training."""

    def penalty(self) -> torch.Tensor | None:
        """A term added to the loss of every batch, or None."""
        return None

    def on_gradients(self, model: nn.Module) -> None:
        """After the backward pass, before the optimizer step."""

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Just before the optimizer step."""


def penalized_weights(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices: what L1/L2 penalties apply to (not biases, norms or embedding tables)."""
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2 and id(p) not in embedding_weights]


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """As in nanoGPT: decay every parameter with dim >= 2, never biases or norm gains."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]


class L2Penalty(LoopRegularizer):
    def __init__(self, *, coefficient: float) -> None:
        self.coefficient = coefficient
        self.weights: list[nn.Parameter] = []

    def bind(self, model: nn.Module) -> None:
        self.weights = penalized_weights(model)

    def penalty(self) -> torch.Tensor:
        return self.coefficient * sum(w.pow(2).sum() for w in self.weights)


class L1Penalty(L2Penalty):
    def penalty(self) -> torch.Tensor:
        return self.coefficient * sum(w.abs().sum() for w in self.weights)


class DecoupledWeightDecay(LoopRegularizer):
    """Decoupled weight decay (Loshchilov & Hutter), the same for every optimizer: w -= lr * decay * w,
    with each parameter group's own lr (layer-wise learning rates)."""

    def __init__(self, *, decay: float) -> None:
        self.decay = decay
        self.parameters: list[nn.Parameter] = []
        self._by_group: list[list[nn.Parameter]] | None = None  # the decayed parameters of each optimizer group

    def bind(self, model: nn.Module) -> None:
        self.parameters = decayed_parameters(model)
        self._by_group = None

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._by_group is None:
            decayed = {id(p) for p in self.parameters}
            self._by_group = [[p for p in group["params"] if id(p) in decayed] for group in optimizer.param_groups]
        with torch.no_grad():
            for group, parameters in zip(optimizer.param_groups, self._by_group):
                if parameters:
                    torch._foreach_mul_(parameters, 1.0 - group["lr"] * self.decay)


class GradientClipping(LoopRegularizer):
    uses_gradients = True

    def __init__(self, *, max_norm: float) -> None:
        self.max_norm = max_norm

    def on_gradients(self, model: nn.Module) -> None:
        nn.utils.clip_grad_norm_(model.parameters(), self.max_norm)


_IN_LOOP = frozenset({LOOP})
_IN_MODEL = frozenset({MODEL})

# Registry order is the order the runner applies them in (l2's penalty before l1's).
REGULARIZERS = registry(
    "regularizers",
    "toggle",
    [
        Component("weight_decay", {"decay": Float(1e-6, 1e-2, log=True, limits=positive(), doc="a weight decay")}, DecoupledWeightDecay, "decoupled weight decay", _IN_LOOP),
        Component("l2", {"coefficient": Float(1e-7, 1e-3, log=True, limits=positive(), doc="an L2 penalty coefficient")}, L2Penalty, "L2 penalty in the loss", _IN_LOOP),
        Component("l1", {"coefficient": Float(1e-8, 1e-4, log=True, limits=positive(), doc="an L1 penalty coefficient")}, L1Penalty, "L1 penalty in the loss", _IN_LOOP),
        Component("dropout", {"p": Float(0.1, 0.6, limits=between(0.0, 1.0, exclusive_maximum=True), doc="a dropout probability")}, None, "dropout", _IN_MODEL),
        Component("embedding_dropout", {"p": Float(0.05, 0.3, limits=between(0.0, 1.0, exclusive_maximum=True), doc="an embedding dropout probability")}, None, "drops whole token embeddings", _IN_MODEL),
        Component("grad_clip", {"max_norm": Float(0.5, 10.0, log=True, limits=positive(), doc="a gradient-norm bound")}, GradientClipping, "gradient-norm clipping", _IN_LOOP),
    ],
)
