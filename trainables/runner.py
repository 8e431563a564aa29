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
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from spaces import Registry, Strategy
from spaces.adversarial import ADVERSARIAL
from spaces.augmentation import AUGMENTATION, epoch_rng
from spaces.averaging import AVERAGING
from spaces.compression import COMPRESSION
from spaces.consistency import CONSISTENCY, TWO_PASSES
from spaces.distillation import DISTILLATION
from spaces.initialization import INITIALIZATION
from spaces.loss_terms import LOSS_TERMS
from spaces.optimizers import OPTIMIZERS
from trainables.footprint import measure
from trainables.optimization import Optimization, Precision, check_finite, count_parameters, pick_device, seed_everything
from trainables.task import Task, TrialModel

# metrics, checkpoint directory (or None) -> None. Ray's `tune.report` in a search; tests may
# pass a plain function so that the loop runs without Ray.
Reporter = Callable[[dict[str, Any], "str | None"], None]

# What `search train` writes: the model's weights, as safetensors.
WEIGHTS_FILE = "model.safetensors"
# Result key: why a re-queued trial did not resume from its checkpoint (it trained from the start).
RESUME_NOTE = "resume_note"


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
    # Seconds of timed CPU forward passes per batch size for the latency figures (trainables.footprint);
    # 0: size figures only.
    latency_budget_s: float = 0.5


