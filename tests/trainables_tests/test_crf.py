"""Tests for trainables.crf: the linear-chain CRF checked against brute-force enumeration of all paths."""

from __future__ import annotations

import itertools

import pytest
import torch

from trainables.crf import CRF, IMPOSSIBLE, transition_constraints

IOB2_TAGS = ["O", "B-PER", "I-PER", "B-creative-work", "I-creative-work"]
BIOES_TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-creative-work", "I-creative-work", "E-creative-work", "S-creative-work"]


# ---- helpers ------------------------------------------------------------------------------------


def lengths_to_mask(lengths: list[int], seq_len: int) -> torch.Tensor:
    return torch.arange(seq_len)[None, :] < torch.tensor(lengths)[:, None]


def random_crf(num_tags: int, generator: torch.Generator, constraints=None, scale: float = 1.0) -> CRF:
    """A CRF with random (not small) parameters, so the transitions matter."""
    crf = CRF(num_tags, constraints)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return crf


def brute_force_path_scores(crf: CRF, emissions: torch.Tensor, length: int) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    """Every path of the given length with its score, in float64, penalties for forbidden moves included."""
    transitions = (crf.transitions + crf.transition_penalty).double().detach()
    start = (crf.start_transitions + crf.start_penalty).double().detach()
    end = (crf.end_transitions + crf.end_penalty).double().detach()
    emissions = emissions.double().detach()
    paths = list(itertools.product(range(crf.num_tags), repeat=length))
    scores = []
    for path in paths:
        total = start[path[0]] + end[path[-1]]
        for t, tag in enumerate(path):
            total = total + emissions[t, tag]
            if t:
                total = total + transitions[path[t - 1], tag]
        scores.append(total)
    return paths, torch.stack(scores)


