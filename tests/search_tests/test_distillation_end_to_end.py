"""A tiny search of students distilled from a teacher trained in the test by `search train`'s own
function, then compressed: the trials record their distillation and compression strategies, and
what their models cost, in the Optuna DB."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.cli import main
from search.config import load_study_file
from search.train import train_document
from search.engine import run_search
from tests.trainables_tests.test_teacher import study_with_teacher, train_teacher
from tests.conftest import write_sentiment_csv


def test_a_search_with_a_teacher_records_distillation_in_the_db(ray_session, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    write_sentiment_csv(root / "toy", {"train": 200, "validation": 60, "test": 60})
    train_teacher(tmp_path / "teacher", root)
    distillation = (
        "  distillation: {choices: [kl, mse], params: {kl: {temperature: [2.0, 4.0]}}}\n"
        "  compression: {choices: [quantize, prune], params: {prune: {amount: 0.5}}}\n"
    )
    config = load_study_file(study_with_teacher(tmp_path, "teacher", extra_space=distillation))
    summary = run_search(config, data_root=root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)
    assert summary.trials_run == 2 and "teacher teacher: " in summary.data_source

    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("error")
        kind = trial.params["distillation/name"]
        assert kind in ("kl", "mse")
        assert 0.0 <= trial.params[f"distillation/{kind}/alpha"] <= 1.0
        if kind == "kl":
            assert 2.0 <= trial.params["distillation/kl/temperature"] <= 4.0
        assert trial.user_attrs["config"]["distillation"]["name"] == kind
        # What the student costs to ship, recorded beside its score.
        metrics = trial.user_attrs["metrics"]
        assert 0 < metrics["nonzero_params"] <= metrics["model_params"] and metrics["model_bytes"] > 4 * metrics["nonzero_params"] - 1
        assert metrics["latency_ms_b1"] > 0 and metrics["latency_ms_b32"] > 0
        # Compressed after training: the trial's value is the compressed model's, the trained one's beside it.
        assert trial.params["compression/name"] in ("quantize", "prune")
        assert trial.value == metrics["accuracy"] and 0 <= metrics["uncompressed_accuracy"] <= 1
        assert metrics["uncompressed_model_params"] == metrics["model_params"]
        if trial.params["compression/name"] == "prune":
            assert metrics["nonzero_params"] < 0.6 * metrics["uncompressed_nonzero_params"]

    # The best student, exported and trained again by `search train`, distils from the same teacher
    # (its absolute path recorded with the study) and is compressed the same way.
    exported, trained = tmp_path / "best.yaml", tmp_path / "trained"
    assert main(["export", "toy", "--storage", f"sqlite:///{tmp_path / 'search.db'}", "--format", "yaml", "--out", str(exported)]) == 0
    assert yaml.safe_load(exported.read_text())["teacher"] == {"path": str((tmp_path / "teacher").resolve())}
    lines: list[str] = []
    train_document(yaml.safe_load(exported.read_text()), path=str(exported), out_dir=trained, data_root=root, log=lines.append)
    assert any("teacher teacher: cached outputs" in line for line in lines)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["dev"]["accuracy"] == pytest.approx(study.best_value, abs=0.02)
