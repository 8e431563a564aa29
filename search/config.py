"""Study files: read, validate, and turn into a `StudyConfig` before anything runs.

Every refusal is a `StudyFileError` naming the file, the field, the value and what is accepted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from search.tasks import TASKS, Task, get_task
from spaces import Space, SpaceError, Strategy, build_space
from spaces.finetuning import pretrained_models
from trainables.data import FieldError, Section
from trainables.data.subwords import with_pretrained
from trainables.teacher import TeacherSpec, read_teacher

if TYPE_CHECKING:
    from search.sampler import SamplerChoice
    from search.start import QueuedConfig, WarmStart

DEFAULT_STORAGE = "sqlite:///search.db"
DIRECTIONS = {"maximize": "max", "minimize": "min"}
# numpy's legacy seeding (np.random.seed, which every trial calls) takes 32-bit seeds only.
MAX_SEED = 2**32 - 1


class StudyFileError(ValueError):
    """A study file (or a command-line override of it) is invalid."""

    def __init__(self, path: str | os.PathLike, field: str, message: str) -> None:
        self.path, self.field, self.message = str(path), field, message
        where = f"field `{_one_line(field)}`: " if field else ""
        super().__init__(f"{path}: {where}{_one_line(message)}")


def _one_line(text: str) -> str:
    """`text` with control characters escaped: a key or value read from the file may hold a
    newline, and the error must stay one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    # Wall-clock seconds for this run's trials (Ray Tune's `time_budget_s`), counted from the start
    # of the first trial; the trials it cuts off are re-queued, and `search resume` continues them.
    time_budget_s: float | None = None


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
    data: Any  # the task's data spec (an instance of `Task.data_spec`)
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
    # How the search starts (search.start): the sampler (None: TPE), the baseline it runs first
    # (None: `baseline: none`), configs to run next, and another study whose best trials run next.
    sampler: SamplerChoice | None = None
    baseline: QueuedConfig | None = None
    enqueue: tuple[QueuedConfig, ...] = ()
    warm_start: WarmStart | None = None
    # `startup:` around_baseline (one-family variations of the baseline, TPE's start-up sized by
    # the budget: search.start.startup_plan) or plain (the sampler's own start).
    startup: str = "around_baseline"
    # The study's teacher (`teacher: {path: FOLDER}`), whose outputs distillation trains towards.
    teacher: TeacherSpec | None = None

    @property
    def mode(self) -> str:
        return DIRECTIONS[self.direction]

    def get_task(self) -> Task:
        return get_task(self.task)


TOP_LEVEL = (
    "name", "task", "seed", "data", "metric", "direction", "budget", "asha", "storage", "storage_path", "space",
    "sampler", "baseline", "enqueue", "warm_start", "startup", "teacher",
)


def parse_data_section(task_name: str, data: Mapping[str, Any], path: str) -> Any:
    """A task's `data:` section (from a study file or an exported config) as its data spec.

    The task's spec class reads and validates its own section (`from_section`); this only adds
    the file to what it refuses.
    """
    if not isinstance(data, Mapping):
        raise StudyFileError(path, "data", f"expected a mapping, got {data!r}")
    try:
        return get_task(task_name).data_spec.from_section(Section(data, "data."))
    except FieldError as error:
        raise StudyFileError(path, error.field, error.message) from None


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
    try:
        config = _parse_fields(Section(raw), raw, path, default_name)
    except FieldError as error:
        raise StudyFileError(path, error.field, error.message) from None
    return check_consistency(with_start_controls(config, raw))


def with_start_controls(config: StudyConfig, raw: Mapping[str, Any]) -> StudyConfig:
    """`config` with what the study file says about how the search starts: `sampler`, `baseline`,
    `enqueue`, `warm_start`, `startup` (search.start), each checked against the study's space."""
    from search.start import read_start_controls

    return read_start_controls(config, raw, config.get_task())


