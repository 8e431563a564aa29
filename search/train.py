"""`search train`: one exported config trained to completion outside any search.

The config comes from a file (`search export --format yaml|json`) or as flags
(`search export --format cli`: `--task`, `--metric`, `--seed`, `--max-epochs`, `--data`, and one
`--set KEY=VALUE` per config value, keys named as Optuna names the parameters: `loss/focal/gamma`).

Writes to the output folder: `model.safetensors` (weights; no pickle, so a shared model runs no
code when loaded), `vocab.json` (vocabulary and label maps), `metrics.json` (dev metrics per epoch,
final dev and test metrics) and `config.yaml` (what ran, which rebuilds the model);
for a strategy with a pretrained encoder also `hf/`, a Hugging Face model folder
(`trainables.pretrained_folder`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from search.config import StudyFileError, parse_data_section
from search.export import parse_value
from search.tasks import TASKS, Task, get_task
from spaces import ConfigError, Strategy, is_flat_key, with_overrides
from spaces.finetuning import pretrained_model
from trainables.data import FieldError
from trainables.data.subwords import with_pretrained
from trainables.runner import WEIGHTS_FILE, TrialSettings, load_state, save_weights

FLAGS = "search train flags"  # the "file" named in errors about a config given as flags


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
            hint = f"pass --{key.replace('config', 'set KEY=VALUE')}" if path == FLAGS else "give a file written by `search export --format yaml` (or json)"
            raise StudyFileError(path, key, f"missing; {hint}")
    if document["task"] not in TASKS:
        raise StudyFileError(path, "task", f"{document['task']!r} is not accepted; accepted: {', '.join(TASKS)}")
    task = get_task(document["task"])
    if document["metric"] not in task.metrics:
        raise StudyFileError(path, "metric", f"{document['metric']!r} is not accepted; accepted: {', '.join(task.metrics)}")
    epochs = max_epochs or document.get("max_epochs")
    if not isinstance(epochs, int) or epochs < 1:
        raise StudyFileError(path, "max_epochs", f"{epochs!r} is not a positive integer; set it in the file or pass --max-epochs")
    check_config(task, document["config"], path)
    spec = parse_data_section(task.name, document["data"], path)
    model = pretrained_model(document["config"])
    try:
        spec = with_pretrained(spec, [model] if model else [], field="config.encoder.transformer.model")
    except FieldError as error:
        raise StudyFileError(path, error.field, error.message) from None
    data = task.load_data(spec, data_root, document.get("seed", 0))
    if document.get("teacher"):  # a distilled strategy trains towards its study's teacher
        data = _with_teacher(task, document["teacher"], data, spec, data_root, document.get("seed", 0), path)
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
            save_weights(load_state(checkpoint_dir)["model"], out / WEIGHTS_FILE)

    task.trainable(document["config"], data, settings, report)
    result: dict[str, Any] = {"dev": history[-1], "epochs": history}
    if getattr(data, "test", None) is not None:
        result["test"] = task.evaluate_checkpoint(document["config"], data, settings, str(out), "test")
        log(f"test: {document['metric']} {result['test'][document['metric']]:.4f}")
    pretrained = task.save_pretrained(document["config"], data, str(out), str(out / "hf"))
    if pretrained:
        log(f"hugging face folder: {pretrained}")
    (out / "metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "vocab.json").write_text(json.dumps(_vocabularies(data)), encoding="utf-8")
    (out / "config.yaml").write_text(yaml.safe_dump({**document, "max_epochs": epochs}, sort_keys=False), encoding="utf-8")
    return result


def _with_teacher(task: Task, section: Any, data: Any, spec: Any, data_root: str | os.PathLike | None, seed: int, path: str) -> Any:
    from trainables.data.section import Section
    from trainables.teacher import TeacherSpec, attach_teacher

    if not isinstance(section, Mapping):
        raise StudyFileError(path, "teacher", f"expected a mapping such as {{path: FOLDER}}, got {section!r}")
    try:
        teacher = TeacherSpec.from_section(Section(section, "teacher."), str(Path(path).resolve().parent) if path != FLAGS else None)
        return attach_teacher(task, teacher, data, data_root, seed, spec)[0]
    except FieldError as error:
        raise StudyFileError(path, error.field, error.message) from None


def _vocabularies(data: Any) -> dict[str, Any]:
    if hasattr(data, "vocabularies"):
        return data.vocabularies()
    if hasattr(data, "tags"):
        return {"words": data.words, "chars": data.chars, "tags": data.tags, "scheme": data.scheme}
    return {"vocab": data.vocab, "labels": data.labels}


def check_config(task: Task, config: Any, path: str) -> None:
    """Refuses a training config that the search could not have produced: an unknown family,
    component or parameter, a value out of its hard limits, a missing or a superfluous value
    (`Strategy.check`). Errors name the field as the file writes it (`config.loss.focal.gamma`)
    or, for flags, as the flag (`--set loss/focal/gamma`).
    """
    if not isinstance(config, Mapping):
        raise StudyFileError(path, "config", f"expected a mapping (the resolved config), got {config!r}")
    try:
        Strategy.check(config, task.registries, task=task.name, offers=task.offers)
    except ConfigError as error:
        raise StudyFileError(path, f"--set {error.key}" if path == FLAGS else error.where, error.message) from None


def document_from_flags(
    base: Mapping[str, Any] | None,
    *,
    task: str | None = None,
    metric: str | None = None,
    seed: int | None = None,
    data: str | None = None,
    settings: Sequence[str] = (),
) -> dict[str, Any]:
    """A training document from `search train` flags, on top of a file's document (`base`) if given.

    `settings` are `KEY=VALUE` strings, KEY a flat config name (`optimizer/adam/lr`), VALUE read as
    JSON where it parses (`0.003`, `true`, `"32"`), else as text (`adam`). Choosing another component
    with `--set FAMILY/name=X` drops the parameters of the one the file had.
    """
    document = dict(base or {})
    for key, value in (("task", task), ("metric", metric), ("seed", seed)):
        if value is not None:
            document[key] = value
    if data is not None:
        try:
            document["data"] = yaml.safe_load(data)
        except yaml.YAMLError as error:
            raise StudyFileError(FLAGS, "--data", f"is not JSON or YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(document["data"], Mapping):
            raise StudyFileError(FLAGS, "--data", f"{data!r} is not a mapping; give the `data` section as JSON, e.g. '{{\"name\": \"sst2\", ...}}'")
    given: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not is_flat_key(key):
            raise StudyFileError(FLAGS, f"--set {item}", "expected KEY=VALUE with KEY a config name such as loss/name or loss/focal/gamma")
        given[key] = parse_value(text)
    try:
        config = with_overrides(document.get("config") or {}, given)
    except ConfigError as error:
        raise StudyFileError(FLAGS, f"--set {error.key}", error.message) from None
    if config:
        document["config"] = config
    return document
