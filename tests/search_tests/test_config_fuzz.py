"""The study-file parser never crashes: thousands of study files shaped like the schema (the
shipped studies and the test studies, with values swapped for wrong types, out-of-range numbers,
keys dropped or added) are each accepted, or refused with a `StudyFileError` that is one line;
nothing else is raised. An accepted study can be sampled. The CLI gives one `search: error:` line.

Parse only: no data is loaded and nothing is searched.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
from pathlib import Path
from typing import Any
from unittest import mock

import optuna
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import studies
from search.cli import main
from search.config import TOP_LEVEL, StudyFileError, apply_overrides, parse_study
from search.tasks import TASKS, get_task
from spaces import categorical_choices, suggest
from tests.conftest import TINY_SQUAD_STUDY, ner_study_yaml, toy_study_yaml
from trainables.optimization import seed_everything

optuna.logging.set_verbosity(optuna.logging.WARNING)

TOY = yaml.safe_load(toy_study_yaml("sqlite:///fuzz.db"))
BASES = [
    *(yaml.safe_load(studies.path(name).read_text()) for name in studies.names()),
    TOY,
    yaml.safe_load(ner_study_yaml("sqlite:///fuzz.db")),
    yaml.safe_load(TINY_SQUAD_STUDY),
]


def _names_in(value: Any) -> set[str]:
    """Every string key and value of the bases: junk built from them reaches deeper branches."""
    if isinstance(value, dict):
        return {str(k) for k in value} | {n for v in value.values() for n in _names_in(v)}
    if isinstance(value, list):
        return {n for v in value for n in _names_in(v)}
    return {value} if isinstance(value, str) else set()


KNOWN_WORDS = sorted(set().union(*map(_names_in, BASES)) | set(TOP_LEVEL) | set(TASKS) | {"low", "high", "log", "step", "choices", "search", "always", "params"})

scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-300, 0.5, 1.0, 2.0, 1e300, 10**400, -(10**400)])
    | st.text(max_size=6) | st.sampled_from(KNOWN_WORDS)
)
junk = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KNOWN_WORDS) | st.text(max_size=4) | st.integers(0, 3), children, max_size=4),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """`value` with some of its parts dropped, replaced by junk or moved out of range, and keys added."""
    action = draw(st.sampled_from(["keep", "keep", "recurse", "recurse", "recurse", "junk", "edge"]))
    if action == "keep":
        return value
    if action == "junk":
        return draw(junk)
    if action == "edge":
        return draw(_edge(value))
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if draw(st.integers(0, 9)) == 0:
                continue  # a missing key
            result[key] = draw(mutated(item))
        if draw(st.integers(0, 5)) == 0:
            result[draw(st.sampled_from(KNOWN_WORDS) | st.text(max_size=4))] = draw(junk)  # an extra (or repeated) key
        return result
    if isinstance(value, list):
        items = [draw(mutated(item)) for item in value]
        if draw(st.booleans()):
            items.append(draw(scalars))
        return items
    return draw(_edge(value))


def _edge(value: Any) -> st.SearchStrategy[Any]:
    """Out-of-range or wrong-typed variants of a scalar."""
    if isinstance(value, bool):
        return st.sampled_from([not value, 0, 1, "yes", None])
    if isinstance(value, (int, float)):
        variants = [0, -1, -value, value - 1, value + 1, value * 1000, str(value), math.nan, math.inf, -math.inf, True, 2**64, 10**400]
        with contextlib.suppress(OverflowError):  # an integer beyond any float has no half
            variants += [value / 2, float(value)]
        return st.sampled_from(variants)
    if isinstance(value, str):
        return st.sampled_from(["", " ", value.upper(), value + "x", 3, [value], {value: value}])
    return junk


def _locations(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every key and list item in `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [location for key, item in items for location in [(*path, key), *_locations(item, (*path, key))]]


@st.composite
def near_valid(draw: st.DrawFn) -> Any:
    """A base study with one to three places changed: most of the file is right, so the parser
    reaches the field that is not (a file mangled everywhere stops at its first field)."""
    study = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        locations = _locations(study)
        if not locations:
            break
        *parents, key = draw(st.sampled_from(locations))
        parent = functools.reduce(lambda node, step: node[step], parents, study)
        operation = draw(st.sampled_from(["drop", "junk", "edge", "edge", "add"]))
        if operation == "drop":
            del parent[key]
        elif operation == "junk":
            parent[key] = draw(junk)
        elif operation == "edge":
            parent[key] = draw(_edge(parent[key]))
        elif isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(KNOWN_WORDS))] = draw(junk)
        else:
            parent[key] = draw(mutated(parent[key]))
    return study


study_files = st.one_of(near_valid(), near_valid(), near_valid(), st.sampled_from(BASES).flatmap(mutated))


def _check_accepted(config: Any) -> None:
    """What the engine does with an accepted study before any trial runs must work too."""
    budget, asha = config.budget, config.asha
    for value in (budget.cpus_per_trial, budget.gpus_per_trial, budget.checkpoint_every_s, asha.reduction_factor):
        assert math.isfinite(value), config
    assert config.direction in ("maximize", "minimize") and config.metric in get_task(config.task).metrics
    seed_everything(config.seed)
    apply_overrides(config, trials=2, max_epochs=1)
    categorical_choices(config.space)
    suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask(), config.space)


def _with(section: str, **values: Any) -> dict[str, Any]:
    """The toy study with `values` set in `section` ("" for the top level)."""
    study = copy.deepcopy(TOY)
    (study[section] if section else study).update(values)
    return study


# What this test found, kept as fixed examples: each crashed the parser (or was accepted and
# broke the search later) before it was fixed.
@example(_with("", space=[["loss", 2.0], {0: 1}]))  # dict(space) raised ValueError
@example(_with("space", encoder={"choices": None}))  # [*None]: TypeError
@example(_with("space", regularizers={"search": ["l2"], "always": 3}))  # [*3]: TypeError
@example(_with("space", encoder={0: True, "x": 1}))  # sorted() of int and str keys: TypeError
@example(_with("asha", reduction_factor=math.nan))  # accepted; ASHA cannot use it
@example(_with("budget", trials=4, max_epochs=3, resources={"cpu": math.inf, "gpu": 0}))  # accepted
@example(_with("", seed=2**32))  # accepted; np.random.seed refuses it in every trial
@example(_with("asha", reduction_factor=10**400))  # float() of it: OverflowError
@example(_with("space", optimizer={"choices": ["adam"], "params": {"adam": {"lr": 10**400}}}))  # the same, in the space
@example(_with("budget", **{"line\nbreak": 1}))  # a two-line error
@example(_with("", baseline={"optimizer": {"name": {"adam": "adam"}}}))  # a section over a value: TypeError
@example(_with("space", batch_size=[10**400, 64]))  # fitting the baseline's batch to it: OverflowError
@example(_with("", baseline={"optimizer": {"name": "adam", "adam": {"lr": 10**400}}}))  # fitting a huge baseline value into a range: OverflowError
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(study_files)
def test_a_study_file_is_accepted_or_refused_with_a_study_file_error(raw: Any) -> None:
    try:
        config = parse_study(raw, "fuzz.yaml", "fuzz")
    except StudyFileError as error:
        assert str(error).startswith("fuzz.yaml: ") and "\n" not in str(error), str(error)
        return
    _check_accepted(config)


class _Accepted(Exception):
    """Raised in place of the search: the CLI accepted the study file."""


def _no_search(*args: Any, **kwargs: Any) -> None:
    raise _Accepted


@example(text="\x08")  # a YAML reader error: its message had two lines
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.one_of(study_files.map(lambda raw: yaml.safe_dump(raw, sort_keys=False)), st.text(max_size=40)))
def test_the_cli_accepts_a_study_file_or_refuses_it_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    stderr = io.StringIO()
    with mock.patch("search.run_search", _no_search), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["run", str(path)])
        except _Accepted:
            return
    lines = stderr.getvalue().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"search: error: {path}"), stderr.getvalue()
