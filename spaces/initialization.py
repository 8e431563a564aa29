"""Initialization of the parts of a model trained from scratch (never embeddings, which keep their
own scheme, and never pretrained weights).

- default: PyTorch's per-layer defaults.
- xavier_uniform: Glorot & Bengio (2010) for every weight matrix, biases zero.
- kaiming_normal: He et al. (2015), fan-in, ReLU gain, for every weight matrix, biases zero.
- orthogonal: orthogonal recurrent weights, one block per LSTM gate (Saxe et al. 2014); the rest
  keeps its defaults.

The family is opt-in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spaces._base import Component, registry

FROM_SCRATCH = "from_scratch"  # what a task offers: modules it builds from random weights

_MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _weight_matrices(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) of every dense, convolutional and recurrent layer, embeddings left out."""
    found = []
    for layer in module.modules():
        if isinstance(layer, _MATRIX_LAYERS):
            found.append((layer.weight, layer.bias))
        elif isinstance(layer, nn.LSTM | nn.GRU):
            for name, parameter in layer.named_parameters():
                if name.startswith("weight_"):
                    bias = getattr(layer, name.replace("weight_", "bias_"), None)
                    found.append((parameter, bias))
    return found


def _everywhere(init: Callable[[torch.Tensor], object]) -> Callable[[nn.Module], None]:
    @torch.no_grad()
    def apply(module: nn.Module) -> None:
        for weight, bias in _weight_matrices(module):
            init(weight)
            if bias is not None:
                bias.zero_()

    return apply


@torch.no_grad()
def _orthogonal_recurrent(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.LSTM | nn.GRU):
            gates = 4 if isinstance(layer, nn.LSTM) else 3
            for name, parameter in layer.named_parameters():
                if name.startswith("weight_hh"):
                    for block in parameter.chunk(gates, dim=0):
                        nn.init.orthogonal_(block)


def _build_xavier_uniform() -> Callable[[nn.Module], None]:
    return _everywhere(nn.init.xavier_uniform_)


def _build_kaiming_normal() -> Callable[[nn.Module], None]:
    return _everywhere(lambda weight: nn.init.kaiming_normal_(weight, nonlinearity="relu"))


def _build_orthogonal() -> Callable[[nn.Module], None]:
    return _orthogonal_recurrent


_SCRATCH = frozenset({FROM_SCRATCH})

INITIALIZATION = registry(
    "initialization",
    "choice",
    [
        Component("default", {}, None, "PyTorch's per-layer defaults"),
        Component("xavier_uniform", {}, _build_xavier_uniform, "Glorot & Bengio (2010), biases zero", _SCRATCH),
        Component("kaiming_normal", {}, _build_kaiming_normal, "He et al. (2015), fan-in, biases zero", _SCRATCH),
        Component("orthogonal", {}, _build_orthogonal, "orthogonal recurrent weights per gate (Saxe et al. 2014)", _SCRATCH),
    ],
    opt_in=True,
)
