"""The benchmarks' shared helpers (no timings here: benchmarks are not tests)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench._common import REPO, TreeMemory, parse_result_line, result_line


def test_result_line_reads_back() -> None:
    line = result_line({"ratio": 0.123456, "trials": 24, "gpu": "NVIDIA H100 80GB"})
    assert line == "RESULT ratio=0.1235 trials=24 gpu=NVIDIA_H100_80GB"
    assert parse_result_line(f"progress\n{line}\n") == {"ratio": "0.1235", "trials": "24", "gpu": "NVIDIA_H100_80GB"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tree_memory_counts_child_processes() -> None:
    with TreeMemory(interval_s=0.05) as tree:
        child = subprocess.Popen([sys.executable, "-c", "import time; block = bytearray(64 << 20); time.sleep(1.0)"])
        time.sleep(0.8)
        child.wait()
    assert tree.peak_processes >= 2
    assert tree.peak_pss_gib > 60 / 1024  # the child's 64 MiB are in the peak


def test_gpu_packing_refuses_to_run_without_cuda() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the benchmark would run")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_packing.py")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert "no CUDA GPU" in result.stderr


def study_of(rows: list[tuple[float, float, float]]):
    """An Optuna study whose trials were (asked at s, told at s, seconds training inside)."""
    import datetime

    import optuna

    t0 = datetime.datetime(2026, 1, 1)
    study = optuna.create_study(direction="maximize")
    for start, end, inside in rows:
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.COMPLETE, value=0.5, values=None,
            datetime_start=t0 + datetime.timedelta(seconds=start), datetime_complete=t0 + datetime.timedelta(seconds=end),
            params={}, distributions={}, user_attrs={"metrics": {"trial_seconds": inside}, "epochs_trained": 2},
            system_attrs={}, intermediate_values={},
        ))
    return study


def test_trial_figures_split_the_slot_time() -> None:
    from bench._common import trial_figures

    # Slots of 2; trial 2 reuses trial 1's slot.
    figures = trial_figures(study_of([(0, 10, 8.0), (0, 6, 5.0), (6, 12, 5.5)]), concurrency=2)
    assert figures["span_s"] == 12 and figures["busy_s"] == 18.5 and figures["epochs"] == 6
    assert figures["held_s"] == 22
    # 2 x 12 s of slots, 22 s held by trials: the 2 s idle are after the last ask (trial 0 ends at 10)
    assert (figures["gap_idle_s"], figures["tail_idle_s"]) == (0, 2)
    assert figures["first_trials_overhead_s"] == 3  # (10 - 8) + (6 - 5)
    assert figures["steady_trial_overhead_s"] == 0.5  # trial 2: 6 s held, 5.5 s training
    assert figures["steady_overhead_per_trial_s"] == 0.5  # no slot empty between trials here
    assert figures["last_told_at"] - figures["first_asked_at"] == 12


def test_steady_overhead_per_trial_counts_the_gaps_between_trials() -> None:
    from bench._common import trial_figures

    # One slot: trial 1 asked 1 s after trial 0 was told, held 4 s for 3 s of training.
    figures = trial_figures(study_of([(0, 5, 4.0), (6, 10, 3.0)]), concurrency=1)
    assert figures["gap_idle_s"] == 1
    assert figures["steady_overhead_per_trial_s"] == (4 - 3.0) + 1  # not training while held, plus the gap


def test_training_start_stamps_each_call_and_keeps_the_trainable(tmp_path) -> None:
    import pickle

    from bench._common import TrainingStart, first_training_start

    calls = []
    stamp = TrainingStart(_record_call, tmp_path / "stamps")
    assert first_training_start(tmp_path / "stamps") is None
    before = time.time()
    pickle.loads(pickle.dumps(stamp))({"a": 1}, data="d", settings="s", sink=calls)
    assert calls == [({"a": 1}, "d", "s")]
    assert before <= first_training_start(tmp_path / "stamps") <= time.time()
    assert stamp.__name__ == "_record_call"


def _record_call(config, data, settings, sink) -> None:
    sink.append((config, data, settings))


def test_idle_slot_seconds_splits_gaps_from_the_end_of_the_search() -> None:
    from bench._common import idle_slot_seconds

    # 2 slots: trial a 0-10; b 0-4; c asked at 5 (1 s gap on b's slot), ends 8; d asked at 9, ends 12.
    intervals = [(0, 10), (0, 4), (5, 8), (9, 12)]
    before, after = idle_slot_seconds(intervals, 2)
    assert before == (5 - 4) + (9 - 8)  # one slot empty in 4-5 and in 8-9
    assert after == 12 - 10  # after d was asked, a's slot is empty from 10 to 12
    assert before + after == 2 * 12 - sum(end - start for start, end in intervals)


def test_gpu_packing_runs_a_packing_without_a_gpu(ray_session, shared_data, tmp_path) -> None:
    """The packing path up to CUDA (study with `gpu: 1/k`, k trials at once, figures from the DB)
    runs here on CPU, so that a GPU session's first run of the benchmark measures, not debugs."""
    import argparse

    import optuna

    from bench import gpu_packing
    from bench._common import sst2_subset

    data_root = sst2_subset(shared_data, tmp_path / "data", 200)
    args = argparse.Namespace(data_root=data_root, epochs=1, trials_per_slot=1, train_examples=200)
    row = gpu_packing.run_packing(2, args, tmp_path)

    study = optuna.load_study(study_name="packing-2", storage=f"sqlite:///{tmp_path / 'packing.db'}")
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert [t.user_attrs["epochs_trained"] for t in trials] == [1, 1]
    assert study.user_attrs["study"]["budget"]["resources"]["gpu"] == 0.5
    assert row["trials"] == 2
    assert row["examples_per_s"] == 2 * 200 / row["span_s"]


