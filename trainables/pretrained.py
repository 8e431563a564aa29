"""Pretrained Hugging Face encoders in a trial: loading, fine-tuning settings, and the classifier.

What a `finetune` strategy (spaces.finetuning) does to a model, for any task:
- `freeze`: the embeddings and the lower k layers stop training (requires_grad off);
- `add_lora`: low-rank adapters (peft) in the target modules; every other weight of the encoder
  body is frozen, the task's head still trains;
- `parameter_groups`: one learning rate per depth: the top layer (and whatever of the body sits
  outside the layers, e.g. BERT's pooler) at the optimizer's lr, layer i of L at
  lr x decay^(L-1-i), the embeddings at lr x decay^L, the task's head at lr x head multiplier.

Weight decay (the `weight_decay` regularizer) already skips biases and LayerNorm weights (every
parameter with fewer than 2 dimensions). Dropout: with the `dropout` regularizer on, its p replaces
the model's own hidden and classifier dropout; off, the model keeps its own (0.1 for BERT).
`transformers` and `peft` are imported only when a trial builds such a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spaces import Strategy
from spaces.addons import ADDONS
from spaces.finetuning import finetuning
from trainables.data.subwords import PretrainedModel, quiet_transformers
from trainables.models import TokenDropout

# Config fields that hold dropout probabilities in common encoder families (BERT, RoBERTa,
# ELECTRA: hidden_dropout_prob, classifier_dropout; DistilBERT: dropout, seq_classif_dropout).
_DROPOUT_FIELDS = ("hidden_dropout_prob", "classifier_dropout", "dropout", "seq_classif_dropout")


def pretrained_config(model: PretrainedModel, strategy: Strategy, **fields: Any) -> Any:
    """The model's config with `fields` set (labels) and the strategy's dropout, when it has one."""
    from transformers import AutoConfig

    quiet_transformers()
    config = AutoConfig.from_pretrained(model.location, **fields)
    dropout = strategy.regularizer("dropout", "p", off=None)
    if dropout is not None:
        for name in _DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, dropout)
    return config


def model_dropout(config: Any) -> float:
    """The dropout the model itself applies to its hidden states (for a head of ours)."""
    for name in _DROPOUT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, float):
            return value
    return 0.1


def encoder_layers(body: nn.Module) -> tuple[nn.Module | None, nn.ModuleList]:
    """The body's embeddings module (None if it has none by that name) and its list of layers."""
    count = body.config.num_hidden_layers
    layers = next((m for m in body.modules() if isinstance(m, nn.ModuleList) and len(m) == count), None)
    if layers is None:
        raise ValueError(f"cannot find the {count} layers of {type(body).__name__}; layer-wise settings need them as one nn.ModuleList")
    return getattr(body, "embeddings", None), layers


def freeze(body: nn.Module, *, embeddings: bool, layers: int) -> None:
    """Stops training the embeddings (if `embeddings`) and the lowest `layers` layers."""
    embedding_module, layer_list = encoder_layers(body)
    if layers > len(layer_list):
        raise ValueError(f"finetune freeze_layers={layers}, but {type(body).__name__} has {len(layer_list)} layers; lower it")
    frozen = [*layer_list[:layers], *([embedding_module] if embeddings and embedding_module is not None else [])]
    for module in frozen:
        module.requires_grad_(False)