def _parse_fields(top: Section, raw: Mapping[str, Any], path: str, default_name: str) -> StudyConfig:
    top.check_keys(TOP_LEVEL)
    task_name = top.string("task", choices=tuple(TASKS))
    task = get_task(task_name)

    metric = top.string("metric", choices=tuple(task.metrics))
    natural = "maximize" if task.metrics[metric] == "max" else "minimize"
    direction = top.string("direction", natural, choices=tuple(DIRECTIONS))
    if direction != natural:
        raise top.fail("direction", f"{direction!r} contradicts the metric: {metric} is to {natural}")

    budget_reader = top.section("budget")
    budget_reader.check_keys(("trials", "max_epochs", "concurrency", "resources", "max_failures", "checkpoint_every_s", "time_budget_s"))
    resources = budget_reader.section("resources", required=False) or Section({}, "budget.resources.")
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
        time_budget_s=None if budget_reader.data.get("time_budget_s") is None else budget_reader.number("time_budget_s", minimum=0.0, exclusive=True),
    )

    asha_reader = top.section("asha", required=False) or Section({}, "asha.")
    asha_reader.check_keys(("grace_period", "reduction_factor"))
    asha = Asha(
        grace_period=asha_reader.integer("grace_period", Asha.grace_period, minimum=1),
        reduction_factor=asha_reader.number("reduction_factor", Asha.reduction_factor, minimum=2),
    )

    space_spec = raw.get("space")
    space_spec = {} if space_spec is None else space_spec  # `space:` left empty: every default
    teacher = _read_teacher(top, task, path)
    if teacher is None and isinstance(space_spec, Mapping) and "distillation" in space_spec:
        raise top.fail("space.distillation", "distillation needs a teacher, and this study has none: add `teacher: {path: FOLDER}` "
                       "(a folder written by `search train`), or leave distillation out")
    try:
        space = build_space(space_spec, task.registries, offers=task.offers, task=task.name)
    except SpaceError as error:
        raise StudyFileError(path, error.where, error.message) from None

    return StudyConfig(
        path=path,
        name=top.string("name", default_name),
        task=task_name,
        seed=top.integer("seed", 0, minimum=0, maximum=MAX_SEED),
        # The data is tokenized for every pretrained model the space may fine-tune.
        data=with_pretrained(task.data_spec.from_section(top.section("data")), pretrained_models(space)),
        metric=metric,
        direction=direction,
        budget=budget,
        asha=asha,
        storage=_check_storage(path, top.string("storage", DEFAULT_STORAGE)),
        space=space,
        raw_space=dict(space_spec),
        raw=dict(raw) if teacher is None else {**raw, "teacher": {"path": teacher.path}},
        storage_path=top.optional_string("storage_path"),
        teacher=teacher,
    )


def _read_teacher(top: Section, task: Task, path: str) -> TeacherSpec | None:
    """The study's `teacher:` section, its folder checked now when it can be found (a relative path
    under the data root is checked again when the search loads its data)."""
    section = top.section("teacher", required=False)
    if section is None:
        return None
    if type(task).teacher_outputs is Task.teacher_outputs:
        raise top.fail("teacher", f"task {task.name} takes no teacher yet; text_classification does")
    spec = TeacherSpec.from_section(section, str(Path(path).resolve().parent))
    teacher = read_teacher(spec, task.name, None, required=False)
    # Found now: its absolute path, so the recorded study (`search resume`, `export`) finds it from anywhere.
    return spec if teacher is None else TeacherSpec(str(teacher.folder.resolve()), spec.study_dir)


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
        # A reader error (a control character, bad UTF-8) has no `problem`, and several lines.
        problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
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
    time_budget_s: float | None = None,
) -> StudyConfig:
    """Command-line flags override the study file; they are validated the same way."""
    flags = {"--trials": trials, "--max-epochs": max_epochs, "--concurrency": concurrency}
    for flag, value in flags.items():
        if value is not None and value < 1:
            raise StudyFileError(config.path, flag, f"{value} is too small; it must be an integer >= 1")
    if time_budget_s is not None and not (math.isfinite(time_budget_s) and time_budget_s > 0):
        raise StudyFileError(config.path, "--time-budget", f"{time_budget_s:g} is not accepted; it must be a number of seconds > 0")
    budget = replace(
        config.budget,
        trials=trials or config.budget.trials,
        max_epochs=max_epochs or config.budget.max_epochs,
        concurrency=concurrency or config.budget.concurrency,
        time_budget_s=time_budget_s or config.budget.time_budget_s,
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


def fixed_study(study: Mapping[str, Any], config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The recorded study file with its space fixed to one trial's config: one trial to retrain."""
    # One fixed config to train: no baseline, queued configs or sampler choice beside it.
    fixed = {k: v for k, v in study.items() if k not in ("space", "sampler", "baseline", "enqueue", "warm_start", "startup")}
    fixed["baseline"] = "none"
    fixed["name"] = name
    fixed["budget"] = {**study.get("budget", {}), "trials": 1, "concurrency": 1}
    fixed["space"] = Strategy.from_config(config).fixed_space()
    return fixed