def test_asha_rule_rungs_and_long_search_share() -> None:
    from bench.asha_rule import limit_share, rungs

    assert rungs(6, 3) == [1, 3] and rungs(6, 2) == [1, 2, 4] and rungs(6, 4) == [1, 4] and rungs(9, 3) == [1, 3]
    assert rungs(8, 3, grace_period=2) == [2, 6] and rungs(6, 3, grace_period=2) == [2] and rungs(8, 2, grace_period=2) == [2, 4]
    # rf 3 over 6 epochs: everyone 1 epoch, a third 2 more, a ninth 3 more: 2 of 6 epochs per trial.
    assert limit_share(6, 3) == pytest.approx(1 / 3)
    assert limit_share(6, 2) == pytest.approx((1 + 1 / 2 + 2 / 4 + 2 / 8) / 6)


def test_asha_rule_drives_rays_scheduler_as_worked_by_hand() -> None:
    """One slot, trials in order, the same ranking at every epoch: Ray's ASHA lets every trial that
    beats all before it go on (a rung's cutoff is the top third of what it holds), and stops the rest
    at the first rung."""
    import numpy as np

    from bench.asha_rule import run_asha

    rng = np.random.default_rng(0)
    pace = np.ones(5)
    rising = np.repeat(np.arange(5.0)[:, None], 6, axis=1)  # each trial better than the last
    assert run_asha(rising, pace, reduction_factor=3, concurrency=1, rng=rng).epochs == 5 * 6
    falling = rising[::-1].copy()  # the first is the best: the others stop at epoch 1
    assert run_asha(falling, pace, reduction_factor=3, concurrency=1, rng=rng).epochs == 6 + 4 * 1
    # Trial 2 is below trial 0 at epoch 1 (cutoff: 2/3 of the way from trial 1's 1 to trial 0's 3).
    mixed = np.repeat(np.array([3.0, 1.0, 2.0])[:, None], 6, axis=1)
    assert run_asha(mixed, np.ones(3), reduction_factor=3, concurrency=1, rng=rng).epochs == 6 + 1 + 1
    # Grace 2, 6 epochs, rf 3: one rung, at epoch 2; the trials that beat it run to the end.
    run = run_asha(falling, pace, reduction_factor=3, concurrency=1, rng=rng, grace_period=2)
    assert run == (6 + 4 * 2, [0])
    assert run_asha(mixed, np.ones(3), reduction_factor=3, concurrency=1, rng=rng, grace_period=2) == (6 + 2 + 2, [0])
    assert run_asha(rising, pace, reduction_factor=3, concurrency=1, rng=rng, grace_period=2) == (5 * 6, [0, 1, 2, 3, 4])