def random_batch(generator: torch.Generator, num_tags: int, lengths: list[int], scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    seq_len = max(lengths)
    emissions = torch.randn(len(lengths), seq_len, num_tags, generator=generator) * scale
    return emissions, lengths_to_mask(lengths, seq_len)


def is_valid_path(path: list[int], constraints) -> bool:
    allowed, allowed_start, allowed_end = constraints
    return bool(allowed_start[path[0]] and allowed_end[path[-1]] and all(allowed[a, b] for a, b in zip(path, path[1:])))


def random_constraints(num_tags: int, generator: torch.Generator):
    """Random constraint matrices that still leave some valid path (start/end/self-loop on tag 0)."""
    allowed = torch.rand(num_tags, num_tags, generator=generator) < 0.6
    allowed[0, 0] = True
    allowed_start = torch.rand(num_tags, generator=generator) < 0.6
    allowed_end = torch.rand(num_tags, generator=generator) < 0.6
    allowed_start[0] = allowed_end[0] = True
    return allowed, allowed_start, allowed_end


CASES = [
    pytest.param(3, None, id="K3-unconstrained"),
    pytest.param(4, None, id="K4-unconstrained"),
    pytest.param(3, "random", id="K3-random-constraints"),
    pytest.param(4, "random", id="K4-random-constraints"),
    pytest.param(3, "iob2", id="K3-iob2"),
    pytest.param(4, "bioes", id="K4-bioes-S-only"),
]


def make_constraints(kind: str | None, num_tags: int, generator: torch.Generator):
    if kind is None:
        return None
    if kind == "random":
        return random_constraints(num_tags, generator)
    if kind == "iob2":
        return transition_constraints(["O", "B-X", "I-X"][:num_tags], "iob2")
    return transition_constraints(["O", "B-X", "E-X", "S-X"][:num_tags], "bioes")


# ---- brute force --------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tags, constraint_kind", CASES)
def test_log_partition_score_and_viterbi_match_brute_force(num_tags: int, constraint_kind: str | None) -> None:
    generator = torch.Generator().manual_seed(num_tags * 100 + len(str(constraint_kind)))
    for _ in range(3):
        crf = random_crf(num_tags, generator, make_constraints(constraint_kind, num_tags, generator))
        lengths = [5, 1, 3, 4, 2]
        emissions, mask = random_batch(generator, num_tags, lengths)
        emissions[~mask] = 1e3  # garbage at padding
        tags = torch.randint(0, num_tags, mask.shape, generator=generator).masked_fill(~mask, -100)

        log_partition = crf.log_partition(emissions, mask)
        scores = crf.score(emissions, tags, mask)
        decoded = crf.decode(emissions, mask)
        assert log_partition.shape == scores.shape == (len(lengths),)
        assert decoded.shape == mask.shape and decoded.dtype == torch.long

        for b, length in enumerate(lengths):
            paths, path_scores = brute_force_path_scores(crf, emissions[b], length)
            expected_log_partition = torch.logsumexp(path_scores, dim=0)
            torch.testing.assert_close(log_partition[b].double(), expected_log_partition, rtol=1e-5, atol=1e-4)

            gold = tuple(tags[b, :length].tolist())
            torch.testing.assert_close(scores[b].double(), path_scores[paths.index(gold)], rtol=1e-5, atol=1e-4)

            best = int(path_scores.argmax())
            assert tuple(decoded[b, :length].tolist()) == paths[best]
            assert decoded[b, length:].eq(0).all()
            viterbi_score = crf.score(emissions[b : b + 1], decoded[b : b + 1], mask[b : b + 1])
            torch.testing.assert_close(viterbi_score[0].double(), path_scores.max(), rtol=1e-5, atol=1e-4)


def test_score_equals_hand_sum() -> None:
    generator = torch.Generator().manual_seed(1)
    crf = random_crf(4, generator)
    emissions, mask = random_batch(generator, 4, [3, 2])
    tags = torch.tensor([[2, 0, 3], [1, 3, -100]])
    scores = crf.score(emissions, tags, mask)
    start, end, trans = crf.start_transitions, crf.end_transitions, crf.transitions
    first = start[2] + emissions[0, 0, 2] + trans[2, 0] + emissions[0, 1, 0] + trans[0, 3] + emissions[0, 2, 3] + end[3]
    second = start[1] + emissions[1, 0, 1] + trans[1, 3] + emissions[1, 1, 3] + end[3]
    torch.testing.assert_close(scores, torch.stack([first, second]))


def test_log_likelihood_is_score_minus_log_partition_and_reductions() -> None:
    generator = torch.Generator().manual_seed(2)
    crf = random_crf(4, generator)
    emissions, mask = random_batch(generator, 4, [4, 2, 3])
    tags = torch.randint(0, 4, mask.shape, generator=generator)
    log_likelihood = crf.log_likelihood(emissions, tags, mask)
    torch.testing.assert_close(log_likelihood, crf.score(emissions, tags, mask) - crf.log_partition(emissions, mask))
    assert (log_likelihood <= 0).all()
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="none"), -log_likelihood)
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="sum"), -log_likelihood.sum())
    torch.testing.assert_close(crf(emissions, tags, mask), -log_likelihood.mean())
    with pytest.raises(ValueError, match="reduction"):
        crf(emissions, tags, mask, reduction="avg")


# ---- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("constraint_kind", [None, "random"])
def test_nll_gradient_is_marginals_minus_gold(constraint_kind: str | None) -> None:
    generator = torch.Generator().manual_seed(3)
    num_tags, lengths = 3, [4, 2, 1, 3]
    crf = random_crf(num_tags, generator, make_constraints(constraint_kind, num_tags, generator))
    emissions, mask = random_batch(generator, num_tags, lengths)
    emissions.requires_grad_(True)
    if constraint_kind is None:
        tags = torch.randint(0, num_tags, mask.shape, generator=generator)
    else:
        tags = torch.zeros(mask.shape, dtype=torch.long)  # tag 0 may start, loop and end: a valid gold path

    crf(emissions, tags, mask, reduction="sum").backward()

    expected = torch.zeros(emissions.shape, dtype=torch.float64)
    for b, length in enumerate(lengths):
        paths, path_scores = brute_force_path_scores(crf, emissions[b], length)
        probabilities = torch.softmax(path_scores, dim=0)
        for path, probability in zip(paths, probabilities):
            expected[b, torch.arange(length), torch.tensor(path)] += probability
        expected[b, torch.arange(length), tags[b, :length]] -= 1.0
    torch.testing.assert_close(emissions.grad.double(), expected, rtol=0, atol=1e-5)


def test_mean_reduction_gradient_reaches_parameters() -> None:
    generator = torch.Generator().manual_seed(4)
    crf = CRF(5, transition_constraints(IOB2_TAGS, "iob2"))
    emissions, mask = random_batch(generator, 5, [6, 3])
    crf(emissions, torch.zeros(mask.shape, dtype=torch.long), mask).backward()
    for parameter in crf.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


