"""Faults inside trials: an exception, a NaN loss and an out-of-memory each fail their own trial
(FAIL, error recorded), are not retried, and the study goes on."""

from __future__ import annotations

from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from search.config import load_study_file
from search.engine import open_storage, prepare_study, run_search
from tests.conftest import toy_study_yaml
from trainables.text_classification import train_text_classification

FAULTS = {
    # (encoder, loss, optimizer) -> what the trial raises; the last one trains for real
    ("textcnn", "cross_entropy", "sgd"): torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"),
    ("textcnn", "focal", "adam"): FloatingPointError("training diverged: loss is nan at epoch 2, step 7"),
    ("bilstm", "cross_entropy", "adam"): ValueError("a bug in the training code"),
    ("textcnn", "cross_entropy", "adam"): None,
}


def test_each_fault_fails_its_own_trial_once(ray_session, tmp_path: Path, sentiment_root: Path) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def faulty(config: dict, data: object, settings: object) -> None:
        key = (config["encoder"]["name"], config["loss"]["name"], config["optimizer"]["name"])
        (attempts / f"{'-'.join(key)}-{len(list(attempts.iterdir()))}").touch()
        if FAULTS[key] is not None:
            raise FAULTS[key]
        train_text_classification(config, data, settings)

    storage = f"sqlite:///{tmp_path / 'faults.db'}"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(storage, trials=len(FAULTS), max_epochs=2, concurrency=2))
    config = load_study_file(study_file)
    study = prepare_study(open_storage(storage), config)
    for encoder, loss, optimizer in FAULTS:
        study.enqueue_trial({"encoder/name": encoder, "loss/name": loss, "optimizer/name": optimizer})

    summary = run_search(config, data_root=sentiment_root, storage_path=tmp_path / "ray_results", trainable=faulty, verbose=0, log=lambda _: None)
    assert config.budget.max_failures == 2  # Ray's retries are on, for lost workers

    trials = optuna.load_study(study_name="toy", storage=storage).trials
    assert len(trials) == len(FAULTS) and summary.states.get("FAIL") == 3
    for trial in trials:
        key = (trial.params["encoder/name"], trial.params["loss/name"], trial.params["optimizer/name"])
        fault = FAULTS[key]
        # One attempt each: a trial's own error is not retried from its checkpoint.
        assert len([p for p in attempts.iterdir() if p.name.startswith("-".join(key) + "-")]) == 1
        if fault is None:
            assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            continue
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["error"] == f"{type(fault).__name__}: {fault}"
        assert trial.user_attrs["state_reason"] == f"failed: {type(fault).__name__}: {fault}"
        assert "Traceback" in trial.user_attrs["error_traceback"] and type(fault).__name__ in trial.user_attrs["error_traceback"]
        assert not trial.user_attrs.get("interrupted")
