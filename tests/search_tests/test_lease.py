"""One driver per study: a second `search run` or `search resume` of a study that a live driver
runs is refused with a line naming that driver; a dead driver's lease is taken over; drivers
racing for a free study leave exactly one winner. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.engine import open_storage
from search.lease import LEASE_KEY, StudyBusy, StudyLease
from search.recovery import STALE_AFTER_S, counts_toward_budget, driver_identity
from tests.conftest import REPO_ROOT, toy_study_yaml
from tests.search_tests.test_recovery import dead_driver

optuna.logging.set_verbosity(optuna.logging.WARNING)

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lease.db'}"
    return request.getfixturevalue("postgres_url")


def new_study(url: str, name: str) -> tuple[optuna.storages.RDBStorage, optuna.Study]:
    storage = open_storage(url)
    return storage, optuna.create_study(study_name=name, storage=storage)


def lease_of(study: optuna.Study) -> object:
    return optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs.get(LEASE_KEY)


def test_a_live_driver_keeps_the_study_a_dead_one_does_not(storage_url: str, tmp_path: Path) -> None:
    storage, study = new_study(storage_url, f"held-{tmp_path.name}")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        holders = {
            "a live driver on this host": ({"host": host, "pid": live.pid, "started": None, "heartbeat": time.time()}, True),
            "a live driver on another host": ({"host": "elsewhere", "pid": 7, "heartbeat": time.time() - 10}, True),
            "a dead driver on this host": ({**dead_driver(), "heartbeat": time.time()}, False),
            "a silent driver on another host": ({"host": "elsewhere", "pid": 7, "heartbeat": time.time() - STALE_AFTER_S - 1}, False),
            "a released lease": (None, False),
        }
        for case, (holder, busy) in holders.items():
            study.set_user_attr(LEASE_KEY, holder)
            lease = StudyLease(storage, study._study_id, study.study_name)
            if busy:
                with pytest.raises(StudyBusy) as refused:
                    lease.acquire()
                assert f"is being run by another driver: pid {holder['pid']} on {holder['host']}" in str(refused.value), case
                assert lease_of(study) == holder, case  # untouched
                continue
            with lease:
                held = lease_of(study)
                assert {k: held[k] for k in ("host", "pid")} == {"host": host, "pid": os.getpid()}, case
            assert lease_of(study) is None, case  # released
    finally:
        live.kill()
        live.wait()


def test_the_heartbeat_is_refreshed_while_the_lease_is_held(storage_url: str, tmp_path: Path) -> None:
    storage, study = new_study(storage_url, f"beat-{tmp_path.name}")
    with StudyLease(storage, study._study_id, study.study_name, heartbeat_s=0.2):
        first = lease_of(study)["heartbeat"]
        time.sleep(1.0)
        later = lease_of(study)
        assert later["heartbeat"] > first and later["since"] == first and later["pid"] == os.getpid()
    assert lease_of(study) is None


RACER = textwrap.dedent("""
    import sys, time
    from search import lease as lease_module
    from search.engine import open_storage
    from search.lease import StudyBusy, StudyLease
    url, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])

    read = lease_module._read
    def slow_read(*args):  # a slow round trip: every racer reads "free" before any writes
        value = read(*args)
        time.sleep(0.5)
        return value
    lease_module._read = slow_read
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(name)
    lease = StudyLease(storage, study_id, name)
    time.sleep(max(0.0, start - time.time()))  # every racer asks at the same moment
    try:
        lease.acquire()
    except StudyBusy:
        print("busy", flush=True)
        sys.exit(0)
    print("won", flush=True)
    time.sleep(4)  # alive while the others look
    lease.release()
""")


def test_drivers_racing_for_a_free_study_leave_one_winner(storage_url: str, tmp_path: Path) -> None:
    _, study = new_study(storage_url, f"race-{tmp_path.name}")
    start = time.time() + 8  # after every racer has imported what it needs
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, storage_url, study.study_name, str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        for _ in range(4)
    ]
    outcomes = [racer.communicate(timeout=120) for racer in racers]
    assert sorted(out.strip() for out, _ in outcomes) == ["busy", "busy", "busy", "won"], outcomes
    assert lease_of(study) is None


def test_a_second_driver_of_a_running_study_is_refused_naming_the_first(storage_url: str, tmp_path: Path, sentiment_root: Path) -> None:
    name = f"two-{tmp_path.name}"[:60]
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(storage_url, name=name, trials=4, max_epochs=3, concurrency=2))
    run_args = ["--data-root", str(sentiment_root), "--storage-path", str(tmp_path / "ray_results")]
    first = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "run", str(study_file), *run_args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and first.poll() is None:
            if _lease_holder(storage_url, name) is not None:
                break
            time.sleep(0.5)
        assert _lease_holder(storage_url, name)["pid"] == first.pid, "the first driver never took the lease"

        for second_args in (["run", str(study_file), *run_args], ["resume", name, "--storage", storage_url, *run_args]):
            second = subprocess.run([sys.executable, "-m", "search.cli", *second_args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV)
            errors = second.stderr.strip().splitlines()
            assert second.returncode == 2 and len(errors) == 1, second.stdout[-2000:] + second.stderr[-3000:]
            assert errors[0].startswith(f"search: error: study {name!r} in ")
            assert f"is being run by another driver: pid {first.pid} on {socket.gethostname()}" in errors[0]
            assert first.poll() is None, "the first driver ended before the second was refused; make its search longer"
        output = first.communicate(timeout=600)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output[-3000:]

    # The first driver's search is whole: its budget once, nothing left running, the lease freed.
    study = optuna.load_study(study_name=name, storage=storage_url)
    assert sum(counts_toward_budget(t) for t in study.trials) == len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert {t.user_attrs["driver"]["pid"] for t in study.trials} == {first.pid}
    assert study.user_attrs[LEASE_KEY] is None


def _lease_holder(url: str, name: str) -> dict | None:
    """The study's lease as recorded, read with plain SQL (the study may not exist yet)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            value = connection.execute(sqlalchemy.text(
                "select a.value_json from study_user_attributes a join studies s on s.study_id = a.study_id "
                "where s.study_name = :name and a.key = :key"), {"name": name, "key": LEASE_KEY}).scalar_one_or_none()
    except sqlalchemy.exc.DatabaseError:
        return None
    finally:
        engine.dispose()
    return json.loads(value) if value else None


def test_own_identity_is_not_another_driver() -> None:
    from search.lease import busy_reason

    me = driver_identity()
    assert busy_reason({**me, "heartbeat": time.time()}, me) is None