def run_trial(task: Task, config: dict[str, Any], data: Any, settings: TrialSettings, report: Reporter | None = None) -> None:
    """Trains one strategy of `task` for up to `settings.max_epochs`, reporting after every epoch.

    Without `report` it runs as a Ray Tune trial: reports go to Tune, and it resumes from the
    checkpoint Tune hands it (a retry after a lost worker), else from `settings.resume_from`.
    Every task reports its own metrics plus train_loss, the loss terms' mean (train_contrastive_loss),
    epoch, param_count, lr and the same timings: train_seconds, epoch_seconds, trial_seconds
    (training and dev evaluation since this (re)start) and examples_per_second (training); and what
    the model costs to ship (`trainables.footprint`): model_params, nonzero_params, model_bytes,
    latency_ms_b1 and latency_ms_b32.
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
    first_epoch, resume_note = _resume(modules, rng, settings.resume_from, from_tune=in_tune)
    param_count = count_parameters(model)

    trial_seconds = 0.0
    footprint: dict[str, float] | None = None  # measured once: the architecture does not change
    for epoch in range(first_epoch, settings.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_total, terms_total, examples = 0.0, 0.0, 0
        # Augmentation draws from its own generator (seed, epoch): reproducible, and the shuffle's unchanged.
        augmentation_rng = epoch_rng(settings.seed, epoch)
        train_data = task.augmented(data, extras.augmenters, augmentation_rng) if extras.augmenters else data
        for step, batch in enumerate(task.train_batches(train_data, strategy.batch_size, rng)):
            if extras.mixup is not None:
                batch = task.mixed(batch, extras.mixup, augmentation_rng)
            batch = batch.to(trial.device)
            objective, loss, terms = _objective(task, trial, extras, optimization, precision, batch)
            terms_total += terms * len(batch)
            check_finite(objective, epoch, step)
            optimization.backward(objective)
            if extras.adversary is not None:
                def adversarial_backward() -> None:
                    optimization.backward(_objective(task, trial, extras, optimization, precision, batch)[0], accumulate=True)

                extras.adversary.attack(task.embedding_tables(model), adversarial_backward, list(model.parameters()))
            if optimization.apply() and extras.average is not None:
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
        if footprint is None:
            footprint = measure_footprint(task, extras.to_evaluate(trial).model, data, settings)
        metrics.update(footprint)
        if extras.compression is not None and epoch == settings.max_epochs:
            # The last epoch reports the compressed model (what the trial ships), the trained one beside it.
            compressed, compressed_precision, counted = _compressed(task, trial, extras, data, precision, rng, fine_tune=True)
            metrics.update({f"uncompressed_{key}": value for key, value in (*dev.items(), *footprint.items())})
            metrics.update(task.evaluate(compressed, data, "validation", compressed_precision))
            metrics.update(measure_footprint(task, compressed.model, data, settings, counted=counted))
        if extras.loss_terms:
            metrics["train_contrastive_loss"] = terms_total / examples
        if resume_note is not None:  # the searcher records it on the trial (once: the first epoch)
            metrics[RESUME_NOTE], resume_note = resume_note, None
        _report_epoch(report, metrics, settings, modules, rng, epoch)


def measure_footprint(task: Task, model: torch.nn.Module, data: Any, settings: TrialSettings, *, counted: torch.nn.Module | None = None) -> dict[str, float]:
    """The model's parameters, saved size and CPU latency (`trainables.footprint`) on the task's own batches."""
    return measure(model, task.forward, lambda size: task.example_batch(data, size), settings.latency_budget_s, counted=counted)


@dataclass
class _Extras:
    """What a strategy adds to the plain loop: loss terms, consistency terms, an adversary on the
    embeddings, weight averaging, augmentation of the training examples (`augmenters`) and of the
    batches (`mixup`), distillation from the study's teacher, compression after the last epoch.
    Each is absent unless the strategy turns it on."""

    loss_terms: list[Any] = field(default_factory=list)
    consistency: list[Any] = field(default_factory=list)
    adversary: Any = None
    average: Any = None
    distillation: Any = None
    compression: Any = None
    augmenters: list[Any] = field(default_factory=list)
    mixup: Any = None

    @property
    def two_passes(self) -> bool:
        return any(term.reads == TWO_PASSES for term in self.consistency)

    @classmethod
    def of(cls, task: Task, strategy: Strategy, model: torch.nn.Module, max_epochs: int) -> _Extras:
        toggles = strategy.toggles
        extras = cls(
            loss_terms=[LOSS_TERMS[name].build(**params) for name, params in toggles.get("loss_terms", {}).items()],
            consistency=[CONSISTENCY[name].build(**params) for name, params in toggles.get("consistency", {}).items()],
            adversary=_built(ADVERSARIAL, strategy, "adversarial"),
            average=_built(AVERAGING, strategy, "averaging"),
            distillation=_built(DISTILLATION, strategy, "distillation"),
            compression=_built(COMPRESSION, strategy, "compression"),
        )
        # Registry order, not sampling order: mention replacement before token replacement.
        augmentation = toggles.get("augmentation", {})
        built = [AUGMENTATION[name].build(**augmentation[name]) for name in AUGMENTATION.names() if name in augmentation]
        extras.augmenters = [kind for kind in built if not kind.per_batch]
        extras.mixup = next((kind for kind in built if kind.per_batch), None)
        if extras.average is not None:
            extras.average.bind(model, max_epochs)
        return extras

    def to_evaluate(self, trial: TrialModel) -> TrialModel:
        """The trial with the weights to score: the averaged ones under weight averaging."""
        if self.average is None:
            return trial
        return replace(trial, model=self.average.model_to_evaluate(trial.model))


def _compressed(
    task: Task, trial: TrialModel, extras: _Extras, data: Any, precision: Precision, rng: np.random.Generator, *, fine_tune: bool,
) -> tuple[TrialModel, Precision, torch.nn.Module]:
    """The strategy's compression of the weights it scores (`spaces.compression`): the compressed
    trial, the precision to evaluate it with, and the float model whose parameters it counts.
    Pruning acts in place, so the last checkpoint keeps the pruned weights; a quantized model is a
    CPU copy. `fine_tune`: run the strategy's fine-tuning epoch after pruning (scoring a saved
    checkpoint does not: its weights were fine-tuned already)."""
    evaluated = extras.to_evaluate(trial)
    compression = extras.compression
    model = compression.compress(evaluated.model)
    if model is evaluated.model:
        if fine_tune and compression.fine_tune:
            _fine_tune_epoch(task, evaluated, extras, data, precision, rng)
        compression.finalize(model)
        return evaluated, precision, model
    cpu = torch.device("cpu")
    return replace(evaluated, model=model, device=cpu), Precision(cpu, False), evaluated.model


def _fine_tune_epoch(task: Task, trial: TrialModel, extras: _Extras, data: Any, precision: Precision, rng: np.random.Generator) -> None:
    """One epoch of the strategy's loss (and distillation) with a fresh optimizer of the strategy's
    kind at its learning rate; pruned entries stay zero (their masks apply in every forward pass)."""
    name, params = trial.strategy.optimizer
    optimizer = OPTIMIZERS[name].build(trial.model.parameters(), **params)
    scaler = precision.scaler
    trial.model.train()
    for batch in task.train_batches(data, trial.strategy.batch_size, rng):
        batch = batch.to(trial.device)
        with precision.autocast():
            outputs = task.forward(trial.model, batch)
        loss = task.loss(trial, outputs, batch)
        if extras.distillation is not None:
            loss = extras.distillation(loss, task.class_logits(outputs), task.teacher_logits(batch))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    trial.model.eval()


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
    if extras.two_passes:  # a second pass with other dropout masks; the task loss is the mean of both
        with precision.autocast():
            second = task.forward(trial.model, batch)
        loss = (loss + task.loss(trial, second, batch)) / 2
    # Distillation mixes the task loss with the soft term; train_loss still reports the task loss.
    mixed = loss if extras.distillation is None else extras.distillation(loss, task.class_logits(outputs), task.teacher_logits(batch))
    objective = mixed + optimization.penalty()
    terms = 0.0
    if extras.loss_terms:
        encodings = task.paired_encodings(outputs, batch)
        for term in extras.loss_terms:
            value = term(*encodings)
            objective = objective + value
            terms += value.item()
    for consistency in extras.consistency:
        if consistency.reads == TWO_PASSES:
            objective = objective + consistency(task.class_logits(outputs), task.class_logits(second))
        else:
            objective = objective + consistency(*task.pooled(outputs, batch))
    return objective, loss, terms


def evaluate_checkpoint(task: Task, config: dict[str, Any], data: Any, settings: TrialSettings, checkpoint_dir: str, split: str = "test") -> dict[str, float]:
    """Scores a trial's saved model on a split (the test split for the best trial), with its
    averaged weights when the strategy averages them, compressed when it compresses them."""
    trial, precision = _build(task, config, data, settings)
    state = load_state(checkpoint_dir)
    if state is None:
        raise FileNotFoundError(f"no model state in {checkpoint_dir}")
    trial.model.load_state_dict(state["model"])
    extras = _Extras.of(task, trial.strategy, trial.model, settings.max_epochs)
    if extras.average is not None and "averaging" in state:
        extras.average.load_state_dict(state["averaging"])
    if extras.compression is not None:
        compressed, compressed_precision, _ = _compressed(task, trial, extras, data, precision, np.random.default_rng(settings.seed), fine_tune=False)
        return task.evaluate(compressed, data, split, compressed_precision)
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


def _resume(
    modules: dict[str, Any], rng: np.random.Generator, resume_from: str | None = None, *, from_tune: bool = True,
) -> tuple[int, str | None]:
    """Loads the checkpoint Tune hands this trial (`from_tune`), else the one of an interrupted
    earlier run (`resume_from`), into `modules` (name -> object with load_state_dict) and `rng`.
    Returns the first epoch still to train, and why `resume_from` was not used if it was refused."""
    state, note = None, None
    if from_tune:
        with _ray_checkpoint_dir() as directory:
            state = load_state(directory)
    if state is None and resume_from:
        state, note = _load_requeued_checkpoint(resume_from)
    if state is None:
        return 1, note
    for name, module in modules.items():
        module.load_state_dict(state[name])
    rng.bit_generator.state = numpy_rng_state(state["rng"])
    return state["epoch"] + 1, None


def _load_requeued_checkpoint(directory: str) -> tuple[dict[str, Any] | None, str | None]:
    """The state of a re-queued trial's checkpoint, or None and why it is not used. Its path came
    from the study database, which others may write: a file that is not a plain checkpoint
    (`load_state` refuses pickled objects) costs the trial its head start, not the study."""
    try:
        state = load_state(directory)
    except Exception as error:
        return None, f"checkpoint {directory} refused ({_load_error(error)}): trained from the start"
    if state is None:
        return None, f"checkpoint {directory} holds no state.pt: trained from the start"
    return state, None


def _load_error(error: BaseException) -> str:
    """One line on why torch.load refused a file; its message for a pickled object is a paragraph
    whose useful part follows "WeightsUnpickler error:"."""
    text = str(error).strip()
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if detail:
        return f"not tensors and plain values only: {detail.group(1)[:200]}"
    lines = text.splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


def _report_epoch(
    report: Reporter, metrics: dict[str, Any], settings: TrialSettings, modules: dict[str, Any], rng: np.random.Generator, epoch: int,
) -> None:
    """Reports one epoch, with a checkpoint of `modules` and `rng` when one is due."""
    state = None
    if settings.checkpoint and _checkpoint_clock.due(settings, epoch):
        state = {name: module.state_dict() for name, module in modules.items()}
        state.update(rng=rng.bit_generator.state, epoch=epoch)
        state = plain_state(state)
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
    """A checkpoint's saved state: state.pt (a trial's checkpoint), else the weights `search train`
    keeps (model.safetensors; model.pt from before it). Never unpickles an object: torch reads
    tensors and plain values only (`weights_only=True`) and refuses anything else."""
    if directory is None:
        return None
    state_file = os.path.join(directory, "state.pt")
    if os.path.exists(state_file):
        return torch.load(state_file, map_location="cpu", weights_only=True)
    weights_file = os.path.join(directory, WEIGHTS_FILE)
    if os.path.exists(weights_file):
        from safetensors.torch import load_file

        return {"model": load_file(weights_file, device="cpu")}
    legacy_file = os.path.join(directory, "model.pt")
    if os.path.exists(legacy_file):
        return torch.load(legacy_file, map_location="cpu", weights_only=True)
    return None


def save_weights(model_state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Writes a model's state dict as safetensors (no pickle; what `load_state` reads back as
    `{"model": ...}`). Copies every tensor: safetensors refuses tensors that share memory."""
    from safetensors.torch import save_file

    save_file({name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model_state.items()}, str(path))


