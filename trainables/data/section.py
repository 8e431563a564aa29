"""Data settings: the study-file section reader and the checks the data specs run.

A data spec validates itself in `__post_init__` with the `check_*` helpers, raising `FieldError`s
that name the field; its `from_section` classmethod reads its study-file section with a `Section`
and builds the spec with `Section.build`, so the same checks (the only place a limit is written)
name the field as the file spells it (`data.local.files.dev`). `search.config` turns a
`FieldError` into a `StudyFileError` that adds the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trainables.data.common import SPLIT_NAMES, DataError

CARVABLE_SPLITS = ("validation", "test")
# A carved split may take less than half of train: two of them always leave some to train on.
MAX_CARVE_FRACTION = 0.5


class FieldError(DataError):
    """A data setting is invalid: `field` is its dotted name, `message` the value and what is accepted."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"field `{field}`: {message}")

    def within(self, prefix: str) -> FieldError:
        """The same error with the field named from an enclosing section (`prefix` ends with ".")."""
        return FieldError(f"{prefix}{self.field}", self.message)


# --------------------------------------------------------------------------------------------
# Checks shared by the data specs and `Section`: one wording per rule


def check_minimum(field: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise FieldError(field, f"{value!r} is too small; it must be an integer >= {minimum}")


def check_choice(field: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise FieldError(field, f"{value!r} is not accepted; accepted: {', '.join(choices)}")


def check_split_names(field: str, mapping: Mapping[str, str]) -> None:
    """A split name -> file (or hub split) mapping: known split names, and a train entry."""
    for split in mapping:
        if split not in SPLIT_NAMES:
            raise FieldError(f"{field}.{split}", f"unknown split; accepted: {', '.join(SPLIT_NAMES)}")
    if "train" not in mapping:
        raise FieldError(field, f"no `train` entry in {dict(mapping)!r}; the training split is required")


def check_carve(carve: Mapping[str, float], of_what: str) -> None:
    """A spec's `carve`: validation and/or test, each a fraction of `of_what` in (0, 0.5)."""
    for split, fraction in carve.items():
        field = f"carve.{split}"
        if split not in CARVABLE_SPLITS:
            raise FieldError(field, f"unknown field; accepted here: {', '.join(CARVABLE_SPLITS)}")
        if not fraction > 0:
            raise FieldError(field, f"{fraction!r} is out of range; it must be > 0")
        if fraction >= MAX_CARVE_FRACTION:
            raise FieldError(
                field, f"{fraction!r} is too large; a fraction of {of_what} in (0, {MAX_CARVE_FRACTION:g}) is accepted"
            )


def check_max_examples(limits: Mapping[str, int]) -> None:
    """A spec's `max_examples`: split name -> the first N examples kept, N >= 1."""
    for split, limit in limits.items():
        if split not in SPLIT_NAMES:
            raise FieldError(f"max_examples.{split}", f"unknown field; accepted here: {', '.join(SPLIT_NAMES)}")
        check_minimum(f"max_examples.{split}", limit, 1)


def check_sources(hub: object | None, local: object | None, message: str) -> None:
    if hub is None and local is None:
        raise FieldError("hub", message)


class Section:
    """Typed access to one mapping of a study file; errors are `FieldError`s naming the dotted field.

    A data spec's `from_section` reads its section with it, then builds the spec with `build`, so
    the spec's own checks (the only place its limits live) report the field in the file too.
    """

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data, self.prefix = data, prefix

    def field(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, message: str) -> FieldError:
        return FieldError(self.field(key), message)

    def check_keys(self, accepted: Sequence[str]) -> None:
        for key in self.data:
            if key not in accepted:
                raise self.fail(str(key), f"unknown field; accepted here: {', '.join(accepted)}")

    def section(self, key: str, required: bool = True) -> Section | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "missing; this section is required")
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        return Section(value, f"{self.field(key)}.")

    def string(self, key: str, default: str | None = None, choices: Sequence[str] | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "missing; a string is required" + (f" (one of: {', '.join(choices)})" if choices else ""))
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"{value!r} is not a non-empty string")
        if choices is not None:
            check_choice(self.field(key), value, choices)
        return value

    def optional_string(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.string(key)

    def integer(self, key: str, default: int | None = None, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not an integer" + (f"; it must be an integer >= {minimum}" if minimum is not None else ""))
        if minimum is not None:
            check_minimum(self.field(key), value, minimum)
        if maximum is not None and value > maximum:
            raise self.fail(key, f"{value!r} is too large; it must be an integer <= {maximum}")
        return value

    def number(self, key: str, default: float | None = None, minimum: float | None = None, exclusive: bool = False) -> float:
        value = self.data.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not a number")
        try:
            finite = math.isfinite(value)  # YAML's .nan and .inf are floats; nothing here means them
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            raise self.fail(key, f"{value!r} is not a finite number")
        if minimum is not None and (value < minimum or (exclusive and value == minimum)):
            raise self.fail(key, f"{value!r} is out of range; it must be {'>' if exclusive else '>='} {minimum:g}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not true or false")
        return value

    def string_map(self, key: str, required: bool = False) -> dict[str, str] | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "missing; a mapping of split name -> file is required")
            return None
        if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise self.fail(key, f"{value!r} is not a mapping of names to strings")
        return dict(value)

    def build(self, cls: Callable[..., Any], **values: Any) -> Any:
        """`cls(**values)`, its `FieldError`s naming the field from this section's root."""
        try:
            return cls(**values)
        except FieldError as error:
            raise error.within(self.prefix) from None
