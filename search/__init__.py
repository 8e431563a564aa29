"""Training-strategy search: Ray Tune runs the trials, Optuna's sampler proposes them, ASHA stops
the weak ones, and an Optuna study records every trial.

    from search import load_study, run_search

    summary = run_search(load_study("studies/demo.yaml"), data_root="../shared/data")
    print(summary.best_trial, summary.best_value, summary.best_strategy)

The names below are loaded on first use, as Optuna and transformers do: the engine pulls in
Optuna, torch and every data loader, and importing `search` (which every `search` command does)
should not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` loads these
    from search.config import StudyConfig, StudyFileError, load_study
    from search.engine import SearchError, SearchSummary, run_search
    from spaces import SpaceError
    from trainables.data import DataError

# Public name -> the module that defines it.
_EXPORTS = {
    "run_search": "search.engine",
    "SearchSummary": "search.engine",
    "load_study": "search.config",
    "StudyConfig": "search.config",
    # The errors a study, its space, its data or its environment can raise, each one paragraph
    # for the user (the CLI prints them without a traceback).
    "StudyFileError": "search.config",
    "SpaceError": "spaces",
    "DataError": "trainables.data",
    "SearchError": "search.engine",
}

__all__ = [
    "DataError", "SearchError", "SearchSummary", "SpaceError", "StudyConfig", "StudyFileError",
    "load_study", "run_search",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups no longer come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
