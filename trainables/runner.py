"""The one trial runner: any task's strategy, trained, reported once per epoch, checkpointed.

It knows nothing about the searcher. It reads its config, trains, and calls `report` with one
flat dict per epoch (plus a checkpoint); under Ray Tune that is `tune.report`, and the encoded
data arrives once through the object store (`tune.with_parameters`). What differs between tasks
is behind `trainables.task.Task`.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from spaces import Registry, Strategy
from spaces.adversarial import ADVERSARIAL
from spaces.averaging import AVERAGING
from spaces.consistency import CONSISTENCY
from spaces.initialization import INITIALIZATION
from spaces.loss_terms import LOSS_TERMS
from trainables.optimization import Optimization, Precision, check_finite, count_parameters, pick_device, seed_everything
from trainables.task import Task, TrialModel

# metrics, checkpoint directory (or None) -> None. Ray's `tune.report` in a search; tests may
# pass a plain function so that the loop runs without Ray.
Reporter = Callable[[dict[str, Any], "str | None"], None]


@dataclass(frozen=True)
class TrialSettings:
    """What a trial needs besides its sampled strategy (same for every trial of a search)."""

    metric: str
    mode: str  # "max" or "min"
    max_epochs: int
    seed: int = 0
    threads: int = 1
    mixed_precision: bool = True  # used on GPU only
    checkpoint: bool = True
    # Checkpoint when this many seconds have passed since the last one (and always after the last
    # epoch): fast epochs are not all written out, slow ones are. 0: after every epoch.
    checkpoint_every_s: float = 0.0
    resume_from: str | None = None  # checkpoint of an interrupted earlier run of this trial


def run_trial(task: Task, config: dict[str, Any], data: Any, settings: TrialSettings, report: Reporter | None = None) -> None:
    """Trains one strategy of `task` for up to `settings.max_epochs`, reporting after every epoch.

    Without `report` it runs as a Ray Tune trial: reports go to Tune, and it resumes from the
    checkpoint Tune hands it (a retry after a lost worker), else from `settings.resume_from`.
    Every task reports its own metrics plus train_loss, the loss terms' mean (train_contrastive_loss),
    epoch, param_count, lr and the same timings: train_seconds, epoch_seconds, trial_seconds
    (training and dev evaluation since this (re)start) and examples_per_second (training).
    """
    report, in_tune = _start(settings, report)
    trial, precision = _build(task, config, data, settings)
    strategy, model = trial.strategy, trial.model
    extras = _Extras.of(task, strategy, model, settings.max_epochs)
    steps_per_epoch = math.ceil(task.train_size(data) / strategy.batch_size)
    optimization = Optimization(strategy, model, settings.max_epochs, steps_per_epoch, precision, task.metrics.get(settings.metric, settings.mode))
    rng = np.random.default_rng(settings.seed)
    modules = {"model": model, "optimization": optimization, "loss": trial.loss}  # what a checkpoint holds
    if extras.average is not None:
        modules["averaging"] = extras.average
    first_epoch = _resume(modules, rng, settings.resume_from) if in_tune else 1
    param_count = count_parameters(model)

    trial_seconds = 0.0
    for epoch in range(first_epoch, settings.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_total, terms_total, examples = 0.0, 0.0, 0
        for step, batch in enumerate(task.train_batches(data, strategy.batch_size, rng)):
            batch = batch.to(trial.device)
            objective, loss, terms = _objective(task, trial, extras, optimization, precision, batch)
            terms_total += terms * len(batch)
            check_finite(objective, epoch, step)
            optimization.backward(objective)
            if extras.adversary is not None:
                def adversarial_backward() -> None:
                    optimization.backward(_objective(task, trial, extras, optimization, precision, batch)[0], accumulate=True)

                extras.adversary.attack(task.embedding_tables(model), adversarial_backward, list(model.parameters()))
            optimization.apply()
            if extras.average is not None:
                extras.average.after_step(model, optimization.optimizer, epoch)
            loss_total += loss.item() * len(batch)
            examples += len(batch)
        train_seconds = time.perf_counter() - started
        if extras.average is not None:
            extras.average.end_epoch(model, epoch)

        dev = task.evaluate(extras.to_evaluate(trial), data, "validation", precision)
        optimization.end_epoch(dev[settings.metric])
        epoch_seconds = time.perf_counter() - started
        trial_seconds += epoch_seconds
        metrics = {
            **dev,
            "train_loss": loss_total / examples,
            "epoch": epoch,
            "param_count": param_count,
            "train_seconds": train_seconds,
            "epoch_seconds": epoch_seconds,
            "trial_seconds": trial_seconds,
            "examples_per_second": examples / train_seconds,
            "lr": optimization.lr,
        }
        if extras.loss_terms:
            metrics["train_contrastive_loss"] = terms_total / examples
        _report_epoch(report, metrics, settings, modules, rng, epoch)


@dataclass
class _Extras:
    """What a strategy adds to the plain loop: loss terms, consistency terms, an adversary on the
    embeddings, weight averaging. Each is absent unless the strategy turns it on."""

    loss_terms: list[Any] = field(default_factory=list)
    consistency: list[Any] = field(default_factory=list)
    adversary: Any = None
    average: Any = None

    @classmethod
    def of(cls, task: Task, strategy: Strategy, model: torch.nn.Module, max_epochs: int) -> _Extras:
        toggles = strategy.toggles
        extras = cls(
            loss_terms=[LOSS_TERMS[name].build(**params) for name, params in toggles.get("loss_terms", {}).items()],
            consistency=[CONSISTENCY[name].build(**params) for name, params in toggles.get("consistency", {}).items()],
            adversary=_built(ADVERSARIAL, strategy, "adversarial"),
            average=_built(AVERAGING, strategy, "averaging"),
        )
        if extras.average is not None:
            extras.average.bind(model, max_epochs)
        return extras

    def to_evaluate(self, trial: TrialModel) -> TrialModel:
        """The trial with the weights to score: the averaged ones under weight averaging."""
        if self.average is None:
            return trial
        return replace(trial, model=self.average.model_to_evaluate(trial.model))


def _built(registry: Registry, strategy: Strategy, family: str) -> Any:
    """The chosen component of an opt-in family, built; None when the family is off or absent."""
    if family not in strategy.choices:
        return None
    name, params = strategy.choice(family)
    build = registry[name].build
    return None if build is None else build(**params)


def _objective(task: Task, trial: TrialModel, extras: _Extras, optimization: Optimization, precision: Precision, batch: Any) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(objective to minimise, the task loss, the loss terms' value) of one batch."""
    with precision.autocast():
        outputs = task.forward(trial.model, batch)
    loss = task.loss(trial, outputs, batch)
    if extras.consistency:  # a second pass with other dropout masks; the task loss is the mean of both
        with precision.autocast():
            second = task.forward(trial.model, batch)
        loss = (loss + task.loss(trial, second, batch)) / 2
    objective = loss + optimization.penalty()
    terms = 0.0
    if extras.loss_terms:
        encodings = task.paired_encodings(outputs, batch)
        for term in extras.loss_terms:
            value = term(*encodings)
            objective = objective + value
            terms += value.item()
    for consistency in extras.consistency:
        objective = objective + consistency(task.class_logits(outputs), task.class_logits(second))
    return objective, loss, terms


