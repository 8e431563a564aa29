"""A trained transformer strategy as a Hugging Face model folder, for use outside this project.

`save_folder` writes what `from_pretrained` reads: `config.json` (label names in `id2label` /
`label2id`), `model.safetensors`, and the model's tokenizer files. LoRA adapters are merged into
the weights they adapt (W + B A x alpha / r), so the folder is a plain model: no `peft` needed to
load it, and it predicts exactly as the trained strategy did.

What the folder's class is:
- a model that is the architecture's own task model (text classification with `pooling: first`
  and no add-ons): that class (`AutoModelForSequenceClassification` loads it whole);
- a model with a head of ours (mean pooling, add-ons): the encoder body (`AutoModel` loads it),
  with the head's weights in `head.safetensors` and what it does in `head.json`; no Hugging Face
  class has that head, so `AutoModelFor...` would start a fresh one: this is said in `head.json`
  and in the note `search train` prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from trainables.data.subwords import load_tokenizer


def merge_lora(body: nn.Module) -> int:
    """Merges every LoRA adapter of `body` into its base layer and puts the base layer back in its
    place (as peft's merge_and_unload does); returns how many layers were merged."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(body.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(body.get_submodule(parent_name) if parent_name else body, child, module.get_base_layer())
            merged += 1
    return merged


def save_folder(model: nn.Module, location: str, model_name: str, out_dir: str | Path, describe_head: dict[str, Any] | None = None) -> str:
    """Writes `model` (a `trainables.pretrained.FineTuned`) as a Hugging Face folder at `out_dir`;
    returns one line saying what it holds and how to load it.

    `describe_head`: for a model with a head of ours, what the head does (pooling, add-ons); its
    weights (every parameter outside the encoder body) go to head.safetensors.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = model.encoder_body()
    merged = merge_lora(body)
    lora_note = f"; LoRA merged into {merged} layers" if merged else ""
    load_tokenizer(model_name, location).save_pretrained(out)
    if describe_head is None:
        model.network.save_pretrained(out)
        return f"{out}: {type(model.network).__name__} (AutoModelForSequenceClassification.from_pretrained){lora_note}"
    body.save_pretrained(out)
    in_body = {id(p) for p in body.parameters()}
    head = {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if id(p) not in in_body}
    save_file(head, str(out / "head.safetensors"))
    note = (f"{type(body).__name__} encoder only (AutoModel.from_pretrained); the head of this strategy has no "
            "Hugging Face class, its weights are in head.safetensors")
    (out / "head.json").write_text(json.dumps({**describe_head, "weights": "head.safetensors", "note": note}, indent=2), encoding="utf-8")
    return f"{out}: {note}{lora_note}"
