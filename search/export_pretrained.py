"""`export --format hf` for a strategy that fine-tunes a pretrained encoder.

Where Hugging Face can say it, it is said in its own terms: `TrainingArguments` fields (gradient
accumulation beside the learning rate, epochs, warmup, clipping, weight decay that `export`
already maps), `LoraConfig` fields under `lora`, and the model under `model` (the name the study
gave: a hub name, `minilm`, or a folder). `unmapped` keeps only what neither expresses: layer-wise
learning-rate decay, a head learning rate of its own, frozen layers, a head of ours (mean pooling,
add-ons), dropout set on the model's config; what equals Hugging Face's own behaviour (no decay,
one learning rate, nothing frozen, the model's classification head) is not listed.
"""

from __future__ import annotations

from typing import Any

from spaces import Strategy
from spaces.finetuning import finetuning

# Our task -> peft's task type (LoraConfig then trains the classification head in full, as here).
PEFT_TASK_TYPES = {"text_classification": "SEQ_CLS", "ner": "TOKEN_CLS", "reading_comprehension": "QUESTION_ANS"}
# finetune/full settings that are Hugging Face's own behaviour at these values.
_HF_BEHAVIOUR = {"layer_decay": 1.0, "head_lr_multiplier": 1.0, "freeze_embeddings": False, "freeze_layers": 0}


def add_finetuning(strategy: Strategy, task: str, exported: dict[str, Any]) -> None:
    """Rewrites `exported` (fields, unmapped) for a transformer strategy, adding `model` and `lora`."""
    fields, unmapped = exported["fields"], exported["unmapped"]
    name, params = finetuning(strategy)
    fields["gradient_accumulation_steps"] = int(params.get("accumulation", 1))
    exported["model"] = {"name_or_path": strategy.encoder[1]["model"]}
    for family in ("encoder", "finetune", "pooling"):
        unmapped.pop(family, None)
    unmapped.pop("embedding_dim", None)  # a from-scratch setting a pretrained encoder does not read
    if name == "lora":
        exported["lora"] = {
            "r": params["rank"], "lora_alpha": params["alpha"], "lora_dropout": params["dropout"],
            "target_modules": params["target_modules"] if params["target_modules"] == "all-linear" else params["target_modules"].split(","),
            "bias": "none", **({"task_type": PEFT_TASK_TYPES[task]} if task in PEFT_TASK_TYPES else {}),
        }
    differs = {key: params[key] for key in ("layer_decay", "head_lr_multiplier", "freeze_embeddings", "freeze_layers")
                if key in params and params[key] != _HF_BEHAVIOUR[key]}
    if differs:
        unmapped["finetune"] = {"name": name, **differs}
    pooling = strategy.choices.get("pooling", ("first", {}))[0]
    if pooling != "first":
        unmapped["pooling"] = {"name": pooling, "note": "no Hugging Face model class pools this way"}
    _note_unmapped(unmapped, "regularizers", "dropout", note="sets the model's hidden and classifier dropout (its config), not a TrainingArguments field")


def _note_unmapped(unmapped: dict[str, Any], family: str, name: str, note: str) -> None:
    """Adds a `note` to a toggled component that stays unmapped, so the reader knows where it acts."""
    entry = unmapped.get(family, {}).get(name)
    if entry is not None:
        unmapped[family][name] = {**entry, "note": note}