def evaluate_checkpoint(task: Task, config: dict[str, Any], data: Any, settings: TrialSettings, checkpoint_dir: str, split: str = "test") -> dict[str, float]:
    """Scores a trial's saved model on a split (the test split for the best trial), with its
    averaged weights when the strategy averages them."""
    trial, precision = _build(task, config, data, settings)
    state = load_state(checkpoint_dir)
    if state is None:
        raise FileNotFoundError(f"no model state in {checkpoint_dir}")
    trial.model.load_state_dict(state["model"])
    extras = _Extras.of(task, trial.strategy, trial.model, settings.max_epochs)
    if extras.average is not None and "averaging" in state:
        extras.average.load_state_dict(state["averaging"])
    return task.evaluate(extras.to_evaluate(trial), data, split, precision)


def _build(task: Task, config: dict[str, Any], data: Any, settings: TrialSettings) -> tuple[TrialModel, Precision]:
    device = pick_device()
    precision = Precision(device, settings.mixed_precision)
    trial = task.build(Strategy.from_config(config), data)
    initialize = _built(INITIALIZATION, trial.strategy, "initialization")
    if initialize is not None:
        initialize(task.from_scratch(trial.model))
    trial.model.to(device)
    trial.loss.to(device)
    trial.device = device
    return trial, precision


