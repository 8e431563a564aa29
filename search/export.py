"""Best configs out of the Optuna DB, for `search train` and for other trainers.

- `training_document`: everything `search train` needs to reproduce one trial (task, data, seed,
  epochs, resolved config) — the yaml and json formats.
- `hf_training_arguments`: Hugging Face `TrainingArguments` fields, with every part of the
  strategy that has no TrainingArguments equivalent listed under `unmapped`, never dropped; for a
  pretrained encoder also its `LoraConfig` fields and the model (`search.export_pretrained`).
- `cli_command`: the same training config as flags of `search train` (the cli format).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from search.export_pretrained import add_finetuning
from spaces import Strategy, flatten
from spaces.finetuning import pretrained_model

# Our optimizer and schedule names -> TrainingArguments' `optim` and `lr_scheduler_type`.
HF_OPTIMIZERS = {"adamw": "adamw_torch", "adam": "adamw_torch", "sgd": "sgd", "adagrad": "adagrad", "rmsprop": "rmsprop"}
HF_SCHEDULES = {"constant": "constant", "linear": "linear", "cosine": "cosine", "plateau": "reduce_lr_on_plateau"}


HF_VERSION_NOTE = (
    ">=5: TrainingArguments(output_dir=..., **fields). For 4.x, pass warmup_steps as warmup_ratio "
    "(4.x reads warmup_steps as a count of steps)."
)

# The fields of an exported training config (yaml/json), as `search train` reads them.
DOCUMENT_FIELDS = ("study", "trial", "value", "metric", "task", "seed", "max_epochs", "data", "config", "teacher")


def training_document(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    recorded = study.user_attrs.get("study", {})
    return {
        "study": study.study_name,
        "trial": trial.number,
        "value": trial.value,
        "metric": study.user_attrs.get("metric"),
        "task": study.user_attrs.get("task", recorded.get("task")),
        "seed": recorded.get("seed", 0),
        "max_epochs": study.user_attrs.get("max_epochs", recorded.get("budget", {}).get("max_epochs")),
        "data": recorded.get("data"),
        "config": trial.user_attrs["config"],
        **({"teacher": recorded["teacher"]} if recorded.get("teacher") else {}),
    }


def hf_training_arguments(document: dict[str, Any]) -> dict[str, Any]:
    """TrainingArguments fields for one exported trial, plus an explicit `unmapped` section."""
    strategy = Strategy.from_config(document["config"])
    optimizer, optimizer_params = strategy.optimizer
    schedule, schedule_params = strategy.schedule
    loss, loss_params = strategy.loss
    fields: dict[str, Any] = {
        "learning_rate": optimizer_params["lr"],
        "num_train_epochs": document["max_epochs"],
        "per_device_train_batch_size": strategy.batch_size,
        "seed": document["seed"],
        "weight_decay": strategy.regularizer("weight_decay", "decay"),
        "max_grad_norm": strategy.regularizer("grad_clip", "max_norm", off=0.0),
        "label_smoothing_factor": loss_params.get("epsilon", 0.0) if loss == "label_smoothing" else 0.0,
        # A search trial is scored on dev after every epoch; reduce_lr_on_plateau also needs it
        # (TrainingArguments refuses that schedule with no eval strategy).
        "eval_strategy": "epoch",
    }
    unmapped: dict[str, Any] = {}
    if optimizer in HF_OPTIMIZERS:
        fields["optim"] = HF_OPTIMIZERS[optimizer]
        extra = {k: v for k, v in optimizer_params.items() if k != "lr"}
        if optimizer == "adam":
            unmapped["optimizer"] = {"name": "adam", "note": "exported as adamw_torch; weight decay is decoupled for every optimizer here"}
        elif extra:
            unmapped["optimizer_params"] = {"name": optimizer, **extra}
    else:
        unmapped["optimizer"] = {"name": optimizer, **optimizer_params}
    if schedule in HF_SCHEDULES:
        fields["lr_scheduler_type"] = HF_SCHEDULES[schedule]
        if "warmup_fraction" in schedule_params:
            # transformers >= 5 reads a warmup_steps below 1 as a fraction of the training steps;
            # it dropped warmup_ratio (5.2), which 4.x needed instead (see HF_VERSION_NOTE).
            fields["warmup_steps"] = schedule_params["warmup_fraction"]
        if schedule == "plateau":
            unmapped["schedule_params"] = {"name": schedule, **schedule_params}
    else:
        unmapped["schedule"] = {"name": schedule, **schedule_params}
    if loss not in ("cross_entropy", "label_smoothing"):
        unmapped["loss"] = {"name": loss, **loss_params}
    for family, (name, params) in strategy.choices.items():
        if family not in ("loss", "optimizer", "schedule"):
            unmapped[family] = {"name": name, **params}
    for family, enabled in strategy.toggles.items():
        rest = {name: params for name, params in enabled.items() if not (family == "regularizers" and name in ("weight_decay", "grad_clip"))}
        if rest:
            unmapped[family] = rest
    unmapped["embedding_dim"] = strategy.embedding_dim
    exported = {"fields": fields, "unmapped": unmapped, "transformers": HF_VERSION_NOTE}
    if pretrained_model(strategy):
        add_finetuning(strategy, document.get("task", ""), exported)  # TrainingArguments, LoraConfig, the model
    return exported


def format_value(value: Any) -> str:
    """A `--set` value that `parse_value` reads back as the same Python value."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value  # a plain name such as `bilstm` stays unquoted
        return json.dumps(value)  # "32" or "true" as a string: quoted, or it would read as a number
    return json.dumps(value)  # floats as repr: the exact same double comes back


def parse_value(text: str) -> Any:
    """The inverse of `format_value`: JSON where it parses (numbers, true/false, null, quoted strings), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def cli_command(document: Mapping[str, Any]) -> str:
    """`search train` flags that train `document` (as `training_document` builds it), one flag a line."""
    head = [
        "search train", f"--task {shlex.quote(str(document['task']))}", f"--metric {shlex.quote(str(document['metric']))}",
        f"--seed {int(document['seed'])}", f"--max-epochs {int(document['max_epochs'])}",
        f"--data {shlex.quote(json.dumps(document['data'], separators=(',', ':')))}",
    ]
    # Flattened as stored, not through Strategy: the flags keep the recorded order, and Optuna's names.
    sets = [f"--set {shlex.quote(f'{key}={format_value(value)}')}" for key, value in flatten(document["config"]).items()]
    value = document.get("value")
    comment = f"# study {document.get('study')!r}, trial {document.get('trial')}" + (
        f": {document.get('metric')} {value:.4f}" if isinstance(value, (int, float)) else "")
    return comment + "\n" + " \\\n  ".join([*head, *sets])
