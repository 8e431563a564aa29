"""What a study file says about how its search starts: the trials that run before the sampler
proposes any, and the sampler itself.

- `baseline:` the first trial, trained to the full epoch budget (ASHA never stops it), marked with
  the user attribute `baseline: true`, so every search says what it gained over it. Omitted: the
  task's published baseline for the model class the space can express (`Task.baselines`), fitted
  to the space; `none`: no baseline; a published name (`textcnn`); or a (partial) config, nested as
  the DB's `config` attribute holds it (flat `family/...` names work too), completed from a published
  baseline (`from: NAME`, else the one closest to the space).
- `enqueue:` (partial) configs to run next; what an entry leaves out the sampler draws, as for
  Optuna's `enqueue_trial`. Ordinary trials: ASHA may stop them.
- `warm_start: {study, storage, top}`: the `top` best COMPLETE trials of another study of the same
  task, run next when every one of them is a config this study's space can produce.
- `sampler:` see `search.sampler.SAMPLERS`.
- `startup:` how the first trials after the baseline are chosen: `around_baseline` (the default)
  queues one-family variations of the baseline and derives TPE's random start-up from the budget
  (`startup_plan`); `plain` leaves the start to the sampler (TPE: its first 10 trials at random).

A value the study file writes must lie in the study's space, else the file is refused. Values the
file does not write (the published baseline behind an omitted or partial `baseline:`) are brought
into the space: to the nearest value its range or choices allow, the centre of a range where the
baseline has no value, off for an add-on or regularizer it does not list; each change is recorded
on the trial (`baseline_adapted`). A run enqueues only what the study does not hold yet (one
baseline per study; a config already tried is not tried again), so resuming never repeats them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import yaml

from search.config import StudyConfig, StudyFileError
from search.sampler import SamplerChoice, SamplerRefused, read_sampler_choice, searched_parameters
from spaces import ConfigError, Space, choice_key, enabled_key, flatten, unflatten, with_overrides
from spaces._strategy import GLOBAL_GROUPS

if TYPE_CHECKING:
    import optuna

    from search.tasks import Task

# Trial user attributes: the study's baseline, what was changed to fit it into the space, and where
# another enqueued config came from. Carried over when a trial is re-queued (search.recovery).
BASELINE_ATTR = "baseline"
BASELINE_ADAPTED_ATTR = "baseline_adapted"
QUEUED_ATTR = "queued_from"

FIELDS = ("sampler", "baseline", "enqueue", "warm_start", "startup")

# `startup:` values. Around the baseline: one-family variations of it, then TPE's random start-up
# sized by the budget; plain: the sampler's own start (TPE: 10 random trials), as before.
AROUND_BASELINE = "around_baseline"
PLAIN = "plain"
STARTUPS = (AROUND_BASELINE, PLAIN)
# What a variation records in QUEUED_ATTR begins with this.
VARIATION_SOURCE = "startup variation"


@dataclass(frozen=True)
class QueuedConfig:
    """A config to run before the sampler proposes any."""

    source: str  # what it is, for the log and the DB: "baseline (published textcnn)", "enqueue[0]", ...
    params: dict[str, Any]  # what `study.enqueue_trial` fixes (the sampler draws the rest)
    config: dict[str, Any]  # nested; whole for a baseline or warm start, as written for `enqueue:`
    adapted: tuple[str, ...] = ()  # values of a published baseline changed to fit the space


@dataclass(frozen=True)
class WarmStart:
    """`warm_start:`: the `top` best COMPLETE trials of `study` in `storage` (None: this study's)."""

    study: str
    storage: str | None
    top: int


# --------------------------------------------------------------------------------------------
# Reading the study file's fields


def read_start_controls(config: StudyConfig, raw: Mapping[str, Any], task: Task) -> StudyConfig:
    """`config` with its `sampler`, `baseline`, `enqueue` and `warm_start` read from the study
    file `raw` and checked against the study's space; raises `StudyFileError`."""
    path = config.path
    try:
        sampler = read_sampler_choice(raw.get("sampler"), config.space, objectives=1, seed=config.seed)
    except SamplerRefused as error:
        raise StudyFileError(path, error.field, error.message) from None
    return replace(
        config,
        sampler=sampler,
        baseline=read_baseline(raw.get("baseline"), task, config.space, path),
        enqueue=read_enqueue(raw.get("enqueue"), config.space, path),
        warm_start=read_warm_start(raw.get("warm_start"), path),
        startup=read_startup(raw.get("startup"), path),
    )


def read_baseline(value: Any, task: Task, space: Space, path: str) -> QueuedConfig | None:
    """The `baseline:` field (see the module docstring); None for `none`, or for an omitted
    baseline when the space samples nothing (every trial would be the same)."""
    published = task.baselines
    names = ", ".join(published)
    accepted = f"none, a published baseline of task {task.name} ({names}), or a (partial) config such as {{from: {next(iter(published), 'NAME')}, train: {{batch_size: 32}}}}"
    if value == "none":
        return None
    start: str | None = None
    given: dict[str, Any] = {}
    if isinstance(value, str):
        start = value
    elif isinstance(value, Mapping):
        start = value.get("from")
        if start is not None and not isinstance(start, str):
            raise StudyFileError(path, "baseline.from", f"{start!r} is not the name of a published baseline; accepted: {names}")
        given = flatten({k: v for k, v in value.items() if k != "from"})
    elif value is not None:
        raise StudyFileError(path, "baseline", f"{value!r} is not accepted; accepted: {accepted}")
    if value is None and not (published and searched_parameters(space)):
        return None  # a task that publishes no baseline, or a space whose trials are all the same
    if not published:
        raise StudyFileError(path, "baseline", f"task {task.name} publishes no baseline; accepted: none (or omit it)")
    if start is not None and start not in published:
        field = "baseline" if isinstance(value, str) else "baseline.from"
        raise StudyFileError(path, field, f"{start!r} is not a published baseline of task {task.name}; accepted: {names}")
    name = start or _closest_published(published, space, given)
    try:
        values = flatten(with_overrides(unflatten({**flatten(_all_off(space)), **flatten(published[name])}), given))
    except ConfigError as error:
        raise StudyFileError(path, f"baseline.{_dotted(error.key)}", error.message) from None
    # Written in the file: exactly as written. From a published baseline behind it: fitted to the space.
    exact = set(values) if start is not None else set(given)
    resolved = resolve_in_space(values, space, exact=exact)
    for error in resolved.outside:
        if error.key in given:
            raise StudyFileError(path, f"baseline.{_dotted(error.key)}", error.message)
    if resolved.outside:
        # All at once: the published values this space cannot take, and an override that fits.
        conflicts = "; ".join(f"{e.key} {e.value!r} ({e.rule or e.message})" for e in resolved.outside)
        fitted = {e.key: e.nearest for e in resolved.outside if e.nearest is not None}
        override = yaml.safe_dump(unflatten({**given, **fitted}), default_flow_style=True, width=1000).strip()[1:-1]
        raise StudyFileError(path, "baseline", (
            f"the published {name} baseline has values outside this study's space: {conflicts}; start from it and "
            f"give what this space allows, e.g. `baseline: {{from: {name}, {override}}}`"
        ))
    flat, params, adapted = resolved.flat, resolved.params, resolved.adapted
    if value is None:
        source = f"baseline (task default: published {name})"
    elif given:
        source = f"baseline (the study file's, from published {name})"
    else:
        source = f"baseline (published {name})"
    return QueuedConfig(source, params, unflatten(flat), tuple(adapted))


def read_enqueue(value: Any, space: Space, path: str) -> tuple[QueuedConfig, ...]:
    """The `enqueue:` field: a list of (partial) configs; each value must lie in the space."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(entry, Mapping) and entry for entry in value):
        raise StudyFileError(path, "enqueue", f"{value!r} is not accepted; accepted: a list of (partial) configs such as [{{loss: {{name: focal}}}}]")
    queued = []
    for index, entry in enumerate(value):
        given = flatten(entry)
        try:
            params = resolve_in_space(given, space, exact=set(given)).check().params
        except _OutsideSpace as error:
            raise StudyFileError(path, f"enqueue[{index}].{_dotted(error.key)}", error.message) from None
        # Only what the entry writes is fixed; values the space fixes are not Optuna parameters.
        fixed = {key: params[key] for key in given if key in params}
        queued.append(QueuedConfig(f"enqueue[{index}]", fixed, dict(entry)))
    return tuple(queued)


def read_warm_start(value: Any, path: str) -> WarmStart | None:
    if value is None:
        return None
    accepted = "{study: NAME, storage: URL (default: this study's), top: K (default 5)}"
    if not isinstance(value, Mapping):
        raise StudyFileError(path, "warm_start", f"{value!r} is not accepted; accepted: {accepted}")
    for key in value:
        if key not in ("study", "storage", "top"):
            raise StudyFileError(path, f"warm_start.{key}", f"unknown field; accepted: {accepted}")
    study, storage, top = value.get("study"), value.get("storage"), value.get("top", 5)
    if not isinstance(study, str) or not study.strip():
        raise StudyFileError(path, "warm_start.study", f"{study!r} is not a study name; accepted: {accepted}")
    if storage is not None and not isinstance(storage, str):
        raise StudyFileError(path, "warm_start.storage", f"{storage!r} is not a database URL")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise StudyFileError(path, "warm_start.top", f"{top!r} is not accepted; it must be an integer >= 1")
    return WarmStart(study, storage, top)


def read_startup(value: Any, path: str) -> str:
    """The `startup:` field: `around_baseline` (default) or `plain`."""
    if value is None:
        return AROUND_BASELINE
    if not isinstance(value, str) or value not in STARTUPS:
        hint = " (YAML reads off/no/false as false: write `plain`)" if value is False else ""
        raise StudyFileError(path, "startup", f"{value!r} is not accepted{hint}; accepted: {AROUND_BASELINE} (the default: "
                             f"one-family variations of the baseline first), {PLAIN} (the sampler's own start)")
    return value


def _dotted(key: str) -> str:
    return key.replace("/", ".")


def _all_off(space: Space) -> dict[str, Any]:
    """Every add-on and regularizer switched off (a baseline uses only those it lists), nested."""
    off: dict[str, Any] = {}
    for fam in space.families.values():
        if fam.registry.kind == "toggle":
            off[fam.family] = {name: {"enabled": False} for name in fam.registry.names()}
    return off


def _closest_published(published: Mapping[str, Mapping[str, Any]], space: Space, given: Mapping[str, Any]) -> str:
    """The published baseline to complete a baseline from: first one agreeing with the components
    the study file names, then the one whose components the space offers, the first on a tie."""

    def disagreements(name: str) -> tuple[int, int]:
        config = published[name]
        named = sum(1 for key, value in given.items() if key.endswith("/name") and config.get(key.split("/")[0], {}).get("name") != value)
        unoffered = sum(
            1 for family, entry in config.items()
            if family in space.families and "name" in entry and entry["name"] not in space.families[family].candidates
        )
        return named, unoffered

    return min(published, key=disagreements)


# --------------------------------------------------------------------------------------------
# Bringing a config into a space


class _OutsideSpace(Exception):
    """A value the space cannot take: `rule` is what the space takes there (None: the key is not
    part of the config at all), `nearest` the value fitting would give."""

    def __init__(self, key: str, value: Any, message: str, rule: str | None, nearest: Any) -> None:
        super().__init__(message)
        self.key, self.value, self.message, self.rule, self.nearest = key, value, message, rule, nearest


_MISSING = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: 1 is not True, 64 is 64.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # exact: float() of a huge YAML integer overflows
    if _is_number(a) and _is_number(b):
        return math.isclose(_as_float(a), _as_float(b), rel_tol=1e-9, abs_tol=0.0)
    return type(a) is type(b) and a == b


def _distance(a: int | float, b: int | float) -> float:
    return abs(a - b) if isinstance(a, int) and isinstance(b, int) else abs(_as_float(a) - _as_float(b))


def _as_float(value: int | float) -> float:
    """float(value), or ±inf for an integer too large for a float (YAML reads any digits as an int)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # math.copysign would convert `value` to a float too


class _FittingTrial:
    """Stands in for an Optuna trial while `suggest` walks the space: each value is taken from
    `values`, brought to the nearest one the space allows, else the centre of the range (the first
    of the choices). Records what the sampler would have drawn and what the space accepts there."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.params: dict[str, Any] = {}
        self.accepts: dict[str, str] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.accepts[name] = "one of " + ", ".join(str(c) for c in choices)
        value = self.values.get(name, _MISSING)
        chosen = next((c for c in choices if _same(c, value)), _MISSING)
        if chosen is _MISSING and _is_number(value) and all(_is_number(c) for c in choices):
            chosen = min(choices, key=lambda c: _distance(c, value))
        if chosen is _MISSING:
            chosen = choices[0]
        self.params[name] = chosen
        return chosen

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None) -> float:
        self.accepts[name] = f"a number in [{low:g}, {high:g}]"
        value = self.values.get(name, _MISSING)
        if _is_number(value):
            fitted = min(max(_as_float(value), low), high)
        else:
            fitted = math.sqrt(low * high) if log else (low + high) / 2
        self.params[name] = fitted
        return fitted

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        top = low + (high - low) // step * step
        self.accepts[name] = f"an integer in [{low}, {top}]" + (f" in steps of {step} from {low}" if step > 1 else "")
        value = self.values.get(name, _MISSING)
        if _is_number(value):
            target = min(max(_as_float(value), low), top)
        else:
            target = math.sqrt(low * high) if log else (low + top) / 2
        fitted = min(max(low + round((target - low) / step) * step, low), top)
        self.params[name] = fitted
        return fitted


@dataclass(frozen=True)
class Resolved:
    """What a flat config becomes in a space (see `resolve_in_space`)."""

    flat: dict[str, Any]  # the whole config, fixed values included
    params: dict[str, Any]  # its Optuna parameters: what the sampler would have drawn
    adapted: list[str]  # values changed to fit: `key: old -> new`
    outside: list[_OutsideSpace]  # values of `exact` keys the space cannot take, with the reason

    def check(self) -> Resolved:
        """Raises the first value the space cannot take."""
        if self.outside:
            raise self.outside[0]
        return self


def resolve_in_space(values: Mapping[str, Any], space: Space, *, exact: Collection[str]) -> Resolved:
    """The flat config `values` brought into `space`: a key in `exact` must be taken as it is
    (else it is in `outside`), the others may be fitted."""
    from spaces import suggest

    trial = _FittingTrial(values)
    flat = suggest(trial, space)
    adapted, outside = [], []
    for key, wanted in values.items():
        if key in flat and _same(flat[key], wanted):
            continue
        if key in exact:
            rule = _space_rule(key, flat, trial) if key in flat else None
            outside.append(_OutsideSpace(key, wanted, _why_outside(key, wanted, flat, rule, space), rule, flat.get(key)))
        elif key in flat:
            adapted.append(f"{key}: {wanted!r} -> {flat[key]!r}")
    for key, value in flat.items():
        if key not in values and key in trial.params and not _off_in_opt_in_family(key, value, space):
            adapted.append(f"{key}: (not given) -> {value!r}")
    return Resolved(flat, trial.params, adapted, outside)


def _off_in_opt_in_family(key: str, value: Any, space: Space) -> bool:
    """Whether `key = value` leaves an opt-in family (adversarial, averaging, ...) off: a config that
    does not mention such a family means it off, so that is no adaptation."""
    from spaces import SEPARATOR, choice_key, enabled_key

    family = key.split(SEPARATOR, 1)[0]
    family_space = space.families.get(family)
    if family_space is None or not family_space.registry.opt_in:
        return False
    if key == choice_key(family):
        return family_space.registry[value].build is None  # `none`, `default`: nothing to build
    return any(key == enabled_key(family, name) for name in family_space.registry.names()) and value is False


def _space_rule(key: str, flat: Mapping[str, Any], trial: _FittingTrial) -> str:
    """What the space takes at `key`, a value of the resolved config `flat`."""
    if key in trial.accepts:
        return f"accepted: {trial.accepts[key]}"
    if key.endswith("/enabled"):
        return f"this space has it {'on in every trial (`always`)' if flat[key] else 'off in every trial (neither searched nor in `always`)'}"
    return f"this space fixes it at {flat[key]!r}"


def _why_outside(key: str, wanted: Any, flat: Mapping[str, Any], rule: str | None, space: Space) -> str:
    if rule is not None:
        if isinstance(wanted, str) and rule.startswith(("accepted: a number", "accepted: an integer")):
            return f"{wanted!r} is text, not a number (YAML reads 1e-3 as text: write 1.0e-3 or 0.001); {rule}"
        return f"{wanted!r} is outside this study's space; {rule}"
    family, _, rest = key.partition("/")
    component = rest.split("/")[0]
    known = [*space.families, *dict.fromkeys(GLOBAL_GROUPS.values())]
    if family not in known:
        return f"unknown family; accepted: {', '.join(known)}"
    fam = space.families.get(family)
    if fam is not None and component in fam.registry.components:
        if fam.registry.kind == "choice" and rest.count("/") == 1:
            return (f"a parameter of {family} {component!r}, which this config does not choose ({family} is "
                    f"{flat.get(choice_key(family))!r}); name it: `{family}: {{name: {component}}}`")
        if fam.registry.kind == "toggle" and not flat.get(enabled_key(family, component)):
            return f"a parameter of {component!r}, which is off in this config; switch it on: `{family}: {{{component}: {{enabled: true}}}}`"
    return "not a value of this task's configs (an unknown component or parameter)"


# --------------------------------------------------------------------------------------------
# The start-up phase: one-family variations of the baseline, then the sampler's random draws

# Quantiles of a numeric range a variation moves a parameter to (on the log scale for a log range):
# one on each side of the centre, where fitting puts a value a baseline lacks.
_NUMERIC_MOVES = (0.25, 0.75)


@dataclass(frozen=True)
class StartupPlan:
    """What a study's first trials are (see the README's table for budgets of 8 to 64 trials)."""

    variations: tuple[QueuedConfig, ...]  # one-family variations of the baseline, after it
    random: int  # random draws of the sampler after them
    n_startup_trials: int | None  # TPE's start-up (baseline + variations + random); None: TPE's own 10

    def describe(self, baseline: bool) -> str:
        if self.n_startup_trials is None:
            return "start-up: the sampler's own (startup: plain)"
        parts = (["the baseline"] if baseline else []) + [
            f"{len(self.variations)} one-family variation{'s' if len(self.variations) != 1 else ''} of it",
            f"{self.random} random",
        ]
        return f"start-up: {', '.join(parts)}, then the sampler"


def startup_plan(config: StudyConfig) -> StartupPlan:
    """The start-up of a study of `budget.trials` trials N, `startup: around_baseline`: after the
    baseline, N // 4 one-family variations of it (fewer when the space has fewer) and random draws
    to make N // 4 + N // 8 trials; TPE's `n_startup_trials` counts all of them with the baseline, so
    it models every trial after them (about 60% of the budget)."""
    if config.startup == PLAIN:
        return StartupPlan((), 0, None)
    trials = config.budget.trials
    variations = one_family_variations(config.baseline, config.space, trials // 4, config.seed) if config.baseline else ()
    random = trials // 4 + trials // 8 - len(variations)
    return StartupPlan(variations, random, max(1, int(config.baseline is not None) + len(variations) + random))


def effective_sampler(config: StudyConfig) -> SamplerChoice:
    """The study's sampler as it is built: TPE's `n_startup_trials` from the start-up plan unless
    the study file's `sampler:` gives it (an explicit option wins)."""
    choice = config.sampler or SamplerChoice()
    if choice.name != "tpe" or "n_startup_trials" in choice.options:
        return choice
    derived = startup_plan(config).n_startup_trials
    return choice if derived is None else SamplerChoice("tpe", {**choice.options, "n_startup_trials": derived})