def test_gold_path_through_forbidden_transition_has_large_finite_loss() -> None:
    crf = CRF(5, transition_constraints(IOB2_TAGS, "iob2"))
    emissions = torch.zeros(1, 2, 5, requires_grad=True)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss = crf(emissions, torch.tensor([[0, 2]]), mask)  # O then I-PER: forbidden
    assert torch.isfinite(loss) and loss > -IMPOSSIBLE / 2
    loss.backward()
    assert torch.isfinite(emissions.grad).all()


# ---- padding --------------------------------------------------------------------------------------


def test_padding_changes_neither_likelihood_nor_decode() -> None:
    generator = torch.Generator().manual_seed(5)
    crf = random_crf(5, generator, transition_constraints(IOB2_TAGS, "iob2"))
    emissions, mask = random_batch(generator, 5, [6, 3, 1, 4])
    tags = torch.randint(0, 5, mask.shape, generator=generator)

    padding = 4
    padded_emissions = torch.cat([emissions, torch.randn(4, padding, 5, generator=generator) * 1e3], dim=1)
    padded_emissions[1, 3:] = float("nan")  # even NaN garbage stays out
    padded_emissions[2, 1:] = float("inf")
    padded_emissions = padded_emissions.requires_grad_(True)
    padded_mask = torch.cat([mask, torch.zeros(4, padding, dtype=torch.bool)], dim=1)
    padded_tags = torch.cat([tags, torch.full((4, padding), -100)], dim=1)

    torch.testing.assert_close(crf.log_likelihood(padded_emissions, padded_tags, padded_mask), crf.log_likelihood(emissions, tags, mask))
    torch.testing.assert_close(crf.decode(padded_emissions, padded_mask)[:, : mask.shape[1]], crf.decode(emissions, mask))
    assert crf.decode(padded_emissions, padded_mask)[:, mask.shape[1] :].eq(0).all()

    crf(padded_emissions, padded_tags, padded_mask).backward()
    assert torch.isfinite(padded_emissions.grad).all()
    assert padded_emissions.grad[~padded_mask].eq(0).all()


def test_padded_tag_values_are_ignored() -> None:
    generator = torch.Generator().manual_seed(6)
    crf = random_crf(4, generator)
    emissions, mask = random_batch(generator, 4, [5, 2])
    tags = torch.randint(0, 4, mask.shape, generator=generator)
    other = tags.clone()
    other[1, 2:] = torch.tensor([-100, 3, 999])
    torch.testing.assert_close(crf.score(emissions, tags, mask), crf.score(emissions, other, mask))