def _start(settings: TrialSettings, report: Reporter | None) -> tuple[Reporter, bool]:
    """Threads and seeds for a trial; without `report` it runs under Tune (reports and resumes there).
    Returns the reporter and whether the trial runs under Tune."""
    torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    _checkpoint_clock.reset()
    return (report, False) if report is not None else (_ray_reporter(), True)


def _resume(modules: dict[str, Any], rng: np.random.Generator, resume_from: str | None = None) -> int:
    """Loads the checkpoint Tune hands this trial, else the one of an interrupted earlier run
    (`resume_from`), into `modules` (name -> object with load_state_dict) and `rng`; returns the
    first epoch still to train."""
    with _ray_checkpoint_dir() as directory:
        state = load_state(directory)
    if state is None and resume_from:
        state = load_state(resume_from)
    if state is None:
        return 1
    for name, module in modules.items():
        module.load_state_dict(state[name])
    rng.bit_generator.state = state["rng"]
    return state["epoch"] + 1


def _report_epoch(
    report: Reporter, metrics: dict[str, Any], settings: TrialSettings, modules: dict[str, Any], rng: np.random.Generator, epoch: int,
) -> None:
    """Reports one epoch, with a checkpoint of `modules` and `rng` when one is due."""
    state = None
    if settings.checkpoint and _checkpoint_clock.due(settings, epoch):
        state = {name: module.state_dict() for name, module in modules.items()}
        state.update(rng=rng.bit_generator.state, epoch=epoch)
    with _checkpoint_dir(state) as directory:
        report(metrics, directory)
    if state is not None:
        _checkpoint_clock.written()


class _CheckpointClock:
    """When the running trial last wrote a checkpoint. A worker runs one trial at a time
    (`_start` resets it), so one clock per process is enough."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._last = time.monotonic()

    def due(self, settings: TrialSettings, epoch: int) -> bool:
        return epoch >= settings.max_epochs or time.monotonic() - self._last >= settings.checkpoint_every_s

    def written(self) -> None:
        self._last = time.monotonic()


_checkpoint_clock = _CheckpointClock()


def _ray_reporter() -> Reporter:
    from ray import tune

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=checkpoint)

    return report


def _ray_checkpoint_dir() -> contextlib.AbstractContextManager[str | None]:
    """The directory of the checkpoint Ray restores this trial from, if any."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return contextlib.nullcontext(None)
    return checkpoint.as_directory()


@contextlib.contextmanager
def _checkpoint_dir(state: dict[str, Any] | None) -> Iterator[str | None]:
    """Writes `state` to a temporary directory that lives until the report has copied it."""
    if state is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="trial-ckpt-") as directory:
        torch.save(state, os.path.join(directory, "state.pt"))
        yield directory


def load_state(directory: str | None) -> dict[str, Any] | None:
    """A checkpoint's saved state: state.pt (a trial's checkpoint) or model.pt (what `search train` keeps)."""
    if directory is None:
        return None
    for name in ("state.pt", "model.pt"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return torch.load(path, map_location="cpu", weights_only=False)
    return None
