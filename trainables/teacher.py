"""A study's teacher: a model folder written by `search train`, whose outputs on the training split
the `distillation` family trains students towards.

The driver computes the teacher's outputs once (`attach_teacher`), caches them on disk beside the
sub-word encodings (`$SEARCH_CACHE_DIR`, `trainables.data.subwords.cached_arrays`), keyed by the
teacher folder's contents, the training examples and the settings, and ships them to trials with
the data (`data.teacher`, one row per training example). No trial runs the teacher.

Where the folder is looked for (`resolve_teacher`): an absolute path as it is; a relative path
against the study file's folder, else under the data root (`--data-root`), as data files are.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trainables.data.common import DataError, resolve_data_root
from trainables.data.section import FieldError, Section
from trainables.data.subwords import cached_arrays, fingerprint

# What `search train` writes (search/train.py) that a teacher needs: what ran, and its weights.
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
FIELD = "teacher.path"


@dataclass(frozen=True)
class TeacherSpec:
    """The study file's `teacher:` section.

    Attributes:
        path: The folder `search train` wrote (absolute, relative to the study file's folder, or
            relative to the data root).
        study_dir: The study file's folder, that a relative `path` is read against first.
    """

    path: str
    study_dir: str | None = None

    @classmethod
    def from_section(cls, section: Section, study_dir: str | None) -> TeacherSpec:
        section.check_keys(("path",))
        return cls(path=section.string("path"), study_dir=study_dir)


@dataclass(frozen=True)
class Teacher:
    """A teacher folder, read and checked: its folder and the document `search train` ran."""

    folder: Path
    document: Mapping[str, Any]

    @property
    def task(self) -> str:
        return str(self.document["task"])

    def content_hash(self) -> str:
        """The folder's contents that decide its outputs (what ran, the weights, the vocabularies), hashed."""
        digest = hashlib.sha256()
        for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE):
            path = self.folder / name
            digest.update(name.encode())
            if path.exists():
                with path.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()


def resolve_teacher(spec: TeacherSpec, data_root: str | os.PathLike | None) -> Path | None:
    """The teacher folder `spec.path` names, or None when it is relative and neither under the study
    file's folder nor under the data root (which may be given only when the search runs)."""
    path = Path(spec.path).expanduser()
    if path.is_absolute():
        return path
    candidates = []
    if spec.study_dir is not None:
        candidates.append(Path(spec.study_dir) / path)
    root = resolve_data_root(data_root)
    if root is not None:
        candidates.append(root / path)
    return next((candidate for candidate in candidates if candidate.exists()), None)


def read_teacher(spec: TeacherSpec, task: str, data_root: str | os.PathLike | None, *, required: bool = True) -> Teacher | None:
    """The teacher folder, checked: a folder `search train` wrote for `task`. A `FieldError` on
    `teacher.path` otherwise. A relative path found nowhere yet gives None unless `required` (the
    data root may come with the search)."""
    folder = resolve_teacher(spec, data_root)
    if folder is None:
        if not required:
            return None
        places = " or ".join(filter(None, [spec.study_dir and "the study file's folder", "the data root (--data-root)"]))
        raise FieldError(FIELD, f"{spec.path!r}: no such folder under {places}; give the folder `search train --out` wrote")
    if not folder.is_dir():
        raise FieldError(FIELD, f"{str(folder)!r}: no such folder; give the folder `search train --out` wrote")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise FieldError(FIELD, f"{str(folder)!r} is not a folder written by `search train` (it has no {' or '.join(missing)})")
    try:
        document = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise FieldError(FIELD, f"{str(folder / CONFIG_FILE)!r} cannot be read: {str(error).splitlines()[0]}") from None
    if not isinstance(document, Mapping) or not all(document.get(key) for key in ("task", "data", "config")):
        raise FieldError(FIELD, f"{str(folder / CONFIG_FILE)!r} is not what `search train` writes (task, data and config)")
    if document["task"] != task:
        raise FieldError(FIELD, f"{str(folder)!r} holds a {document['task']} model; this study's task is {task}: give a teacher trained for {task}")
    return Teacher(folder, document)


def attach_teacher(task: Any, spec: TeacherSpec, data: Any, data_root: str | os.PathLike | None, seed: int, data_spec: Any) -> tuple[Any, str]:
    """`data` with the teacher's outputs on its training split (`data.teacher`), computed once and
    cached on disk; and a note for the data line (computed, or read from the cache).

    `task.teacher_outputs(teacher, data_spec, data_root, seed)` computes them: (arrays, data
    fingerprint) where the fingerprint says which examples they are for, in the key with the
    teacher folder's contents."""
    teacher = read_teacher(spec, task.name, data_root)
    assert teacher is not None
    examples_key = task.teacher_examples_key(data_spec, data_root, seed)
    key = fingerprint("teacher", teacher.content_hash(), examples_key)

    def build() -> dict[str, np.ndarray]:
        return {"logits": task.teacher_outputs(teacher, data, data_spec, data_root, seed)}

    arrays, from_cache = cached_arrays("teacher", key, build)
    logits = arrays["logits"].astype(np.float32)
    if len(logits) != task.train_size(data):
        raise DataError(f"teacher {teacher.folder}: {len(logits)} outputs for {task.train_size(data)} training examples")
    note = f"teacher {teacher.folder.name}: {'cached outputs' if from_cache else 'outputs computed'} ({logits.shape[0]} x {logits.shape[1]})"
    return replace(data, teacher=logits, source=f"{data.source}; {note}"), note
