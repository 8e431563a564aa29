from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import studies
from search.config import StudyFileError, apply_overrides, load_study_file
from tests.conftest import toy_study_yaml
from trainables.data.subwords import missing_extra


@pytest.mark.parametrize("name", studies.names())
def test_every_shipped_study_loads_and_opens_with_its_command(name: str) -> None:
    path = studies.path(name)
    if missing_extra() and "transformer" in str(yaml.safe_load(path.read_text()).get("space", {}).get("encoder")):
        with pytest.raises(StudyFileError, match=r"space.encoder.*pip install -e '\.\[transformers\]'"):
            load_study_file(path)  # refused before anything runs, naming the extra
        return
    config = load_study_file(path)
    assert config.name == name
    first_lines = path.read_text().splitlines()[:4]
    assert first_lines[0].startswith("#")
    assert any(f"search run studies/{name}.yaml" in line for line in first_lines)
    assert config.data.local is not None  # every shipped study runs from a data root


def test_shipped_studies_include_the_catalogue_datasets() -> None:
    assert {"demo", "sst2", "mr", "subj", "mpqa", "imdb"} <= set(studies.names())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


BASE = toy_study_yaml("sqlite:///x.db")


@pytest.mark.parametrize(
    ("edit", "field", "fragment"),
    [
        (("loss: [cross_entropy, focal]", "loss: [cross_entropy, hinge]"), "space.loss", "'hinge' is not a known loss"),
        (("adam: {lr: [0.003, 0.01]}", "adam: {lr: [-0.01, 0.01]}"), "space.optimizer.params.adam.lr", "-0.01 is out of range; a learning rate must be > 0"),
        (("metric: accuracy", "metric: bleu"), "metric", "'bleu' is not accepted; accepted: accuracy, macro_f1, loss"),
        (("direction: maximize", "direction: minimize"), "direction", "accuracy is to maximize"),
        (("trials: 4", "trials: 0"), "budget.trials", "integer >= 1"),
        (("grace_period: 1", "grace_period: 9"), "asha.grace_period", "at most the number of epochs"),
        (("reduction_factor: 2", "reduction_factor: 1"), "asha.reduction_factor", "must be >= 2"),
        (("format: csv", "format: parquet"), "data.local.format", "accepted: label_text, csv, tsv, json, aclimdb"),
        # The data spec's own limit, refused while reading the file (it was accepted, then refused unnamed).
        (("max_length: 32", "max_length: 32\n  max_vocab: 2"), "data.max_vocab", "2 is too small; it must be an integer >= 3"),
        (("files: {train: toy/train.csv,", "files: {dev: toy/train.csv,"), "data.local.files.dev", "unknown split; accepted: train, validation, test"),
        (("seed: 0", "seed: 0\nepochs: 3"), "epochs", "unknown field"),
        (("storage: sqlite:///x.db", "storage: not a url"), "storage", "is not a database URL"),
        (("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 1, gpu: 1.5}"), "budget.resources.gpu", "whole number"),
    ],
)
def test_bad_study_file_is_refused_naming_file_field_value(tmp_path: Path, edit: tuple[str, str], field: str, fragment: str) -> None:
    old, new = edit
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(StudyFileError) as error:
        load_study_file(path)
    assert error.value.field == field
    assert str(path) in str(error.value)
    assert fragment in str(error.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntask: [unclosed\n")
    with pytest.raises(StudyFileError, match=r"not valid YAML at line \d+"):
        load_study_file(path)


def test_missing_study_file(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match="no such file"):
        load_study_file(tmp_path / "nope.yaml")


def test_flags_override_the_file_and_are_validated(tmp_path: Path) -> None:
    config = load_study_file(write(tmp_path, BASE))
    changed = apply_overrides(config, trials=8, max_epochs=1, concurrency=3, study_name="other", storage="sqlite:///y.db")
    assert (changed.budget.trials, changed.budget.max_epochs, changed.budget.concurrency) == (8, 1, 3)
    assert changed.asha.grace_period == 1 and changed.name == "other" and changed.storage == "sqlite:///y.db"
    with pytest.raises(StudyFileError, match="--trials"):
        apply_overrides(config, trials=0)
