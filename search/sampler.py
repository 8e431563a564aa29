"""TPE whose cost per trial stays flat as a study grows.

Optuna's TPE reads every finished trial at every sample: for each group of the define-by-run space
it builds two Parzen estimators over all of them, so a trial costs O(n) and a study O(n^2). With the
engine's space that was about 45 ms per trial at 150 trials on one core, and it keeps growing.

`BoundedTPESampler` shows TPE the trials it needs and no more: the `keep_best` best finished trials
(TPE's "good" set is the best min(ceil(0.1 n), 25), so with `keep_best >= 25` it is exactly the one
full TPE would use), the `window` most recent finished trials (the "bad" set, estimated from recent
history), and every running trial (for the constant liar). Below `keep_best + window` finished
trials it is plain TPE, trial for trial.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState


class BoundedTPESampler(optuna.samplers.TPESampler):
    """`optuna.samplers.TPESampler` (same arguments) that models at most `keep_best + window` trials."""

    def __init__(self, *, window: int = 200, keep_best: int = 50, **kwargs: Any) -> None:
        if window < 1:
            raise ValueError(f"The value of `window` is {window}, but must be `window >= 1`")
        if keep_best < 25:
            raise ValueError(f"The value of `keep_best` is {keep_best}, but must be `keep_best >= 25` (TPE's good set)")
        super().__init__(**kwargs)
        self._window = window
        self._keep_best = keep_best
        self._best: list[tuple[tuple[int, int, float], int]] | None = None  # (rank, number), best first

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(_BoundedStudy(study, self), trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return super().sample_relative(_BoundedStudy(study, self), trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        return super().sample_independent(_BoundedStudy(study, self), trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        super().after_trial(study, trial, state, values)
        if self._best is not None and state in _MODELLED:
            # `trial` is read before its state is written: rank it as it ends.
            value = values[0] if values and state == TrialState.COMPLETE else None
            bisect.insort(self._best, (_rank(state, value, trial.intermediate_values, study.direction), trial.number))
            del self._best[self._keep_best:]

    def _select(self, study: Study, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """The most recent `window` trials of `trials` (sorted by number, as Optuna returns them) and
        those of the best `keep_best` finished trials that are in `trials`: O(window), not O(n)."""
        if len(trials) <= self._keep_best + self._window:
            return list(trials)
        if self._best is None:  # first call (or a resumed study): rank what is there once
            ranked = sorted((_rank(t.state, t.value, t.intermediate_values, study.direction), t.number) for t in study._get_trials(deepcopy=False, states=_MODELLED))
            self._best = ranked[: self._keep_best]
        cutoff = len(trials) - self._window
        older = []
        for number in sorted(number for _, number in self._best):
            index = bisect.bisect_left(trials, number, hi=cutoff, key=lambda t: t.number)
            if index < cutoff and trials[index].number == number:
                older.append(trials[index])
        return older + list(trials[cutoff:])


_MODELLED = (TrialState.COMPLETE, TrialState.PRUNED)


def _rank(state: TrialState, value: float | None, intermediate_values: dict[int, float], direction: StudyDirection) -> tuple[int, int, float]:
    """TPE's order of merit, best first: complete trials by value, then pruned ones by the furthest
    epoch and its value (as `optuna.samplers._tpe.sampler._split_trials`)."""
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    if state == TrialState.COMPLETE and value is not None:
        return (0, 0, sign * value)
    if intermediate_values:
        step, last = max(intermediate_values.items())
        return (1, -step, math.inf if math.isnan(last) else sign * last)
    return (2, 0, 0.0)


class _BoundedStudy:
    """The study as the sampler sees it: every attribute delegated, `_get_trials` bounded."""

    def __init__(self, study: Study, sampler: BoundedTPESampler) -> None:
        self._bounded_study = study
        self._bounded_sampler = sampler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bounded_study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._bounded_study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return self._bounded_sampler._select(self._bounded_study, trials)
