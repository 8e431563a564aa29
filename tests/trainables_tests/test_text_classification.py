"""The training loop on its own (no Ray): per-epoch reports, checkpoints, divergence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainables.runner import TrialSettings
from trainables.data import LocalSource, TextDataSpec, load_text_classification
from trainables.text_classification import train_text_classification


@pytest.fixture()
def toy_data(sentiment_root: Path):
    spec = TextDataSpec(
        name="toy",
        local=LocalSource(format="csv", files={"train": "toy/train.csv", "validation": "toy/validation.csv"}),
        max_length=32,
    )
    return load_text_classification(spec, sentiment_root, seed=0)


def config(**overrides) -> dict:
    base = {
        "encoder": {"name": "textcnn", "textcnn": {"filters": 32, "layers": 1}},
        "addons": {"mhsa": {"enabled": True, "heads": 2}, "layernorm": {"enabled": True}},
        "loss": {"name": "focal", "focal": {"gamma": 2.0}},
        "regularizers": {
            "dropout": {"enabled": True, "p": 0.2}, "weight_decay": {"enabled": True, "decay": 1e-4},
            "l2": {"enabled": True, "coefficient": 1e-6}, "l1": {"enabled": True, "coefficient": 1e-8},
            "embedding_dropout": {"enabled": True, "p": 0.1}, "grad_clip": {"enabled": True, "max_norm": 5.0},
        },
        "optimizer": {"name": "adam", "adam": {"lr": 5e-3}},
        "schedule": {"name": "cosine", "cosine": {"warmup_fraction": 0.1}},
        "train": {"batch_size": 32},
        "model": {"embedding_dim": 32},
    }
    base.update(overrides)
    return base


def test_reports_every_epoch_with_metrics_and_checkpoint(toy_data) -> None:
    reports = []

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        assert checkpoint_dir is not None and os.path.exists(os.path.join(checkpoint_dir, "state.pt"))
        reports.append(metrics)

    train_text_classification(config(), toy_data, TrialSettings(metric="accuracy", mode="max", max_epochs=3), report)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    for r in reports:
        assert {"accuracy", "macro_f1", "loss", "train_loss", "param_count", "train_seconds", "lr"} <= set(r)
        assert 0.0 <= r["accuracy"] <= 1.0
    assert reports[-1]["accuracy"] > 0.9  # the cue words make the toy task easy
    assert reports[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine decays to 0 at the last step


def test_divergence_raises_a_clear_error(toy_data) -> None:
    diverging = config(regularizers={"l2": {"enabled": True, "coefficient": float("inf")}})
    with pytest.raises(FloatingPointError, match="training diverged: loss is inf at epoch 1, step 0"):
        train_text_classification(diverging, toy_data, TrialSettings(metric="accuracy", mode="max", max_epochs=2), lambda m, d: None)


def test_macro_f1_matches_scikit_learn() -> None:
    import numpy as np
    from sklearn.metrics import f1_score

    from trainables.text_classification import macro_f1

    rng = np.random.default_rng(0)
    for classes in (2, 3, 5):
        gold, predicted = rng.integers(0, classes, 60), rng.integers(0, classes - 1, 60)  # one class never predicted
        assert macro_f1(gold, predicted) == pytest.approx(f1_score(gold, predicted, average="macro", zero_division=0))


EXTRAS = {
    "ema": {"averaging": {"name": "ema", "ema": {"decay": 0.9}}},
    "swa": {"averaging": {"name": "swa", "swa": {"start_fraction": 0.5, "lr": 0.001}}},
    "fgm": {"adversarial": {"name": "fgm", "fgm": {"epsilon": 0.5}}},
    "pgd": {"adversarial": {"name": "pgd", "pgd": {"epsilon": 0.5, "step_size": 0.2, "steps": 2}}},
    "rdrop": {"consistency": {"rdrop": {"enabled": True, "weight": 1.0}}},
    "eda": {"augmentation": {"eda": {"enabled": True, "probability": 0.5, "rate": 0.2}}},
    "mixup": {"augmentation": {"mixup": {"enabled": True, "probability": 0.5, "alpha": 0.4}}},
    "supcon": {"consistency": {"supcon": {"enabled": True, "weight": 0.5, "temperature": 0.1}}},
    "xavier_uniform": {"initialization": {"name": "xavier_uniform"}},
    "orthogonal": {"initialization": {"name": "orthogonal"}, "encoder": {"name": "bilstm", "bilstm": {"hidden": 16, "layers": 1}}},
}


@pytest.mark.parametrize("extra", list(EXTRAS))
def test_each_training_extra_trains_and_its_checkpoint_scores_as_reported(toy_data, extra: str, tmp_path: Path) -> None:
    """The saved model scores the dev split as the last epoch reported it (averaged weights under
    ema/swa), and training differs from the plain strategy's."""
    from trainables.text_classification import TASK

    def run(config_: dict) -> list[dict]:
        reports = []

        def report(metrics: dict, checkpoint_dir: str | None) -> None:
            reports.append(metrics)
            (tmp_path / "state.pt").write_bytes((Path(checkpoint_dir) / "state.pt").read_bytes())

        train_text_classification(config_, toy_data, settings, report)
        return reports

    settings = TrialSettings(metric="loss", mode="min", max_epochs=2)
    with_extra = config(**EXTRAS[extra])
    reports = run(with_extra)
    assert len(reports) == 2 and all(r["loss"] > 0 for r in reports)
    again = TASK.evaluate_checkpoint(with_extra, toy_data, settings, str(tmp_path), "validation")
    assert again["loss"] == pytest.approx(reports[-1]["loss"], rel=1e-5)
    plain = run(config(**{k: v for k, v in EXTRAS[extra].items() if k == "encoder"}))
    assert plain[-1]["loss"] != pytest.approx(reports[-1]["loss"], rel=1e-6)


def test_supcon_is_refused_beside_a_pretrained_encoders_own_head() -> None:
    from spaces import SpaceError, build_space
    from trainables.text_classification import TASK

    space = {"encoder": {"choices": ["textcnn", "transformer"], "params": {"transformer": {"model": "minilm"}}}, "consistency": {"search": ["rdrop", "supcon"]}}
    with pytest.raises(SpaceError, match="'supcon' cannot be used by task text_classification with encoder 'transformer'.*pools inside"):
        build_space(space, TASK.registries, offers=TASK.offers, task=TASK.name)
    build_space({**space, "consistency": {"search": ["rdrop"]}}, TASK.registries, offers=TASK.offers, task=TASK.name)  # R-Drop reads logits only
