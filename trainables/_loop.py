"""Small helpers shared by the per-task training loops: device and precision, regularization
terms, checkpoints and the report to Ray Tune. The loops stay one readable function each."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from spaces._space import Strategy

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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Precision:
    """Autocast and gradient scaling: bfloat16 where the GPU has it, else float16 with a scaler."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def penalized_weights(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices: what L1/L2 penalties apply to (not biases, norms or embedding tables)."""
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [p for p in model.parameters() if p.dim() >= 2 and id(p) not in embedding_weights]


def penalty(strategy: Strategy, weights: list[nn.Parameter]) -> torch.Tensor | float:
    """The L1 and L2 terms the strategy adds to the loss (0.0 when it uses neither)."""
    total: torch.Tensor | float = 0.0
    l2 = strategy.regularizer("l2", "coefficient")
    l1 = strategy.regularizer("l1", "coefficient")
    if l2:
        total = total + l2 * sum(w.pow(2).sum() for w in weights)
    if l1:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    return total


def decay_weights(optimizer: torch.optim.Optimizer, decay_params: list[nn.Parameter], decay: float) -> None:
    """Decoupled weight decay (Loshchilov & Hutter), the same for every optimizer: w -= lr * decay * w."""
    if not decay:
        return
    lr = optimizer.param_groups[0]["lr"]
    with torch.no_grad():
        torch._foreach_mul_(decay_params, 1.0 - lr * decay)


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """As in nanoGPT: decay every parameter with dim >= 2, never biases or norm gains."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"training diverged: loss is {loss.item()} at epoch {epoch}, step {step}; "
            "a lower learning rate or gradient clipping may help"
        )


class Optimization:
    """Everything a strategy says about updating weights, for any task's loop:

    optimizer and LR schedule, L1/L2 penalties, decoupled weight decay, gradient clipping and
    mixed-precision scaling. A loop calls `penalty()` to add to its loss, `step(objective)` after
    each batch and `end_epoch(metric)` after each validation.
    """

    def __init__(self, strategy: Strategy, model: nn.Module, settings: TrialSettings, steps_per_epoch: int, precision: Precision, metric_mode: str) -> None:
        from spaces.optimizers import OPTIMIZERS
        from spaces.schedules import SCHEDULES

        optimizer_name, optimizer_params = strategy.optimizer
        self.optimizer = OPTIMIZERS[optimizer_name].build(model.parameters(), **optimizer_params)
        schedule_name, schedule_params = strategy.schedule
        self.schedule = SCHEDULES[schedule_name].build(
            self.optimizer, steps_per_epoch=steps_per_epoch, max_epochs=settings.max_epochs, mode=metric_mode, **schedule_params,
        )
        self.model = model
        self.precision = precision
        self.strategy = strategy
        self.penalized = penalized_weights(model)
        self.decayed = decayed_parameters(model)
        self.decay = strategy.regularizer("weight_decay", "decay")
        self.clip = strategy.regularizer("grad_clip", "max_norm")

    def penalty(self) -> torch.Tensor | float:
        return penalty(self.strategy, self.penalized)

    def step(self, objective: torch.Tensor) -> None:
        scaler = self.precision.scaler
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(objective).backward()
        if self.clip:
            scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        decay_weights(self.optimizer, self.decayed, self.decay)
        scaler.step(self.optimizer)
        scaler.update()
        self.schedule.after_batch()

    def end_epoch(self, metric: float) -> None:
        self.schedule.after_epoch(metric)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "scaler": self.precision.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.precision.scaler.load_state_dict(state["scaler"])


class Training(NamedTuple):
    optimization: Optimization
    rng: np.random.Generator
    modules: dict[str, Any]  # what a checkpoint saves and a resume loads
    first_epoch: int
    param_count: int


def prepare_training(
    strategy: Strategy, model: nn.Module, loss_fn: nn.Module, settings: TrialSettings,
    steps_per_epoch: int, precision: Precision, metric_mode: str, in_tune: bool,
) -> Training:
    """What every task's loop sets up once its model is built: the optimization, the data order's
    random generator, and, under Tune, the state of the checkpoint it resumes from."""
    optimization = Optimization(strategy, model, settings, steps_per_epoch, precision, metric_mode)
    rng = np.random.default_rng(settings.seed)
    modules = {"model": model, "optimization": optimization, "loss": loss_fn}
    first_epoch = resume(modules, rng, settings.resume_from) if in_tune else 1
    return Training(optimization, rng, modules, first_epoch, count_parameters(model))


def resume(modules: dict[str, Any], rng: np.random.Generator, resume_from: str | None = None) -> int:
    """Loads the checkpoint Tune hands this trial (a retry after a lost worker), else the one of
    an interrupted earlier run (`resume_from`), into `modules` (name -> object with
    load_state_dict) and `rng`; returns the first epoch still to train."""
    with ray_checkpoint_dir() as directory:
        state = load_state(directory)
    if state is None and resume_from:
        state = load_state(resume_from)
    if state is None:
        return 1
    for name, module in modules.items():
        module.load_state_dict(state[name])
    rng.bit_generator.state = state["rng"]
    return state["epoch"] + 1


def report_epoch(
    report: Reporter, metrics: dict[str, Any], settings: TrialSettings, modules: dict[str, Any], rng: np.random.Generator, epoch: int,
) -> None:
    """Reports one epoch, with a checkpoint of `modules` and `rng` when one is due."""
    state = None
    if settings.checkpoint and _checkpoint_clock.due(settings, epoch):
        state = {name: module.state_dict() for name, module in modules.items()}
        state.update(rng=rng.bit_generator.state, epoch=epoch)
    with checkpoint_dir(state) as directory:
        report(metrics, directory)
    if state is not None:
        _checkpoint_clock.written()


class _CheckpointClock:
    """When the running trial last wrote a checkpoint. A worker runs one trial at a time
    (`start_trial` resets it), so one clock per process is enough."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._last = time.monotonic()

    def due(self, settings: TrialSettings, epoch: int) -> bool:
        return epoch >= settings.max_epochs or time.monotonic() - self._last >= settings.checkpoint_every_s

    def written(self) -> None:
        self._last = time.monotonic()


_checkpoint_clock = _CheckpointClock()


def start_trial(settings: TrialSettings, report: Reporter | None) -> tuple[Reporter, bool]:
    """Threads and seeds for a trial; without `report` it runs under Tune (reports and resumes there).
    Returns the reporter and whether the trial runs under Tune."""
    torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    _checkpoint_clock.reset()
    return (report, False) if report is not None else (ray_reporter(), True)


def ray_reporter() -> Reporter:
    from ray import tune

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=checkpoint)

    return report


def ray_checkpoint_dir() -> contextlib.AbstractContextManager[str | None]:
    """The directory of the checkpoint Ray restores this trial from, if any."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return contextlib.nullcontext(None)
    return checkpoint.as_directory()


@contextlib.contextmanager
def checkpoint_dir(state: dict[str, Any] | None) -> Iterator[str | None]:
    """Writes `state` to a temporary directory that lives until the report has copied it."""
    if state is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="trial-ckpt-") as directory:
        torch.save(state, os.path.join(directory, "state.pt"))
        yield directory


def load_state(directory: str | None) -> dict[str, Any] | None:
    if directory is None:
        return None
    # state.pt: a trial's checkpoint; model.pt: the weights `search train` keeps.
    for name in ("state.pt", "model.pt"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return torch.load(path, map_location="cpu", weights_only=False)
    return None
