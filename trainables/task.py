"""What a task is to the trial runner: a small adapter (`Task`) between a strategy and its data.

The runner (`trainables.runner`) owns everything tasks share: seeding, the device and mixed
precision, the optimizer, schedule and regularizers, the epoch loop, timing, checkpoints, resume,
the report to Ray Tune, and scoring a saved model on test. A task says only what is its own:

    class MyTask(Task):
        name = "my_task"
        registries = {...}         # the families its strategies draw from (spaces)
        metrics = {"f1": "max"}    # what `evaluate` returns that a study may select on
        offers = {...}             # what it gives components (loss forms, where regularizers act)
        data_spec = MyDataSpec     # reads and checks the study file's `data:` section

        def load_data(self, spec, data_root, seed): ...         # driver side, once per search
        def build(self, strategy, data): ...                    # -> TrialModel (model and loss)
        def train_batches(self, data, batch_size, rng): ...     # -> Batch, shuffled with `rng`
        def forward(self, model, batch): ...                    # under autocast
        def loss(self, trial, outputs, batch): ...              # the strategy's loss, float32
        def evaluate(self, trial, data, split, precision): ...  # -> {metric: value}

and registers one line in `search.tasks.TASKS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from spaces import Offer, Registry
from spaces import Strategy


@dataclass
class Batch:
    """A batch of examples: `to(device)` moves every tensor field; `len()` counts examples."""

    def to(self, device: torch.device) -> Batch:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved)

    def __len__(self) -> int:
        raise NotImplementedError


@dataclass
class TrialModel:
    """What `Task.build` returns. The runner moves it to the device and checkpoints `model` and
    `loss` (a loss may keep state: GHM's moving average)."""

    strategy: Strategy
    model: nn.Module
    loss: nn.Module
    device: torch.device = torch.device("cpu")


# What every task's adapter offers the opt-in training families (spaces.TRAINING_EXTRAS): its
# embedding tables to adversarial training, weights to average, from-scratch modules to initialize.
TRAINING_EXTRAS_OFFERS: dict[str, tuple[Offer, ...]] = {
    "adversarial": (Offer(frozenset({"embeddings"}), why="the word embedding table"),),
    "averaging": (Offer(frozenset({"averaged_weights"})),),
    "initialization": (Offer(frozenset({"from_scratch"}), why="every layer but the embeddings"),),
}


def build_loss(strategy: Strategy, num_classes: int) -> nn.Module:
    """The strategy's loss over `num_classes` outcomes (labels, tags, context positions)."""
    from spaces.losses import LOSSES

    name, params = strategy.loss
    return LOSSES[name].build(num_classes, **params)


def published_baseline(*, embedding_dim: int, dropout: float, **components: tuple[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A model class's published configuration as a nested config (the form of a trial's `config`).

    `components` are the architecture the research gives, family -> (component, hyperparameters),
    e.g. `encoder=("textcnn", {"filters": 128, "layers": 1})`; word embeddings of `embedding_dim`
    trained from random initialisation, and dropout `dropout`. The research does not give the rest;
    it is completed here, the same for every task: Adam at learning rate 1e-3, batch size 64,
    cross-entropy, a constant learning rate, and no regularizer or add-on but dropout.
    """
    config: dict[str, Any] = {
        family: {"name": name, name: dict(params)} if params else {"name": name} for family, (name, params) in components.items()
    }
    config.update({
        "loss": {"name": "cross_entropy"},
        "regularizers": {"dropout": {"enabled": True, "p": dropout}},  # every other regularizer and add-on: off
        "optimizer": {"name": "adam", "adam": {"lr": 1e-3}},
        "schedule": {"name": "constant"},
        "train": {"batch_size": 64},
        "model": {"embedding_dim": embedding_dim},
    })
    return config


class Task:
    """A task adapter; see the module docstring. Subclasses set the class attributes and
    implement the methods; optional hooks are documented no-ops."""

    name: ClassVar[str]
    registries: ClassVar[Mapping[str, Registry]]
    metrics: ClassVar[Mapping[str, str]]  # metric reported per epoch -> "max" or "min"
    offers: ClassVar[Mapping[str, tuple[Offer, ...]]] = {}
    data_spec: ClassVar[type]
    # The research's published configurations of the task's model classes (model class -> a
    # nested config as `published_baseline` builds it), the first one the task's default. A study
    # runs one of them first as its baseline (search.baselines).
    baselines: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def load_data(self, spec: Any, data_root: str | None, seed: int) -> Any:
        """Reads and encodes the dataset once, in the driver; the result is shipped to trials."""
        raise NotImplementedError

    def build(self, strategy: Strategy, data: Any) -> TrialModel:
        """The model and the loss module of one strategy (on the CPU; the runner moves them)."""
        raise NotImplementedError

    def data_for(self, config: Mapping[str, Any], data: Any) -> Any:
        """The part of the shipped data a strategy trains on; every method below then gets that: a
        pretrained encoder's sub-words (tokenized once, in the driver, for each model the space
        names), else the word-level data itself."""
        from spaces.finetuning import pretrained_model

        model = pretrained_model(dict(config))
        if model is None:
            return data
        subwords = getattr(data, "subwords", {})
        if model not in subwords:
            raise ValueError(f"the data was not tokenized for model {model!r} (it was for: {', '.join(subwords) or 'none'}); the study's encoder must name it")
        teacher = getattr(data, "teacher", None)
        return subwords[model] if teacher is None else replace(subwords[model], teacher=teacher)

    def train_size(self, data: Any) -> int:
        """Training examples per epoch (sets the schedule's steps per epoch)."""
        return len(data.train)

    def train_batches(self, data: Any, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        raise NotImplementedError

    def example_batch(self, data: Any, size: int) -> Batch:
        """A batch of `size` training examples (fewer if the split is smaller), what latency is timed
        on: the first of a fixed shuffle, so every trial of a study times the same examples."""
        return next(iter(self.train_batches(data, size, np.random.default_rng(0))))

    def forward(self, model: nn.Module, batch: Any) -> Any:
        """The model's outputs for a batch (run under autocast)."""
        raise NotImplementedError

    def loss(self, trial: TrialModel, outputs: Any, batch: Any) -> torch.Tensor:
        """The strategy's loss of a batch, mean per example (per token for sequences)."""
        raise NotImplementedError

    def save_pretrained(self, config: dict[str, Any], data: Any, checkpoint_dir: str, out_dir: str) -> str | None:
        """Writes a trained strategy with a pretrained encoder (its saved state in `checkpoint_dir`)
        as a Hugging Face model folder at `out_dir` (`search train`); returns a line saying what
        it wrote, or None for a strategy without one. Optional: None by default."""
        return None

    def paired_encodings(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(anchors, positives, groups) for contrastive loss terms, in tasks that offer them."""
        raise NotImplementedError(f"task {self.name} offers no paired encodings to loss terms")

    def evaluate(self, trial: TrialModel, data: Any, split: str, precision: Any) -> dict[str, float]:
        """The metrics of the model on a split ("validation" each epoch, "test" for the best trial)."""
        raise NotImplementedError

    def embedding_tables(self, model: nn.Module) -> list[nn.Parameter]:
        """The embedding tables adversarial training perturbs: a pretrained model's input
        embeddings, else the word embedding table of the catalogue's models."""
        for module in model.modules():
            get_input_embeddings = getattr(module, "get_input_embeddings", None)
            if callable(get_input_embeddings) and isinstance(get_input_embeddings(), nn.Embedding):
                return [get_input_embeddings().weight]
        for name in ("word_embedding", "embedding"):
            table = getattr(model, name, None)
            if isinstance(table, nn.Embedding):
                return [table.weight]
        raise NotImplementedError(f"task {self.name}: {type(model).__name__} has no embedding table for adversarial training")

    def augmented(self, data: Any, augmenters: list[Any], rng: np.random.Generator) -> Any:
        """`data` with its training split rewritten by `augmenters` (`spaces.augmentation`, the kinds
        that act on examples) for one epoch, drawing from `rng`; in tasks that offer them."""
        raise NotImplementedError(f"task {self.name} offers no examples to augment")

    def mixed(self, batch: Any, mixup: Any, rng: np.random.Generator) -> Any:
        """`batch` carrying a draw of `mixup` (`spaces.augmentation.Mixup`) for `forward` and
        `loss` to apply; in tasks that offer pooled representations."""
        raise NotImplementedError(f"task {self.name} offers no pooled representations to mix")

    def pooled(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled representation [N, D], class labels [N]) for the supervised contrastive term."""
        raise NotImplementedError(f"task {self.name} offers no pooled representations to consistency terms")

    def class_logits(self, outputs: Any) -> torch.Tensor:
        """Logits over classes [N, C] that consistency terms compare, in tasks that offer `TWO_PASSES`."""
        raise NotImplementedError(f"task {self.name} offers no class logits to consistency terms")

    def teacher_logits(self, batch: Any) -> torch.Tensor:
        """The study teacher's logits [N, C] for a training batch's examples, that the distillation
        family compares with `class_logits`, in tasks that offer `TEACHER_OUTPUTS`."""
        teacher = getattr(batch, "teacher", None)
        if teacher is None:
            raise ValueError(f"task {self.name}: this strategy distills from a teacher, but the data carries no teacher outputs; give the study a `teacher:` folder")
        return teacher

    def teacher_examples_key(self, spec: Any, data_root: Any, seed: int) -> str:
        """A fingerprint of the training examples a teacher's outputs are for (the cache key's data part)."""
        raise NotImplementedError(f"task {self.name} takes no teacher yet")

    def teacher_outputs(self, teacher: Any, data: Any, spec: Any, data_root: Any, seed: int) -> np.ndarray:
        """A teacher's (`trainables.teacher.Teacher`) outputs on every training example of `data`
        (loaded from `spec`), in order: computed in the driver, once, then cached."""
        raise NotImplementedError(f"task {self.name} takes no teacher yet")

    def from_scratch(self, model: nn.Module) -> nn.Module:
        """The part of the model trained from random weights (what an initialization scheme may set)."""
        return model

    # What the engine calls: the runner bound to this task.
    @property
    def trainable(self) -> Callable[..., None]:
        """`run_trial` bound to this task: (config, data, settings, report=None) -> None."""
        bound = functools.partial(_run_trial, self)
        bound.__name__ = f"train_{self.name}"  # Ray names trials and their folders after it
        return bound

    def evaluate_checkpoint(self, config: dict[str, Any], data: Any, settings: Any, checkpoint_dir: str, split: str = "test") -> dict[str, float]:
        from trainables.runner import evaluate_checkpoint

        return evaluate_checkpoint(self, config, self.data_for(config, data), settings, checkpoint_dir, split)


def _run_trial(task: Task, config: dict[str, Any], data: Any, settings: Any, report: Any = None) -> None:
    """The runner on the data the strategy trains on (`Task.data_for`)."""
    from trainables.runner import run_trial

    run_trial(task, config, task.data_for(config, data), settings, report)
