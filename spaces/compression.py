"""Compression after training (a choice family, opt-in): the model a trial ships, scored on dev.

- none: the trained model as it is.
- quantize: dynamic int8 quantization (`torch.ao.quantization.quantize_dynamic`) of the Linear and
  LSTM layers, on a CPU copy (quantized kernels run on CPUs); other layers (embeddings, the
  TextCNN's convolutions) stay float.
- prune: global magnitude pruning (`torch.nn.utils.prune.global_unstructured`, L1): the smallest
  `amount` of all weight matrices' entries (embeddings, convolutions, recurrent and linear
  weights; not biases or LayerNorm) set to zero, optionally followed by one fine-tuning epoch with
  the strategy's optimizer at its learning rate, the pruned entries held at zero.

The runner compresses after a trial's last epoch and reports the compressed model's dev metrics
as that epoch's (what the search selects on), the uncompressed ones as `uncompressed_*`, and both
footprints (`trainables.footprint`). A trial that ASHA stops early is not compressed.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils import prune

from spaces._base import Categorical, Component, Float, between, registry


class Compression:
    """`compress(model)` -> the compressed model (in place, or a copy); `finalize(model)` makes
    what `compress` left (pruning masks) permanent, after the optional fine-tuning epoch."""

    fine_tune = False

    def compress(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def finalize(self, model: nn.Module) -> None:
        """After compression (and fine-tuning): nothing to do by default."""


class Quantize(Compression):
    def compress(self, model: nn.Module) -> nn.Module:
        """A CPU copy of `model` with int8 Linear and LSTM layers (weights quantized once, activations per batch)."""
        with warnings.catch_warnings():  # torch >= 2.10 says torch.ao.quantization moves to torchao; it still works here
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).to("cpu").eval(), {nn.Linear, nn.LSTM}, dtype=torch.qint8)


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every weight matrix of `model` (parameters named weight* with 2 or more dimensions)."""
    return [
        (module, name) for module in model.modules() for name, parameter in module.named_parameters(recurse=False)
        if name.startswith("weight") and parameter.dim() >= 2
    ]


class Prune(Compression):
    def __init__(self, *, amount: float, finetune: bool) -> None:
        self.amount = amount
        self.fine_tune = finetune

    def compress(self, model: nn.Module) -> nn.Module:
        """`model` itself with the smallest `amount` of its weight entries masked to zero (masks
        kept until `finalize`, so a fine-tuning epoch leaves them at zero)."""
        prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=self.amount)
        return model

    def finalize(self, model: nn.Module) -> None:
        for module in model.modules():
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(module, hook._tensor_name)


COMPRESSION = registry(
    "compression",
    "choice",
    [
        Component("none", {}, None, "the trained model as it is"),
        Component("quantize", {}, Quantize, "dynamic int8 quantization of Linear and LSTM layers (torch.ao)"),
        Component(
            "prune",
            {
                "amount": Float(0.0, 0.9, limits=between(0.0, 1.0, exclusive_maximum=True), doc="the fraction of weight entries pruned"),
                "finetune": Categorical((False, True), doc="one fine-tuning epoch after pruning"),
            },
            Prune, "global magnitude pruning of the weight matrices (torch.nn.utils.prune)",
        ),
    ],
    opt_in=True,
)