def plain_state(value: Any, where: str = "state") -> Any:
    """`value` with tensors and plain Python values only, what `torch.load(weights_only=True)`
    reads back: numpy scalars become Python numbers, numpy arrays tensors (`numpy_rng_state` turns
    them back for the RNG). Anything else is refused here, at the first checkpoint, rather than
    found unreadable when a trial resumes."""
    if isinstance(value, np.generic):  # first: np.float64 is also a float, and torch refuses it
        return value.item()
    if isinstance(value, (torch.Tensor, str, int, float, bool, type(None))):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, Mapping):
        converted = {key: plain_state(item, f"{where}[{key!r}]") for key, item in value.items()}
        # Unchanged containers are kept as they are: a module's state dict keeps its `_metadata`.
        return value if all(converted[key] is value[key] for key in value) else converted
    if isinstance(value, (list, tuple)):
        items = [plain_state(item, f"{where}[{index}]") for index, item in enumerate(value)]
        if all(new is old for new, old in zip(items, value)):
            return value
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"a checkpoint holds tensors and plain values only; {where} is a {type(value).__module__}.{type(value).__name__}")


def numpy_rng_state(value: Any) -> Any:
    """A numpy bit generator's state as `plain_state` saved it (arrays as tensors), ready for
    `Generator.bit_generator.state`: its arrays numpy again."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, Mapping):
        return {key: numpy_rng_state(item) for key, item in value.items()}
    return value
