"""The tasks the engine can search: a plain table, task name -> the module whose `TASK` (a
`trainables.task.Task` adapter) trains it. Adding a task is one module and one line here."""

from __future__ import annotations

import importlib

from trainables.task import Task

TASKS: dict[str, str] = {
    "text_classification": "trainables.text_classification",
    "ner": "trainables.ner",
    "reading_comprehension": "trainables.reading_comprehension",
}


def get_task(name: str) -> Task:
    """The adapter of a task named in `TASKS` (its module is imported on first use)."""
    return importlib.import_module(TASKS[name]).TASK


__all__ = ["TASKS", "Task", "get_task"]
