"""The tasks the engine can search: a plain table the config loader and the engine read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spaces._base import Registry


@dataclass(frozen=True)
class Task:
    name: str
    registries: Mapping[str, Registry]
    metrics: Mapping[str, str]  # metric reported per epoch -> "max" or "min"
    load_data: Callable[..., Any]  # (data spec, data_root, seed) -> data shipped to trials
    trainable: Callable[..., None]  # (config, data, settings) -> None, reports per epoch
    evaluate_checkpoint: Callable[..., dict[str, float]]  # (config, data, settings, dir, split) -> metrics
    data_spec: type  # the task's data spec class; its `from_section` reads the study file's `data:`


def _text_classification() -> Task:
    from spaces import TEXT_CLASSIFICATION
    from trainables import text_classification
    from trainables.data import TextDataSpec, load_text_classification

    return Task(
        "text_classification", TEXT_CLASSIFICATION, text_classification.METRICS, load_text_classification,
        text_classification.train_text_classification, text_classification.evaluate_checkpoint, data_spec=TextDataSpec,
    )


def _ner() -> Task:
    from spaces import NER
    from trainables import ner
    from trainables.data import NerDataSpec, load_ner

    return Task("ner", NER, ner.METRICS, load_ner, ner.train_ner, ner.evaluate_checkpoint, data_spec=NerDataSpec)


def _reading_comprehension() -> Task:
    from spaces import READING_COMPREHENSION
    from trainables import reading_comprehension
    from trainables.data import ReadingComprehensionDataSpec, load_reading_comprehension

    return Task(
        "reading_comprehension", READING_COMPREHENSION, reading_comprehension.METRICS, load_reading_comprehension,
        reading_comprehension.train_reading_comprehension, reading_comprehension.evaluate_checkpoint,
        data_spec=ReadingComprehensionDataSpec,
    )


TASKS: dict[str, Callable[[], Task]] = {
    "text_classification": _text_classification,
    "ner": _ner,
    "reading_comprehension": _reading_comprehension,
}


def get_task(name: str) -> Task:
    return TASKS[name]()
