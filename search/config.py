"""Study files: read, validate, and turn into a `StudyConfig` before anything runs.

Every refusal is a `StudyFileError` naming the file, the field, the value and what is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from search.tasks import TASKS, Task, get_task
from spaces import Space, SpaceError, build_space
from trainables.data import LOCAL_FORMATS, HubSource, LocalSource, TextDataSpec
from trainables.ner_data import SCHEMES, ConllSource, HubNerSource, NerDataSpec
from trainables.qa_data import HubSquadSource, QaDataSpec, SquadFiles

DEFAULT_STORAGE = "sqlite:///search.db"
DIRECTIONS = {"maximize": "max", "minimize": "min"}


class StudyFileError(ValueError):
    """A study file (or a command-line override of it) is invalid."""

    def __init__(self, path: str | os.PathLike, field: str, message: str) -> None:
        self.path, self.field, self.message = str(path), field, message
        where = f"field `{field}`: " if field else ""
        super().__init__(f"{path}: {where}{message}")


@dataclass(frozen=True)
class Budget:
    trials: int
    max_epochs: int
    concurrency: int
    cpus_per_trial: float
    gpus_per_trial: float
    # Ray restarts a trial from its last checkpoint this many times when its worker or node is
    # lost. Errors raised by the training code itself are not retried (they would recur).
    max_failures: int = 2
    # A trial checkpoints when this many seconds passed since its last checkpoint, and after its
    # last epoch: a kill costs at most this much work plus the epoch in flight.
    checkpoint_every_s: float = 10.0


@dataclass(frozen=True)
class Asha:
    grace_period: int = 1
    # Ray's default; on SST-2 it trained 38.5% of the epochs where 3 trained 42.0%, same best score
    # (bench/README.md, asha.py).
    reduction_factor: float = 4


@dataclass(frozen=True)
class StudyConfig:
    path: str
    name: str
    task: str
    seed: int
    data: TextDataSpec | NerDataSpec | QaDataSpec
    metric: str
    direction: str  # "maximize" | "minimize"
    budget: Budget
    asha: Asha
    storage: str
    space: Space
    raw_space: Mapping[str, Any]
    raw: Mapping[str, Any]  # the study file as read, recorded in the study (see `fixed_study`)
    # Where Ray keeps trial folders and checkpoints: on a cluster, a path every node reaches
    # (NFS mount, s3://...). None: ./ray_results.
    storage_path: str | None = None

    @property
    def mode(self) -> str:
        return DIRECTIONS[self.direction]

    def get_task(self) -> Task:
        return get_task(self.task)


TOP_LEVEL = ("name", "task", "seed", "data", "metric", "direction", "budget", "asha", "storage", "storage_path", "space")


class _Reader:
    """Typed access to a mapping, with errors that carry the file and the dotted field."""

    def __init__(self, path: str, data: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.data, self.prefix = path, data, prefix

    def field(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, message: str) -> StudyFileError:
        return StudyFileError(self.path, self.field(key), message)

    def check_keys(self, accepted: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in accepted:
                raise self.fail(str(key), f"unknown field; accepted here: {', '.join(accepted)}")

    def section(self, key: str, required: bool = True) -> _Reader | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "missing; this section is required")
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        return _Reader(self.path, value, f"{self.field(key)}.")

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "missing; a string is required" + (f" (one of: {', '.join(choices)})" if choices else ""))
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"{value!r} is not a non-empty string")
        if choices is not None and value not in choices:
            raise self.fail(key, f"{value!r} is not accepted; accepted: {', '.join(choices)}")
        return value

    def optional_string(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.string(key)

    def integer(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not an integer" + (f"; it must be an integer >= {minimum}" if minimum is not None else ""))
        if minimum is not None and value < minimum:
            raise self.fail(key, f"{value!r} is too small; it must be an integer >= {minimum}")
        return value

    def number(self, key: str, default: float | None = None, minimum: float | None = None, exclusive: bool = False) -> float:
        value = self.data.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not a number")
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


SPLITS = ("train", "validation", "test")


def _carve_fractions(reader: _Reader, of_what: str) -> dict[str, float]:
    """The `carve:` section: split -> fraction of `of_what` cut out for it, in (0, 0.5)."""
    carve: dict[str, float] = {}
    carve_reader = reader.section("carve", required=False)
    if carve_reader is not None:
        carve_reader.check_keys(("validation", "test"))
        for split in carve_reader.data:
            fraction = carve_reader.number(split, minimum=0.0, exclusive=True)
            if fraction >= 0.5:
                raise carve_reader.fail(split, f"{fraction!r} is too large; a fraction of {of_what} in (0, 0.5) is accepted")
            carve[split] = fraction
    return carve


def _text_data_spec(reader: _Reader) -> TextDataSpec:
    reader.check_keys(("name", "hub", "local", "carve", "lowercase", "max_length", "min_freq", "max_vocab"))
    hub = None
    hub_reader = reader.section("hub", required=False)
    if hub_reader is not None:
        hub_reader.check_keys(("path", "name", "text", "label", "splits"))
        splits = hub_reader.string_map("splits") or {s: s for s in SPLITS}
        _check_split_names(hub_reader, "splits", splits)
        hub = HubSource(
            path=hub_reader.string("path"), name=hub_reader.optional_string("name"),
            text_column=hub_reader.string("text", "text"), label_column=hub_reader.string("label", "label"),
            splits=splits,
        )
    local = None
    local_reader = reader.section("local", required=False)
    if local_reader is not None:
        local_reader.check_keys(("format", "files", "text", "label"))
        files = local_reader.string_map("files", required=True)
        if local_reader.data["format"] != "aclimdb":
            _check_split_names(local_reader, "files", files)
        local = LocalSource(
            format=local_reader.string("format", choices=LOCAL_FORMATS), files=files,
            text_column=local_reader.string("text", "text"), label_column=local_reader.string("label", "label"),
        )
    if hub is None and local is None:
        raise reader.fail("hub", "a dataset needs `hub` (a hub dataset name) or `local` (files under the data root), or both")
    carve = _carve_fractions(reader, "train")
    return TextDataSpec(
        name=reader.string("name", "dataset"), hub=hub, local=local, carve=carve,
        lowercase=reader.boolean("lowercase", True),
        max_length=reader.integer("max_length", 128, minimum=1),
        min_freq=reader.integer("min_freq", 1, minimum=1),
        max_vocab=reader.integer("max_vocab", 50_000, minimum=2),
    )


def _ner_data_spec(reader: _Reader) -> NerDataSpec:
    reader.check_keys(("name", "hub", "local", "scheme", "lowercase_words", "min_freq", "max_vocab", "max_word_length"))
    hub = None
    hub_reader = reader.section("hub", required=False)
    if hub_reader is not None:
        hub_reader.check_keys(("path", "name", "tokens", "tags", "scheme", "splits"))
        splits = hub_reader.string_map("splits") or {s: s for s in SPLITS}
        _check_split_names(hub_reader, "splits", splits)
        hub = HubNerSource(
            path=hub_reader.string("path"), name=hub_reader.optional_string("name"),
            tokens_column=hub_reader.string("tokens", "tokens"), tags_column=hub_reader.string("tags", "ner_tags"),
            scheme=hub_reader.string("scheme", "iob2", choices=SCHEMES), splits=splits,
        )
    local = None
    local_reader = reader.section("local", required=False)
    if local_reader is not None:
        local_reader.check_keys(("format", "files", "scheme", "token_column", "tag_column"))
        local_reader.string("format", "conll", choices=("conll",))
        files = local_reader.string_map("files", required=True)
        _check_split_names(local_reader, "files", files)
        token_column = local_reader.data.get("token_column", 0)
        tag_column = local_reader.data.get("tag_column", -1)
        for key, value in (("token_column", token_column), ("tag_column", tag_column)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise local_reader.fail(key, f"{value!r} is not a column index (0 = first column, -1 = last)")
        local = ConllSource(files=files, scheme=local_reader.string("scheme", "iob2", choices=SCHEMES), token_column=token_column, tag_column=tag_column)
    if hub is None and local is None:
        raise reader.fail("hub", "a dataset needs `hub` (a hub dataset name) or `local` (files under the data root), or both")
    return NerDataSpec(
        name=reader.string("name", "dataset"), hub=hub, local=local,
        scheme=reader.string("scheme", "iob2", choices=("iob2", "bioes")),
        lowercase_words=reader.boolean("lowercase_words", True),
        min_freq=reader.integer("min_freq", 1, minimum=1),
        max_vocab=reader.integer("max_vocab", 100_000, minimum=2),
        max_word_length=reader.integer("max_word_length", 30, minimum=1),
    )


def _qa_data_spec(reader: _Reader) -> QaDataSpec:
    reader.check_keys((
        "name", "hub", "local", "carve", "max_examples", "max_context_tokens", "max_question_tokens",
        "lowercase_words", "min_freq", "max_vocab", "max_word_length",
    ))
    hub = None
    hub_reader = reader.section("hub", required=False)
    if hub_reader is not None:
        hub_reader.check_keys(("path", "name", "splits"))
        splits = hub_reader.string_map("splits") or {"train": "train", "validation": "validation"}
        _check_split_names(hub_reader, "splits", splits)
        hub = HubSquadSource(path=hub_reader.string("path", "squad"), name=hub_reader.optional_string("name"), splits=splits)
    local = None
    local_reader = reader.section("local", required=False)
    if local_reader is not None:
        local_reader.check_keys(("format", "files"))
        local_reader.string("format", "squad", choices=("squad",))
        files = local_reader.string_map("files", required=True)
        _check_split_names(local_reader, "files", files)
        local = SquadFiles(files=files)
    if hub is None and local is None:
        raise reader.fail("hub", "a dataset needs `hub` (a hub dataset name such as squad) or `local` (SQuAD JSON files under the data root), or both")
    carve = _carve_fractions(reader, "train's articles")
    limits: dict[str, int] = {}
    limits_reader = reader.section("max_examples", required=False)
    if limits_reader is not None:
        limits_reader.check_keys(SPLITS)
        limits = {split: limits_reader.integer(split, minimum=1) for split in limits_reader.data}
    return QaDataSpec(
        name=reader.string("name", "dataset"), hub=hub, local=local, carve=carve, max_examples=limits,
        max_context_tokens=reader.integer("max_context_tokens", 400, minimum=1),
        max_question_tokens=reader.integer("max_question_tokens", 40, minimum=1),
        lowercase_words=reader.boolean("lowercase_words", True),
        min_freq=reader.integer("min_freq", 1, minimum=1),
        max_vocab=reader.integer("max_vocab", 100_000, minimum=3),
        max_word_length=reader.integer("max_word_length", 16, minimum=1),
    )


# How each task's `data:` section is read.
DATA_SECTIONS = {"text_classification": _text_data_spec, "ner": _ner_data_spec, "reading_comprehension": _qa_data_spec}


def parse_data_section(task_name: str, data: Mapping[str, Any], path: str) -> TextDataSpec | NerDataSpec | QaDataSpec:
    """A task's `data:` section (from a study file or an exported config) as its data spec."""
    if not isinstance(data, Mapping):
        raise StudyFileError(path, "data", f"expected a mapping, got {data!r}")
    return DATA_SECTIONS[task_name](_Reader(path, data, "data."))


