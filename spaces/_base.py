"""Hyperparameter declarations and component registries.

A component (a loss, an optimizer, an encoder, ...) declares its hyperparameters with default
ranges; a study may override any range, fix any value, or restrict a family to a subset of its
components. Overrides are checked here, against each parameter's hard limits, so that a bad
study file is refused before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class SpaceError(ValueError):
    """A space specification is invalid. `where` is the dotted field path in the study file."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class _Trial(Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: float) -> bool:
    """Not NaN or infinite, and within float range (YAML reads 1e999 as inf, and any digits as an int)."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


@dataclass(frozen=True)
class _Limits:
    """Hard bounds a value must respect whatever the study says (e.g. a learning rate > 0)."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    def describe(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.exclusive_maximum else '<='} {self.maximum:g}")
        return " and ".join(parts) if parts else "any number"

    def admits(self, value: float) -> bool:
        if not _finite(value):
            return False
        if self.minimum is not None:
            if value < self.minimum or (self.exclusive_minimum and value == self.minimum):
                return False
        if self.maximum is not None:
            if value > self.maximum or (self.exclusive_maximum and value == self.maximum):
                return False
        return True


@dataclass(frozen=True)
class Float:
    """A float searched in [low, high] (log-uniform if `log`)."""

    low: float
    high: float
    log: bool = False
    limits: _Limits = field(default_factory=_Limits)
    doc: str = ""

    def suggest(self, trial: _Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def override(self, value: Any, where: str) -> Param:
        if _number(value):
            return Fixed(float(self._check(value, where)))
        low, high, log = _range_form(value, where, self.log, kind="float")
        low, high = self._check(low, where), self._check(high, where)
        _check_log_range(low, high, log, where)
        return Float(low, high, log, self.limits, self.doc)

    def _check(self, value: Any, where: str) -> float:
        if not _number(value) or not self.limits.admits(value):
            raise SpaceError(where, f"{value!r} is out of range; {self.doc or 'this value'} must be {self.limits.describe()}")
        return float(value)

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high, self.log)


