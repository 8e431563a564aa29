"""ASHA that never stops the trials a study must train to the end (its baseline).

A baseline stopped at ASHA's first rung would leave nothing to compare the search with, so the
trials `runs_full_budget` names are let go on; their results still enter ASHA's rungs, where they
set the bar the other trials are stopped against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


class FullBudgetASHA(ASHAScheduler):
    """`ASHAScheduler` (same arguments) that continues every trial `runs_full_budget(trial_id)` names."""

    def __init__(self, *, runs_full_budget: Callable[[str], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._runs_full_budget = runs_full_budget

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t and self._runs_full_budget(trial.trial_id):
            self._num_stopped -= 1  # counted by ASHA as it decided; it did not stop it
            return TrialScheduler.CONTINUE
        return decision
