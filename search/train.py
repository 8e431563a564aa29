"""`search train`: one exported config trained to completion outside any search.

Writes to the output folder: `model.pt` (weights), `vocab.json` (vocabulary and label maps),
`metrics.json` (dev metrics per epoch, final dev and test metrics) and `config.yaml` (what ran).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from search.config import StudyFileError, parse_data_section
from search.tasks import TASKS, get_task
from trainables._loop import TrialSettings


def train_document(
    document: dict[str, Any],
    *,
    path: str,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    max_epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains `document` (as written by `search export --format yaml|json`); returns the metrics."""
    for key in ("task", "data", "config", "metric"):
        if not document.get(key):
            raise StudyFileError(path, key, "missing; give a file written by `search export --format yaml` (or json)")
    if document["task"] not in TASKS:
        raise StudyFileError(path, "task", f"{document['task']!r} is not accepted; accepted: {', '.join(TASKS)}")
    task = get_task(document["task"])
    if document["metric"] not in task.metrics:
        raise StudyFileError(path, "metric", f"{document['metric']!r} is not accepted; accepted: {', '.join(task.metrics)}")
    epochs = max_epochs or document.get("max_epochs")
    if not isinstance(epochs, int) or epochs < 1:
        raise StudyFileError(path, "max_epochs", f"{epochs!r} is not a positive integer; set it in the file or pass --max-epochs")
    spec = parse_data_section(task.name, document["data"], path)
    data = task.load_data(spec, data_root, document.get("seed", 0))
    log(f"data: {data.source}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The same settings a search trial gets (one thread per trial), so the result reproduces it.
    settings = TrialSettings(metric=document["metric"], mode=task.metrics[document["metric"]], max_epochs=epochs, seed=document.get("seed", 0))
    history: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        history.append(metrics)
        log(f"epoch {metrics['epoch']}: {document['metric']} {metrics[document['metric']]:.4f}")
        if checkpoint_dir:
            state = torch.load(Path(checkpoint_dir) / "state.pt", map_location="cpu", weights_only=False)
            torch.save({"model": state["model"]}, out / "model.pt")

    task.trainable(document["config"], data, settings, report)
    result: dict[str, Any] = {"dev": history[-1], "epochs": history}
    if getattr(data, "test", None) is not None:
        result["test"] = task.evaluate_checkpoint(document["config"], data, settings, str(out), "test")
        log(f"test: {document['metric']} {result['test'][document['metric']]:.4f}")
    (out / "metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "vocab.json").write_text(json.dumps(_vocabularies(data)), encoding="utf-8")
    (out / "config.yaml").write_text(yaml.safe_dump({**document, "max_epochs": epochs}, sort_keys=False), encoding="utf-8")
    return result


def _vocabularies(data: Any) -> dict[str, Any]:
    if hasattr(data, "vocabularies"):
        return data.vocabularies()
    if hasattr(data, "tags"):
        return {"words": data.words, "chars": data.chars, "tags": data.tags, "scheme": data.scheme}
    return {"vocab": data.vocab, "labels": data.labels}

