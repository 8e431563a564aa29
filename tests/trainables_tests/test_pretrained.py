"""Fine-tuning a pretrained encoder (trainables.pretrained): layer-wise learning rates, frozen
layers, LoRA, gradient accumulation, on a tiny random BERT where the weights do not matter."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from spaces import Strategy
from trainables.data.subwords import PretrainedModel
from trainables.optimization import Optimization, Precision

LABELS = ["neg", "pos"]


def config(finetune: dict[str, Any], *, pooling: str = "first", addons: tuple[str, ...] = (), regularizers: dict[str, Any] | None = None,
           optimizer: str = "sgd", accumulation: int = 1) -> dict[str, Any]:
    name = next(iter(finetune))
    params = {**finetune[name], "accumulation": accumulation}
    return {
        "encoder": {"name": "transformer", "transformer": {"model": "tiny"}},
        "finetune": {"name": name, name: params},
        "pooling": {"name": pooling},
        "addons": {"mhsa": {"enabled": "mhsa" in addons, **({"heads": 2} if "mhsa" in addons else {})}, "layernorm": {"enabled": "layernorm" in addons}},
        "loss": {"name": "cross_entropy"},
        # dropout 0: the model's own dropout (0.1) would make two forward passes differ
        "regularizers": {"dropout": {"enabled": True, "p": 0.0}, **(regularizers or {})},
        "optimizer": {"name": optimizer, optimizer: {"lr": 0.1, **({"momentum": 0.0, "nesterov": False} if optimizer == "sgd" else {})}},
        "schedule": {"name": "constant"},
        "train": {"batch_size": 4},
        "model": {"embedding_dim": 128},
    }


def full(**overrides: Any) -> dict[str, Any]:
    return {"full": {"head_lr_multiplier": 1.0, "layer_decay": 1.0, "freeze_embeddings": False, "freeze_layers": 0, **overrides}}


def lora(**overrides: Any) -> dict[str, Any]:
    return {"lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": "query,value", "head_lr_multiplier": 1.0, **overrides}}


def build(tiny_bert: Path, cfg: dict[str, Any]) -> tuple[Strategy, torch.nn.Module]:
    from trainables.pretrained import build_sequence_classifier

    torch.manual_seed(0)
    strategy = Strategy.from_config(cfg)
    return strategy, build_sequence_classifier(strategy, PretrainedModel("tiny", str(tiny_bert), 0), LABELS)


def batch(seed: int = 0, size: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (size, 7), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 5:] = False
    ids[0, 5:] = 0
    return ids, mask, torch.randint(0, 2, (size,), generator=generator)


def train_steps(strategy: Strategy, model: torch.nn.Module, steps: int, batches_per_epoch: int | None = None) -> Optimization:
    optimization = Optimization(strategy, model, 1, batches_per_epoch or steps, Precision(torch.device("cpu"), False), "max")
    model.train()
    for step in range(steps):
        ids, mask, labels = batch(step)
        optimization.step(torch.nn.functional.cross_entropy(model(ids, mask), labels))
    return optimization


def named_layers(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.ModuleList]:
    from trainables.pretrained import encoder_layers

    embeddings, layers = encoder_layers(model.encoder_body())
    return embeddings, layers


def lr_of(optimization: Optimization) -> dict[int, float]:
    return {id(p): group["lr"] for group in optimization.optimizer.param_groups for p in group["params"]}


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_layer_wise_decay_gives_each_layer_its_learning_rate(tiny_bert: Path, pooling: str) -> None:
    strategy, model = build(tiny_bert, config(full(layer_decay=0.5, head_lr_multiplier=10.0), pooling=pooling))
    optimization = Optimization(strategy, model, 1, 1, Precision(torch.device("cpu"), False), "max")
    lrs = lr_of(optimization)
    embeddings, layers = named_layers(model)
    assert len(layers) == 2
    assert [lrs[id(p)] for p in layers[1].parameters()] == pytest.approx([0.1] * len(list(layers[1].parameters())))  # the optimizer's lr
    assert [lrs[id(p)] for p in layers[0].parameters()] == pytest.approx([0.05] * len(list(layers[0].parameters())))
    assert [lrs[id(p)] for p in embeddings.parameters()] == pytest.approx([0.025] * len(list(embeddings.parameters())))
    body = {id(p) for p in model.encoder_body().parameters()}
    head = [p for p in model.parameters() if id(p) not in body]
    assert head and [lrs[id(p)] for p in head] == pytest.approx([1.0] * len(head))
    assert optimization.lr == pytest.approx(0.1)  # what the runner reports: the encoder's lr


def test_frozen_embeddings_and_lower_layers_get_no_update(tiny_bert: Path) -> None:
    regularizers = {"weight_decay": {"enabled": True, "decay": 0.1}}  # decay must skip them too
    strategy, model = build(tiny_bert, config(full(freeze_embeddings=True, freeze_layers=1), regularizers=regularizers, optimizer="adamw"))
    embeddings, layers = named_layers(model)
    before = copy.deepcopy(model.state_dict())
    train_steps(strategy, model, 3)
    after = model.state_dict()
    frozen = {name for name, _ in model.named_parameters() if ".embeddings." in name or ".layer.0." in name}
    assert frozen and all(torch.equal(before[name], after[name]) for name in frozen)
    assert all(not p.requires_grad for p in [*embeddings.parameters(), *layers[0].parameters()])
    assert not torch.equal(before_of(before, model, layers[1]), before_of(after, model, layers[1]))


def before_of(state: dict[str, torch.Tensor], model: torch.nn.Module, module: torch.nn.Module) -> torch.Tensor:
    names = {id(p): name for name, p in model.named_parameters()}
    return torch.cat([state[names[id(p)]].flatten() for p in module.parameters()])


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_lora_leaves_the_base_weights_unchanged(tiny_bert: Path, pooling: str) -> None:
    regularizers = {"weight_decay": {"enabled": True, "decay": 0.1}, "l2": {"enabled": True, "coefficient": 0.01}}
    strategy, model = build(tiny_bert, config(lora(), pooling=pooling, regularizers=regularizers, optimizer="adamw"))
    before = copy.deepcopy(model.state_dict())
    train_steps(strategy, model, 3)
    after = model.state_dict()
    body = {id(p) for p in model.encoder_body().parameters()}
    names = {id(p): name for name, p in model.named_parameters()}
    base = [names[i] for i in body if "lora_" not in names[i]]
    adapters = [names[i] for i in body if "lora_B" in names[i]]
    head = [name for i, name in names.items() if i not in body]
    assert base and adapters and head
    assert all(torch.equal(before[name], after[name]) for name in base)
    assert any(not torch.equal(before[name], after[name]) for name in adapters)
    assert any(not torch.equal(before[name], after[name]) for name in head)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {*(names[i] for i in body if "lora_" in names[i]), *head}


def test_gradient_accumulation_takes_one_step_over_the_micro_batches(tiny_bert: Path) -> None:
    # Two micro-batches of 2 with accumulation 2 == one batch of 4 (the loss is a mean per example).
    strategy, accumulated = build(tiny_bert, config(full(), accumulation=2))
    _, whole = build(tiny_bert, config(full()))
    ids, mask, labels = batch(0, size=4)
    optimization = Optimization(strategy, accumulated, 1, 2, Precision(torch.device("cpu"), False), "max")
    for part in (slice(0, 2), slice(2, 4)):
        optimization.step(torch.nn.functional.cross_entropy(accumulated(ids[part], mask[part]), labels[part]))
    reference = Optimization(Strategy.from_config(config(full())), whole, 1, 1, Precision(torch.device("cpu"), False), "max")
    reference.step(torch.nn.functional.cross_entropy(whole(ids, mask), labels))
    for (name, a), b in zip(accumulated.named_parameters(), whole.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_an_odd_last_micro_batch_still_updates_the_weights(tiny_bert: Path) -> None:
    strategy, model = build(tiny_bert, config(full(), accumulation=2))
    optimization = Optimization(strategy, model, 1, 3, Precision(torch.device("cpu"), False), "max")
    updates = []
    optimization.optimizer.register_step_post_hook(lambda *_: updates.append(optimization._batch))
    for step in range(6):  # two epochs of 3 batches: updates after batches 2 and 3 of each
        ids, mask, labels = batch(step)
        optimization.step(torch.nn.functional.cross_entropy(model(ids, mask), labels))
    assert updates == [2, 0, 2, 0]


def test_too_many_frozen_layers_is_refused_with_the_layer_count(tiny_bert: Path) -> None:
    with pytest.raises(ValueError, match="freeze_layers=3.*has 2 layers"):
        build(tiny_bert, config(full(freeze_layers=3)))


def test_pooling_first_without_addons_is_the_models_own_classifier(tiny_bert: Path) -> None:
    from transformers import BertForSequenceClassification

    _, plain = build(tiny_bert, config(full()))
    _, mean = build(tiny_bert, config(full(), pooling="mean", addons=("layernorm",)))
    assert isinstance(plain.network, BertForSequenceClassification) and plain.network.config.id2label == {0: "neg", 1: "pos"}
    assert mean.own_head and mean.network.pooler is None
    ids, mask, _ = batch()
    for model in (plain, mean):
        model.eval()
        assert model(ids, mask).shape == (4, 2)
        # padding must not change the prediction of the padded example
        longer_ids = torch.cat([ids, torch.zeros(4, 3, dtype=torch.long)], dim=1)
        longer_mask = torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], dim=1)
        torch.testing.assert_close(model(ids, mask), model(longer_ids, longer_mask), atol=1e-5, rtol=1e-4)