def _check_split_names(reader: _Reader, key: str, mapping: Mapping[str, str]) -> None:
    for split in mapping:
        if split not in SPLITS:
            raise StudyFileError(reader.path, f"{reader.field(key)}.{split}", f"unknown split; accepted: {', '.join(SPLITS)}")
    if "train" not in mapping:
        raise reader.fail(key, f"no `train` entry in {dict(mapping)!r}; the training split is required")


def _check_storage(path: str, url: str, field: str = "storage") -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise StudyFileError(path, field, f"{url!r} is not a database URL; accepted: an SQLAlchemy URL such as sqlite:///search.db or postgresql+psycopg://user@host/db") from None
    return url


def parse_study(raw: Any, path: str, default_name: str) -> StudyConfig:
    """Validates a study mapping (as read from YAML) and builds its `StudyConfig`."""
    if not isinstance(raw, Mapping):
        raise StudyFileError(path, "", f"a study file must be a mapping of fields ({', '.join(TOP_LEVEL)}), got {type(raw).__name__}")
    top = _Reader(path, raw)
    top.check_keys(TOP_LEVEL)
    task_name = top.string("task", choices=tuple(TASKS))
    task = get_task(task_name)

    metric = top.string("metric", choices=tuple(task.metrics))
    natural = "maximize" if task.metrics[metric] == "max" else "minimize"
    direction = top.string("direction", natural, choices=tuple(DIRECTIONS))
    if direction != natural:
        raise top.fail("direction", f"{direction!r} contradicts the metric: {metric} is to {natural}")

    budget_reader = top.section("budget")
    budget_reader.check_keys(("trials", "max_epochs", "concurrency", "resources", "max_failures", "checkpoint_every_s"))
    resources = budget_reader.section("resources", required=False) or _Reader(path, {}, "budget.resources.")
    resources.check_keys(("cpu", "gpu"))
    gpus = resources.number("gpu", 0, minimum=0.0)
    if gpus > 1 and not gpus.is_integer():
        raise resources.fail("gpu", f"{gpus!r}: above 1, GPUs per trial must be a whole number (fractions share one GPU: 0.25, 0.5)")
    budget = Budget(
        trials=budget_reader.integer("trials", minimum=1),
        max_epochs=budget_reader.integer("max_epochs", minimum=1),
        concurrency=budget_reader.integer("concurrency", 1, minimum=1),
        cpus_per_trial=resources.number("cpu", 1, minimum=0.0, exclusive=True),
        gpus_per_trial=gpus,
        max_failures=budget_reader.integer("max_failures", 2, minimum=0),
        checkpoint_every_s=budget_reader.number("checkpoint_every_s", 10.0, minimum=0.0),
    )

    asha_reader = top.section("asha", required=False) or _Reader(path, {}, "asha.")
    asha_reader.check_keys(("grace_period", "reduction_factor"))
    asha = Asha(
        grace_period=asha_reader.integer("grace_period", Asha.grace_period, minimum=1),
        reduction_factor=asha_reader.number("reduction_factor", Asha.reduction_factor, minimum=2),
    )

    space_spec = raw.get("space") or {}
    try:
        space = build_space(space_spec, task.registries)
    except SpaceError as error:
        raise StudyFileError(path, error.where, error.message) from None

    config = StudyConfig(
        path=path,
        name=top.string("name", default_name),
        task=task_name,
        seed=top.integer("seed", 0, minimum=0),
        data=parse_data_section(task_name, top.section("data").data, path),
        metric=metric,
        direction=direction,
        budget=budget,
        asha=asha,
        storage=_check_storage(path, top.string("storage", DEFAULT_STORAGE)),
        space=space,
        raw_space=dict(space_spec),
        raw=dict(raw),
        storage_path=top.optional_string("storage_path"),
    )
    return check_consistency(config)


