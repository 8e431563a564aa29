"""The opt-in training families: adversarial training, weight averaging, initialization, R-Drop,
the supervised contrastive term."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spaces import ADVERSARIAL, AVERAGING, CONSISTENCY, INITIALIZATION, NER, TEXT_CLASSIFICATION, SpaceError, build_space, suggest


def _table_with_gradient(seed: int = 0) -> tuple[nn.Parameter, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    table = nn.Parameter(torch.randn(6, 4, generator=generator))
    table.grad = torch.randn(6, 4, generator=generator)
    return table, table.detach().clone()


def test_fgm_moves_the_embeddings_by_epsilon_along_the_gradient_then_restores_them() -> None:
    table, clean = _table_with_gradient()
    seen = []
    ADVERSARIAL["fgm"].build(epsilon=0.5).attack([table], lambda: seen.append(table.detach().clone()))
    delta = seen[0] - clean
    torch.testing.assert_close(delta.norm(), torch.tensor(0.5))
    torch.testing.assert_close(delta, 0.5 * table.grad / table.grad.norm())
    torch.testing.assert_close(table.detach(), clean)  # put back after the adversarial pass


def test_pgd_stays_in_its_ball_and_keeps_only_the_last_steps_gradient() -> None:
    table, clean = _table_with_gradient(1)
    other = nn.Parameter(torch.zeros(3))
    other.grad = torch.ones(3)
    clean_grad = table.grad.clone()
    radii = []
    generator = torch.Generator().manual_seed(2)

    def adversarial_backward() -> None:
        radii.append(float((table.detach() - clean).norm()))
        extra = torch.randn(6, 4, generator=generator)  # a gradient pointing elsewhere each time
        table.grad = extra if table.grad is None else table.grad + extra
        other.grad = other.grad + 1

    ADVERSARIAL["pgd"].build(epsilon=0.3, step_size=0.2, steps=3).attack([table], adversarial_backward, [table, other])
    assert len(radii) == 3 and max(radii) <= 0.3 + 1e-6 and radii[1] > radii[0]
    torch.testing.assert_close(table.detach(), clean)
    torch.testing.assert_close(other.grad, torch.full((3,), 2.0))  # clean 1 + the last pass's 1
    assert not torch.allclose(table.grad, clean_grad)


def test_ema_follows_its_recurrence() -> None:
    model = nn.Linear(3, 2)
    average = AVERAGING["ema"].build(decay=0.9)
    average.bind(model, max_epochs=1)
    expected = None
    for step in range(5):
        with torch.no_grad():
            model.weight.add_(float(step + 1))
        average.after_step(model, torch.optim.SGD(model.parameters(), lr=0.1), epoch=1)
        current = model.weight.detach().clone()
        expected = current if expected is None else 0.9 * expected + 0.1 * current  # the first update copies
    torch.testing.assert_close(average.model_to_evaluate(model).weight, expected)


def test_swa_averages_epoch_ends_from_its_start_at_its_learning_rate() -> None:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    average = AVERAGING["swa"].build(start_fraction=0.5, lr=0.01)
    average.bind(model, max_epochs=4)  # averaging from epoch 2 on
    ends = []
    for epoch in range(1, 5):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        average.after_step(model, optimizer, epoch)
        assert optimizer.param_groups[0]["lr"] == (0.5 if epoch < 2 else 0.01)
        average.end_epoch(model, epoch)
        if epoch >= 2:
            ends.append(float(epoch))
        if epoch == 1:
            assert average.model_to_evaluate(model) is model  # nothing averaged yet
    torch.testing.assert_close(average.model_to_evaluate(model).weight, torch.full((1, 2), sum(ends) / len(ends)))


def test_rdrop_is_the_weighted_symmetric_kl() -> None:
    first, second = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]), torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    p, q = first.softmax(-1), second.softmax(-1)
    kl_pq = (p * (p.log() - q.log())).sum(-1).mean()
    kl_qp = (q * (q.log() - p.log())).sum(-1).mean()
    torch.testing.assert_close(CONSISTENCY["rdrop"].build(weight=2.0)(first, second), 2.0 * (kl_pq + kl_qp) / 2)


def test_supcon_matches_a_hand_computation_on_a_tiny_batch() -> None:
    # Unit vectors at 0, 60, 90 and 180 degrees; examples 0 and 1 share class 0, 2 and 3 have
    # classes of their own (no positive: not anchors). Given scaled by 3: the term normalises.
    angles = [0.0, math.pi / 3, math.pi / 2, math.pi]
    pooled = 3 * torch.tensor([[math.cos(a), math.sin(a)] for a in angles])
    labels = torch.tensor([0, 0, 1, 2])
    t = 0.5

    def log_p(i: int, p: int) -> float:  # log softmax over the examples other than i
        similarity = {a: math.cos(angles[i] - angles[a]) / t for a in range(4) if a != i}
        return similarity[p] - math.log(sum(math.exp(v) for v in similarity.values()))

    # Anchor 0's one positive is 1, anchor 1's is 0; mean over the two anchors, times the weight.
    expected = 2.0 * (-log_p(0, 1) - log_p(1, 0)) / 2
    term = CONSISTENCY["supcon"].build(weight=2.0, temperature=t)
    torch.testing.assert_close(term(pooled, labels), torch.tensor(expected))
    # Two positives: anchor 0 averages over both.
    labels = torch.tensor([0, 0, 0, 1])
    expected = (-(log_p(0, 1) + log_p(0, 2)) / 2 - (log_p(1, 0) + log_p(1, 2)) / 2 - (log_p(2, 0) + log_p(2, 1)) / 2) / 3
    torch.testing.assert_close(CONSISTENCY["supcon"].build(weight=1.0, temperature=t)(pooled, labels), torch.tensor(expected))
    alone = CONSISTENCY["supcon"].build(weight=1.0, temperature=t)(pooled.requires_grad_(), torch.arange(4))
    assert alone.item() == 0.0 and alone.requires_grad  # no two of a class: no term, nothing nan


def test_initializations_set_what_they_say() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 5), nn.Linear(5, 3))
    embedding = model[0].weight.detach().clone()
    INITIALIZATION["orthogonal"].build()(model)
    for block in model[1].weight_hh_l0.detach().chunk(4):
        torch.testing.assert_close(block @ block.T, torch.eye(5), atol=1e-5, rtol=0)
    INITIALIZATION["xavier_uniform"].build()(model)
    bound = (6 / (5 + 3)) ** 0.5
    assert model[2].weight.abs().max() <= bound and (model[2].bias == 0).all()
    torch.testing.assert_close(model[0].weight.detach(), embedding)  # embeddings keep their own scheme


def test_the_families_are_off_unless_a_study_names_them() -> None:
    flat = suggest(optuna.create_study().ask(), build_space(None, TEXT_CLASSIFICATION))
    assert not any(key.split("/")[0] in ("adversarial", "averaging", "initialization", "consistency") for key in flat)
    named = build_space({"adversarial": ["fgm", "pgd"], "averaging": "ema", "consistency": ["rdrop"], "initialization": "orthogonal"}, TEXT_CLASSIFICATION)
    flat = suggest(optuna.create_study().ask(), named)
    assert flat["adversarial/name"] in ("fgm", "pgd") and flat["averaging/name"] == "ema" and flat["initialization/name"] == "orthogonal"
    assert "consistency/rdrop/enabled" in flat


def test_rdrop_is_for_classification_only() -> None:
    with pytest.raises(SpaceError, match="unknown space entry"):
        build_space({"consistency": ["rdrop"]}, NER)


def test_kl_helper_agrees_with_torch() -> None:
    logits = torch.randn(4, 3)
    assert torch.isclose(CONSISTENCY["rdrop"].build(weight=1.0)(logits, logits), torch.tensor(0.0), atol=1e-7)
    assert F.kl_div(logits.log_softmax(-1), logits.log_softmax(-1), log_target=True, reduction="batchmean") == 0