def one_family_variations(baseline: QueuedConfig, space: Space, count: int, seed: int) -> tuple[QueuedConfig, ...]:
    """Up to `count` configs of `space` that differ from `baseline` in one family (or one global)
    each: another component of a choice family, an add-on or regularizer switched, a parameter of
    the baseline's components moved to a quartile of its range, another batch size. Space-filling
    over the families: their order is a seeded shuffle, and every family varies once before any
    varies twice; a family's moves come in a seeded order."""
    import random

    if count <= 0:
        return ()
    flat = flatten(baseline.config)
    rng = random.Random(seed)
    moves = _moves(flat, space)
    families = sorted(moves)
    rng.shuffle(families)
    for family in families:
        rng.shuffle(moves[family])
    chosen: list[QueuedConfig] = []
    seen = [baseline.params]
    for round_ in range(max((len(m) for m in moves.values()), default=0)):
        for family in families:
            if round_ >= len(moves[family]) or len(chosen) == count:
                continue
            changes = moves[family][round_]
            resolved = resolve_in_space({**flat, **changes}, space, exact=set(changes))
            if resolved.outside or any(_same_params(resolved.params, p) for p in seen):
                continue  # an integer move that rounds back to the baseline's value
            seen.append(resolved.params)
            what = ", ".join(f"{key} {flat.get(key, '(none)')!r} -> {value!r}" for key, value in changes.items())
            chosen.append(QueuedConfig(f"{VARIATION_SOURCE}: {what}", resolved.params, unflatten(resolved.flat)))
    return tuple(chosen)


