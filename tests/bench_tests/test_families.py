"""bench/families.py's pairs: the base with a family and without it differ by that family alone,
and every variant it compares is a config `search train` accepts for its tasks."""

from __future__ import annotations

import pytest

from bench.families import BASE, FAMILIES, NER_BASE, with_family, without_family
from search.tasks import get_task
from spaces import AUGMENTATION, Strategy


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_variant_is_a_valid_config_for_its_tasks(name: str) -> None:
    tasks, variant = FAMILIES[name]
    for task_name in tasks:
        task = get_task(task_name)
        base = BASE if task_name == "text_classification" else NER_BASE
        Strategy.check(with_family(base, variant), task.registries, task=task.name, offers=task.offers)
        assert without_family(with_family(base, variant), variant) == base


def test_every_augmentation_and_consistency_kind_is_compared() -> None:
    compared = {name for _, variant in FAMILIES.values() for family, entry in variant.items() if family in ("augmentation", "consistency") for name in entry}
    assert set(AUGMENTATION.names()) | {"rdrop", "supcon"} <= compared


def test_a_choice_replaces_and_a_toggle_joins_the_base_then_leaves_the_rest() -> None:
    best = {**BASE, "averaging": {"name": "ema", "ema": {"decay": 0.99}},
            "augmentation": {"eda": {"enabled": True, "probability": 0.1, "rate": 0.1}, "mixup": {"enabled": False}}}
    swa = FAMILIES["swa"][1]
    assert with_family(best, swa)["averaging"] == swa["averaging"]
    assert "averaging" not in without_family(best, swa) and without_family(best, swa)["augmentation"] == best["augmentation"]
    mixup = FAMILIES["mixup"][1]
    joined = with_family(best, mixup)["augmentation"]
    assert joined["eda"] == best["augmentation"]["eda"] and joined["mixup"]["enabled"] is True
    assert without_family(best, mixup)["augmentation"] == {"eda": best["augmentation"]["eda"]}  # eda stays on
    assert "augmentation" not in without_family(best, FAMILIES["eda"][1])  # nothing left on: the family is off
