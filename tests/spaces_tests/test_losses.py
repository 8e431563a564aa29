"""Tests for spaces.losses: every registry entry, reference equalities, GHM, ignore_index."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spaces.losses import CLASSES, GOLD_LOG_PROB, IGNORE_INDEX, LOSSES, GHMLoss, GoldLogProb
from tests.spaces_tests._helpers import lowest

NUM_CLASSES = 5




def _build_lowest(name: str) -> torch.nn.Module:
    component = LOSSES[name]
    return component.build(NUM_CLASSES, **{key: lowest(p) for key, p in component.params.items()})


def _batch(size: int, seed: int, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(size, NUM_CLASSES, generator=generator) * scale
    targets = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
    return logits, targets


@pytest.mark.parametrize("name", LOSSES.names())
def test_builds_and_backpropagates(name: str) -> None:
    loss_fn = _build_lowest(name)
    logits, targets = _batch(32, seed=0)
    logits.requires_grad_(True)
    loss = loss_fn(logits, targets)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES.names())
def test_all_ignored_gives_zero_attached_to_logits(name: str) -> None:
    loss_fn = _build_lowest(name)
    logits = torch.randn(6, NUM_CLASSES, requires_grad=True)
    loss = loss_fn(logits, torch.full((6,), IGNORE_INDEX))
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", LOSSES.names())
def test_ignored_rows_change_nothing(name: str) -> None:
    logits, targets = _batch(40, seed=1)
    ignored = torch.zeros(40, dtype=torch.bool)
    ignored[::3] = True
    # Extreme logits on ignored rows: any leak would show up as a change or a nan.
    logits[ignored] = torch.tensor([1e4, -1e4, 0.0, 0.0, 0.0])
    masked_targets = targets.masked_fill(ignored, IGNORE_INDEX)

    logits_all = logits.clone().requires_grad_(True)
    loss_all = _build_lowest(name)(logits_all, masked_targets)
    loss_all.backward()
    logits_kept = logits[~ignored].clone().requires_grad_(True)
    loss_kept = _build_lowest(name)(logits_kept, targets[~ignored])
    loss_kept.backward()

    torch.testing.assert_close(loss_all, loss_kept)
    torch.testing.assert_close(logits_all.grad[~ignored], logits_kept.grad)
    assert torch.equal(logits_all.grad[ignored], torch.zeros_like(logits_all.grad[ignored]))


@pytest.mark.parametrize("name", LOSSES.names())
def test_low_precision_logits_are_computed_in_float32(name: str) -> None:
    logits, targets = _batch(16, seed=2)
    half = logits.to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _build_lowest(name)(half, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, _build_lowest(name)(half.detach().float(), targets))
    loss.backward()
    assert half.grad is not None and torch.isfinite(half.grad.float()).all()


def test_shape_mismatch_is_refused() -> None:
    loss_fn = _build_lowest("cross_entropy")
    with pytest.raises(ValueError, match="logits must have shape"):
        loss_fn(torch.randn(4, NUM_CLASSES + 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets must have shape"):
        loss_fn(torch.randn(4, NUM_CLASSES), torch.zeros(3, dtype=torch.long))


def test_cross_entropy_matches_torch() -> None:
    logits, targets = _batch(50, seed=3)
    torch.testing.assert_close(LOSSES["cross_entropy"].build(NUM_CLASSES)(logits, targets), F.cross_entropy(logits, targets))


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    logits, targets = _batch(50, seed=4)
    focal = LOSSES["focal"].build(NUM_CLASSES, gamma=0.0)
    torch.testing.assert_close(focal(logits, targets), F.cross_entropy(logits, targets))


def test_focal_matches_its_formula() -> None:
    logits, targets = _batch(50, seed=5)
    p_t = F.softmax(logits.double(), dim=-1)[torch.arange(50), targets]
    expected = (-(1 - p_t) ** 2.0 * p_t.log()).mean()
    torch.testing.assert_close(LOSSES["focal"].build(NUM_CLASSES, gamma=2.0)(logits, targets).double(), expected)


def test_focal_gradient_is_finite_when_saturated() -> None:
    logits = torch.tensor([[200.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    LOSSES["focal"].build(NUM_CLASSES, gamma=0.5)(logits, torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch(epsilon: float) -> None:
    logits, targets = _batch(50, seed=6)
    targets[::4] = IGNORE_INDEX
    loss = LOSSES["label_smoothing"].build(NUM_CLASSES, epsilon=epsilon)(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets, label_smoothing=epsilon))


def _ghm_reference(
    batches: list[tuple[torch.Tensor, torch.Tensor]], bins: int, momentum: float
) -> list[tuple[float, list[float]]]:
    """GHM-C generalised to softmax, with plain loops: (loss, per-example weights) per batch."""
    edges = [b / bins for b in range(bins + 1)]
    edges[-1] += 1e-6
    ema = [0.0] * bins
    results = []
    for logits, targets in batches:
        rows = []  # (example index, bin, cross-entropy)
        for i in range(len(targets)):
            target = int(targets[i])
            if target == IGNORE_INDEX:
                continue
            row = [float(v) for v in logits[i]]
            top = max(row)
            log_z = top + math.log(sum(math.exp(v - top) for v in row))
            log_pt = row[target] - log_z
            g = 1.0 - math.exp(log_pt)
            bin_of = next(b for b in range(bins) if edges[b] <= g < edges[b + 1])
            rows.append((i, bin_of, -log_pt))
        counts = [0] * bins
        for _, bin_of, _ in rows:
            counts[bin_of] += 1
        num_valid = len(rows)
        non_empty = sum(1 for c in counts if c > 0)
        density = [float(c) for c in counts]
        if momentum > 0:
            for b in range(bins):
                if counts[b] > 0:
                    ema[b] = momentum * ema[b] + (1 - momentum) * counts[b]
            density = list(ema)
        weights = [0.0] * len(targets)
        total = 0.0
        for i, bin_of, ce in rows:
            weights[i] = num_valid / density[bin_of] / non_empty
            total += weights[i] * ce
        results.append((total / max(num_valid, 1), weights))
    return results


@pytest.mark.parametrize(("bins", "momentum"), [(10, 0.0), (7, 0.75), (1, 0.0), (30, 0.5)])
def test_ghm_matches_brute_force_reference(bins: int, momentum: float) -> None:
    batches = []
    for seed in (10, 11):
        logits, targets = _batch(60, seed=seed, scale=3.0)
        targets[::7] = IGNORE_INDEX
        batches.append((logits, targets))
    expected = _ghm_reference(batches, bins, momentum)
    loss_fn = LOSSES["ghm"].build(NUM_CLASSES, bins=bins, momentum=momentum)
    for (logits, targets), (expected_loss, expected_weights) in zip(batches, expected):
        logits = logits.clone().requires_grad_(True)
        loss = loss_fn(logits, targets)
        assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
        # Weights are constants: the gradient is that of sum(w_i * CE_i) / N with w fixed.
        loss.backward()
        fixed = torch.tensor(expected_weights, dtype=torch.float32)
        logits_ref = logits.detach().clone().requires_grad_(True)
        valid = targets != IGNORE_INDEX
        per_example = F.cross_entropy(logits_ref, targets.clamp(min=0), reduction="none")
        ((fixed * per_example)[valid].sum() / valid.sum()).backward()
        torch.testing.assert_close(logits.grad, logits_ref.grad, rtol=1e-5, atol=1e-7)


def test_ghm_moving_average_is_a_buffer_updated_in_training_only() -> None:
    loss_fn = GHMLoss(NUM_CLASSES, bins=10, momentum=0.5)
    assert "ema_counts" in loss_fn.state_dict()
    logits, targets = _batch(30, seed=12)
    loss_fn.eval()
    loss_fn(logits, targets)
    assert torch.equal(loss_fn.ema_counts, torch.zeros(10))
    loss_fn.train()
    loss_fn(logits, targets)
    assert loss_fn.ema_counts.sum().item() == pytest.approx(0.5 * 30)


def test_ghm_handles_token_sized_batches() -> None:
    logits, targets = _batch(100_000, seed=13)
    targets[::5] = IGNORE_INDEX
    logits.requires_grad_(True)
    loss = GHMLoss(NUM_CLASSES, bins=30, momentum=0.9)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ["cross_entropy", "focal", "ghm"])
def test_from_gold_log_prob_matches_forward(name: str) -> None:
    # The structured (CRF) path feeds sequence log-likelihoods through the same formula.
    logits, targets = _batch(64, seed=11)
    targets[:5] = IGNORE_INDEX
    valid = targets != IGNORE_INDEX
    log_p = F.log_softmax(logits, dim=-1).gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(_build_lowest(name)(logits, targets), _build_lowest(name).from_gold_log_prob(log_p, valid))


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_declares_the_forms_it_implements(name: str) -> None:
    """A loss that declares a form has it: CLASSES is `forward`, GOLD_LOG_PROB is `from_gold`."""
    supports = LOSSES[name].supports
    assert supports and supports <= {CLASSES, GOLD_LOG_PROB}
    logits, targets = _batch(16, seed=3)
    log_p = F.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    output = GoldLogProb(log_p, uniform_nll=lambda: -F.log_softmax(logits, dim=-1).mean())
    if CLASSES in supports:
        assert torch.isfinite(_build_lowest(name)(logits, targets))
    if GOLD_LOG_PROB in supports:
        assert torch.isfinite(_build_lowest(name).from_gold(output))


@pytest.mark.parametrize("name", ["cross_entropy", "focal", "ghm"])
def test_from_gold_is_the_gold_log_prob_loss_per_unit(name: str) -> None:
    logits, targets = _batch(32, seed=5)
    log_p = F.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    output = GoldLogProb(log_p, uniform_nll=lambda: pytest.fail("only label smoothing reads it"), per_unit=4.0)
    torch.testing.assert_close(_build_lowest(name).from_gold(output), _build_lowest(name).from_gold_log_prob(log_p) / 4.0)


@pytest.mark.parametrize("epsilon", [0.1, 0.3])
def test_label_smoothing_of_a_structured_output_mixes_in_the_uniform_term(epsilon: float) -> None:
    """On whole distributions the mix is exactly torch's label smoothing; `from_gold` is the same
    mix, with the uniform term the output gives."""
    logits, targets = _batch(32, seed=7)
    log_probs = F.log_softmax(logits, dim=-1)
    log_p = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    output = GoldLogProb(log_p, uniform_nll=lambda: -log_probs.mean(dim=-1).mean())
    smoothed = LOSSES["label_smoothing"].build(NUM_CLASSES, epsilon=epsilon)
    torch.testing.assert_close(smoothed.from_gold(output), F.cross_entropy(logits, targets, label_smoothing=epsilon))
    with pytest.raises(NotImplementedError, match="gold_log_prob"):
        smoothed.from_gold_log_prob(log_p)  # log p(gold) alone is not enough for it
