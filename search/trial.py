"""A task's trainable as Ray runs it (`guard_trial`).

Kept apart from the engine: Ray workers import this module to unpickle the trial function, and
it imports nothing heavy (the engine would pull in Optuna and every data loader).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from typing import Any

# Config key through which a re-queued trial learns its checkpoint (`guard_trial` removes it).
RESUME_FROM_KEY = "_resume_from"


def guard_trial(trainable: Callable[..., None]) -> Callable[..., None]:
    """The task's trainable as Ray runs it.

    An exception in the training code (a bug, a NaN loss, CUDA out of memory) ends the trial with
    a last result that carries the error, instead of reaching Ray as a crash: Ray would retry it
    (`max_failures` is for lost workers) and it would fail the same way again. The searcher then
    records the trial FAIL with the error. A re-queued trial's checkpoint arrives in the config
    and is handed to the loop as `settings.resume_from`.
    """

    def trial(config: dict[str, Any], data: Any, settings: Any) -> None:
        from ray import tune

        config = dict(config)
        resume_from = config.pop(RESUME_FROM_KEY, None)
        if resume_from:
            settings = dataclasses.replace(settings, resume_from=resume_from)
        failure = None
        try:
            trainable(config, data=data, settings=settings)
        except Exception as error:
            summary = (f"{type(error).__name__}: {error}".strip().splitlines() or [type(error).__name__])[0][:1000]
            failure = {settings.metric: float("nan"), "trial_error": summary, "trial_traceback": traceback.format_exc()[-4000:]}
        if failure is not None:
            # Out of the except block: the failed step's frames and tensors are gone, so the memory
            # is free before the next trial reuses this worker.
            _release_accelerator_memory()
            tune.report(failure)

    trial.__name__ = trial.__qualname__ = getattr(trainable, "__name__", "trial")
    return trial


def _release_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
