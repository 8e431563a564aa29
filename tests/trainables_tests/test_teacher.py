"""A study's teacher: read from a `search train` folder, its outputs computed once and cached, bad
folders refused at load time; the distillation loss against a hand computation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from search.config import StudyFileError, load_study_file
from search.engine import _load_data
from search.train import train_document
from spaces.distillation import KLDistillation, MSEDistillation
from tests.conftest import toy_study_yaml, write_sentiment_csv
from trainables.text_classification import TASK
from trainables.teacher import read_teacher

TOY_DATA = {"name": "toy", "local": {"format": "csv", "files": {s: f"toy/{s}.csv" for s in ("train", "validation", "test")}}, "max_length": 32}


def tiny_config(encoder: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole text-classification config: a small TextCNN unless `encoder` says otherwise."""
    config = json.loads(json.dumps(TASK.baselines["textcnn"]))
    config["encoder"] = encoder or {"name": "textcnn", "textcnn": {"filters": 16, "layers": 1}}
    config["model"] = {"embedding_dim": 16}
    config["train"] = {"batch_size": 32}
    config["optimizer"] = {"name": "adam", "adam": {"lr": 0.01}}
    config["addons"] = {"mhsa": {"enabled": False}, "layernorm": {"enabled": False}}
    config["regularizers"] = {name: {"enabled": False} for name in ("weight_decay", "l2", "l1", "embedding_dropout", "grad_clip")}
    config["regularizers"]["dropout"] = {"enabled": True, "p": 0.1}
    return config


def train_teacher(out: Path, data_root: Path, config: dict[str, Any] | None = None, epochs: int = 2, data: dict[str, Any] | None = None) -> Path:
    """A teacher folder as `search train` writes it (its own function, not a copy)."""
    document = {"task": "text_classification", "metric": "accuracy", "seed": 0, "max_epochs": epochs, "data": data or TOY_DATA, "config": config or tiny_config()}
    train_document(document, path="teacher.yaml", out_dir=out, data_root=data_root, log=lambda _: None)
    return out


@pytest.fixture()
def toy_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    write_sentiment_csv(root / "toy", {"train": 200, "validation": 60, "test": 60})
    return root


def study_with_teacher(tmp_path: Path, teacher: str, extra_space: str = "") -> Path:
    text = toy_study_yaml(f"sqlite:///{tmp_path / 'search.db'}", trials=2, max_epochs=1, concurrency=1, extra_space=extra_space)
    study = tmp_path / "study.yaml"
    study.write_text(text + f"teacher: {{path: {teacher}}}\n")
    return study


