"""The study's sampler: the choices a study file's `sampler:` names, and the default among them,
TPE whose cost per trial stays flat as a study grows.

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
import warnings
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from spaces import Space


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


# TPE as the engine runs it by default (`search.engine.make_sampler`): the conditional branches
# modelled jointly (`group`), concurrent trials spread apart (`constant_liar`), at most the 50 best
# and the 200 most recent trials read per sample.
TPE_DEFAULTS: dict[str, Any] = {"window": 200, "keep_best": 50, "multivariate": True, "group": True, "constant_liar": True}


class SamplerRefused(ValueError):
    """A `sampler:` choice that cannot serve the study; `field` is the study file's field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SamplerChoice:
    """The study file's `sampler:`: a name from `SAMPLERS` and options for its Optuna sampler."""

    name: str = "tpe"
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """As recorded in the study's user attribute `sampler`."""
        return {"name": self.name, **self.options}


@dataclass(frozen=True)
class _Kind:
    summary: str
    options: Mapping[str, type | tuple[Any, ...]]  # option -> its type, or the values it accepts
    build: Callable[[int, Mapping[str, Any], Space | None], optuna.samplers.BaseSampler]
    multi_objective_only: bool = False
    # Why the sampler cannot serve a space, or None when it can.
    refuses: Callable[[Space], str | None] = lambda space: None


def _quiet_experimental(build: Callable[[], optuna.samplers.BaseSampler]) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return build()


def _conditional_tpe(seed: int) -> optuna.samplers.BaseSampler:
    """What GP and CMA-ES hand the parameters they do not model (those of one branch of the
    define-by-run space, and for CMA-ES the categoricals): univariate TPE, seeded."""
    return optuna.samplers.TPESampler(seed=seed)


def _build_tpe(seed: int, options: Mapping[str, Any], space: Space | None) -> optuna.samplers.BaseSampler:
    return _quiet_experimental(lambda: BoundedTPESampler(**{**TPE_DEFAULTS, **options}, seed=seed))


def _build_gp(seed: int, options: Mapping[str, Any], space: Space | None) -> optuna.samplers.BaseSampler:
    # The independent sampler serves every conditional parameter of every trial: one warning each is noise.
    return _quiet_experimental(lambda: optuna.samplers.GPSampler(
        seed=seed, independent_sampler=_conditional_tpe(seed), warn_independent_sampling=False, **options))


def _build_cmaes(seed: int, options: Mapping[str, Any], space: Space | None) -> optuna.samplers.BaseSampler:
    import cmaes  # noqa: F401  Optuna imports it only when it first samples: fail when the study is read instead

    modelled = None if space is None else [name for name, param, conditional in searched_parameters(space) if _numeric(param) and not conditional]
    return _quiet_experimental(lambda: _BranchFreeCmaEs(
        modelled=modelled, seed=seed, independent_sampler=_conditional_tpe(seed), warn_independent_sampling=False, **options))


class _BranchFreeCmaEs(optuna.samplers.CmaEsSampler):
    """CMA-ES over the numeric parameters every trial of the space has (`modelled`).

    Optuna's CmaEsSampler models the parameters all completed trials share. In a define-by-run
    space that set shrinks as trials take other branches (the first completed trial's optimizer
    parameters are dropped once a trial with another optimizer completes), and CMA-ES then stops
    modelling for good ("does not support dynamic search space"); a fixed set keeps it going.
    """

    def __init__(self, *, modelled: Sequence[str] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._modelled = None if modelled is None else frozenset(modelled)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        inferred = super().infer_relative_search_space(study, trial)
        return inferred if self._modelled is None else {n: d for n, d in inferred.items() if n in self._modelled}


def _build_qmc(seed: int, options: Mapping[str, Any], space: Space | None) -> optuna.samplers.BaseSampler:
    return _quiet_experimental(lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False, **options))


def _build_nsga2(seed: int, options: Mapping[str, Any], space: Space | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, **options)


def searched_parameters(space: Space) -> list[tuple[str, Any, bool]]:
    """(flat name, parameter, conditional) for every value the sampler draws from `space` (nothing
    fixed, nothing with a single choice); conditional: asked in some trials only (a parameter of a
    component that is one of several choices, or of an add-on or regularizer switched on or off)."""
    from spaces import Categorical, Float, Int, choice_key, enabled_key, param_key

    def drawn(param: Any) -> bool:
        return (isinstance(param, Categorical) and len(param.choices) > 1) or (isinstance(param, (Float, Int)) and param.low < param.high)

    found: list[tuple[str, Any, bool]] = []
    for fam in space.families.values():
        if fam.registry.kind == "choice":
            if len(fam.candidates) > 1:
                found.append((choice_key(fam.family), Categorical(tuple(fam.candidates)), False))
            switched: tuple[str, ...] = fam.candidates if len(fam.candidates) > 1 else ()
        else:
            found += [(enabled_key(fam.family, name), Categorical((False, True)), False) for name in fam.candidates]
            switched = fam.candidates
        for name in (*fam.candidates, *fam.always):
            found += [
                (param_key(fam.family, name, pname), param, name in switched)
                for pname, param in fam.params[name].items() if drawn(param)
            ]
    found += [(name, param, False) for name, param in space.globals.items() if drawn(param)]
    return found


def _numeric(param: Any) -> bool:
    from spaces import Float, Int

    return isinstance(param, (Float, Int))