def _moves(flat: Mapping[str, Any], space: Space) -> dict[str, list[dict[str, Any]]]:
    """Each family's (and global's) one-value changes of the flat config `flat` within `space`."""
    from spaces import Categorical, Float, Int, param_key

    def numeric(key: str, param: Any) -> list[dict[str, Any]]:
        if isinstance(param, Categorical):
            return [{key: c} for c in param.choices if not _same(c, flat.get(key))]
        if isinstance(param, (Float, Int)) and param.low < param.high:
            if param.log:
                values = [math.exp(math.log(param.low) + q * (math.log(param.high) - math.log(param.low))) for q in _NUMERIC_MOVES]
            else:
                values = [param.low + q * (param.high - param.low) for q in _NUMERIC_MOVES]
            if isinstance(param, Int):
                return [{key: min(param.low + round((v - param.low) / param.step) * param.step, param.high)} for v in values]
            return [{key: float(f"{v:.3g}")} for v in values]  # 3 digits: readable, and still inside the range
        return []

    moves: dict[str, list[dict[str, Any]]] = {}
    for fam in space.families.values():
        family = fam.family
        found: list[dict[str, Any]] = []
        if fam.registry.kind == "choice":
            current = flat.get(choice_key(family))
            if current is None:
                continue  # a family this config does not have (fine-tuning without a transformer)
            found += [{choice_key(family): other} for other in fam.candidates if other != current]
            active = [current]
        else:
            found += [{enabled_key(family, name): not flat.get(enabled_key(family, name))} for name in fam.candidates]
            active = [name for name in (*fam.candidates, *fam.always) if flat.get(enabled_key(family, name))]
        for name in active:
            for pname, param in fam.params[name].items():
                found += numeric(param_key(family, name, pname), param)
        if found:
            moves[family] = found
    for key, param in space.globals.items():
        found = numeric(key, param)
        if found:
            moves[key] = found
    return moves


