"""Adding a component, as CONTRIBUTING.md says: a throwaway loss in a test-only registry entry runs
one trial on every task that declares support for it, and the space refuses it where it cannot work."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml

from search.config import StudyFileError, parse_study
from search.tasks import TASKS, get_task
from spaces import Component, Float, between, suggest, unflatten, unsupported
from spaces.losses import CLASSES, IGNORE_INDEX, LOSSES
from tests.conftest import TINY_SQUAD_STUDY, ner_study_yaml, toy_study_yaml, write_conll_files, write_sentiment_csv
from trainables import TrialSettings, run_trial

CALLS: list[int] = []


class BrierLoss(torch.nn.Module):
    """Squared error between the predicted distribution and the one-hot target: it needs the whole
    distribution, so it supports only the CLASSES form."""

    def __init__(self, num_classes: int, *, scale: float) -> None:
        super().__init__()
        self.num_classes, self.scale = num_classes, scale

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        CALLS.append(len(targets))
        valid = targets != IGNORE_INDEX
        one_hot = F.one_hot(targets[valid], self.num_classes).float()
        return self.scale * (logits[valid].float().softmax(dim=-1) - one_hot).pow(2).sum(dim=-1).mean()


BRIER = Component("brier", {"scale": Float(0.5, 2.0, limits=between(0.0, 10.0), doc="a Brier-score scale")}, BrierLoss, "Brier score", supports=frozenset({CLASSES}))


@pytest.fixture()
def brier(monkeypatch: pytest.MonkeyPatch) -> Component:
    monkeypatch.setitem(LOSSES.components, "brier", BRIER)  # the one registry line, for this test only
    CALLS.clear()
    return BRIER


def _squad_study(shared_data: Path) -> dict:
    if not (shared_data / "squad" / "dev-v1.1.json.gz").exists():
        pytest.skip(f"SQuAD dev file not found under {shared_data}")
    return yaml.safe_load(TINY_SQUAD_STUDY)


@pytest.fixture()
def studies(tmp_path: Path, shared_data: Path) -> dict[str, tuple[dict, Path]]:
    """One small study per task (as a mapping) and its data root."""
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "ner").mkdir()
    write_sentiment_csv(root / "toy", {"train": 120, "validation": 40, "test": 40})
    write_conll_files(root / "ner", {"train": 60, "validation": 20, "test": 20})
    return {
        "text_classification": (yaml.safe_load(toy_study_yaml("sqlite:///unused.db")), root),
        "ner": (yaml.safe_load(ner_study_yaml("sqlite:///unused.db")), root),
        "reading_comprehension": (_squad_study(shared_data), shared_data),
    }


def _with_loss(study: dict, loss: str, **families: object) -> dict:
    return {**study, "space": {**study["space"], "loss": loss, **families}}


def test_every_task_is_in_the_table(studies: dict) -> None:
    assert set(studies) == set(TASKS)


@pytest.mark.parametrize("task_name", list(TASKS))
def test_a_new_loss_trains_one_trial_on_every_task_that_supports_it(brier: Component, studies: dict, task_name: str) -> None:
    study, data_root = studies[task_name]
    task = get_task(task_name)
    # The softmax head gives NER's loss whole distributions; the CRF head does not.
    heads = {"head": "softmax"} if "head" in task.registries else {}
    if unsupported(brier, task.offers["loss"], {"head": ["softmax"]}) is not None:
        with pytest.raises(StudyFileError, match=r"field `space.loss`: 'brier' cannot be used by task reading_comprehension"):
            parse_study(_with_loss(study, "brier"), "tiny.yaml", "tiny")
        return
    config = parse_study(_with_loss(study, "brier", **heads), "tiny.yaml", "tiny")
    data = task.load_data(config.data, data_root, config.seed)
    strategy = unflatten(suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask(), config.space))
    assert strategy["loss"]["name"] == "brier"
    reports: list[dict] = []
    run_trial(task, strategy, data, TrialSettings(metric=config.metric, mode=config.mode, max_epochs=1, checkpoint=False), lambda metrics, _: reports.append(metrics))
    assert len(reports) == 1 and CALLS, "the trial ran with the new loss"
    assert torch.isfinite(torch.tensor(reports[0]["train_loss"])) and reports[0]["train_loss"] > 0
    assert {"train_seconds", "epoch_seconds", "trial_seconds", "examples_per_second", config.metric} <= set(reports[0])


def test_a_loss_that_needs_whole_distributions_is_refused_with_the_crf_head(brier: Component, studies: dict) -> None:
    study, _ = studies["ner"]
    with pytest.raises(StudyFileError) as refused:
        parse_study(_with_loss(study, "brier", head=["softmax", "crf"]), "ner.yaml", "ner")
    assert refused.value.field == "space.loss"
    assert "with head 'crf'" in refused.value.message and "gold_log_prob" in refused.value.message


def test_a_space_that_omits_the_loss_leaves_an_unsupported_one_out(brier: Component, studies: dict) -> None:
    """Omitted family: every component that can work, quietly without the others."""
    ner, _ = studies["ner"]
    space = {k: v for k, v in ner["space"].items() if k != "loss"}
    with_crf = parse_study({**ner, "space": space}, "ner.yaml", "ner")
    assert "brier" not in with_crf.space.families["loss"].candidates
    softmax_only = parse_study({**ner, "space": {**space, "head": "softmax"}}, "ner.yaml", "ner")
    assert "brier" in softmax_only.space.families["loss"].candidates
    text, _ = studies["text_classification"]
    text_space = parse_study({**text, "space": {k: v for k, v in text["space"].items() if k != "loss"}}, "t.yaml", "t").space
    assert "brier" in text_space.families["loss"].candidates


def test_shipped_losses_and_regularizers_work_with_every_task() -> None:
    """Today's catalogue: nothing a shipped study names is refused (label smoothing included,
    through the uniform term structured outputs give)."""
    usable_somewhere: dict[tuple[str, str], bool] = {}
    for task_name in TASKS:
        task = get_task(task_name)
        # What a study searches when it names nothing: opt-in components (the pretrained encoder)
        # have their own tests (tests/spaces_tests/test_finetuning.py).
        candidates = {name: [n for n in registry.names() if not registry[n].opt_in] for name, registry in task.registries.items()}
        for family, offers in task.offers.items():
            for component in task.registries[family].components.values():
                if component.opt_in:
                    continue
                usable = unsupported(component, offers, candidates) is None
                if task.registries[family].opt_in:  # named by a study only; some kinds serve one task (augmentation)
                    usable_somewhere[family, component.name] = usable_somewhere.get((family, component.name), False) or usable
                else:
                    assert usable, (task_name, family, component.name)
    assert usable_somewhere and all(usable_somewhere.values()), [key for key, usable in usable_somewhere.items() if not usable]


def test_search_train_refuses_a_config_the_task_cannot_train(brier: Component) -> None:
    """`search train` checks an exported config the same way (Strategy.check with the task's offers)."""
    from spaces import ConfigError, Strategy
    from tests.trainables_tests.test_ner import tagging_config

    task = get_task("ner")
    config = tagging_config("crf", loss="brier", scale=1.0)
    with pytest.raises(ConfigError, match="'brier' cannot be used by task ner with head 'crf'"):
        Strategy.check(config, task.registries, task=task.name, offers=task.offers)
    Strategy.check(tagging_config("softmax", loss="brier", scale=1.0), task.registries, task=task.name, offers=task.offers)
