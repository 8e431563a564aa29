"""Reading comprehension with a pretrained encoder through the adapter (no Ray): a tiny BERT
learns templated questions, and `search train` writes its Hugging Face folder."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from search.train import train_document
from tests.conftest import PEOPLE, PLACES

QUESTIONS = [("where does {person} live ?", "place"), ("who lives in {place} ?", "person")]


def write_squad(path: Path, paragraphs: int, seed: int) -> None:
    rng = random.Random(seed)
    data = []
    for p in range(paragraphs):
        person, place = " ".join(rng.choice(PEOPLE)), " ".join(rng.choice(PLACES))
        filler = " ".join(rng.choices(["the", "weather", "was", "fine", "and", "it", "is", "far", "from", "here", "."], k=rng.randint(3, 12)))
        context = f"{filler} {person} lives in {place} . {filler}"
        qas = []
        for q, (template, asked) in enumerate(QUESTIONS):
            answer = person if asked == "person" else place
            start = context.index(f"{person} lives in {place}") + (0 if asked == "person" else len(f"{person} lives in "))
            qas.append({"id": f"{p}-{q}", "question": template.format(person=person.lower(), place=place.lower()),
                        "answers": [{"text": answer, "answer_start": start}]})
        data.append({"title": f"t{p}", "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")


@pytest.fixture()
def root(tmp_path: Path, tiny_bert: Path) -> Path:
    root = tmp_path / "data"
    (root / "qa").mkdir(parents=True)
    for seed, (split, size) in enumerate({"train": 200, "validation": 30, "test": 30}.items()):
        write_squad(root / "qa" / f"{split}.json", size, seed)
    (root / "models").mkdir()
    (root / "models" / "tiny").symlink_to(tiny_bert)
    return root


def config(addons: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "char_encoder": {"name": "none"}, "encoder": {"name": "transformer", "transformer": {"model": "models/tiny"}},
        "finetune": {"name": "full", "full": {"head_lr_multiplier": 10.0, "layer_decay": 1.0, "freeze_embeddings": False, "freeze_layers": 0, "accumulation": 1}},
        "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": "layernorm" in addons}},
        "loss": {"name": "cross_entropy"}, "loss_terms": {"infonce": {"enabled": False}},
        "decoder": {"name": "best_span", "best_span": {"max_answer_length": 10}},
        "regularizers": {"grad_clip": {"enabled": True, "max_norm": 1.0}},
        "optimizer": {"name": "adamw", "adamw": {"lr": 0.005}}, "schedule": {"name": "constant"},
        "train": {"batch_size": 16}, "model": {"embedding_dim": 32},
    }


def document(cfg: dict[str, Any]) -> dict[str, Any]:
    files = {split: f"qa/{split}.json" for split in ("train", "validation", "test")}
    return {"task": "reading_comprehension", "metric": "f1", "seed": 0, "max_epochs": 6,
            "data": {"name": "toy", "local": {"files": files}, "subword_max_length": 96, "subword_stride": 16}, "config": cfg}


@pytest.mark.parametrize("addons", [(), ("layernorm",)])
def test_a_pretrained_span_extractor_learns_and_search_train_writes_its_folder(tmp_path: Path, root: Path, addons: tuple[str, ...]) -> None:
    from transformers import AutoModel, AutoModelForQuestionAnswering

    lines: list[str] = []
    result = train_document(document(config(addons)), path="doc", out_dir=tmp_path / "out", data_root=root, log=lines.append)
    assert result["dev"]["f1"] > 0.6 and result["test"]["exact_match"] > 0.4, result["epochs"]
    loaded = (AutoModel if addons else AutoModelForQuestionAnswering).from_pretrained(tmp_path / "out" / "hf")
    assert loaded.config.hidden_size == 16
    assert (tmp_path / "out" / "hf" / "head.json").exists() == bool(addons)
