"""Regularizers. Each is switched on or off per trial; the training loop and the model read them:

- weight_decay: decoupled weight decay (AdamW-style) applied by the loop for every optimizer;
- l2, l1: penalties added to the loss, over weight matrices (not embeddings, biases or norms);
- dropout: on encoder features and between stacked layers; embedding_dropout: drops whole
  token embeddings; grad_clip: clips the global gradient norm.
"""

from __future__ import annotations

from spaces._base import Component, Float, between, positive, registry

REGULARIZERS = registry(
    "regularizers",
    "toggle",
    [
        Component("weight_decay", {"decay": Float(1e-6, 1e-2, log=True, limits=positive(), doc="a weight decay")}, None, "decoupled weight decay"),
        Component("l2", {"coefficient": Float(1e-7, 1e-3, log=True, limits=positive(), doc="an L2 penalty coefficient")}, None, "L2 penalty in the loss"),
        Component("l1", {"coefficient": Float(1e-8, 1e-4, log=True, limits=positive(), doc="an L1 penalty coefficient")}, None, "L1 penalty in the loss"),
        Component("dropout", {"p": Float(0.1, 0.6, limits=between(0.0, 1.0, exclusive_maximum=True), doc="a dropout probability")}, None, "dropout"),
        Component("embedding_dropout", {"p": Float(0.05, 0.3, limits=between(0.0, 1.0, exclusive_maximum=True), doc="an embedding dropout probability")}, None, "drops whole token embeddings"),
        Component("grad_clip", {"max_norm": Float(0.5, 10.0, log=True, limits=positive(), doc="a gradient-norm bound")}, None, "gradient-norm clipping"),
    ],
)