def add_lora(body: nn.Module, *, rank: int, alpha: int, dropout: float, target_modules: str) -> None:
    """LoRA adapters in `body`'s target modules (in place); the rest of the body is frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    targets: str | list[str] = target_modules if target_modules == "all-linear" else [m.strip() for m in target_modules.split(",")]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    try:
        inject_adapter_in_model(config, body)
    except ValueError as error:  # peft names the modules it did not find
        raise ValueError(f"finetune lora target_modules={target_modules!r} does not fit {type(body).__name__}: {error}") from None
    for name, parameter in body.named_parameters():
        parameter.requires_grad_("lora_" in name)


def parameter_groups(model: nn.Module, body: nn.Module, lr: float, *, layer_decay: float = 1.0, head_lr_multiplier: float = 1.0) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, one per learning rate (see the module docstring); frozen
    parameters are left out. The group at `lr` itself comes first (the lr the runner reports)."""
    embedding_module, layers = encoder_layers(body)
    factor: dict[int, float] = {}
    for index, layer in enumerate(layers):
        factor.update(dict.fromkeys((id(p) for p in layer.parameters()), layer_decay ** (len(layers) - 1 - index)))
    if embedding_module is not None:
        factor.update(dict.fromkeys((id(p) for p in embedding_module.parameters()), layer_decay ** len(layers)))
    in_body = {id(p) for p in body.parameters()}
    grouped: dict[float, list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            scale = factor.get(id(parameter), 1.0) if id(parameter) in in_body else head_lr_multiplier
            grouped.setdefault(scale, []).append(parameter)
    scales = sorted(grouped, key=lambda scale: (scale != 1.0, -scale))
    return [{"params": grouped[scale], "lr": lr * scale} for scale in scales]


def apply_finetuning(strategy: Strategy, body: nn.Module) -> dict[str, float]:
    """Freezing or LoRA, as the strategy says; returns the learning-rate settings for
    `parameter_groups` (layer_decay, head_lr_multiplier)."""
    name, params = finetuning(strategy)
    if name == "lora":
        add_lora(body, rank=params["rank"], alpha=params["alpha"], dropout=params["dropout"], target_modules=params["target_modules"])
        return {"head_lr_multiplier": params["head_lr_multiplier"]}
    freeze(body, embeddings=params.get("freeze_embeddings", False), layers=params.get("freeze_layers", 0))
    return {"layer_decay": params.get("layer_decay", 1.0), "head_lr_multiplier": params.get("head_lr_multiplier", 1.0)}


@dataclass
class PretrainedParts:
    """What a task model around a pretrained body is made of (`pretrained_parts`)."""

    network: nn.Module  # the architecture's task model, or the bare body under a head of ours
    own_head: bool
    addons: list[nn.Module]
    dropout: float
    lr_settings: dict[str, float]  # for `parameter_groups`: layer_decay, head_lr_multiplier
    embedding_dropout: float


def pretrained_parts(strategy: Strategy, model: PretrainedModel, task_class: str, own_head: bool, **config_fields: Any) -> PretrainedParts:
    """The model loaded as `task_class` (e.g. AutoModelForTokenClassification), or as the bare
    body (AutoModel) when the strategy needs a head of ours (`own_head`); the strategy's add-ons,
    dropout, and freezing or LoRA applied to the body."""
    import transformers

    config = pretrained_config(model, strategy, **config_fields)
    dropout = strategy.regularizer("dropout", "p", off=None)
    dropout = model_dropout(config) if dropout is None else dropout
    if own_head:
        network = body = transformers.AutoModel.from_pretrained(model.location, config=config)
        if getattr(body, "pooler", None) is not None:
            body.pooler = None  # BERT-family bodies would compute a pooled output no head of ours reads
    else:
        network = getattr(transformers, task_class).from_pretrained(model.location, config=config)
        body = network.base_model
    addons = [ADDONS[name].build(config.hidden_size, dropout=dropout, **strategy.addons[name]) for name in addon_names(strategy)]
    return PretrainedParts(network, own_head, addons, dropout, apply_finetuning(strategy, body), strategy.regularizer("embedding_dropout", "p"))


def addon_names(strategy: Strategy) -> list[str]:
    """The strategy's add-ons in registry order (a given set always builds the same model)."""
    return [name for name in ADDONS.names() if name in strategy.addons]


class FineTuned(nn.Module):
    """A task model around a pretrained body: the network, the add-ons and dropout of a head of
    ours, the strategy's learning-rate settings and embedding dropout on the body's input
    embeddings. Subclasses add the task's head and `forward`."""

    def __init__(self, parts: PretrainedParts) -> None:
        super().__init__()
        self.network = parts.network
        self.own_head = parts.own_head
        self.addons = nn.ModuleList(parts.addons)
        self.dropout = nn.Dropout(parts.dropout)
        self.lr_settings = parts.lr_settings
        self.embedding_dropout = TokenDropout(parts.embedding_dropout)

    @property
    def hidden_size(self) -> int:
        return self.network.config.hidden_size

    def encoder_body(self) -> nn.Module:
        """The pretrained encoder body (embeddings and layers)."""
        return self.network if self.own_head else self.network.base_model

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """What `trainables.optimization.Optimization` hands the optimizer."""
        return parameter_groups(self, self.encoder_body(), lr, **self.lr_settings)

    def body_inputs(self, ids: torch.Tensor, mask: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keyword arguments for the network: input ids, or embeddings with whole tokens dropped."""
        inputs = {"attention_mask": mask.long(), **extra}
        if self.training and self.embedding_dropout.p:
            inputs["inputs_embeds"] = self.embedding_dropout(self.encoder_body().get_input_embeddings()(ids))
        else:
            inputs["input_ids"] = ids
        return inputs

    def hidden_states(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Under a head of ours: the body's last hidden states through the add-ons, [B, S, H]."""
        hidden = self.network(**inputs).last_hidden_state
        for addon in self.addons:
            hidden = addon(hidden, mask)
        return hidden


class SequenceClassifier(FineTuned):
    """Text classification with a pretrained encoder.

    pooling `first` without add-ons: the model's own `AutoModelForSequenceClassification` (its
    head over the first token: BERT's pooler and linear layer), exactly what `from_pretrained`
    loads back. Otherwise the body's last hidden states go through the add-ons, are pooled (first
    token or the mean over real tokens), and a dropout and linear head of ours score them.
    """

    def __init__(self, parts: PretrainedParts, pooling: str, num_classes: int) -> None:
        super().__init__(parts)
        self.pooling = pooling
        self.classifier = nn.Linear(self.hidden_size, num_classes) if self.own_head else None

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        inputs = self.body_inputs(ids, mask)
        if not self.own_head:
            return self.network(**inputs).logits
        hidden = self.hidden_states(inputs, mask)
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        else:
            pooled = hidden[:, 0]
        return self.classifier(self.dropout(pooled))


def build_sequence_classifier(strategy: Strategy, model: PretrainedModel, labels: list[str]) -> SequenceClassifier:
    """The strategy's classifier over `model`, with label names in its config."""
    pooling = strategy.choices.get("pooling", ("first", {}))[0]
    parts = pretrained_parts(strategy, model, "AutoModelForSequenceClassification", own_head=pooling != "first" or bool(addon_names(strategy)),
                             **_label_fields(labels))
    return SequenceClassifier(parts, pooling, len(labels))


def _label_fields(labels: list[str]) -> dict[str, Any]:
    """Config fields that name the labels (the exported folder carries them)."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


class TokenTagger(FineTuned):
    """NER with a pretrained encoder: scores per sub-token, read at each word's first sub-token
    (`positions`), so the heads (softmax, or a CRF over words) work on words as the BiLSTM tagger's do.

    Without add-ons the scores come from the model's own `AutoModelForTokenClassification` (the
    body, dropout and a linear layer); with add-ons, from the body's last hidden states through
    them, a dropout and a linear layer of ours.
    """

    def __init__(self, parts: PretrainedParts, num_tags: int, crf: nn.Module | None) -> None:
        super().__init__(parts)
        self.projection = nn.Linear(self.hidden_size, num_tags) if self.own_head else None
        self.crf = crf

    def forward(self, ids: torch.Tensor, subword_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Word emissions [B, W, K] at the first sub-token `positions` [B, W]."""
        inputs = self.body_inputs(ids, subword_mask)
        if self.own_head:
            scores = self.projection(self.dropout(self.hidden_states(inputs, subword_mask)))
        else:
            scores = self.network(**inputs).logits
        return scores.gather(1, positions.unsqueeze(-1).expand(-1, -1, scores.shape[-1]))

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tag ids [B, W]: constrained Viterbi under a CRF, per-word argmax otherwise."""
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        return emissions.argmax(dim=-1).masked_fill(~mask, 0)


def build_token_tagger(strategy: Strategy, model: PretrainedModel, tags: list[str], scheme: str) -> TokenTagger:
    """The strategy's tagger over `model`, tag names in its config, a CRF when the head is `crf`."""
    from trainables.crf import CRF, transition_constraints

    parts = pretrained_parts(strategy, model, "AutoModelForTokenClassification", own_head=bool(addon_names(strategy)), **_label_fields(tags))
    crf = CRF(len(tags), transition_constraints(tags, scheme)) if strategy.choice("head")[0] == "crf" else None
    return TokenTagger(parts, len(tags), crf)


class SpanExtractor(FineTuned):
    """Reading comprehension with a pretrained encoder: a start and an end score per sub-word of
    a question + context window. Without add-ons the model's own `AutoModelForQuestionAnswering`
    (the body and a linear layer to two scores); with add-ons, the body's last hidden states
    through them, a dropout and a linear layer of ours."""

    def __init__(self, parts: PretrainedParts) -> None:
        super().__init__(parts)
        self.span_scores = nn.Linear(self.hidden_size, 2) if self.own_head else None

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(start scores, end scores), each [B, S]."""
        inputs = self.body_inputs(ids, mask, **({"token_type_ids": types} if types is not None else {}))
        if not self.own_head:
            outputs = self.network(**inputs)
            return outputs.start_logits, outputs.end_logits
        start, end = self.span_scores(self.dropout(self.hidden_states(inputs, mask))).unbind(dim=-1)
        return start, end


def build_span_extractor(strategy: Strategy, model: PretrainedModel) -> SpanExtractor:
    """The strategy's span extractor over `model`."""
    return SpanExtractor(pretrained_parts(strategy, model, "AutoModelForQuestionAnswering", own_head=bool(addon_names(strategy))))
