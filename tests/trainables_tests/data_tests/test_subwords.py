"""Sub-word encodings (trainables.data.subwords): tokenized once, cached, padded per batch, grouped by length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_sentiment_csv
from trainables.data import DataError, FieldError, LocalSource, TextDataSpec, subwords
from trainables.data.subwords import length_grouped_batches, pad_rows, ragged, resolve_model, with_pretrained


def spec(models: tuple[str, ...] = (), **fields) -> TextDataSpec:
    files = {split: f"toy/{split}.csv" for split in ("train", "validation", "test")}
    return with_pretrained(TextDataSpec(name="toy", local=LocalSource("csv", files), **fields), models)


@pytest.fixture()
def data_root(tmp_path: Path, tiny_bert: Path) -> Path:
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    write_sentiment_csv(root / "toy", {"train": 40, "validation": 10, "test": 10})
    (root / "models").mkdir()
    (root / "models" / "tiny").symlink_to(tiny_bert)
    return root


def test_text_is_tokenized_by_the_models_own_tokenizer_and_labels_follow_the_words(data_root: Path, tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    from trainables.data import load_text_classification

    data = load_text_classification(spec(("models/tiny",), subword_max_length=12), data_root)
    encoded = data.subwords["models/tiny"]
    assert encoded.model.location == str(data_root / "models" / "tiny") and encoded.model.pad_id == 0
    assert encoded.labels == data.labels and np.array_equal(encoded.train.labels, data.train.labels)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    lengths = encoded.train.lengths()
    assert lengths.max() <= 12 and encoded.train.ids[encoded.train.offsets[0]] == tokenizer.cls_token_id
    assert len(encoded.validation) == len(data.validation) and len(encoded.test) == len(data.test)
    assert "models/tiny: tokenized" in data.source


def test_the_encoding_is_cached_by_model_data_and_settings(data_root: Path) -> None:
    from trainables.data import load_text_classification

    first = load_text_classification(spec(("models/tiny",)), data_root)
    again = load_text_classification(spec(("models/tiny",)), data_root)
    assert "cached sub-words" in again.source
    assert np.array_equal(first.subwords["models/tiny"].train.ids, again.subwords["models/tiny"].train.ids)
    shorter = load_text_classification(spec(("models/tiny",), subword_max_length=8), data_root)
    assert "models/tiny: tokenized" in shorter.source  # other settings: tokenized again
    (data_root / "toy" / "train.csv").write_text("text,label\nthe film was good,pos\nthe film was bad,neg\n", encoding="utf-8")
    edited = load_text_classification(spec(("models/tiny",)), data_root)
    assert "models/tiny: tokenized" in edited.source and len(edited.subwords["models/tiny"].train) == 2


def test_batches_are_grouped_by_length_cover_every_example_once_and_pad_to_their_own_longest() -> None:
    rng = np.random.default_rng(0)
    rows = [[1] * int(n) for n in rng.integers(1, 60, size=203)]
    values, offsets = ragged(rows)
    lengths = np.diff(offsets)
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(1), group=5)
    assert len(batches) == -(-203 // 8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(203))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    random_spread = np.mean([lengths[b].max() - lengths[b].min() for b in np.array_split(rng.permutation(203), 26)])
    assert spread < random_spread / 3  # grouped: little padding
    ids, mask = pad_rows(values, offsets, batches[0], pad=7)
    assert ids.shape == (len(batches[0]), lengths[batches[0]].max())
    assert (mask.sum(axis=1) == lengths[batches[0]]).all() and (ids[~mask] == 7).all()


def test_a_model_name_resolves_to_the_minilm_package_a_folder_or_a_hub_name(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_bert)
    assert resolve_model("models/tiny", tmp_path) == str(tmp_path / "models" / "tiny")
    assert resolve_model(str(tiny_bert), None) == str(tiny_bert)
    assert resolve_model("bert-base-uncased", tmp_path) == "bert-base-uncased"
    with pytest.raises(DataError, match="no such folder"):
        resolve_model(str(tmp_path / "missing"), None)
    if subwords.importlib.util.find_spec(subwords.MINILM_PACKAGE) is not None:
        assert Path(resolve_model("minilm", None), "config.json").is_file()


def test_an_unavailable_model_is_refused_before_training_naming_where_it_was_looked_for(data_root: Path) -> None:
    from trainables.data import load_text_classification

    with pytest.raises(DataError, match=r"model 'no-such-model': cannot load its tokenizer from the hub name 'no-such-model'"):
        load_text_classification(spec(("no-such-model",)), data_root)


def test_without_the_extra_the_transformer_encoder_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subwords, "missing_extra", lambda: "transformers")
    with pytest.raises(FieldError, match=r"space.encoder.*pip install -e '\.\[transformers\]'"):
        spec(("minilm",))
    assert spec(()).pretrained == ()  # a study without it is untouched
