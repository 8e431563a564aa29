"""A transformer strategy outside this project: `search train`'s Hugging Face folder, and
`export --format hf`'s TrainingArguments and LoraConfig, loaded with the real classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from search.export import hf_training_arguments
from search.train import train_document
from tests.conftest import write_sentiment_csv

HF_DEFAULT = {
    "encoder": {"name": "transformer", "transformer": {"model": "models/tiny"}},
    "finetune": {"name": "full", "full": {"head_lr_multiplier": 1.0, "layer_decay": 1.0, "freeze_embeddings": False, "freeze_layers": 0, "accumulation": 1}},
    "pooling": {"name": "first"},
    "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": False}},
    "loss": {"name": "cross_entropy"},
    "regularizers": {"weight_decay": {"enabled": False}, "grad_clip": {"enabled": True, "max_norm": 1.0}},
    "optimizer": {"name": "adamw", "adamw": {"lr": 5e-05}},
    "schedule": {"name": "linear", "linear": {"warmup_fraction": 0.0}},
    "train": {"batch_size": 8},
    "model": {"embedding_dim": 128},
}
LORA = {"name": "lora", "lora": {"rank": 4, "alpha": 8, "dropout": 0.05, "target_modules": "query,value", "head_lr_multiplier": 10.0, "accumulation": 2}}


def document(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": "text_classification", "metric": "accuracy", "seed": 0, "max_epochs": 1,
        "data": {"name": "toy", "local": {"format": "csv", "files": {s: f"toy/{s}.csv" for s in ("train", "validation", "test")}}},
        "config": config,
    }


@pytest.fixture()
def data_root(tmp_path: Path, tiny_bert: Path) -> Path:
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    write_sentiment_csv(root / "toy", {"train": 48, "validation": 16, "test": 16})
    (root / "models").mkdir()
    (root / "models" / "tiny").symlink_to(tiny_bert)
    return root


def our_logits(config: dict[str, Any], data_root: Path, out: Path, texts: list[str]) -> tuple[torch.Tensor, Any]:
    """The trained strategy's logits for `texts`, through this project's own model and state."""
    from transformers import AutoTokenizer

    from search.config import parse_data_section
    from spaces import Strategy
    from trainables.data.subwords import with_pretrained
    from trainables.runner import load_state
    from trainables.text_classification import TASK

    spec = with_pretrained(parse_data_section(TASK.name, document(config)["data"], "doc"), ["models/tiny"])
    encoded = TASK.data_for(config, TASK.load_data(spec, str(data_root), 0))
    model = TASK.build(Strategy.from_config(config), encoded).model
    model.load_state_dict(load_state(str(out))["model"])
    model.eval()
    batch = AutoTokenizer.from_pretrained(encoded.model.location)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"].bool()), batch


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_search_train_writes_a_folder_transformers_loads_with_from_pretrained(tmp_path: Path, data_root: Path, finetune: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = {**HF_DEFAULT, "finetune": LORA} if finetune == "lora" else HF_DEFAULT
    out = tmp_path / "out"
    lines: list[str] = []
    train_document(document(config), path="doc", out_dir=out, data_root=data_root, log=lines.append)
    folder = out / "hf"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert loaded.config.id2label == {0: "neg", 1: "pos"} and loaded.config.label2id == {"neg": 0, "pos": 1}
    assert not any("lora" in name for name, _ in loaded.named_parameters())  # merged: a plain model
    texts = ["the film was good", "this movie was very dull and boring"]
    ours, batch = our_logits(config, data_root, out, texts)
    tokenized = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    assert torch.equal(tokenized["input_ids"], batch["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**tokenized).logits, ours, atol=1e-5, rtol=1e-4)
    assert any("AutoModelForSequenceClassification" in line for line in lines)
    assert ("LoRA merged" in " ".join(lines)) == (finetune == "lora")


def test_a_head_of_ours_is_saved_beside_the_encoder_and_said_so(tmp_path: Path, data_root: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModel

    config = {**HF_DEFAULT, "pooling": {"name": "mean"}, "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": True}}}
    out = tmp_path / "out"
    lines: list[str] = []
    train_document(document(config), path="doc", out_dir=out, data_root=data_root, log=lines.append)
    body = AutoModel.from_pretrained(out / "hf")
    assert body.config.id2label == {0: "neg", 1: "pos"}
    head = json.loads((out / "hf" / "head.json").read_text())
    assert head["pooling"] == "mean" and head["addons"] == {"layernorm": {}}
    assert {"classifier.weight", "classifier.bias", "addons.0.norm.weight"} <= set(load_file(out / "hf" / "head.safetensors"))
    assert any("no Hugging Face class" in line for line in lines)


def test_the_hf_default_exports_to_training_arguments_with_nothing_unmapped(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    exported = hf_training_arguments(document(HF_DEFAULT))
    assert exported["unmapped"] == {} and "lora" not in exported
    assert exported["model"] == {"name_or_path": "models/tiny"}
    arguments = TrainingArguments(output_dir=str(tmp_path), report_to="none", **exported["fields"])
    assert (arguments.learning_rate, arguments.lr_scheduler_type.value, arguments.per_device_train_batch_size) == (5e-05, "linear", 8)
    assert (arguments.max_grad_norm, arguments.weight_decay, arguments.gradient_accumulation_steps) == (1.0, 0.0, 1)


def test_lora_exports_to_lora_config_and_what_neither_expresses_stays_unmapped(tmp_path: Path, tiny_bert: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    config = {**HF_DEFAULT, "finetune": LORA, "pooling": {"name": "mean"}, "regularizers": {
        "weight_decay": {"enabled": True, "decay": 0.01}, "dropout": {"enabled": True, "p": 0.2}}}
    exported = hf_training_arguments(document(config))
    arguments = TrainingArguments(output_dir=str(tmp_path), report_to="none", **exported["fields"])
    assert arguments.gradient_accumulation_steps == 2 and arguments.weight_decay == 0.01
    lora = LoraConfig(**exported["lora"])
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, set(lora.target_modules), lora.task_type) == (4, 8, 0.05, {"query", "value"}, "SEQ_CLS")
    adapted = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2), lora)
    assert any("lora_A" in name for name, _ in adapted.named_parameters())
    assert exported["unmapped"]["finetune"] == {"name": "lora", "head_lr_multiplier": 10.0}
    assert exported["unmapped"]["pooling"]["name"] == "mean"
    assert exported["unmapped"]["regularizers"]["dropout"]["p"] == 0.2
    assert "embedding_dim" not in exported["unmapped"] and "encoder" not in exported["unmapped"]
