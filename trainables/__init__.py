"""Trainables: the trial runner, the task adapters it runs, their data, models and metrics.

    from trainables import TrialSettings, run_trial
    from trainables.text_classification import TASK

    run_trial(TASK, config, data, TrialSettings(metric="accuracy", mode="max", max_epochs=3),
              report=lambda metrics, checkpoint_dir: print(metrics))

Exports load lazily: Ray workers import submodules of this package to unpickle a trial, and
need none of the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "trainables.task",
    "Task": "trainables.task",
    "TrialModel": "trainables.task",
    "Reporter": "trainables.runner",
    "TrialSettings": "trainables.runner",
    "evaluate_checkpoint": "trainables.runner",
    "run_trial": "trainables.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainables' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
