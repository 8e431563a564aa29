"""One line per event while a search runs: trial start (with its strategy), each epoch, and how
it ended, plus a running tally. Ray's own tables print the whole config per trial, which does not
stay readable with a define-by-run space of twenty-odd parameters."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ray.tune import Callback
from ray.tune.result import TRAINING_ITERATION

from search.searcher import result_epoch
from search.trial import RESUME_FROM_KEY
from spaces import Strategy
from trainables.runner import RESUME_NOTE


class ProgressPrinter(Callback):
    def __init__(
        self,
        metric: str,
        mode: str,
        max_epochs: int,
        total_trials: int,
        trial_number: Callable[[str], int | None],
        print_line: Callable[[str], None] = print,
    ) -> None:
        self._metric = metric
        self._max_epochs = max_epochs
        self._total = total_trials
        self._trial_number = trial_number
        self._print = print_line
        self._started = time.monotonic()
        self._outcomes: Counter[str] = Counter()
        self._running: set[str] = set()
        self._best: tuple[float, str] | None = None
        self._mode_max = mode == "max"

    def _line(self, trial: Any, text: str) -> None:
        number = self._trial_number(trial.trial_id)
        label = f"trial {number}" if number is not None else f"trial {trial.trial_id}"
        self._print(f"[{time.monotonic() - self._started:6.0f}s] {label:<9} {text}")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.add(trial.trial_id)
        try:
            strategy = Strategy.from_config(trial.config).summary()
        except (KeyError, TypeError):
            strategy = ""
        resumed = " (re-queued; resumes from its last checkpoint)" if RESUME_FROM_KEY in trial.config else ""
        self._line(trial, f"started   {strategy}{resumed}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "trial_error" in result:
            return  # reported when the trial completes
        if result.get(RESUME_NOTE):
            self._line(trial, f"note      {result[RESUME_NOTE]}")
        value = result.get(self._metric)
        extra = ""
        if "train_loss" in result:
            extra += f"  train_loss {result['train_loss']:.4f}"
        if "time_this_iter_s" in result:
            extra += f"  ({result['time_this_iter_s']:.1f} s)"
        self._line(trial, f"epoch {result_epoch(result):<3} {self._metric} {_fmt(value)}{extra}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.discard(trial.trial_id)
        result = trial.last_result or {}
        if "trial_error" in result:
            self._outcomes["failed"] += 1
            self._line(trial, f"FAILED    {str(result['trial_error'])[:160]}")
            self._tally()
            return
        epochs = result_epoch(result) if TRAINING_ITERATION in result else 0
        value = result.get(self._metric)
        if epochs >= self._max_epochs:
            self._outcomes["complete"] += 1
            self._line(trial, f"complete  {self._metric} {_fmt(value)} after {epochs} epochs")
            if value is not None and math.isfinite(value):
                better = self._best is None or (value > self._best[0] if self._mode_max else value < self._best[0])
                if better:
                    self._best = (value, str(self._trial_number(trial.trial_id)))
        else:
            self._outcomes["pruned"] += 1
            self._line(trial, f"pruned    by ASHA after epoch {epochs} of {self._max_epochs} ({self._metric} {_fmt(value)})")
        self._tally()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from search.searcher import describe_trial_error

        self._running.discard(trial.trial_id)
        self._outcomes["failed"] += 1
        error, _ = describe_trial_error(trial)
        self._line(trial, f"FAILED    {error[:160]}")
        self._tally()

    def _tally(self) -> None:
        done = sum(self._outcomes.values())
        parts = ", ".join(f"{n} {k}" for k, n in self._outcomes.items() if n)
        best = f"; best {self._metric} {_fmt(self._best[0])} (trial {self._best[1]})" if self._best else ""
        self._print(f"{'':9}progress: {done}/{self._total} finished ({parts}), {len(self._running)} running{best}")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)