def _cmaes_refuses(space: Space) -> str | None:
    searched = searched_parameters(space)
    if searched and not any(_numeric(param) and not conditional for _, param, conditional in searched):
        return (
            "CMA-ES models only numeric parameters that every trial has, and this space has none (each numeric "
            "parameter belongs to a component the sampler may leave out): it would sample at random; fix the component "
            "whose parameters should be modelled (e.g. `optimizer: adam`), or use tpe, gp or random"
        )
    return None


def _qmc_refuses(space: Space) -> str | None:
    conditional = [name for name, _, is_conditional in searched_parameters(space) if is_conditional]
    if conditional:
        shown = ", ".join(conditional[:4]) + (f" and {len(conditional) - 4} more" if len(conditional) > 4 else "")
        return (
            "Optuna's QMCSampler builds its design over the parameters of the study's first trial and assumes a space "
            f"without conditions, but here {shown} exist only when their component is chosen; fix those families "
            "(one component each, add-ons and regularizers in `always` or off), or use tpe, gp or random"
        )
    return None


SAMPLERS: dict[str, _Kind] = {
    "tpe": _Kind(
        "TPE, multivariate over each branch, with the constant liar (the default)",
        {"n_startup_trials": int, "n_ei_candidates": int, "prior_weight": float, "consider_endpoints": bool,
         "constant_liar": bool, "window": int, "keep_best": int},
        _build_tpe,
    ),
    "random": _Kind("independent uniform draws", {}, lambda seed, options, space: optuna.samplers.RandomSampler(seed=seed)),
    "gp": _Kind(
        "Gaussian-process Bayesian optimization over the parameters every trial has; the rest by TPE",
        {"n_startup_trials": int, "deterministic_objective": bool},
        _build_gp,
    ),
    "cmaes": _Kind(
        "CMA-ES over the numeric parameters every trial has; categoricals and branch parameters by TPE",
        {"n_startup_trials": int, "sigma0": float, "popsize": int, "use_separable_cma": bool, "with_margin": bool,
         "lr_adapt": bool, "consider_pruned_trials": bool},
        _build_cmaes, refuses=_cmaes_refuses,
    ),
    "qmc": _Kind(
        "quasi-Monte Carlo (Sobol or Halton) space-filling design, for spaces without conditional parameters",
        {"qmc_type": ("sobol", "halton"), "scramble": bool},
        _build_qmc, refuses=_qmc_refuses,
    ),
    "nsga2": _Kind(
        "NSGA-II, for multi-objective studies",
        {"population_size": int, "mutation_prob": float, "crossover_prob": float, "swapping_prob": float},
        _build_nsga2, multi_objective_only=True,
    ),
}


def read_sampler_choice(value: Any, space: Space, *, objectives: int, seed: int) -> SamplerChoice:
    """The study file's `sampler:` (a name, or `{name: NAME, option: value, ...}`), checked: the
    name and options are known, the sampler serves a study with `objectives` objectives and this
    space, and Optuna accepts the options. Raises `SamplerRefused`."""
    if value is None:
        return SamplerChoice()
    accepted = ", ".join(SAMPLERS)
    if isinstance(value, Mapping):
        options = {str(k): v for k, v in value.items() if k != "name"}
        name = value.get("name")
        where = "sampler.name"
    else:
        options, name, where = {}, value, "sampler"
    if not isinstance(name, str) or name not in SAMPLERS:
        shown = "missing" if name is None else f"{name!r} is not a known sampler"
        raise SamplerRefused(where, f"{shown}; accepted: {accepted}, or a mapping {{name: NAME, option: value, ...}}")
    kind = SAMPLERS[name]
    for option, option_value in options.items():
        expected = kind.options.get(option)
        if expected is None:
            allowed = ", ".join(kind.options) or f"none (the {name} sampler takes no options)"
            raise SamplerRefused(f"sampler.{option}", f"unknown option of the {name} sampler; accepted: {allowed}")
        if not _option_fits(option_value, expected):
            wanted = ("one of " + ", ".join(map(str, expected))) if isinstance(expected, tuple) else _TYPE_NAMES[expected]
            raise SamplerRefused(f"sampler.{option}", f"{option_value!r} is not accepted; {option} must be {wanted}")
    if kind.multi_objective_only and objectives == 1:
        raise SamplerRefused(where, (
            f"{name} is for multi-objective studies and this study has one objective; accepted for one objective: "
            + ", ".join(n for n, k in SAMPLERS.items() if not k.multi_objective_only)
        ))
    reason = kind.refuses(space)
    if reason:
        raise SamplerRefused(where, f"{name} cannot serve this study's space: {reason}")
    choice = SamplerChoice(name, options)
    try:
        build_sampler(choice, seed, space)
    except (ValueError, TypeError, ImportError) as error:  # Optuna's own checks of the options
        raise SamplerRefused("sampler", f"{choice.describe()} is refused by Optuna: {error}") from None
    return choice


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false"}


def _option_fits(value: Any, expected: type | tuple[Any, ...]) -> bool:
    if isinstance(expected, tuple):
        return value in expected
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected) and (expected is bool or not isinstance(value, bool))


def build_sampler(choice: SamplerChoice, seed: int, space: Space | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of a study's `sampler:` choice, seeded with the study's seed, for `space`
    (CMA-ES models the numeric parameters every trial of it has; without it, what trials share)."""
    return SAMPLERS[choice.name].build(seed, choice.options, space)