def test_asha_replay_reads_whole_curves_and_replays_them() -> None:
    """Curves of a study without early stopping, replayed: trials with fewer epochs are left out, a
    minimizing study is turned round, and the gap is the best final score ASHA does not let finish."""
    import numpy as np
    import optuna

    from bench.asha_replay import curves_from_study, replay

    def study_of(direction: str, curves: list[list[float]]) -> optuna.Study:
        study = optuna.create_study(direction=direction)
        for curve in curves:
            study.add_trial(optuna.trial.create_trial(
                value=curve[-1], intermediate_values=dict(enumerate(curve, start=1)),
                state=optuna.trial.TrialState.COMPLETE if len(curve) == 3 else optuna.trial.TrialState.PRUNED))
        return study

    # Trial 0 is best after epoch 1 and at the end; trial 2 is the best at the end but worst at
    # epoch 1; trial 3 stopped early (left out).
    curves = [[0.6, 0.7, 0.8], [0.5, 0.6, 0.7], [0.1, 0.5, 0.9], [0.2, 0.3]]
    scores, pace, left_out = curves_from_study(study_of("maximize", curves))
    assert left_out == 1 and scores.tolist() == curves[:3] and pace.shape == (3,) and (pace >= 0).all()
    # One slot, trials in order, rf 3, grace 1 over 3 epochs (one rung at epoch 1): trial 0 goes
    # on (rung empty), trial 1 (0.5 < cutoff 0.6) and trial 2 stop: 3 + 1 + 1 epochs, best 0.8.
    rng = np.random.default_rng(0)
    share, gap = replay(scores, np.ones(3), reduction_factor=3, grace_period=1, concurrency=1, orders=5, rng=rng)
    assert share == pytest.approx(5 / 9) and gap == pytest.approx(100 * (0.9 - 0.8))
    # Grace 2 (rung at epoch 2, below the last): trial 2's 0.5 at epoch 2 is under trial 0's 0.7 still.
    share, gap = replay(scores, np.ones(3), reduction_factor=3, grace_period=2, concurrency=1, orders=5, rng=rng)
    assert share == pytest.approx((3 + 2 + 2) / 9) and gap == pytest.approx(10.0)

    losses, _, _ = curves_from_study(study_of("minimize", [[1.0, 0.5, 0.2], [0.9, 0.8, 0.7]]))
    assert losses.tolist() == [[-1.0, -0.5, -0.2], [-0.9, -0.8, -0.7]]  # higher is better for the scheduler


def test_gpu_bundle_closure_pins_what_is_installed_and_leaves_out_the_targets_packages(tmp_path) -> None:
    import importlib.metadata as metadata

    from bench.gpu_bundle import read_have, requirement_closure

    have_file = tmp_path / "have.txt"
    have_file.write_text("# pip list --format=freeze\nSQLAlchemy==2.0.0\nnumpy\npydantic_core @ file:///wheels/x.whl\n")
    assert read_have(have_file) == {"sqlalchemy", "numpy", "pydantic-core"}

    pins = requirement_closure(("optuna", "ray[tune]"), "3.12")
    assert pins["optuna"] == metadata.version("optuna")
    assert pins["ray"] == metadata.version("ray")
    assert {"sqlalchemy", "alembic", "pandas", "pyarrow"} <= set(pins)  # optuna's and Tune's needs, transitively
    assert "torch" not in pins


def test_gpu_bundle_slims_rays_wheel_without_losing_executable_bits(tmp_path) -> None:
    import tarfile
    import zipfile

    from bench.gpu_bundle import slim_ray

    wheel = tmp_path / "ray-0-cp312-cp312-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, mode in [("ray/__init__.py", 0o644), ("ray/core/src/ray/raylet/raylet", 0o755),
                           ("ray/jars/ray_dist.jar", 0o644), ("ray/rllib/__init__.py", 0o644),
                           ("ray/dashboard/client/build/index.html", 0o644), ("ray/dashboard/head.py", 0o644),
                           ("ray-0.dist-info/METADATA", 0o644)]:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, "x")
    assert slim_ray(wheel, tmp_path / "ray.tar.xz") == 4
    with tarfile.open(tmp_path / "ray.tar.xz") as archive:
        members = {member.name: member.mode for member in archive.getmembers() if member.isfile()}
    assert set(members) == {"ray/__init__.py", "ray/core/src/ray/raylet/raylet", "ray/dashboard/head.py", "ray-0.dist-info/METADATA"}
    assert members["ray/core/src/ray/raylet/raylet"] & 0o100


def test_gpu_bundle_refuses_to_empty_a_folder_that_is_not_a_bundle(tmp_path, capsys) -> None:
    from bench import gpu_bundle

    keep = tmp_path / "project"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        gpu_bundle.main(["--out", str(keep)])
    assert exit_info.value.code == 2
    assert f"--out {keep}: not empty and not a bundle" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "mine"

    earlier = tmp_path / "bundle"
    (earlier / "wheels").mkdir(parents=True)
    (earlier / "install.sh").write_text("")
    assert gpu_bundle.is_replaceable(earlier) and gpu_bundle.is_replaceable(tmp_path / "new")
    assert not gpu_bundle.is_replaceable(keep / "notes.txt")
