"""The InfoNCE loss term."""

from __future__ import annotations

import math

import pytest
import torch

from spaces import LOSS_TERMS
from spaces.loss_terms import InfoNCE


def test_matched_pairs_score_lower_than_mismatched_ones() -> None:
    torch.manual_seed(0)
    anchors = torch.randn(8, 16)
    term = InfoNCE(weight=1.0, temperature=0.1)
    aligned = term(anchors, anchors + 0.01 * torch.randn(8, 16))
    shuffled = term(anchors, anchors[torch.randperm(8)])
    assert aligned < 0.05 < shuffled


def test_weight_scales_and_rows_of_one_group_are_not_negatives() -> None:
    anchors = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    positives = anchors.clone()
    plain = InfoNCE(weight=1.0, temperature=1.0)
    # Rows 0 and 1 share a paragraph: without groups each is the other's (identical) negative.
    without_groups = plain(anchors, positives)
    with_groups = plain(anchors, positives, torch.tensor([7, 7, 3]))
    assert with_groups < without_groups
    # Same-group entries masked: rows 0 and 1 each see themselves (cos 1) and row 2 (cos 0),
    # -log(e / (e + 1)); row 2 sees itself and rows 0 and 1, -log(e / (e + 2)). Both directions agree.
    expected = (2 * -math.log(math.e / (math.e + 1)) - math.log(math.e / (math.e + 2))) / 3
    assert with_groups.item() == pytest.approx(expected, rel=1e-5)
    assert InfoNCE(weight=0.25, temperature=1.0)(anchors, positives).item() == pytest.approx(0.25 * without_groups.item())


def test_registry_declares_searchable_weight_and_temperature() -> None:
    component = LOSS_TERMS["infonce"]
    assert set(component.params) == {"weight", "temperature"}
    assert isinstance(component.build(weight=0.1, temperature=0.2), InfoNCE)
    with pytest.raises(ValueError):
        InfoNCE(weight=0.0, temperature=0.1)


def test_reading_comprehension_space_samples_the_term_and_the_answer_length() -> None:
    import optuna

    from spaces import READING_COMPREHENSION, SpaceError, Strategy, build_space, suggest, unflatten

    space = build_space(
        {"loss": "focal", "loss_terms": {"always": ["infonce"], "search": []}, "decoder": {"choices": ["best_span"], "params": {"best_span": {"max_answer_length": [10, 20]}}}},
        READING_COMPREHENSION,
    )
    flat = suggest(optuna.create_study().ask(), space)
    assert flat["loss_terms/infonce/enabled"] is True and 0.01 <= flat["loss_terms/infonce/weight"] <= 1.0
    assert 10 <= flat["decoder/best_span/max_answer_length"] <= 20
    assert "/ focal+infonce /" in Strategy.from_config(unflatten(flat)).summary()
    with pytest.raises(SpaceError, match="a maximum answer length in tokens must be an integer >= 1"):
        build_space({"decoder": {"choices": ["best_span"], "params": {"best_span": {"max_answer_length": 0}}}}, READING_COMPREHENSION)
    with pytest.raises(SpaceError, match="a contrastive-term weight must be > 0"):
        build_space({"loss_terms": {"search": ["infonce"], "params": {"infonce": {"weight": [0.0, 1.0]}}}}, READING_COMPREHENSION)