def test_invalid_masks_and_shapes_raise() -> None:
    crf = CRF(3)
    emissions = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match=r"mask\[:, 0\]"):
        crf.log_partition(emissions, torch.tensor([[True, True, False, False], [False, True, True, True]]))
    with pytest.raises(ValueError, match="contiguous prefix"):
        crf.decode(emissions, torch.tensor([[True, False, True, False], [True, True, True, True]]))
    with pytest.raises(ValueError, match="emissions"):
        crf.log_partition(torch.randn(2, 4, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="tags"):
        crf.score(emissions, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        CRF(3, transition_constraints(IOB2_TAGS, "iob2"))


# ---- constrained decoding -----------------------------------------------------------------------


def one_hot_emissions(sequence: list[int], num_tags: int, strength: float = 50.0) -> torch.Tensor:
    emissions = torch.zeros(1, len(sequence), num_tags)
    emissions[0, torch.arange(len(sequence)), torch.tensor(sequence)] = strength
    return emissions


@pytest.mark.parametrize(
    "sequence",
    [
        ["O", "I-PER"],
        ["I-PER", "I-PER", "O"],
        ["B-PER", "I-creative-work", "O"],
        ["O", "I-creative-work", "I-creative-work", "O"],
    ],
)
def test_iob2_decoding_never_produces_invalid_sequences(sequence: list[str]) -> None:
    constraints = transition_constraints(IOB2_TAGS, "iob2")
    wanted = [IOB2_TAGS.index(tag) for tag in sequence]
    assert not is_valid_path(wanted, constraints)
    emissions = one_hot_emissions(wanted, len(IOB2_TAGS))
    mask = torch.ones(1, len(wanted), dtype=torch.bool)

    assert CRF(len(IOB2_TAGS)).decode(emissions, mask)[0].tolist() == wanted  # unconstrained follows emissions
    decoded = CRF(len(IOB2_TAGS), constraints).decode(emissions, mask)[0].tolist()
    assert is_valid_path(decoded, constraints)
    assert not IOB2_TAGS[decoded[0]].startswith("I-")


@pytest.mark.parametrize(
    "sequence",
    [
        ["I-PER", "E-PER"],  # cannot start inside an entity
        ["E-PER"],  # cannot start with E-
        ["O", "B-PER"],  # cannot end right after B-
        ["B-PER", "I-PER"],  # cannot end inside an entity
        ["B-PER", "O", "O"],  # after B- only I-/E- of the same type
        ["B-PER", "E-creative-work"],  # type mismatch
        ["S-PER", "I-PER", "E-PER"],  # after S- only O/B-/S-
        ["O", "E-PER"],  # E- only after B-/I-
    ],
)
def test_bioes_decoding_never_produces_invalid_sequences(sequence: list[str]) -> None:
    constraints = transition_constraints(BIOES_TAGS, "bioes")
    wanted = [BIOES_TAGS.index(tag) for tag in sequence]
    assert not is_valid_path(wanted, constraints)
    emissions = one_hot_emissions(wanted, len(BIOES_TAGS))
    mask = torch.ones(1, len(wanted), dtype=torch.bool)

    assert CRF(len(BIOES_TAGS)).decode(emissions, mask)[0].tolist() == wanted
    decoded = CRF(len(BIOES_TAGS), constraints).decode(emissions, mask)[0].tolist()
    assert is_valid_path(decoded, constraints)


@pytest.mark.parametrize("tags, scheme", [(IOB2_TAGS, "iob2"), (BIOES_TAGS, "bioes")])
def test_random_emissions_never_decode_forbidden_paths(tags: list[str], scheme: str) -> None:
    generator = torch.Generator().manual_seed(7)
    constraints = transition_constraints(tags, scheme)
    allowed, allowed_start, allowed_end = constraints
    num_tags = len(tags)
    crf = random_crf(num_tags, generator, constraints, scale=3.0)
    with torch.no_grad():
        crf.transitions[~allowed] += 100.0  # learned scores that favour forbidden moves must not win either
        crf.start_transitions[~allowed_start] += 100.0
        crf.end_transitions[~allowed_end] += 100.0

    for _ in range(200):
        lengths = torch.randint(1, 9, (8,), generator=generator)
        lengths[0] = 8
        emissions, mask = random_batch(generator, num_tags, lengths.tolist(), scale=10.0)
        decoded = crf.decode(emissions, mask)
        last_tags = decoded.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        assert allowed_start[decoded[:, 0]].all()
        assert allowed_end[last_tags].all()
        assert (allowed[decoded[:, :-1], decoded[:, 1:]] | ~mask[:, 1:]).all()
        assert decoded[~mask].eq(0).all()


# ---- transition_constraints ---------------------------------------------------------------------


def test_iob2_constraints_with_hyphenated_type() -> None:
    allowed, allowed_start, allowed_end = transition_constraints(IOB2_TAGS, "iob2")
    index = {tag: i for i, tag in enumerate(IOB2_TAGS)}
    assert allowed.shape == (5, 5) and allowed.dtype == torch.bool
    assert allowed[index["B-creative-work"], index["I-creative-work"]]
    assert allowed[index["I-creative-work"], index["I-creative-work"]]
    assert not allowed[index["O"], index["I-creative-work"]]
    assert not allowed[index["B-PER"], index["I-creative-work"]]
    assert not allowed[index["I-creative-work"], index["I-PER"]]
    assert allowed[index["I-PER"], index["B-creative-work"]]
    assert allowed[index["B-PER"], index["O"]] and allowed[index["O"], index["B-PER"]]
    # Every column except the I- ones is fully allowed.
    assert allowed[:, [index["O"], index["B-PER"], index["B-creative-work"]]].all()
    assert allowed_start.tolist() == [True, True, False, True, False]
    assert allowed_end.all()


def test_bioes_constraints_with_hyphenated_type() -> None:
    allowed, allowed_start, allowed_end = transition_constraints(BIOES_TAGS, "bioes")
    index = {tag: i for i, tag in enumerate(BIOES_TAGS)}

    def ok(previous: str, following: str) -> bool:
        return bool(allowed[index[previous], index[following]])

    for inside in ["B-creative-work", "I-creative-work"]:
        followers = {tag for tag in BIOES_TAGS if ok(inside, tag)}
        assert followers == {"I-creative-work", "E-creative-work"}
    for outside in ["O", "E-PER", "S-PER", "E-creative-work", "S-creative-work"]:
        followers = {tag for tag in BIOES_TAGS if ok(outside, tag)}
        assert followers == {"O", "B-PER", "S-PER", "B-creative-work", "S-creative-work"}
    assert {tag for tag, flag in zip(BIOES_TAGS, allowed_start.tolist()) if flag} == {"O", "B-PER", "S-PER", "B-creative-work", "S-creative-work"}
    assert {tag for tag, flag in zip(BIOES_TAGS, allowed_end.tolist()) if flag} == {"O", "E-PER", "S-PER", "E-creative-work", "S-creative-work"}


@pytest.mark.parametrize(
    "tags, scheme, message",
    [
        (["O", "B-PER"], "bilou", "bilou"),
        (["O", "B-PER", "E-PER"], "iob2", "E-PER"),
        (["O", "B-PER", "X-PER"], "bioes", "X-PER"),
        (["O", "B"], "iob2", "'B'"),
        (["O", "B-"], "bioes", "'B-'"),
        (["o"], "iob2", "'o'"),
    ],
)
def test_transition_constraints_rejects_bad_scheme_or_tag(tags: list[str], scheme: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transition_constraints(tags, scheme)


# ---- module behaviour ---------------------------------------------------------------------------


def test_constraints_are_buffers_not_parameters() -> None:
    crf = CRF(5, transition_constraints(IOB2_TAGS, "iob2"))
    parameter_names = {name for name, _ in crf.named_parameters()}
    assert parameter_names == {"transitions", "start_transitions", "end_transitions"}
    assert {"transition_penalty", "start_penalty", "end_penalty"} <= set(crf.state_dict())
    assert crf.transition_penalty.min() == IMPOSSIBLE and crf.start_penalty[2] == IMPOSSIBLE
    assert crf.transitions.abs().max() <= 0.1
    # Unconstrained and constrained CRFs share a state-dict layout.
    CRF(5).load_state_dict(crf.state_dict())


def test_half_precision_emissions_are_computed_in_float32() -> None:
    generator = torch.Generator().manual_seed(8)
    crf = random_crf(4, generator)
    emissions, mask = random_batch(generator, 4, [5, 3])
    tags = torch.randint(0, 4, mask.shape, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = crf(emissions.bfloat16(), tags, mask, reduction="none")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, crf(emissions.bfloat16().float(), tags, mask, reduction="none"))


def test_realistic_batch_runs_forward_backward_and_decode() -> None:
    generator = torch.Generator().manual_seed(9)
    batch_size, seq_len, num_tags = 64, 40, 17
    crf = CRF(num_tags)
    lengths = torch.randint(1, seq_len + 1, (batch_size,), generator=generator)
    mask = lengths_to_mask(lengths.tolist(), seq_len)
    emissions = torch.randn(batch_size, seq_len, num_tags, generator=generator, requires_grad=True)
    tags = torch.randint(0, num_tags, (batch_size, seq_len), generator=generator).masked_fill(~mask, -100)
    loss = crf(emissions, tags, mask)
    loss.backward()
    decoded = crf.decode(emissions, mask)
    assert torch.isfinite(loss) and emissions.grad is not None
    assert decoded.shape == (batch_size, seq_len)


@pytest.mark.parametrize("shift", [150.0, -150.0])
def test_log_partition_is_exact_with_large_learned_scores(shift: float) -> None:
    # The forward algorithm works in the exp domain after rescaling: scores far beyond float32's
    # exp range (|x| > 88) must neither overflow nor underflow.
    generator = torch.Generator().manual_seed(7)
    crf = random_crf(4, generator, constraints=make_constraints("bioes", 4, generator))
    with torch.no_grad():
        crf.transitions.add_(shift)
    emissions, mask = random_batch(generator, 4, [4, 2, 3])
    log_z = crf.log_partition(emissions, mask)
    assert torch.isfinite(log_z).all()
    for row, length in enumerate([4, 2, 3]):
        _, scores = brute_force_path_scores(crf, emissions[row], length)
        torch.testing.assert_close(log_z[row].double(), torch.logsumexp(scores, dim=0), rtol=1e-5, atol=1e-3)
