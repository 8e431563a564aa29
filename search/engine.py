"""The engine: one study file in, a Ray Tune search recorded in an Optuna study out.

Order matters for safety: the data is loaded and the storage checked before the study is created
or touched, so that a bad input leaves the database as it was.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search import lease, recovery
from search.config import StudyConfig, StudyFileError
from search.start import BaselineComparison, compare_with_baseline, effective_sampler, load_warm_start, queue_first_trials, record_sampler
from search.resilient_storage import ResilientRDBStorage
from search.trial import guard_trial
from spaces import Strategy, categorical_choices, suggest
from trainables.runner import TrialSettings
from trainables.data import DataError, FieldError
from trainables.teacher import attach_teacher

if TYPE_CHECKING:  # Ray is imported only once a search runs
    from ray.tune import ResultGrid, Tuner
    from ray.tune.schedulers import ASHAScheduler

    from search.searcher import RecordingOptunaSearch
    from search.tasks import Task


class SearchError(RuntimeError):
    """A problem with the environment of a search (storage, existing study, cluster)."""


@dataclass
class SearchSummary:
    study_name: str
    storage: str
    states: dict[str, int]
    best_value: float | None
    best_trial: int | None
    best_strategy: str | None
    wall_seconds: float
    trials_run: int
    data_source: str = ""
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    time_budget_reached: bool = False  # budget.time_budget_s ran out; the trials cut off are re-queued
    trials_cut_off: int = 0
    test_metrics: dict[str, float] | None = None  # the best trial of this run, on the test split
    baseline: BaselineComparison | None = None  # the study's baseline against its best trial


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage.

    SQLite: writers wait up to 60 s (`$SEARCH_SQLITE_BUSY_S`) for a busy database instead of failing
    at once (past that, the storage's retries take over: `search.resilient_storage`), and the file
    is in WAL mode (see `_sqlite_wal`) so that readers (the dashboard, `search status`) never
    block the search's writes. Servers (PostgreSQL, MySQL): connections are checked before use, so
    that a search outlives a database restart or an idle-connection timeout.
    """
    sqlite = url.startswith("sqlite")
    busy_s = float(os.environ.get("SEARCH_SQLITE_BUSY_S", 60))
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_s}} if sqlite else {"pool_pre_ping": True}
    import sqlalchemy

    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            storage = ResilientRDBStorage(url, engine_kwargs=engine_kwargs, display_url=display_url(url))
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            # Two searches starting at once on a new database both create Optuna's tables; the
            # slower one fails on the server's catalog: the tables exist now, so open it again.
            if attempt == attempts:
                raise SearchError(f"cannot open the storage {display_url(url)}: {type(error).__name__}: {_first_line(error)}") from None
            time.sleep(0.5 * attempt)
        except Exception as error:  # sqlalchemy / driver errors: report them in one line
            raise SearchError(f"cannot open the storage {display_url(url)}: {type(error).__name__}: {_first_line(error)}") from None
    if sqlite:
        _sqlite_wal(storage)
    return storage


def display_url(url: str) -> str:
    """The storage URL with its password masked, for messages and logs."""
    try:
        import sqlalchemy

        return repr(sqlalchemy.engine.make_url(url).render_as_string(hide_password=True))
    except Exception:
        return repr(url)


