"""Optuna's RDB storage that waits out a database going away for a while.

A PostgreSQL restart or failover cuts every connection, and an SQLite file held locked by another
process past the busy timeout refuses writes. Either used to end a search mid-way with a trial's
result lost. Here every storage call that fails on the connection is tried again, with backoff
(0.5 s doubling to 8 s), for up to `retry_s` seconds in all (default `DEFAULT_RETRY_S`, or
$SEARCH_DB_RETRY_S); the results Ray delivers meanwhile wait in the driver, so none is lost. Past
that bound the call raises `StorageUnavailable`, whose message is the one line the user sees, and
later failing calls raise it at once: the search stops, and `search resume` continues it once the
database answers. A database that refuses writes for good (read-only, full) is not waited for.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy

logger = logging.getLogger(__name__)

DEFAULT_RETRY_S = 120.0
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 8.0

# Errors that a later attempt may not meet: the connection, not the statement, failed (also any
# error SQLAlchemy's dialect recognised as a disconnect: `connection_invalidated`).
_TRANSIENT = (
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError, sqlalchemy.exc.PendingRollbackError,
)
# ... except these, which no wait mends.
_FOR_GOOD = ("readonly database", "read-only", "disk is full", "no space left")

# The storage calls Optuna makes, each one transaction of its own: safe to try again when it
# failed on the connection. (`_create_new_trial` may leave a duplicate trial if its commit went
# through but the answer was lost; the duplicate stays empty and is reaped as an orphan.)
_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs", "get_all_studies",
    "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param", "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id", "get_trial_param", "get_trial_params", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_user_attrs", "get_trial_system_attrs", "get_trial",
    "get_all_trials", "_get_trials", "get_n_trials", "get_best_trial", "_get_best_trial_id", "_get_stale_trial_ids",
    "record_heartbeat",
)


class StorageUnavailable(RuntimeError):
    """The database did not answer within the retry bound, or refuses writes for good."""


def refusal_to_write(error: BaseException) -> str | None:
    """The database's words when `error` is a write it refuses for good (read-only, full), else None:
    for writes made outside the storage's calls (the driver's lease), which reach the CLI as they are."""
    cause = _connection_error(error)
    if cause is None:
        return None
    text = _driver_message(cause)
    return text if any(marker in text.lower() for marker in _FOR_GOOD) else None


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """`optuna.storages.RDBStorage` whose calls wait out a database that goes away (see module)."""

    def __init__(self, url: str, *, retry_s: float | None = None, display_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.retry_s = float(os.environ.get("SEARCH_DB_RETRY_S", DEFAULT_RETRY_S)) if retry_s is None else retry_s
        self._display_url = display_url or repr(url)
        self.gave_up: str | None = None  # the message, once the bound has passed


def _retried(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def retrying(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline, backoff = time.monotonic() + self.retry_s, FIRST_BACKOFF_S
        while True:
            try:
                return call(self, *args, **kwargs)
            except StorageUnavailable:
                raise
            except Exception as error:
                cause = _connection_error(error)
                if cause is None:
                    raise
                text = _driver_message(cause)
                if any(marker in text.lower() for marker in _FOR_GOOD):
                    raise StorageUnavailable(f"the study database {self._display_url} refuses writes ({text})") from None
                if self.gave_up or time.monotonic() + backoff > deadline:
                    self.gave_up = self.gave_up or (
                        f"the study database {self._display_url} did not answer for {self.retry_s:g} s "
                        f"({text}); the search stopped with every result it recorded. "
                        "Run the same command, or `search resume STUDY`, once the database answers: trials cut off "
                        "resume from their checkpoints"
                    )
                    raise StorageUnavailable(self.gave_up) from None
                logger.debug("storage call %s failed (%s); retrying in %.1f s", name, text, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    return retrying


def _driver_message(error: BaseException) -> str:
    """The database driver's own first line (SQLAlchemy adds its class and a link), e.g.
    `connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection refused`."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return " ".join(lines[0].split())[:300] if lines else type(error).__name__


def _connection_error(error: BaseException) -> BaseException | None:
    """The connection error behind `error` (Optuna wraps SQLAlchemy's in StorageInternalError), or None."""
    for candidate in (error, error.__cause__, error.__context__):
        if isinstance(candidate, _TRANSIENT) or getattr(candidate, "connection_invalidated", False):
            return candidate
    if isinstance(error, optuna.exceptions.StorageInternalError):
        logger.debug("storage error not retried: %r (cause %r)", error, error.__cause__)
    return None


for _name in _CALLS:
    setattr(ResilientRDBStorage, _name, _retried(_name, getattr(optuna.storages.RDBStorage, _name)))