def test_cached_teacher_outputs_are_the_fresh_ones_and_computed_once(tmp_path: Path, toy_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty cache of its own: another test may have cached this same (deterministic) teacher.
    monkeypatch.setenv("SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    train_teacher(tmp_path / "teacher", toy_root)
    config = load_study_file(study_with_teacher(tmp_path, "teacher"))  # relative to the study file's folder
    data = _load_data(config, TASK, toy_root, lambda _: None)
    assert data.teacher.shape == (len(data.train), 2) and data.teacher.dtype == np.float32
    assert "outputs computed" in data.source

    teacher = read_teacher(config.teacher, TASK.name, toy_root)
    fresh = TASK.teacher_outputs(teacher, data, config.data, str(toy_root), config.seed)
    np.testing.assert_array_equal(data.teacher, fresh)
    # The teacher predicts the training labels it learnt (outputs in the examples' order).
    assert (fresh.argmax(axis=1) == data.train.labels).mean() > 0.9

    again = _load_data(config, TASK, toy_root, lambda _: None)
    assert "cached outputs" in again.source
    np.testing.assert_array_equal(again.teacher, fresh)


def test_a_changed_teacher_folder_is_not_read_from_the_cache(tmp_path: Path, toy_root: Path) -> None:
    train_teacher(tmp_path / "teacher", toy_root, epochs=1)
    config = load_study_file(study_with_teacher(tmp_path, "teacher"))
    first = _load_data(config, TASK, toy_root, lambda _: None)
    train_teacher(tmp_path / "teacher", toy_root, epochs=3)  # other weights in the same folder
    second = _load_data(config, TASK, toy_root, lambda _: None)
    assert "outputs computed" in second.source
    assert not np.array_equal(first.teacher, second.teacher)


def test_a_transformer_teacher_reads_its_own_sub_words(tmp_path: Path, toy_root: Path, tiny_bert: Path) -> None:
    (toy_root / "models").mkdir()
    (toy_root / "models" / "tiny").symlink_to(tiny_bert)
    encoder = {"name": "transformer", "transformer": {"model": "models/tiny"}}
    config = tiny_config(encoder)
    config.update({
        "finetune": {"name": "full", "full": {"head_lr_multiplier": 1.0, "layer_decay": 1.0, "freeze_embeddings": False, "freeze_layers": 0, "accumulation": 1}},
        "pooling": {"name": "first"}, "optimizer": {"name": "adamw", "adamw": {"lr": 1e-3}},
    })
    train_teacher(tmp_path / "teacher", toy_root, config, epochs=1)
    study = load_study_file(study_with_teacher(tmp_path, str(tmp_path / "teacher")))
    data = _load_data(study, TASK, toy_root, lambda _: None)
    teacher = read_teacher(study.teacher, TASK.name, toy_root)
    np.testing.assert_array_equal(data.teacher, TASK.teacher_outputs(teacher, data, study.data, str(toy_root), study.seed))
    assert np.isfinite(data.teacher).all() and data.teacher.std() > 0


def test_bad_teachers_are_refused_at_load_time_naming_the_field(tmp_path: Path, toy_root: Path) -> None:
    with pytest.raises(StudyFileError, match=r"study.yaml: field `teacher.path`: '/nowhere': no such folder"):
        load_study_file(study_with_teacher(tmp_path, "/nowhere"))
    # A relative path may lie under the data root, known when the search starts: refused then,
    # before anything runs.
    relative = load_study_file(study_with_teacher(tmp_path, "nowhere"))
    with pytest.raises(StudyFileError, match=r"study.yaml: field `teacher.path`: 'nowhere': no such folder under the study file's folder or the data root"):
        _load_data(relative, TASK, toy_root, lambda _: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyFileError, match=r"field `teacher.path`: .*empty' is not a folder written by `search train` \(it has no config.yaml or model.safetensors\)"):
        load_study_file(study_with_teacher(tmp_path, "empty"))
    ner = tmp_path / "ner_model"
    ner.mkdir()
    (ner / "model.safetensors").write_bytes(b"")
    (ner / "config.yaml").write_text(yaml.safe_dump({"task": "ner", "data": {"name": "x"}, "config": {"a": 1}}))
    with pytest.raises(StudyFileError, match=r"holds a ner model; this study's task is text_classification"):
        load_study_file(study_with_teacher(tmp_path, "ner_model"))


def test_distillation_without_a_teacher_is_refused_naming_it(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(toy_study_yaml("sqlite:///x.db", extra_space="  distillation: [none, kl]\n"))
    with pytest.raises(StudyFileError, match=r"field `space.distillation`: distillation needs a teacher, and this study has none: add `teacher: \{path: FOLDER\}`"):
        load_study_file(study)


def test_kl_distillation_against_a_hand_computation() -> None:
    student = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]])
    teacher = torch.tensor([[3.0, 0.0, 1.0], [0.0, 0.0, 4.0]])
    hard = torch.tensor(0.7)
    t, alpha = 2.0, 0.25
    kl_per_example = []
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p_teacher = [math.exp(v / t) / sum(math.exp(w / t) for w in t_row) for v in t_row]
        p_student = [math.exp(v / t) / sum(math.exp(w / t) for w in s_row) for v in s_row]
        kl_per_example.append(sum(p * math.log(p / q) for p, q in zip(p_teacher, p_student)))
    expected = (1 - alpha) * 0.7 + alpha * t * t * sum(kl_per_example) / 2
    got = KLDistillation(temperature=t, alpha=alpha)(hard, student, teacher)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_mse_distillation_against_a_hand_computation() -> None:
    student = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    teacher = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    expected = 0.4 * 1.5 + 0.6 * (4 + 4 + 0 + 4) / 4
    assert MSEDistillation(alpha=0.6)(torch.tensor(1.5), student, teacher).item() == pytest.approx(expected)


