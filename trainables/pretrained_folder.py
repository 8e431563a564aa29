"""A trained transformer strategy as a Hugging Face model folder, for use outside this project.

`save_folder` writes what `from_pretrained` reads: `config.json` (label names in `id2label` /
`label2id`), `model.safetensors`, and the model's tokenizer files. LoRA adapters are merged into
the weights they adapt (W + B A x alpha / r), so the folder is a plain model: no `peft` needed to
load it, and it predicts exactly as the trained strategy did.

What the folder's class is:
- where the strategy's model is the architecture's own task model (text classification with
  `pooling: first` and no add-ons; NER without add-ons), that class: `AutoModelForSequenceClassification`
  / `AutoModelForTokenClassification` loads it whole;
- otherwise the encoder body (`AutoModel` loads it);
and whatever of the strategy has no Hugging Face class (a head of ours, add-ons, a CRF's
transitions) is in `head.safetensors`, described in `head.json`, and said in the note
`search train` prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from trainables.data.subwords import PretrainedModel, load_tokenizer


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


def save_folder(model: nn.Module, pretrained: PretrainedModel, out_dir: str | Path, auto_class: str, ours: dict[str, Any]) -> str:
    """Writes `model` (a `trainables.pretrained.FineTuned`) as a Hugging Face folder at `out_dir`;
    returns one line saying what it holds and how to load it.

    `model.network` (the architecture's task model, or the bare encoder body under a head of ours)
    is saved with `save_pretrained`; any weight outside it (add-ons, our head, a CRF) goes to
    head.safetensors, with `ours` (what those parts do) and a note in head.json.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = model.encoder_body()
    merged = merge_lora(body)
    load_tokenizer(pretrained.name, pretrained.location).save_pretrained(out)
    network = model.network
    network.save_pretrained(out)
    loads = "AutoModel" if network is body else auto_class
    line = f"{out}: {type(network).__name__} ({loads}.from_pretrained)" + (f"; LoRA merged into {merged} layers" if merged else "")
    in_network = {id(p) for p in network.parameters()}
    rest = {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if id(p) not in in_network}
    if not rest:
        return line
    save_file(rest, str(out / "head.safetensors"))
    what = ", ".join(f"{key} {value}" for key, value in ours.items())
    note = f"this strategy's {what} has no Hugging Face class: its weights are in head.safetensors"
    (out / "head.json").write_text(json.dumps({**ours, "weights": "head.safetensors", "loads_with": f"{loads}.from_pretrained", "note": note}, indent=2), encoding="utf-8")
    return f"{line}; {note}"