# --------------------------------------------------------------------------------------------
# Warm starts: another study's best trials


def load_warm_start(config: StudyConfig) -> tuple[QueuedConfig, ...]:
    """The warm start's configs, best first; refused (StudyFileError) when the other study is of
    another task, or one of its trials is a config this study's space cannot produce."""
    import optuna
    from optuna.trial import TrialState

    warm = config.warm_start
    if warm is None:
        return ()
    from search.engine import display_url, open_storage

    url = warm.storage or config.storage
    where = "warm_start.study"
    if warm.study == config.name and url == config.storage:
        raise StudyFileError(config.path, where, f"{warm.study!r} is this study itself; name another study to start from")
    _check_database_exists(config.path, url)
    storage = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if warm.study not in names:
        raise StudyFileError(config.path, where, f"no study {warm.study!r} in {display_url(url)}; studies there: {', '.join(names) or 'none'}")
    other = optuna.load_study(study_name=warm.study, storage=storage)
    task = other.user_attrs.get("task")
    if task != config.task:
        found = f"a {task} study" if task else "not a study `search run` created (it records no task)"
        raise StudyFileError(config.path, where, f"{warm.study!r} is {found}; a warm start needs a {config.task} study")
    completed = [t for t in other.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not completed:
        raise StudyFileError(config.path, where, f"{warm.study!r} has no COMPLETE trial to start from")
    completed.sort(key=lambda t: t.value, reverse=other.direction == optuna.study.StudyDirection.MAXIMIZE)
    metric = other.user_attrs.get("metric", "value")
    queued = []
    for trial in completed[: warm.top]:
        values = flatten(trial.user_attrs["config"]) if isinstance(trial.user_attrs.get("config"), dict) else dict(trial.params)
        try:
            resolved = resolve_in_space(values, config.space, exact=set(values)).check()
        except _OutsideSpace as error:
            raise StudyFileError(config.path, where, (
                f"trial {trial.number} of {warm.study!r} is outside this study's space: {error.key} {error.message}; "
                "a warm start needs configs this space can produce (widen the space, or lower warm_start.top)"
            )) from None
        source = f"warm_start: study {warm.study!r} trial {trial.number} ({metric} {trial.value:.4f})"
        queued.append(QueuedConfig(source, resolved.params, unflatten(resolved.flat)))
    return tuple(queued)


def _check_database_exists(path: str, url: str) -> None:
    """An SQLite file named by a warm start must exist (opening it would create an empty one)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and not Path(parsed.database).exists():
        raise StudyFileError(path, "warm_start.storage", f"no database at {parsed.database!r}; give the storage URL of the study to start from")


# --------------------------------------------------------------------------------------------
# Enqueueing, once per study


def queue_first_trials(
    study: optuna.Study, config: StudyConfig, warm: Sequence[QueuedConfig], remaining: int, log: Callable[[str], None],
) -> int:
    """Enqueues the baseline, then `enqueue:`, then the warm start, what the study does not hold
    yet, in the slots the budget leaves this run (re-queued trials go first), and on the study's
    first run the start-up's one-family variations of the baseline in the slots left after them.
    Returns how many."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    # Variations only while the study is new: a resumed or enlarged study is past its start-up.
    variations = startup_plan(config).variations if not trials else ()
    slots = remaining - sum(1 for t in trials if t.state == TrialState.WAITING)
    wanted: list[tuple[QueuedConfig, dict[str, Any]]] = []
    baselines = [t for t in trials if t.user_attrs.get(BASELINE_ATTR)]
    if config.baseline is not None and not baselines:
        attrs: dict[str, Any] = {BASELINE_ATTR: True}
        if config.baseline.adapted:
            attrs[BASELINE_ADAPTED_ATTR] = list(config.baseline.adapted)
        wanted.append((config.baseline, attrs))
    elif config.baseline is not None and not _same_params(baselines[0].params, config.baseline.params):
        log(f"note: the study's baseline is trial {baselines[0].number} (from an earlier run); the study file's "
            "baseline differs and is not run (one baseline per study: use another --study-name to change it)")
    wanted += [(queued, {QUEUED_ATTR: queued.source}) for queued in (*config.enqueue, *warm)]
    added = 0
    for position, (queued, attrs) in enumerate(wanted):
        if slots <= 0:
            log(f"note: {len(wanted) - position} queued configs wait for a larger budget (budget.trials {config.budget.trials})")
            break
        before = len(study.get_trials(deepcopy=False))
        study.enqueue_trial(queued.params, user_attrs=attrs, skip_if_exists=True)  # a config already tried is not tried again
        if len(study.get_trials(deepcopy=False)) == before:
            continue
        slots -= 1
        added += 1
        adapted = f"; fitted to the space: {', '.join(queued.adapted)}" if attrs.get(BASELINE_ATTR) and queued.adapted else ""
        log(f"queued: trial {before}, {queued.source}{adapted}")
    for queued in variations[:max(0, slots)]:  # sized to the budget: what does not fit is dropped
        before = len(study.get_trials(deepcopy=False))
        study.enqueue_trial(queued.params, user_attrs={QUEUED_ATTR: queued.source}, skip_if_exists=True)
        if len(study.get_trials(deepcopy=False)) > before:
            added += 1
            log(f"queued: trial {before}, {queued.source}")
    return added


def _same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


def record_sampler(study: optuna.Study, config: StudyConfig, log: Callable[[str], None]) -> None:
    """The study's user attribute `sampler` (name and options): this run's; a change is logged."""
    described = effective_sampler(config).describe()
    recorded = study.user_attrs.get("sampler")
    if recorded is not None and recorded != described:
        log(f"note: sampler {described} now; earlier runs of this study used {recorded}")
    if recorded != described:
        study.set_user_attr("sampler", described)


# --------------------------------------------------------------------------------------------
# What the search gained over its baseline


@dataclass(frozen=True)
class BaselineComparison:
    """The study's baseline trial against its best trial, on dev and, where scored, on test."""

    metric: str
    maximize: bool
    baseline_trial: int
    baseline_state: str
    baseline_value: float | None  # None: the baseline did not complete
    best_trial: int | None
    best_value: float | None
    baseline_test: float | None = None
    best_test: float | None = None

    @property
    def beaten(self) -> bool:
        if self.baseline_value is None or self.best_value is None or self.best_trial == self.baseline_trial:
            return False
        return self.best_value > self.baseline_value if self.maximize else self.best_value < self.baseline_value

    def lines(self) -> list[str]:
        """`baseline X, best Y (+Z)` on dev, and on test when both are scored; or why there is none."""
        head = f"baseline (trial {self.baseline_trial}):"
        if self.baseline_value is None or self.best_value is None:
            return [f"{head} {self.baseline_state}, no {self.metric} to compare with"]
        text = f"{head} dev {self.metric} baseline {self.baseline_value:.4f}, best {self.best_value:.4f} ({self.best_value - self.baseline_value:+.4f})"
        if self.baseline_test is not None and self.best_test is not None:
            text += f"; test baseline {self.baseline_test:.4f}, best {self.best_test:.4f} ({self.best_test - self.baseline_test:+.4f})"
        if self.beaten:
            return [text + f", best is trial {self.best_trial}"]
        return [text, f"the search did not beat the baseline: trial {self.baseline_trial} is the best"
                if self.best_trial == self.baseline_trial else "the search did not beat the baseline"]


def compare_with_baseline(study: optuna.Study) -> BaselineComparison | None:
    """The comparison for a study with a baseline trial (the latest one), else None."""
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    baselines = [t for t in trials if t.user_attrs.get(BASELINE_ATTR) and t.state != TrialState.WAITING]
    if not baselines:
        return None
    # A re-queued baseline has a FAIL copy before it; the latest one is the one that ran.
    baseline = baselines[-1]
    completed = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = (max if maximize else min)(completed, key=lambda t: t.value) if completed else None
    done = baseline.state == TrialState.COMPLETE
    tests = {name: study.user_attrs.get(name) or {} for name in ("baseline_test", "best_trial_test")}
    metric = study.user_attrs.get("metric", "value")

    def test_score(trial_number: int | None) -> float | None:
        for scored in tests.values():
            if scored.get("trial") == trial_number and metric in scored:
                return float(scored[metric])
        return None

    return BaselineComparison(
        metric=metric, maximize=maximize, baseline_trial=baseline.number, baseline_state=baseline.state.name,
        baseline_value=baseline.value if done else None,
        best_trial=best.number if best else None, best_value=best.value if best else None,
        baseline_test=test_score(baseline.number), best_test=test_score(best.number if best else None),
    )