def test_alpha_one_follows_the_teacher_alone(toy_root: Path) -> None:
    """With alpha 1 the student's gradient comes from the teacher only: labels do not matter."""
    student = torch.tensor([[0.3, -0.2]], requires_grad=True)
    teacher = torch.tensor([[2.0, -2.0]])
    hard = torch.nn.functional.cross_entropy(student, torch.tensor([1]))
    KLDistillation(temperature=1.0, alpha=1.0)(hard, student, teacher).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]  # towards the teacher's class 0, not the label 1


STUDENTS = {"textcnn": {"name": "textcnn", "textcnn": {"filters": 16, "layers": 1}}, "bilstm": {"name": "bilstm", "bilstm": {"hidden": 16, "layers": 1}}}


@pytest.mark.parametrize("student", list(STUDENTS))
def test_a_student_distilled_with_alpha_one_learns_what_the_teacher_says(toy_root: Path, student: str) -> None:
    """The teacher's logits reach the runner's loss: a teacher that swaps the labels, followed alone
    (alpha 1), makes the student swap them; with alpha 0 it learns the labels."""
    from dataclasses import replace

    from search.config import parse_data_section
    from trainables.runner import TrialSettings

    data = TASK.load_data(parse_data_section(TASK.name, TOY_DATA, "toy"), str(toy_root), 0)
    swapped = np.eye(2, dtype=np.float32)[1 - data.train.labels] * 8.0  # confident, and always wrong
    data = replace(data, teacher=swapped)
    settings = TrialSettings(metric="accuracy", mode="max", max_epochs=4, checkpoint=False)

    def dev_accuracy(alpha: float) -> float:
        config = {**tiny_config(STUDENTS[student]), "distillation": {"name": "kl", "kl": {"temperature": 2.0, "alpha": alpha}}}
        reports: list[dict[str, Any]] = []
        TASK.trainable(config, data, settings, lambda metrics, _: reports.append(metrics))
        return reports[-1]["accuracy"]

    assert dev_accuracy(0.0) > 0.85
    assert dev_accuracy(1.0) < 0.15


def test_a_transformer_student_gets_the_teacher_rows_of_its_examples(toy_root: Path, tiny_bert: Path) -> None:
    from dataclasses import replace

    from search.config import parse_data_section
    from tests.search_tests.test_pretrained_export import HF_DEFAULT
    from trainables.data.subwords import with_pretrained
    from trainables.runner import TrialSettings

    (toy_root / "models").mkdir()
    (toy_root / "models" / "tiny").symlink_to(tiny_bert)
    spec = with_pretrained(parse_data_section(TASK.name, TOY_DATA, "toy"), ["models/tiny"])
    data = TASK.load_data(spec, str(toy_root), 0)
    teacher = np.random.default_rng(0).normal(size=(len(data.train), 2)).astype(np.float32)
    data = replace(data, teacher=teacher)
    config = {**HF_DEFAULT, "distillation": {"name": "mse", "mse": {"alpha": 0.5}}}
    student_data = TASK.data_for(config, data)
    for batch in TASK.train_batches(student_data, 16, np.random.default_rng(0)):
        np.testing.assert_array_equal(batch.teacher.numpy(), teacher[batch.index.numpy()])
    reports: list[dict[str, Any]] = []
    TASK.trainable(config, data, TrialSettings(metric="accuracy", mode="max", max_epochs=1, checkpoint=False), lambda m, _: reports.append(m))
    assert math.isfinite(reports[-1]["train_loss"])
    with pytest.raises(ValueError, match="distills from a teacher, but the data carries no teacher outputs"):
        TASK.trainable(config, replace(data, teacher=None), TrialSettings(metric="accuracy", mode="max", max_epochs=1, checkpoint=False), lambda m, _: None)
