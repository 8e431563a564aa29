"""Training-strategy search spaces: component registries and the define-by-run `suggest`.

    import optuna
    from spaces import TEXT_CLASSIFICATION, build_space, suggest

    space = build_space({"loss": ["focal", "ghm"], "optimizer": "adamw"}, TEXT_CLASSIFICATION)
    trial = optuna.create_study().ask()
    strategy = suggest(trial, space)   # {"loss/name": "ghm", "loss/ghm/bins": 12, ...}
    Strategy.from_flat(strategy).loss  # ("ghm", {"bins": 12, ...}); to_config() nests it as trials get it
"""

from __future__ import annotations

from spaces._base import Categorical, Component, Fixed, Float, Int, Offer, Registry, SpaceError, at_least, between, positive, registry
from spaces._space import FamilySpace, Space, build_space, categorical_choices, suggest
from spaces._support import unsupported
from spaces._strategy import (
    SEPARATOR,
    ConfigError,
    Strategy,
    choice_key,
    enabled_key,
    flatten,
    global_key,
    is_flat_key,
    param_key,
    unflatten,
    with_overrides,
)
from spaces.addons import ADDONS
from spaces.adversarial import ADVERSARIAL
from spaces.augmentation import AUGMENTATION
from spaces.averaging import AVERAGING
from spaces.char_encoders import CHAR_ENCODERS
from spaces.compression import COMPRESSION
from spaces.consistency import CONSISTENCY
from spaces.decoders import DECODERS
from spaces.distillation import DISTILLATION
from spaces.encoders import ENCODERS
from spaces.finetuning import FINETUNE, POOLING
from spaces.heads import HEADS
from spaces.initialization import INITIALIZATION
from spaces.loss_terms import LOSS_TERMS
from spaces.losses import LOSSES
from spaces.optimizers import OPTIMIZERS
from spaces.regularizers import REGULARIZERS
from spaces.schedules import SCHEDULES

# Opt-in families every task can train with: off unless a study names them (so no existing study
# changes), sampled after the others.
TRAINING_EXTRAS = {"initialization": INITIALIZATION, "averaging": AVERAGING, "adversarial": ADVERSARIAL, "compression": COMPRESSION}

# The families a text-classification study searches, in the order a strategy is sampled.
# `finetune` and `pooling` exist only in strategies whose encoder is `transformer`.
TEXT_CLASSIFICATION = {
    "encoder": ENCODERS,
    "finetune": FINETUNE,
    "pooling": POOLING,
    "addons": ADDONS,
    "loss": LOSSES,
    "regularizers": REGULARIZERS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    **TRAINING_EXTRAS,
    "augmentation": AUGMENTATION,
    "consistency": CONSISTENCY,
    # Only with a study teacher (`teacher:`); text classification carries its logits.
    "distillation": DISTILLATION,
}

# Sequence labelling adds a character encoder and the output head (softmax or CRF).
NER = {
    "char_encoder": CHAR_ENCODERS,
    "encoder": ENCODERS,
    "finetune": FINETUNE,
    "addons": ADDONS,
    "head": HEADS,
    "loss": LOSSES,
    "regularizers": REGULARIZERS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    **TRAINING_EXTRAS,
    "augmentation": AUGMENTATION,
}

# Reading comprehension (BiDAF): the encoder kind and size serve its contextual and modelling
# layers, add-ons act on the modelling layer, loss terms add a contrastive objective, and the
# decoder bounds the answer length.
READING_COMPREHENSION = {
    "char_encoder": CHAR_ENCODERS,
    "encoder": ENCODERS,
    "finetune": FINETUNE,
    "addons": ADDONS,
    "loss": LOSSES,
    "loss_terms": LOSS_TERMS,
    "decoder": DECODERS,
    "regularizers": REGULARIZERS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    **TRAINING_EXTRAS,
    "augmentation": AUGMENTATION,
}

__all__ = [
    "ADDONS", "ADVERSARIAL", "AUGMENTATION", "AVERAGING", "CHAR_ENCODERS", "COMPRESSION", "CONSISTENCY", "DISTILLATION", "INITIALIZATION", "TRAINING_EXTRAS", "DECODERS", "ENCODERS", "FINETUNE", "HEADS", "POOLING", "LOSS_TERMS", "LOSSES", "NER", "READING_COMPREHENSION", "OPTIMIZERS", "REGULARIZERS", "SCHEDULES", "TEXT_CLASSIFICATION",
    "Categorical", "Component", "at_least", "between", "positive", "unsupported", "ConfigError", "FamilySpace", "Fixed", "Float", "Int", "Offer", "Registry", "Space",
    "SEPARATOR", "SpaceError", "Strategy", "build_space", "categorical_choices", "choice_key", "enabled_key", "flatten", "global_key",
    "is_flat_key", "param_key", "registry", "suggest", "unflatten", "with_overrides",
]
