"""Checkpoints hold tensors and plain values only, and nothing is unpickled when one is loaded:
every task's checkpoint loads with `weights_only=True` and resumes, and a planted pickle that
would run code is refused without running it; the trial then trains from the start."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
import yaml

from search.config import parse_study
from search.tasks import get_task
from spaces import suggest, unflatten
from tests.conftest import TINY_SQUAD_STUDY, ner_study_yaml, toy_study_yaml, write_conll_files, write_sentiment_csv
from trainables.runner import (
    RESUME_NOTE,
    WEIGHTS_FILE,
    TrialSettings,
    load_state,
    numpy_rng_state,
    plain_state,
    run_trial,
    save_weights,
)


class _RunsCode:
    """Unpickling this runs `code` (pickle calls exec): what a hostile checkpoint looks like."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


def plant_pickle(folder: Path, marker: Path, name: str = "state.pt") -> Path:
    """Writes `folder/name`, a pickle that creates `marker` when it is unpickled; returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"model": _RunsCode(f"open({str(marker)!r}, 'w').write('unpickled')"), "epoch": 1}
    (folder / name).write_bytes(pickle.dumps(payload, protocol=2))
    return folder


def test_the_planted_pickle_runs_code_when_unpickled(tmp_path: Path) -> None:
    """The control: the file the other tests plant is live; it runs code under a plain unpickle."""
    marker = tmp_path / "control-marker"
    planted = plant_pickle(tmp_path / "planted", marker)
    pickle.loads((planted / "state.pt").read_bytes())
    assert marker.read_text() == "unpickled"


def _task_setup(name: str, tmp_path: Path, shared_data: Path | None) -> tuple[Any, dict, Any]:
    """(task, a sampled strategy, its data) for a small study of task `name`."""
    root = tmp_path / "data"
    if name == "text_classification":
        (root / "toy").mkdir(parents=True)
        write_sentiment_csv(root / "toy", {"train": 120, "validation": 40, "test": 40})
        study = yaml.safe_load(toy_study_yaml("sqlite:///unused.db"))
    elif name == "ner":
        (root / "ner").mkdir(parents=True)
        write_conll_files(root / "ner", {"train": 60, "validation": 20, "test": 20})
        study = yaml.safe_load(ner_study_yaml("sqlite:///unused.db"))
    else:
        assert shared_data is not None
        if not (shared_data / "squad" / "dev-v1.1.json.gz").exists():
            pytest.skip(f"SQuAD dev file not found under {shared_data}")
        study, root = yaml.safe_load(TINY_SQUAD_STUDY), shared_data
    config = parse_study(study, f"{name}.yaml", name)
    task = get_task(name)
    strategy = unflatten(suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask(), config.space))
    return task, strategy, task.load_data(config.data, root, config.seed)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


@pytest.mark.parametrize("task_name", ["text_classification", "ner", "reading_comprehension"])
def test_every_tasks_checkpoint_loads_without_unpickling_and_resumes(task_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    shared = request.getfixturevalue("shared_data") if task_name == "reading_comprehension" else None
    task, strategy, data = _task_setup(task_name, tmp_path, shared)
    metric = next(iter(task.metrics))
    saved = tmp_path / "epoch1"

    def keep_first(metrics: dict, checkpoint_dir: str | None) -> None:
        if metrics["epoch"] == 1:
            shutil.copytree(checkpoint_dir, saved)

    settings = TrialSettings(metric=metric, mode=task.metrics[metric], max_epochs=1, checkpoint_every_s=0)
    run_trial(task, strategy, data, settings, keep_first)
    state = torch.load(saved / "state.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimization", "loss", "rng", "epoch"} <= set(state)
    assert all(isinstance(leaf, (torch.Tensor, str, int, float, bool, type(None))) for leaf in _leaves(state))

    reports: list[dict] = []
    resumed = TrialSettings(metric=metric, mode=task.metrics[metric], max_epochs=2, resume_from=str(saved))
    run_trial(task, strategy, data, resumed, lambda metrics, _: reports.append(metrics))
    assert [r["epoch"] for r in reports] == [2] and RESUME_NOTE not in reports[0]


def test_a_planted_pickle_is_refused_unrun_and_the_trial_trains_from_the_start(tmp_path: Path) -> None:
    task, strategy, data = _task_setup("text_classification", tmp_path, None)
    marker = tmp_path / "marker"
    planted = plant_pickle(tmp_path / "planted", marker)
    reports: list[dict] = []

    settings = TrialSettings(metric="accuracy", mode="max", max_epochs=2, resume_from=str(planted))
    run_trial(task, strategy, data, settings, lambda metrics, _: reports.append(metrics))

    assert not marker.exists()
    assert [r["epoch"] for r in reports] == [1, 2]
    assert reports[0][RESUME_NOTE].startswith(f"checkpoint {planted} refused (not tensors and plain values only")
    assert reports[0][RESUME_NOTE].endswith("trained from the start") and RESUME_NOTE not in reports[1]
    with pytest.raises(pickle.UnpicklingError):
        load_state(str(planted))
    assert not marker.exists()


def test_search_train_weights_are_safetensors_and_an_old_pickled_model_is_refused(tmp_path: Path) -> None:
    weights = {"encoder.weight": torch.arange(6.0).reshape(2, 3).t(), "bias": torch.zeros(2)}  # a transposed view: not contiguous
    save_weights(weights, tmp_path / WEIGHTS_FILE)
    loaded = load_state(str(tmp_path))
    assert set(loaded) == {"model"} and all(torch.equal(loaded["model"][k], v) for k, v in weights.items())

    marker = tmp_path / "marker"
    old = plant_pickle(tmp_path / "old", marker, name="model.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_state(str(old))
    assert not marker.exists()


def test_plain_state_turns_numpy_into_plain_values_and_refuses_objects(tmp_path: Path) -> None:
    rng = np.random.Generator(np.random.MT19937(3))  # its state holds a numpy array
    state = plain_state({"rng": rng.bit_generator.state, "best": np.float64(0.5), "steps": [np.int64(3)]})
    assert type(state["best"]) is float and state["steps"] == [3] and type(state["steps"][0]) is int
    assert isinstance(state["rng"]["state"]["key"], torch.Tensor)

    path = tmp_path / "state.pt"
    torch.save(state, path)
    restored = np.random.Generator(np.random.MT19937(0))
    restored.bit_generator.state = numpy_rng_state(torch.load(path, weights_only=True)["rng"])
    assert restored.integers(0, 1 << 30, 5).tolist() == rng.integers(0, 1 << 30, 5).tolist()

    with pytest.raises(TypeError, match=r"state\['schedule'\]\['fn'\] is a builtins.function"):
        plain_state({"schedule": {"fn": lambda step: 1.0}})
