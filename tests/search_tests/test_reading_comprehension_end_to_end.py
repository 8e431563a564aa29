"""A tiny real reading-comprehension search: local Ray, BiDAF on a real SQuAD subset, SQLite in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.config import StudyFileError, load_study_file
from search.engine import run_search


def reading_comprehension_study_yaml(storage: str, *, trials: int = 3, max_epochs: int = 2, data_extra: str = "") -> str:
    return f"""# test study
name: tinysquad
task: reading_comprehension
seed: 0
data:
  name: squad
  local:
    format: squad
    files: {{train: squad/dev-v1.1.json.gz}}
  carve: {{validation: 0.1, test: 0.1}}
  max_examples: {{train: 200, validation: 60, test: 40}}
  max_context_tokens: 100
{data_extra}metric: f1
budget:
  trials: {trials}
  max_epochs: {max_epochs}
  concurrency: 2
  resources: {{cpu: 1, gpu: 0}}
asha:
  grace_period: 1
  reduction_factor: 2
storage: {storage}
space:
  char_encoder: {{choices: [cnn], params: {{cnn: {{char_dim: 8, filters: 8}}}}}}
  encoder: {{choices: [bilstm], params: {{bilstm: {{hidden: 8, layers: 1}}}}}}
  addons: [layernorm]
  loss: [cross_entropy, focal]
  loss_terms: {{search: [infonce], params: {{infonce: {{weight: [0.05, 0.5]}}}}}}
  decoder: {{choices: [best_span], params: {{best_span: {{max_answer_length: [10, 20]}}}}}}
  regularizers: {{search: [], always: [dropout], params: {{dropout: {{p: 0.1}}}}}}
  optimizer: {{choices: [adam], params: {{adam: {{lr: 0.005}}}}}}
  schedule: constant
  batch_size: 32
  embedding_dim: 16
"""


def test_reading_comprehension_search_records_em_f1_curves_and_test_scores(ray_session, tmp_path: Path, shared_data: Path) -> None:
    if not (shared_data / "squad/dev-v1.1.json.gz").exists():
        pytest.skip("SQuAD dev file not found under ../shared/data/squad")
    db = tmp_path / "squad.db"
    study_file = tmp_path / "tinysquad.yaml"
    study_file.write_text(reading_comprehension_study_yaml(f"sqlite:///{db}"))

    summary = run_search(load_study_file(study_file), data_root=shared_data, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)

    study = optuna.load_study(study_name="tinysquad", storage=f"sqlite:///{db}")
    assert study.user_attrs["task"] == "reading_comprehension"
    assert len(study.trials) == 3
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    for trial in study.trials:
        assert {"loss/name", "loss_terms/infonce/enabled", "decoder/best_span/max_answer_length"} <= set(trial.params)
        assert set(trial.intermediate_values) == set(range(1, trial.user_attrs["epochs_trained"] + 1))
        assert all(0.0 <= v <= 1.0 for v in trial.intermediate_values.values())
        assert {"exact_match", "f1", "loss", "train_loss"} <= set(trial.user_attrs["metrics"])
        assert trial.user_attrs["config"]["decoder"]["name"] == "best_span"
        assert " / " in trial.user_attrs["strategy"] and trial.user_attrs["param_count"] > 0
    test = study.user_attrs["best_trial_test"]
    assert test["trial"] == study.best_trial.number and {"exact_match", "f1", "loss"} <= set(test)
    assert summary.test_metrics["f1"] == test["f1"]


@pytest.mark.parametrize(
    ("data_extra", "field", "fragment"),
    [
        ("  max_examples: {dev: 10}\n", "data.max_examples.dev", "unknown"),
        ("  carve: {validation: 0.7}\n", "data.carve.validation", "fraction of train's articles in (0, 0.5)"),
        ("  max_context_tokens: 0\n", "data.max_context_tokens", "must be an integer >= 1"),
    ],
)
def test_bad_reading_comprehension_data_sections_are_refused_naming_the_field(tmp_path: Path, data_extra: str, field: str, fragment: str) -> None:
    text = reading_comprehension_study_yaml("sqlite:///x.db", data_extra=data_extra)
    if "carve" in data_extra:  # replace the study's own carve line
        text = text.replace("  carve: {validation: 0.1, test: 0.1}\n", "")
    if "max_examples" in data_extra:
        text = text.replace("  max_examples: {train: 200, validation: 60, test: 40}\n", "")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StudyFileError) as caught:
        load_study_file(path)
    assert caught.value.field.startswith(field) and fragment in str(caught.value)


def test_a_reading_comprehension_study_refuses_another_tasks_format(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(reading_comprehension_study_yaml("sqlite:///x.db").replace("format: squad", "format: conll"))
    with pytest.raises(StudyFileError) as caught:
        load_study_file(path)
    assert caught.value.field == "data.local.format" and "accepted: squad" in str(caught.value)
