"""The engine: one study file in, a Ray Tune search recorded in an Optuna study out.

Order matters for safety: the data is loaded and the storage checked before the study is created
or touched, so that a bad input leaves the database as it was.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search.config import StudyConfig
from spaces import Strategy, categorical_choices, suggest
from trainables._loop import TrialSettings
from trainables.data import DataError


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
    test_metrics: dict[str, float] | None = None  # the best trial of this run, on the test split


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; SQLite waits for a busy database instead of failing at once, and
    writes in WAL mode (see `_sqlite_wal`)."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        if url.startswith("sqlite"):
            _sqlite_wal(storage)
        return storage
    except Exception as error:  # sqlalchemy / driver errors: report them in one line
        raise SearchError(f"cannot open the storage {url!r}: {type(error).__name__}: {_first_line(error)}") from None


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
                f"study {config.name!r} already exists in {config.storage} with direction "
                f"{existing.direction.name.lower()}, but this run asks to {config.direction}; "
                "use another --study-name"
            )
        recorded = existing.user_attrs.get("metric")
        if recorded and recorded != config.metric:
            raise SearchError(
                f"study {config.name!r} already exists in {config.storage} with metric {recorded!r}, "
                f"but this run reports {config.metric!r}; use another --study-name"
            )
        _check_space_compatible(existing, config)
        return existing
    study = optuna.create_study(study_name=config.name, storage=storage, direction=config.direction)
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
                    f"study {config.name!r} in {config.storage} searched {name} over {list(recorded) or distribution}, "
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
    from search.sampler import BoundedTPESampler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return BoundedTPESampler(window=200, keep_best=50, seed=seed, multivariate=True, group=True, constant_liar=True)


def describe_strategy(config: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": Strategy.from_config(config).summary()}


def run_search(
    config: StudyConfig,
    *,
    data_root: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    ray_temp_dir: str | os.PathLike | None = None,
    trainable: Callable[..., None] | None = None,
    verbose: int = 1,
    log: Callable[[str], None] = print,
) -> SearchSummary:
    """Runs (or continues) the study described by `config` and returns what the DB holds after."""
    started = time.perf_counter()
    task = config.get_task()

    # 1) data and storage first: nothing is written before both are known to be good.
    log(f"data: loading {config.data.name} ...")
    try:
        data = task.load_data(config.data, data_root, config.seed)
    except DataError as error:
        raise DataError(f"{config.path}: field `data`: {error}") from None
    source = getattr(data, "source", "")
    log(f"data: {source}")
    storage = open_storage(config.storage)

    # 2) Ray: local unless the caller already connected to a cluster.
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.progress import ProgressPrinter
    from search.searcher import FailureRecorder, RecordingOptunaSearch

    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(
            include_dashboard=False, log_to_driver=verbose >= 2, configure_logging=False,
            _temp_dir=str(Path(ray_temp_dir).resolve()) if ray_temp_dir else None,
        )
    try:
        resources, notes = _trial_resources(config, ray.cluster_resources())
        for note in notes:
            log(f"note: {note}")

        # 3) The study: created, or reopened after checking it is the same kind of search.
        study = prepare_study(storage, config)
        finished = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
        remaining = config.budget.trials - finished
        if remaining <= 0:
            log(f"study {config.name!r} already has {finished} finished trials (budget {config.budget.trials}); nothing to run")
            return summarize(config, storage, started, trials_run=0, data_source=source, notes=notes)
        if finished:
            log(f"study {config.name!r}: {finished} finished trials kept; running {remaining} more")

        searcher = RecordingOptunaSearch(
            space=functools.partial(suggest, space=config.space),
            metric=config.metric, mode=config.mode,
            sampler=make_sampler(config.seed),
            study_name=config.name, storage=storage,
            max_epochs=config.budget.max_epochs,
            describe=describe_strategy,
        )
        settings = TrialSettings(
            metric=config.metric, mode=config.mode, max_epochs=config.budget.max_epochs,
            seed=config.seed, threads=max(1, int(config.budget.cpus_per_trial)),
        )
        progress = [ProgressPrinter(config.metric, config.mode, config.budget.max_epochs, remaining, searcher.trial_number, log)] if verbose else []
        runnable = tune.with_parameters(trainable or task.trainable, data=data, settings=settings)
        runnable = tune.with_resources(runnable, resources)
        tuner = tune.Tuner(
            runnable,
            tune_config=tune.TuneConfig(
                metric=config.metric, mode=config.mode, search_alg=searcher,
                scheduler=ASHAScheduler(
                    time_attr="training_iteration", max_t=config.budget.max_epochs,
                    grace_period=config.asha.grace_period, reduction_factor=config.asha.reduction_factor,
                ),
                num_samples=remaining,
                # Without it a searcher gets one pending trial at a time: trials run one by one.
                max_concurrent_trials=config.budget.concurrency,
                # One worker process per concurrent slot, kept across trials: no torch re-import,
                # no data re-transfer per trial.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(Path(results_dir or "ray_results").resolve()),
                callbacks=[FailureRecorder(searcher), *progress],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=0,  # progress comes from ProgressPrinter, one line per event
            ),
        )
        results = None
        try:
            results = tuner.fit()
        finally:
            # Ray returns normally after Ctrl-C; trials it cut off are the sign of an interruption.
            interrupted = searcher.close_unfinished() > 0
        test_metrics = _score_best_on_test(config, task, storage, data, settings, results, searcher, log)
    finally:
        if owns_ray:
            ray.shutdown()
    summary = summarize(config, storage, started, trials_run=remaining, data_source=source, notes=notes)
    summary.interrupted = interrupted
    summary.test_metrics = test_metrics
    return summary


def _score_best_on_test(config: StudyConfig, task: Any, storage: Any, data: Any, settings: TrialSettings, results: Any, searcher: Any, log: Callable[[str], None]) -> dict[str, float] | None:
    """The best COMPLETE trial's saved model, scored on the test split; recorded in the study's
    user attribute `best_trial_test`. Only for a best trial of this run (its checkpoint is here)."""
    if results is None or getattr(data, "test", None) is None:
        return None
    study = optuna.load_study(study_name=config.name, storage=storage)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return None
    best = study.best_trial
    checkpoints = {
        searcher.trial_number(result.metrics.get("trial_id")): result.checkpoint
        for result in results
        if result.checkpoint is not None and result.metrics
    }
    checkpoint = checkpoints.get(best.number)
    if checkpoint is None:
        log(f"test: best trial {best.number} comes from an earlier run; its test score is not computed again")
        return None
    with checkpoint.as_directory() as directory:
        metrics = task.evaluate_checkpoint(best.user_attrs["config"], data, settings, directory, "test")
    study.set_user_attr("best_trial_test", {"trial": best.number, **metrics})
    log(f"test: best trial {best.number} scores {config.metric} {metrics[config.metric]:.4f} on the test split")
    return metrics


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
    )