def check_consistency(config: StudyConfig) -> StudyConfig:
    """Checks that span several fields; run again after command-line overrides."""
    if config.asha.grace_period > config.budget.max_epochs:
        raise StudyFileError(
            config.path, "asha.grace_period",
            f"{config.asha.grace_period} is larger than budget.max_epochs ({config.budget.max_epochs}); "
            "ASHA's grace period must be at most the number of epochs",
        )
    return config


def load_study_file(path: str | os.PathLike) -> StudyConfig:
    """Reads and validates a study file; raises `StudyFileError` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyFileError(path, "", "no such file; give the path of a study file such as studies/demo.yaml") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StudyFileError(path, "", f"cannot be read: {error}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise StudyFileError(path, "", f"is not valid YAML{where}: {problem}") from None
    return parse_study(raw, str(path), default_name=path.stem)


# The public name (`from search import load_study`); `load_study_file` stays for existing callers.
load_study = load_study_file


def apply_overrides(
    config: StudyConfig,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    trials: int | None = None,
    max_epochs: int | None = None,
    concurrency: int | None = None,
    storage_path: str | None = None,
) -> StudyConfig:
    """Command-line flags override the study file; they are validated the same way."""
    flags = {"--trials": trials, "--max-epochs": max_epochs, "--concurrency": concurrency}
    for flag, value in flags.items():
        if value is not None and value < 1:
            raise StudyFileError(config.path, flag, f"{value} is too small; it must be an integer >= 1")
    budget = replace(
        config.budget,
        trials=trials or config.budget.trials,
        max_epochs=max_epochs or config.budget.max_epochs,
        concurrency=concurrency or config.budget.concurrency,
    )
    asha = config.asha
    if max_epochs is not None and asha.grace_period > max_epochs:
        asha = replace(asha, grace_period=max_epochs)  # the user asked for fewer epochs: honour it
    if study_name is not None and not study_name.strip():
        raise StudyFileError(config.path, "--study-name", "an empty study name")
    return check_consistency(replace(
        config,
        storage=_check_storage(config.path, storage, "--storage") if storage else config.storage,
        name=study_name or config.name,
        budget=budget,
        asha=asha,
        storage_path=storage_path or config.storage_path,
    ))


def fixed_space(config: Mapping[str, Any]) -> dict[str, Any]:
    """A study `space:` that fixes every value of a trial's resolved config (its user attribute)."""
    space: dict[str, Any] = {}
    for family, entry in config.items():
        if family == "train":
            space["batch_size"] = entry["batch_size"]
        elif family == "model":
            space["embedding_dim"] = entry["embedding_dim"]
        elif "name" in entry:
            name = entry["name"]
            space[family] = {"choices": [name], "params": {name: dict(entry.get(name, {}))}} if entry.get(name) else name
        else:
            enabled = {name: {k: v for k, v in params.items() if k != "enabled"} for name, params in entry.items() if params.get("enabled")}
            space[family] = {"search": [], "always": list(enabled), "params": {n: p for n, p in enabled.items() if p}}
    return space


def fixed_study(study: Mapping[str, Any], config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The recorded study file with its space fixed to one trial's config: one trial to retrain."""
    fixed = {k: v for k, v in study.items() if k != "space"}
    fixed["name"] = name
    fixed["budget"] = {**study.get("budget", {}), "trials": 1, "concurrency": 1}
    fixed["space"] = fixed_space(config)
    return fixed