def _sqlite_wal(storage: optuna.storages.RDBStorage) -> None:
    """WAL journal, synchronous=NORMAL: a commit no longer waits for the disk (fsync), which made
    the driver spend 10-30 ms on each of the ~30 commits a trial makes (bench/scale.py), and readers
    (the dashboard, `search status`) no longer block the search's writes. A crash of the process
    loses nothing; a power cut may lose the last commits."""
    import sqlalchemy

    def pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # connections made while Optuna created its tables get the pragmas too


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def prepare_study(storage: optuna.storages.BaseStorage, config: StudyConfig) -> optuna.Study:
    """Creates the study, or reopens it after checking it is the same kind of search."""
    try:
        existing = optuna.load_study(study_name=config.name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        if existing.direction.name.lower() != config.direction:
            raise SearchError(
                f"study {config.name!r} already exists in {display_url(config.storage)} with direction "
                f"{existing.direction.name.lower()}, but this run asks to {config.direction}; "
                "use another --study-name"
            )
        recorded = existing.user_attrs.get("metric")
        if recorded and recorded != config.metric:
            raise SearchError(
                f"study {config.name!r} already exists in {display_url(config.storage)} with metric {recorded!r}, "
                f"but this run reports {config.metric!r}; use another --study-name"
            )
        _check_space_compatible(existing, config)
        return existing
    study = optuna.create_study(study_name=config.name, storage=storage, direction=config.direction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([config.metric])  # the dashboard then labels values "accuracy", not "Objective 0"
    study.set_user_attr("task", config.task)
    study.set_user_attr("metric", config.metric)
    study.set_user_attr("study_file", config.path)
    study.set_user_attr("max_epochs", config.budget.max_epochs)
    study.set_user_attr("space", _jsonable(config.raw_space))
    study.set_user_attr("study", _jsonable(config.raw))
    return study


def _check_space_compatible(study: optuna.Study, config: StudyConfig) -> None:
    """Optuna refuses, mid-run, a categorical whose choices changed: refuse it now instead."""
    wanted = categorical_choices(config.space)
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            if name not in wanted:
                continue
            recorded = tuple(getattr(distribution, "choices", ()))
            if not isinstance(distribution, optuna.distributions.CategoricalDistribution) or recorded != wanted[name]:
                raise SearchError(
                    f"study {config.name!r} in {display_url(config.storage)} searched {name} over {list(recorded) or distribution}, "
                    f"but {config.path} now asks for {list(wanted[name])}; Optuna cannot change a categorical's "
                    "choices within a study: restore the earlier choices or use another --study-name"
                )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """TPE that models the conditional branches jointly (`group`) and spreads concurrent trials
    apart (`constant_liar`): the space is define-by-run and several trials run at once. It models
    the 50 best and the 200 most recent trials (`BoundedTPESampler`): plain TPE reads every trial
    at every sample, so the driver's cost per trial grew with the study (bench/scale.py)."""
    from search.sampler import SamplerChoice, build_sampler

    return build_sampler(SamplerChoice("tpe"), seed)  # a study file's `sampler:` may choose another


def describe_strategy(config: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": Strategy.from_config(config).summary()}


@dataclass
class _SearchRun:
    """What the steps of `run_search` share once the data and the storage are known to be good."""

    config: StudyConfig
    task: Task
    data: Any
    storage: optuna.storages.RDBStorage
    log: Callable[[str], None]

    @property
    def data_source(self) -> str:
        return getattr(self.data, "source", "")


@dataclass
class _Tuning:
    """Ray Tune's tuner for this run, with the searcher that records its trials in the study and
    the settings every trial trains with (the best trial is scored on test with them too)."""

    tuner: Tuner
    searcher: RecordingOptunaSearch
    settings: TrialSettings


def run_search(
    config: StudyConfig,
    *,
    data_root: str | os.PathLike | None = None,
    storage_path: str | os.PathLike | None = None,
    address: str | None = None,
    ray_temp_dir: str | os.PathLike | None = None,
    trainable: Callable[..., None] | None = None,
    verbose: int = 1,
    ray_dashboard: bool = False,
    log: Callable[[str], None] = print,
) -> SearchSummary:
    """Runs (or continues) the study described by `config` and returns what the DB holds after.

    `address`: an existing Ray cluster (`auto`, `HOST:PORT` or `ray://HOST:PORT`); None starts a
    local Ray. `storage_path` (else the study's `storage_path`, else ./ray_results): where trial
    folders and checkpoints go; on a cluster, a path every node reaches. `verbose`: 0 no progress
    lines, 1 progress lines, 2 also Ray's own output (its banners, log lines and the trials' logs).
    `ray_dashboard`: start Ray's dashboard with the local Ray (needs `ray[default]`).
    """
    started = time.perf_counter()
    task = config.get_task()
    if address:
        check_ray_address(address)

    # 1) data and storage first: nothing is written before both are known to be good.
    data = _load_data(config, task, data_root, log)
    run = _SearchRun(config, task, data, open_storage(config.storage), log)
    _refuse_if_another_driver_runs(run)
    warm_start = load_warm_start(config)  # refused here, before anything is written, when incompatible

    # 2) Ray: local unless the caller already connected to a cluster.
    with _connect_ray(address, ray_temp_dir, verbose, log, dashboard=ray_dashboard) as cluster_resources, ExitStack() as held:
        resources, notes = _trial_resources(config, cluster_resources)
        for note in notes:
            log(f"note: {note}")

        # 3) The study: created, or reopened after checking it is the same kind of search; the
        # trials a dead driver left RUNNING are failed and re-queued before the budget is counted.
        study = prepare_study(run.storage, config)
        held.callback(_study_lease(run, study).release)  # one driver per study, from here to the end
        recovery.reconcile_orphans(study, log)
        remaining = _trials_to_run(study, config, log)
        if remaining <= 0:
            return summarize(config, run.storage, started, trials_run=0, data_source=run.data_source, notes=notes)
        # The baseline, `enqueue:` and warm-start configs run first, each once per study.
        record_sampler(study, config, log)
        queue_first_trials(study, config, warm_start, remaining, log)

        # 4) The search, then this run's best trial (and baseline) on the test split.
        tuning = _build_tuner(run, resources, remaining, trainable=trainable, storage_path=storage_path, verbose=verbose)
        # A trial cut off before its first report makes Ray warn that it found no metrics; the
        # study records what happened to it (FAIL, re-queued), and the summary says so.
        with _ray_warnings_hidden(verbose < 2, "ray.tune.analysis.experiment_analysis"):
            results, ending = _fit(tuning, config.budget.time_budget_s)
        test_metrics = _score_best_on_test(run, tuning, results)
        _score_baseline_on_test(run, tuning, results)
    summary = summarize(config, run.storage, started, trials_run=remaining, data_source=run.data_source, notes=notes)
    summary.interrupted = ending.interrupted
    summary.time_budget_reached = ending.time_budget_reached
    summary.trials_cut_off = ending.cut_off
    summary.test_metrics = test_metrics
    return summary


def _refuse_if_another_driver_runs(run: _SearchRun) -> None:
    """Stops a second driver of a study before it starts Ray (`_study_lease` decides for good)."""
    try:
        lease.refuse_if_busy(run.storage, run.config.name, f" in {display_url(run.config.storage)}")
    except lease.StudyBusy as error:
        raise SearchError(str(error)) from None


def _study_lease(run: _SearchRun, study: optuna.Study) -> lease.StudyLease:
    """This driver's lease on the study (see `search.lease`): refused, naming the live driver,
    when another runs it; a dead driver's lease is taken over."""
    held = lease.StudyLease(run.storage, study._study_id, study.study_name, where=f" in {display_url(run.config.storage)}")
    try:
        held.acquire()
    except lease.StudyBusy as error:
        raise SearchError(str(error)) from None
    return held


def _load_data(config: StudyConfig, task: Task, data_root: str | os.PathLike | None, log: Callable[[str], None]) -> Any:
    """The task's data, loaded once in the driver; a data error names the study file's field."""
    log(f"data: loading {config.data.name} ...")
    try:
        data = task.load_data(config.data, data_root, config.seed)
    except DataError as error:
        raise DataError(f"{config.path}: field `data`: {error}") from None
    if config.teacher is not None:
        data = load_teacher(config, task, data, data_root)
    log(f"data: {getattr(data, 'source', '')}")
    return data


def load_teacher(config: StudyConfig, task: Task, data: Any, data_root: str | os.PathLike | None) -> Any:
    """`data` with the study teacher's outputs on its training split (computed once, then cached);
    a bad teacher folder names the study file's field."""
    assert config.teacher is not None
    try:
        return attach_teacher(task, config.teacher, data, data_root, config.seed, config.data)[0]
    except FieldError as error:
        raise StudyFileError(config.path, error.field, error.message) from None
    except DataError as error:
        raise DataError(f"{config.path}: field `teacher`: {error}") from None


# Set to 1, a local Ray starts as it did before the lean start (prestarted idle workers, Ray's
# banners and init log lines): bench/startup.py's reference side.
CLASSIC_RAY_START_ENV = "SEARCH_CLASSIC_RAY_START"


@contextmanager
def _connect_ray(
    address: str | None, ray_temp_dir: str | os.PathLike | None, verbose: int, log: Callable[[str], None],
    *, dashboard: bool = False,
) -> Iterator[dict[str, float]]:
    """Ray for the search, yielding the cluster's resources: the cluster at `address`, else a local
    Ray started here (`_start_local_ray`). A Ray the caller already connected to is used as it is
    and left running. Below verbose 2, none of Ray's banners reach the output."""
    import ray

    owns_ray = not ray.is_initialized()
    quiet = verbose < 2 and not _classic_ray_start()
    # glibc gives each thread of a Ray worker its own malloc arena and keeps what trials free:
    # two arenas cut a reused worker's memory by about a third (bench/overhead.py).
    worker_env = {"env_vars": {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}}
    if owns_ray and address:
        try:
            with _ray_warnings_hidden(quiet):
                ray.init(address=address, log_to_driver=verbose >= 2, configure_logging=False, runtime_env=worker_env)
        except Exception as error:  # ConnectionError, version mismatch, ...: one line, no traceback
            hint = ""
            if os.environ.get("RAY_AUTH_MODE") != "token":
                hint = (
                    "; if the cluster uses Ray's token authentication (`ray start --head` turns it on), run with "
                    "RAY_AUTH_MODE=token and its token in ~/.ray/auth_token (or $RAY_AUTH_TOKEN_PATH, or $RAY_AUTH_TOKEN)"
                )
            raise SearchError(f"cannot join the Ray cluster at {address!r}: {type(error).__name__}: {_first_line(error)}{hint}") from None
        log(f"ray: joined the cluster at {address} ({_describe_cluster(ray.cluster_resources())})")
    elif owns_ray:
        _start_local_ray(ray_temp_dir, verbose, worker_env, dashboard=dashboard, log=log)
    try:
        with _tune_banners_hidden(quiet):
            yield ray.cluster_resources()
    finally:
        if owns_ray:
            ray.shutdown()


def _start_local_ray(
    ray_temp_dir: str | os.PathLike | None, verbose: int, worker_env: dict[str, Any], *, dashboard: bool, log: Callable[[str], None],
) -> None:
    """A Ray on this machine for one search, with only what a search uses.

    Ray 2.60 always starts its GCS, raylet, dashboard agent and runtime-env agent (the raylet
    refuses to start without both agents), its autoscaler monitor and log monitor (`ray.init` has
    no option for them), and a dashboard process, which `include_dashboard=False` keeps to a stub
    without the web UI. What is left out: the web dashboard unless asked (`dashboard`), and the
    idle workers Ray prestarts for the first driver, one per CPU: Tune runs every trial in an actor
    with its own runtime environment, which a prestarted worker never matches, so they only took
    memory (about 45 MiB each) and CPU at the start (bench/startup.py).

    Where `ray.init()` finds a Ray to join instead ($RAY_ADDRESS, or a cluster `ray start` left on
    this machine), it joins it as before: the raylet reads the prestart setting from its
    environment when it starts, so it is handed over that way and only a raylet started here sees it.
    """
    import ray

    options: dict[str, Any] = {
        "log_to_driver": verbose >= 2, "runtime_env": worker_env,
        "_temp_dir": str(Path(ray_temp_dir).resolve()) if ray_temp_dir else None,
    }
    if _classic_ray_start():
        ray.init(include_dashboard=False, configure_logging=False, **options)
        return
    if dashboard:
        _require_dashboard_packages()
    with _ray_warnings_hidden(verbose < 2), _environment_default("RAY_prestart_worker_first_driver", "0"):
        context = ray.init(include_dashboard=dashboard, configure_logging=verbose >= 2, **options)
    if dashboard:
        # `ray.init` turns token authentication on for a new local Ray unless told otherwise.
        token = " (it asks for Ray's token: ~/.ray/auth_token unless $RAY_AUTH_TOKEN_PATH says otherwise)" if os.environ.get("RAY_AUTH_MODE") == "token" else ""
        log(f"ray: dashboard at http://{context.dashboard_url}{token}")


def _classic_ray_start() -> bool:
    return os.environ.get(CLASSIC_RAY_START_ENV) == "1"


def _require_dashboard_packages() -> None:
    """Ray's dashboard needs `ray[default]`'s packages; without them `ray.init` fails half-way,
    after starting its GCS. `ray.dashboard.optional_deps` is Ray's own list of them."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401
    except ImportError as error:
        raise SearchError(
            f"--ray-dashboard: Ray's dashboard needs packages this environment lacks ({error}); "
            "install them with pip install 'ray[default]', or run without --ray-dashboard"
        ) from None


@contextmanager
def _ray_warnings_hidden(hidden: bool, logger: str = "ray") -> Iterator[None]:
    """Ray's log lines below ERROR are dropped while `hidden`: at `ray.init`, the token
    authentication notice and the like, which say nothing about the search."""
    ray_logger = logging.getLogger(logger)
    level = ray_logger.level
    if hidden:
        ray_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray_logger.setLevel(level)


@contextmanager
def _tune_banners_hidden(hidden: bool) -> Iterator[None]:
    """Ray Tune's start banners (the "Configuration for experiment" box, where the results are,
    the TensorBoard command) are not printed while `hidden`. They come from Tune's default output
    engine even at `verbose=0`; its legacy engine (`RAY_AIR_NEW_OUTPUT=0`) prints nothing at
    `verbose=0`."""
    if not hidden:
        yield
        return
    with _environment_default("RAY_AIR_NEW_OUTPUT", "0"):
        yield


@contextmanager
def _environment_default(name: str, value: str) -> Iterator[None]:
    """`name=value` in this process's environment (and so in the processes it starts) for the
    duration, unless the user set `name`: their value is kept."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _trials_to_run(study: optuna.Study, config: StudyConfig, log: Callable[[str], None]) -> int:
    """How many trials the budget leaves for this run (0 or less: none); finished trials of earlier
    runs count toward it."""
    finished = sum(1 for t in study.get_trials(deepcopy=False) if recovery.counts_toward_budget(t))
    remaining = config.budget.trials - finished
    if remaining <= 0:
        log(f"study {config.name!r} already has {finished} finished trials (budget {config.budget.trials}); nothing to run")
    elif finished:
        log(f"study {config.name!r}: {finished} finished trials kept; running {remaining} more")
    return remaining


def _build_tuner(
    run: _SearchRun,
    resources: dict[str, float],
    remaining: int,
    *,
    trainable: Callable[..., None] | None,
    storage_path: str | os.PathLike | None,
    verbose: int,
) -> _Tuning:
    """Ray Tune's tuner for `remaining` trials: the study's sampler proposes each one, ASHA stops the
    weak ones, and each runs the task's trainable (or `trainable`) with the data and settings on
    `resources`."""
    from ray import tune

    from search.progress import ProgressPrinter
    from search.searcher import TrialRecorder

    config = run.config
    results_root = _storage_path(storage_path or config.storage_path)
    searcher = _make_searcher(config, run.storage, checkpoint_root=results_root)
    settings = _trial_settings(config)
    progress = [ProgressPrinter(config.metric, config.mode, config.budget.max_epochs, remaining, searcher.trial_number, run.log)] if verbose else []
    runnable = tune.with_parameters(guard_trial(trainable or run.task.trainable), data=run.data, settings=settings)
    runnable = tune.with_resources(runnable, resources)
    tuner = tune.Tuner(
        runnable,
        tune_config=tune.TuneConfig(
            metric=config.metric, mode=config.mode, search_alg=searcher,
            scheduler=_asha_scheduler(config, runs_full_budget=searcher.runs_full_budget),
            num_samples=remaining,
            # Without it a searcher gets one pending trial at a time: trials run one by one.
            max_concurrent_trials=config.budget.concurrency,
            # One worker process per concurrent slot, kept across trials: no torch re-import,
            # no data re-transfer per trial.
            reuse_actors=True,
            time_budget_s=config.budget.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=results_root,
            callbacks=[TrialRecorder(searcher), *progress],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            # Retries lost workers/nodes from the last checkpoint; the trial's own errors are
            # caught by `guard_trial` and never retried.
            failure_config=tune.FailureConfig(max_failures=config.budget.max_failures),
            verbose=0,  # progress comes from ProgressPrinter, one line per event
        ),
    )
    return _Tuning(tuner, searcher, settings)


def _make_searcher(config: StudyConfig, storage: optuna.storages.BaseStorage, checkpoint_root: str | None = None) -> RecordingOptunaSearch:
    """Ray's OptunaSearch on this study, recording in it what actually happened to each trial;
    re-queued trials resume only from checkpoints under `checkpoint_root` (the run's storage path)."""
    from search.sampler import build_sampler
    from search.searcher import RecordingOptunaSearch

    return RecordingOptunaSearch(
        space=functools.partial(suggest, space=config.space),
        metric=config.metric, mode=config.mode,
        sampler=build_sampler(effective_sampler(config), config.seed, config.space),
        study_name=config.name, storage=storage,
        max_epochs=config.budget.max_epochs,
        describe=describe_strategy,
        checkpoint_root=checkpoint_root,
    )


def _trial_settings(config: StudyConfig) -> TrialSettings:
    return TrialSettings(
        metric=config.metric, mode=config.mode, max_epochs=config.budget.max_epochs,
        seed=config.seed, threads=max(1, int(config.budget.cpus_per_trial)),
        checkpoint_every_s=config.budget.checkpoint_every_s,
    )


def _asha_scheduler(config: StudyConfig, runs_full_budget: Callable[[str], bool] | None = None) -> ASHAScheduler:
    """ASHA over epochs; it never stops the trials `runs_full_budget` names (the baseline)."""
    from ray.tune.schedulers import ASHAScheduler

    from search.scheduler import FullBudgetASHA

    if runs_full_budget is not None:
        return FullBudgetASHA(
            runs_full_budget=runs_full_budget, time_attr="epoch", max_t=config.budget.max_epochs,
            grace_period=config.asha.grace_period, reduction_factor=config.asha.reduction_factor,
        )
    return ASHAScheduler(
        # epochs, not Ray iterations: a re-queued trial resumes at epoch k + 1
        time_attr="epoch", max_t=config.budget.max_epochs,
        grace_period=config.asha.grace_period, reduction_factor=config.asha.reduction_factor,
    )


@dataclass(frozen=True)
class _Ending:
    cut_off: int  # trials stopped before they finished, failed and re-queued
    time_budget_reached: bool

    @property
    def interrupted(self) -> bool:
        return self.cut_off > 0 and not self.time_budget_reached


def _fit(tuning: _Tuning, time_budget_s: float | None) -> tuple[ResultGrid, _Ending]:
    """Runs the trials; returns Ray's results and how the run ended."""
    started = time.perf_counter()
    try:
        results = tuning.tuner.fit()
    finally:
        # Ray returns normally after Ctrl-C and after its time budget; trials it cut off are re-queued.
        cut_off = tuning.searcher.close_unfinished()
    reached = time_budget_s is not None and time.perf_counter() - started >= time_budget_s
    return results, _Ending(cut_off, reached)


def _score_best_on_test(run: _SearchRun, tuning: _Tuning, results: ResultGrid | None) -> dict[str, float] | None:
    """The best COMPLETE trial's saved model, scored on the test split; recorded in the study's
    user attribute `best_trial_test`. Only for a best trial of this run (its checkpoint is here)."""
    config = run.config
    if results is None or getattr(run.data, "test", None) is None:
        return None
    study = optuna.load_study(study_name=config.name, storage=run.storage)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return None
    best = study.best_trial
    checkpoint = _checkpoints_by_trial(tuning, results).get(best.number)
    if checkpoint is None:
        run.log(f"test: best trial {best.number} comes from an earlier run; its test score is not computed again")
        return None
    with checkpoint.as_directory() as directory:
        metrics = run.task.evaluate_checkpoint(best.user_attrs["config"], run.data, tuning.settings, directory, "test")
    study.set_user_attr("best_trial_test", {"trial": best.number, **metrics})
    run.log(f"test: best trial {best.number} scores {config.metric} {metrics[config.metric]:.4f} on the test split")
    return metrics



def _checkpoints_by_trial(tuning: _Tuning, results: ResultGrid) -> dict[int | None, Any]:
    """The last checkpoint of each trial of this run, by Optuna trial number."""
    return {
        tuning.searcher.trial_number(result.metrics.get("trial_id")): result.checkpoint
        for result in results
        if result.checkpoint is not None and result.metrics
    }


def _score_baseline_on_test(run: _SearchRun, tuning: _Tuning, results: ResultGrid | None) -> None:
    """The baseline's saved model, scored on the test split when it completed in this run, so that
    the gain over it is measured on test too; recorded in the study's user attribute `baseline_test`."""
    from search.start import BASELINE_ATTR

    if results is None or getattr(run.data, "test", None) is None:
        return
    study = optuna.load_study(study_name=run.config.name, storage=run.storage)
    baselines = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get(BASELINE_ATTR)]
    if not baselines:
        return
    baseline = baselines[-1]
    scored = study.user_attrs.get("best_trial_test") or {}
    if scored.get("trial") == baseline.number:  # the baseline is the best trial: scored already
        study.set_user_attr("baseline_test", scored)
        return
    checkpoint = _checkpoints_by_trial(tuning, results).get(baseline.number)
    if checkpoint is None:
        return
    with checkpoint.as_directory() as directory:
        metrics = run.task.evaluate_checkpoint(baseline.user_attrs["config"], run.data, tuning.settings, directory, "test")
    study.set_user_attr("baseline_test", {"trial": baseline.number, **metrics})
    run.log(f"test: baseline trial {baseline.number} scores {run.config.metric} {metrics[run.config.metric]:.4f} on the test split")


def check_ray_address(address: str) -> None:
    """Fails fast, before anything runs, when a HOST:PORT Ray address does not answer (Ray itself
    would retry for a minute or more). `auto` and `ray://` addresses are left to `ray.init`."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--address {address!r}: expected auto, HOST:PORT (the head's GCS port, 6379 by default) or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as error:
        raise SearchError(
            f"the Ray cluster at {address!r} does not answer ({error.strerror or error}); start its head with "
            f"`ray start --head --port={port}` or give the address `ray start --head` printed"
        ) from None


def _describe_cluster(resources: dict[str, float]) -> str:
    parts = [f"{resources.get('CPU', 0):g} CPUs"]
    if resources.get("GPU"):
        parts.append(f"{resources['GPU']:g} GPUs")
    return ", ".join(parts)


def _storage_path(path: str | os.PathLike | None) -> str:
    text = str(path or "ray_results")
    return text if "://" in text else str(Path(text).resolve())


def _trial_resources(config: StudyConfig, cluster: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Resources per trial for this cluster, and notes on what the user should know.

    A study written for a GPU cluster also runs where there is no GPU at all: its trials then run
    on CPU, and the note says so. A cluster with too few GPUs or CPUs per trial is an error.
    """
    notes = []
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    per_cpu, per_gpu = config.budget.cpus_per_trial, config.budget.gpus_per_trial
    if per_cpu > cpus:
        raise SearchError(f"each trial asks for {per_cpu:g} CPUs (budget.resources.cpu) but the Ray cluster has {cpus:g}; lower it")
    if per_gpu and not gpus:
        notes.append(f"the Ray cluster has no GPU: trials run on CPU (budget.resources.gpu {per_gpu:g} applies where there are GPUs)")
        per_gpu = 0.0
    elif per_gpu > gpus:
        raise SearchError(f"each trial asks for {per_gpu:g} GPUs (budget.resources.gpu) but the Ray cluster has {gpus:g}; lower it or add GPUs")
    fit = int(cpus // per_cpu)
    if per_gpu:
        fit = min(fit, int(gpus // per_gpu))
    if fit < config.budget.concurrency:
        notes.append(
            f"concurrency {config.budget.concurrency} needs {config.budget.concurrency * per_cpu:g} CPUs"
            + (f" and {config.budget.concurrency * per_gpu:g} GPUs" if per_gpu else "")
            + f"; the cluster has {cpus:g} CPUs" + (f" and {gpus:g} GPUs" if per_gpu else "")
            + (f", so at most {fit} trials run at once" if fit != 1 else ", so trials run one at a time")
        )
    return {"cpu": per_cpu, "gpu": per_gpu}, notes


def summarize(
    config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    started: float,
    *,
    trials_run: int,
    data_source: str = "",
    notes: list[str] | None = None,
) -> SearchSummary:
    """What the Optuna DB holds for the study, read back from storage."""
    study = optuna.load_study(study_name=config.name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    best = (max if config.mode == "max" else min)(completed, key=lambda t: t.value) if completed else None
    return SearchSummary(
        study_name=config.name,
        storage=config.storage,
        states=dict(states),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        best_strategy=best.user_attrs.get("strategy") if best else None,
        wall_seconds=time.perf_counter() - started,
        trials_run=trials_run,
        data_source=data_source,
        notes=list(notes or []),
        baseline=compare_with_baseline(study),
    )
