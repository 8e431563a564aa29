"""One driver per study: a lease in the study's user attribute `driver`.

Two drivers on one study would each run the whole remaining budget and each take the other's
running trials for orphans. So a driver holds the study's lease while it runs: `driver` holds its
host, pid and process start (as trials record them, see `search.recovery`), when it took the
lease and a `heartbeat` it refreshes every `recovery.HEARTBEAT_S`; it sets `driver` back to null
when it ends. Another `search run` or `search resume` of the study is refused with a line naming
the live driver. A dead driver's lease is taken over as its orphans are: at once when it ran on
this host and its process is gone, after `recovery.STALE_AFTER_S` without a heartbeat otherwise.

Taking and refreshing the lease are compare-and-swap writes on Optuna's `study_user_attributes`
row (an insert that the (study, key) unique constraint lets only one driver win, or an update
conditioned on the value read), so two drivers starting at the same moment cannot both win.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import optuna
import sqlalchemy
from optuna.storages._rdb import models

from search import recovery

logger = logging.getLogger(__name__)

LEASE_KEY = "driver"
_TABLE = models.StudyUserAttributeModel.__table__


class StudyBusy(RuntimeError):
    """The study is run by another live driver; the message names it."""


class StudyLease:
    """This process's lease on one study, held from `acquire` to `release`, with a heartbeat
    thread in between. Use as a context manager: `with StudyLease(storage, study_id, name): ...`."""

    def __init__(
        self, storage: optuna.storages.RDBStorage, study_id: int, study_name: str, *,
        heartbeat_s: float = recovery.HEARTBEAT_S, where: str = "",
    ) -> None:
        self._engine = storage.engine
        self._study_id, self._study_name, self._where = study_id, study_name, where
        self._heartbeat_s = heartbeat_s
        self._identity = recovery.driver_identity()
        self._held: str | None = None  # the JSON text of our lease as last written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StudyLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lease, or raises `StudyBusy` naming the live driver that holds it."""
        for _ in range(5):  # lost a race for a free or stale lease: look again at who won
            recorded = _read(self._engine, self._study_id)
            holder = json.loads(recorded) if recorded is not None else None
            busy = busy_reason(holder, self._identity)
            if busy:
                raise StudyBusy(f"study {self._study_name!r}{self._where} {busy}")
            now = time.time()
            mine = json.dumps({**self._identity, "since": now, "heartbeat": now})
            if _swap(self._engine, self._study_id, recorded, mine):
                self._held = mine
                self._thread = threading.Thread(target=self._beat, name=f"lease-{self._study_name}", daemon=True)
                self._thread.start()
                return
        raise StudyBusy(f"study {self._study_name!r}{self._where}: another driver keeps taking its lease; try again")

    def release(self) -> None:
        """Stops the heartbeat and frees the lease (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._held is not None:
            try:
                _swap(self._engine, self._study_id, self._held, json.dumps(None))
            except Exception as error:  # a database gone: the lease left behind expires as a dead driver's does
                logger.info("study %s: lease not released: %s", self._study_name, error)
            self._held = None

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            held = self._held
            if held is None:
                return
            refreshed = json.dumps({**json.loads(held), "heartbeat": time.time()})
            try:
                if _swap(self._engine, self._study_id, held, refreshed):
                    self._held = refreshed
                else:
                    logger.warning("study %s: another driver took over its lease; this one runs on without it", self._study_name)
                    self._held = None
                    return
            except Exception as error:  # a busy or restarting database: the next beat tries again
                logger.info("study %s: lease heartbeat not recorded: %s", self._study_name, error)


def busy_reason(holder: Any, me: dict[str, Any], now: float | None = None) -> str | None:
    """Why the lease `holder` (as recorded) keeps `me` off the study, or None when it is free:
    none recorded, this process's own, or a driver that is gone (its process ended on this host,
    or no heartbeat for `recovery.STALE_AFTER_S`)."""
    if not isinstance(holder, dict) or not holder.get("host") or not holder.get("pid"):
        return None
    if all(holder.get(key) == me.get(key) for key in ("host", "pid", "started")):
        return None
    if recovery.driver_is_gone(holder):
        return None
    now = time.time() if now is None else now
    heartbeat = holder.get("heartbeat")
    age = now - heartbeat if isinstance(heartbeat, (int, float)) else None
    if holder["host"] != me.get("host") and (age is None or age > recovery.STALE_AFTER_S):
        return None
    beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
    takeover = (
        "on this host it is taken over as soon as that process is gone" if holder["host"] == me.get("host")
        else f"from another host it is taken over {recovery.STALE_AFTER_S:.0f} s after that driver's last heartbeat"
    )
    return (
        f"is being run by another driver: pid {holder['pid']} on {holder['host']}{beat}. One driver runs a study: "
        f"wait for it to finish, or stop it and run this again ({takeover})"
    )


def refuse_if_busy(storage: optuna.storages.RDBStorage, study_name: str, where: str = "") -> None:
    """Raises `StudyBusy` when a live driver runs `study_name` (a read only: the lease itself is
    taken once the study is opened). Lets a second driver stop before it starts Ray."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return
    recorded = _read(storage.engine, study_id)
    busy = busy_reason(json.loads(recorded) if recorded is not None else None, recovery.driver_identity())
    if busy:
        raise StudyBusy(f"study {study_name!r}{where} {busy}")


def _read(engine: sqlalchemy.Engine, study_id: int) -> str | None:
    """The lease's JSON text as stored, or None when the study has no lease row."""
    query = sqlalchemy.select(_TABLE.c.value_json).where(_TABLE.c.study_id == study_id, _TABLE.c.key == LEASE_KEY)
    with engine.connect() as connection:
        return connection.execute(query).scalar_one_or_none()


def _swap(engine: sqlalchemy.Engine, study_id: int, expected: str | None, new: str) -> bool:
    """Writes `new` if the lease row still holds `expected` (None: there is no row yet); returns
    whether it did. Atomic on SQLite and PostgreSQL alike."""
    try:
        with engine.begin() as connection:
            if expected is None:
                connection.execute(sqlalchemy.insert(_TABLE).values(study_id=study_id, key=LEASE_KEY, value_json=new))
                return True
            updated = connection.execute(
                sqlalchemy.update(_TABLE)
                .where(_TABLE.c.study_id == study_id, _TABLE.c.key == LEASE_KEY, _TABLE.c.value_json == expected)
                .values(value_json=new)
            )
            return updated.rowcount == 1
    except sqlalchemy.exc.IntegrityError:  # another driver inserted the row first
        return False