@dataclass(frozen=True)
class Int:
    """An integer searched in [low, high] with `step`."""

    low: int
    high: int
    step: int = 1
    log: bool = False
    limits: _Limits = field(default_factory=_Limits)
    doc: str = ""

    def suggest(self, trial: _Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def override(self, value: Any, where: str) -> Param:
        if isinstance(value, int) and not isinstance(value, bool):
            return Fixed(self._check(value, where))
        low, high, log = _range_form(value, where, self.log, kind="int")
        step = value.get("step", self.step) if isinstance(value, Mapping) else self.step
        if not isinstance(step, int) or step < 1:
            raise SpaceError(where, f"step {step!r} must be a positive integer")
        low, high = self._check(low, where), self._check(high, where)
        _check_log_range(low, high, log, where)
        return Int(low, high, step if not log else 1, log, self.limits, self.doc)

    def _check(self, value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not self.limits.admits(value):
            raise SpaceError(where, f"{value!r} is out of range; {self.doc or 'this value'} must be an integer {self.limits.describe()}")
        return value

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high, self.log)


@dataclass(frozen=True)
class Categorical:
    """One of `choices`. `allowed` (if set) bounds what a study may list."""

    choices: tuple[Any, ...]
    allowed: Callable[[Any], bool] | None = None
    doc: str = ""

    def suggest(self, trial: _Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def override(self, value: Any, where: str) -> Param:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise SpaceError(where, "an empty list of choices; give one value to fix it or several to search")
        for item in values:
            if not self._admits(item):
                raise SpaceError(where, f"{item!r} is not accepted; {self.doc or 'accepted values'}: {_choices_text(self.choices)}")
        return Fixed(values[0]) if len(values) == 1 else Categorical(tuple(values), self.allowed, self.doc)

    def _admits(self, item: Any) -> bool:
        if self.allowed is not None:
            return self.allowed(item)
        return item in self.choices and type(item) is type(next(c for c in self.choices if c == item))


@dataclass(frozen=True)
class Fixed:
    """A constant: not sampled, but part of the resolved config."""

    value: Any

    def suggest(self, trial: _Trial, name: str) -> Any:
        return self.value

    def override(self, value: Any, where: str) -> Param:
        raise SpaceError(where, f"this value is fixed at {self.value!r} and cannot be overridden")


Param = Float | Int | Categorical | Fixed


def is_positive_int(value: Any) -> bool:
    """For `Categorical(allowed=...)`: module-level, so spaces stay picklable (Ray saves them)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def positive() -> _Limits:
    """Limits for a strictly positive value such as a learning rate."""
    return _Limits(minimum=0.0, exclusive_minimum=True)


def between(minimum: float, maximum: float, *, exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> _Limits:
    return _Limits(minimum, maximum, exclusive_minimum=exclusive_minimum, exclusive_maximum=exclusive_maximum)


def at_least(minimum: float) -> _Limits:
    return _Limits(minimum=minimum)


def _check_bounds(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low {low} > high {high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low}")


def _range_form(value: Any, where: str, default_log: bool, *, kind: str) -> tuple[Any, Any, bool]:
    """Reads `[low, high]` or `{low, high, log}` and checks low <= high (and > 0 for log)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high, log = value[0], value[1], default_log
    elif isinstance(value, Mapping) and {"low", "high"} <= set(value):
        unknown = set(value) - {"low", "high", "log", "step"}
        if unknown:
            raise SpaceError(where, f"unknown key(s) {sorted(unknown)}; a range accepts low, high, log, step")
        low, high, log = value["low"], value["high"], value.get("log", default_log)
    else:
        raise SpaceError(
            where,
            f"{value!r} is not a {kind} value or range; give a number to fix it, "
            f"[low, high] or {{low: ..., high: ..., log: true}} to search it",
        )
    if not isinstance(log, bool):
        raise SpaceError(where, f"log must be true or false, got {log!r}")
    if not (_number(low) and _number(high)):
        raise SpaceError(where, f"bounds must be numbers, got [{low!r}, {high!r}]")
    if low > high:
        raise SpaceError(where, f"low {low!r} is greater than high {high!r}")
    return low, high, log


def _check_log_range(low: float, high: float, log: bool, where: str) -> None:
    if log and low <= 0:
        raise SpaceError(where, f"a log range needs low > 0, got {low!r}")


def _choices_text(choices: Sequence[Any]) -> str:
    return ", ".join(repr(c) if not isinstance(c, str) else c for c in choices)


@dataclass(frozen=True)
class Component:
    """One entry of a family: its name, its hyperparameters with default ranges, and its builder.

    `supports` says what the component can work with, in its family's terms (a loss: the output
    forms it can score, see `spaces.losses`; a regularizer: where it acts, "loop" or "model").
    A task offers each family some forms (`Offer`); the space refuses a component that supports
    none of them. Empty: it works with whatever the task offers.

    `opt_in`: searched only where a study names it, never as part of an omitted family's "every
    component" (a pretrained encoder needs a model the user chooses, and an optional extra).
    """

    name: str
    params: Mapping[str, Param]
    build: Callable[..., Any] | None = None
    summary: str = ""
    supports: frozenset[str] = frozenset()
    opt_in: bool = False


@dataclass(frozen=True)
class Offer:
    """What a task gives one family's components: `forms`, always or only while the component
    `when = (family, component)` is chosen (NER's loss sees whole distributions under the softmax
    head, gold log-probabilities under the CRF)."""

    forms: frozenset[str]
    when: tuple[str, str] | None = None
    why: str = ""  # what the forms mean here, for the refusal message

    def describe(self) -> str:
        offered = f"offers {', '.join(sorted(self.forms))}"
        return f"{self.when[0]} {self.when[1]!r} {offered}" if self.when else offered


@dataclass(frozen=True)
class Registry:
    """A family of components.

    kind "choice": a strategy uses exactly one component (a loss, an optimizer, ...);
    kind "toggle": a strategy uses any subset (add-ons, regularizers), each switched on or off.
    `opt_in`: a study that does not name the family does not search it (the family is off), so
    that adding such a family changes no existing study.

    `requires = (family, component)`: the family exists only in strategies that choose that
    component (fine-tuning settings only with the `transformer` encoder); otherwise it is not
    sampled and not in the config. The required family must come earlier in the task's families.
    """

    family: str
    kind: Literal["choice", "toggle"]
    components: Mapping[str, Component]
    opt_in: bool = False
    requires: tuple[str, str] | None = None

    def __getitem__(self, name: str) -> Component:
        return self.components[name]

    def names(self) -> list[str]:
        return list(self.components)


def registry(
    family: str, kind: Literal["choice", "toggle"], components: Sequence[Component], *,
    opt_in: bool = False, requires: tuple[str, str] | None = None,
) -> Registry:
    table = {c.name: c for c in components}
    if len(table) != len(components):
        raise ValueError(f"duplicate component names in family {family}")
    return Registry(family, kind, table, opt_in, requires)
