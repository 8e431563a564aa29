"""How a pretrained `transformer` encoder is fine-tuned: two families that exist only in strategies
that choose that encoder (`Registry.requires`), so from-scratch trials never sample them.

- `finetune`: `full` (every weight trains: a head learning-rate multiplier over the optimizer's
  learning rate, layer-wise learning-rate decay, freezing the embeddings and the lower k layers) or
  `lora` (the pretrained weights stay as they are; low-rank adapters through `peft`: rank, alpha,
  dropout, target modules). Both set `accumulation`, the micro-batches summed per optimizer step,
  so that the effective batch size (batch_size x accumulation) is searched independently of memory.
- `pooling` (text classification): `first` hands the first token to the model's own classification
  head (as `AutoModelForSequenceClassification`), `mean` averages the last hidden states over the
  real tokens before a linear head.

The encoder's learning rate is the optimizer's `lr`; warmup is the schedule's `warmup_fraction`
(`linear`, `cosine`); weight decay (the `weight_decay` regularizer) never touches biases and
LayerNorm weights; losses, add-ons, clipping and the other families apply on top.
"""

from __future__ import annotations

from typing import Any

from spaces._base import Categorical, Component, Fixed, Float, Int, at_least, between, is_positive_int, positive, registry
from spaces._space import Space
from spaces._strategy import Strategy
from spaces.encoders import is_model_name

TRANSFORMER = ("encoder", "transformer")

_HEAD_LR = Float(1.0, 30.0, log=True, limits=positive(), doc="a head learning-rate multiplier (head lr = lr x multiplier)")
_ACCUMULATION = Categorical((1, 2, 4), allowed=is_positive_int, doc="a number of micro-batches per optimizer step (positive integer)")


def is_module_list(value: object) -> bool:
    """LoRA targets: comma-separated module names (`query,value`) or peft's `all-linear`."""
    return is_model_name(value) and all(part.strip() for part in str(value).split(","))


FINETUNE = registry(
    "finetune",
    "choice",
    [
        Component(
            "full",
            {
                "head_lr_multiplier": _HEAD_LR,
                "layer_decay": Float(0.7, 1.0, limits=between(0.0, 1.0, exclusive_minimum=True), doc="a layer-wise learning-rate decay in (0, 1]"),
                "freeze_embeddings": Categorical((False, True), doc="freeze the embeddings (true or false)"),
                "freeze_layers": Int(0, 2, limits=at_least(0), doc="a number of lower layers frozen"),
                "accumulation": _ACCUMULATION,
            },
            None,
            "full fine-tuning: head lr multiplier, layer-wise lr decay, frozen lower layers",
        ),
        Component(
            "lora",
            {
                "rank": Categorical((4, 8, 16), allowed=is_positive_int, doc="a LoRA rank (positive integer)"),
                "alpha": Categorical((8, 16, 32), allowed=is_positive_int, doc="a LoRA alpha (positive integer)"),
                "dropout": Float(0.0, 0.2, limits=between(0.0, 1.0, exclusive_maximum=True), doc="a LoRA dropout probability"),
                "target_modules": Categorical(
                    ("query,value", "query,key,value"), allowed=is_module_list,
                    doc="LoRA target modules (comma-separated module names, or all-linear)",
                ),
                "head_lr_multiplier": _HEAD_LR,
                "accumulation": _ACCUMULATION,
            },
            None,
            "LoRA adapters (peft); the pretrained weights stay frozen",
        ),
    ],
    requires=TRANSFORMER,
)

POOLING = registry(
    "pooling",
    "choice",
    [
        Component("first", {}, None, "first token through the model's own classification head"),
        Component("mean", {}, None, "mean of the last hidden states over the real tokens, linear head"),
    ],
    requires=TRANSFORMER,
)


def pretrained_models(space: Space) -> tuple[str, ...]:
    """Every model the space's `transformer` encoder may fine-tune (the driver tokenizes for each)."""
    encoders = space.families.get("encoder")
    if encoders is None or TRANSFORMER[1] not in (*encoders.candidates, *encoders.always):
        return ()
    model = encoders.params[TRANSFORMER[1]]["model"]
    return (model.value,) if isinstance(model, Fixed) else tuple(model.choices)  # type: ignore[union-attr]


def pretrained_model(strategy: Strategy | dict[str, Any]) -> str | None:
    """The model a strategy (or its nested config) fine-tunes; None for a from-scratch encoder."""
    if not isinstance(strategy, Strategy):
        strategy = Strategy.from_config(strategy)
    name, params = strategy.choices.get("encoder", ("", {}))
    return params.get("model") if name == TRANSFORMER[1] else None


def finetuning(strategy: Strategy) -> tuple[str, dict[str, Any]]:
    """The strategy's fine-tuning component and its settings (("full", {}) when the config has none)."""
    return strategy.choices.get("finetune", ("full", {}))


def accumulation_steps(strategy: Strategy) -> int:
    """Micro-batches per optimizer step: 1 unless a fine-tuning strategy accumulates gradients."""
    return int(finetuning(strategy)[1].get("accumulation", 1))
