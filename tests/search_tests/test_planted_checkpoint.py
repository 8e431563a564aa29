"""A study database that someone else can write: orphaned trials whose recorded checkpoints are
crafted pickles (one outside the run's storage path, one planted inside it). Resuming the study
runs neither pickle and does not fail: each re-queued trial trains from the start, says why in
`resume_note`, and the study completes."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.config import load_study_file
from search.engine import open_storage, prepare_study, run_search
from search.recovery import counts_toward_budget
from spaces import suggest
from tests.conftest import toy_study_yaml
from tests.search_tests.test_recovery import dead_driver
from tests.trainables_tests.test_checkpoints import plant_pickle

PLANTED_VALUE = 0.123456  # the orphans' recorded epoch-1 value: it must not be carried over


def test_planted_pickles_as_checkpoints_are_never_run_and_the_study_completes(ray_session, tmp_path: Path, sentiment_root: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(storage, trials=2, max_epochs=2, concurrency=2))
    config = load_study_file(study_file)
    results = tmp_path / "ray_results"
    markers = {"outside": tmp_path / "marker-outside", "inside": tmp_path / "marker-inside"}
    planted = {
        "outside": plant_pickle(tmp_path / "elsewhere" / "checkpoint_000000", markers["outside"]),
        "inside": plant_pickle(results / "planted" / "checkpoint_000000", markers["inside"]),
    }
    # What a writer of the database can do: trials left RUNNING by a driver that is gone, each
    # pointing at a crafted checkpoint.
    study = prepare_study(open_storage(storage), config)
    for where in ("outside", "inside"):
        trial = study.ask()
        suggest(trial, config.space)
        trial.report(PLANTED_VALUE, 1)
        trial.set_user_attr("driver", dead_driver())
        trial.set_user_attr("checkpoint", {"path": str(planted[where]), "epoch": 1})

    run_search(config, data_root=sentiment_root, storage_path=results, verbose=0, log=lambda _: None)

    assert not markers["outside"].exists() and not markers["inside"].exists(), "a planted pickle ran"
    trials = optuna.load_study(study_name="toy", storage=storage).trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(counts_toward_budget(t) for t in trials) == 2
    reruns = {t.user_attrs["requeued_from"]: t for t in trials if "requeued_from" in t.user_attrs}
    assert sorted(reruns) == [0, 1]
    outside, inside = reruns[0], reruns[1]
    assert outside.user_attrs["resume_note"] == (
        f"checkpoint {planted['outside']} not loaded: it lies outside this run's storage path {results.resolve()} "
        "(give the run that wrote it --storage-path to resume from it); trained from the start"
    )
    assert inside.user_attrs["resume_note"].startswith(f"checkpoint {planted['inside'].resolve()} refused (not tensors and plain values only")
    for rerun in (outside, inside):
        assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED), rerun.user_attrs.get("error")
        assert "resumed_from_epoch" not in rerun.user_attrs
        # Trained from epoch 1: its own first epoch, not the planted value.
        assert min(rerun.intermediate_values) == 1 and rerun.intermediate_values[1] != PLANTED_VALUE
        assert set(rerun.intermediate_values) == set(range(1, rerun.user_attrs["epochs_trained"] + 1))
