from __future__ import annotations

import datasets
import pytest

from trainables.data import DATA_ROOT_ENV


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep the generated Arrow files out of the user's ~/.cache, and start every test cold.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
