"""NER with a pretrained encoder through the NER adapter (no Ray): both heads over words, every
word scored, the Hugging Face folder `search train` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from search.train import train_document

FILES = {"train": "ner/train.conll", "validation": "ner/validation.conll", "test": "ner/test.conll"}


def config(head: str, addons: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "char_encoder": {"name": "none"}, "encoder": {"name": "transformer", "transformer": {"model": "models/tiny"}},
        "finetune": {"name": "full", "full": {"head_lr_multiplier": 10.0, "layer_decay": 0.9, "freeze_embeddings": False, "freeze_layers": 0, "accumulation": 1}},
        "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": "layernorm" in addons}},
        "head": {"name": head}, "loss": {"name": "cross_entropy"}, "regularizers": {"grad_clip": {"enabled": True, "max_norm": 1.0}},
        "optimizer": {"name": "adamw", "adamw": {"lr": 0.003}}, "schedule": {"name": "constant"},
        "train": {"batch_size": 16}, "model": {"embedding_dim": 32},
    }


@pytest.fixture()
def root(conll_root: Path, tiny_bert: Path) -> Path:
    (conll_root / "models").mkdir()
    (conll_root / "models" / "tiny").symlink_to(tiny_bert)
    return conll_root


def document(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"task": "ner", "metric": "f1", "seed": 0, "max_epochs": 3,
            "data": {"name": "toy", "local": {"format": "conll", "files": FILES}, "scheme": "bioes", "subword_max_length": 16}, "config": cfg}


@pytest.mark.parametrize(("head", "addons"), [("softmax", ()), ("crf", ()), ("crf", ("layernorm",))])
def test_a_pretrained_tagger_learns_and_search_train_writes_its_folder(tmp_path: Path, root: Path, head: str, addons: tuple[str, ...]) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForTokenClassification

    lines: list[str] = []
    result = train_document(document(config(head, addons)), path="doc", out_dir=tmp_path / "out", data_root=root, log=lines.append)
    assert result["dev"]["f1"] > 0.8 and result["test"]["f1"] > 0.8, result  # templated sentences: easy once tags align
    folder = tmp_path / "out" / "hf"
    loader = AutoModel if addons else AutoModelForTokenClassification
    loaded = loader.from_pretrained(folder)
    assert "B-PER" in loaded.config.label2id and loaded.config.id2label[0] == "O"
    if head == "crf":
        assert {"crf.transitions", "crf.start_transitions", "crf.end_transitions"} <= set(load_file(folder / "head.safetensors"))
        assert any("crf over words" in line for line in lines)
    else:
        assert not (folder / "head.safetensors").exists()


def test_words_past_the_length_limit_are_scored_as_o_and_counted(tmp_path: Path, root: Path) -> None:
    from search.config import parse_data_section
    from spaces import Strategy
    from trainables.data.subwords import with_pretrained
    from trainables.ner import TASK, evaluate_subword_split
    from trainables.optimization import Precision

    data_section = {**document(config("softmax"))["data"], "subword_max_length": 8}
    spec = with_pretrained(parse_data_section("ner", data_section, "doc"), ["models/tiny"])
    data = TASK.load_data(spec, str(root), 0)
    assert "words beyond it, predicted O" in data.source
    encoded = TASK.data_for(config("softmax"), data)
    assert (encoded.validation.first < 0).any()
    trial = TASK.build(Strategy.from_config(config("softmax")), encoded)
    import torch

    scores = evaluate_subword_split(trial.model, encoded.validation, encoded, torch.device("cpu"), Precision(torch.device("cpu"), False))
    assert 0.0 <= scores["f1"] <= 1.0  # seqeval refuses sequences whose lengths differ from the gold ones
