"""Exact linear-chain CRF for sequence labelling (the CRF layer of a BiLSTM-CRF, Lample et al. 2016).

All computations are vectorized over the batch and the tag set; the only Python loops run over time
steps. Sentences are right-padded: each mask is a contiguous prefix of True values, and positions where
the mask is False are ignored (their emissions and tags may hold anything, tags may be -100).

Tagging-scheme constraints (IOB2, BIOES) are folded in as fixed scores of ``IMPOSSIBLE`` added to the
forbidden transitions, starts and ends, both in the likelihood and in Viterbi decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainables.data.tag_schemes import TARGET_SCHEMES, parse_tag

# Finite on purpose: a gold path through a forbidden transition gets a large finite loss, never NaN/inf.
IMPOSSIBLE = -1.0e4

_REDUCTIONS = ("mean", "sum", "none")


def transition_constraints(tags: Sequence[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which transitions, first tags and last tags a tagging scheme allows.

    IOB2: ``I-X`` only after ``B-X`` or ``I-X``; a sentence cannot start with ``I-X``; any end is allowed.
    BIOES: after ``B-X`` or ``I-X`` only ``I-X`` or ``E-X``; after ``O``, ``E-*`` or ``S-*`` only ``O``,
    ``B-*`` or ``S-*``; a sentence starts only with ``O``, ``B-*`` or ``S-*`` and ends only with ``O``,
    ``E-*`` or ``S-*``.

    Args:
        tags: The tag names, in the order of the CRF's tag indices (e.g. ``["O", "B-PER", "I-PER"]``).
            Entity types are arbitrary strings and may contain "-" (``"B-creative-work"``).
        scheme: ``"iob2"`` or ``"bioes"`` (case-insensitive).

    Returns:
        ``(allowed, allowed_start, allowed_end)``: bool tensors of shape ``[K, K]``, ``[K]`` and ``[K]``;
        ``allowed[i, j]`` is True when tag ``j`` may follow tag ``i``.

    Raises:
        ValueError: If the scheme is unknown or a tag does not fit it.
    """
    normalized_scheme = scheme.lower() if isinstance(scheme, str) else scheme
    if normalized_scheme not in TARGET_SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; expected one of {sorted(TARGET_SCHEMES)}")

    parsed = [parse_tag(tag, normalized_scheme) for tag in tags]
    prefixes = [prefix for prefix, _ in parsed]
    type_ids = {entity_type: index for index, entity_type in enumerate(dict.fromkeys(t for _, t in parsed if t is not None))}
    # -1 marks "O", which shares no entity type with anything.
    entity_type = torch.tensor([-1 if t is None else type_ids[t] for _, t in parsed], dtype=torch.long)

    def has_prefix(prefix: str) -> torch.Tensor:
        return torch.tensor([p == prefix for p in prefixes], dtype=torch.bool)

    is_outside, is_begin, is_inside = has_prefix("O"), has_prefix("B"), has_prefix("I")
    is_end, is_single = has_prefix("E"), has_prefix("S")
    same_type = (entity_type[:, None] == entity_type[None, :]) & (entity_type[:, None] >= 0)
    inside_entity = is_begin | is_inside  # tags after which the entity must go on

    if normalized_scheme == "iob2":
        continues_entity = inside_entity[:, None] & same_type
        allowed = ~is_inside[None, :] | continues_entity
        allowed_start = ~is_inside
        allowed_end = torch.ones(len(tags), dtype=torch.bool)
    else:
        continues_entity = (is_inside | is_end)[None, :] & same_type
        opens_new_chunk = (is_outside | is_begin | is_single)[None, :].expand(len(tags), len(tags))
        allowed = torch.where(inside_entity[:, None], continues_entity, opens_new_chunk)
        allowed_start = is_outside | is_begin | is_single
        allowed_end = is_outside | is_end | is_single
    return allowed, allowed_start, allowed_end


class CRF(nn.Module):
    """Linear-chain conditional random field over ``num_tags`` tags.

    The score of a tag path ``y`` for a sentence of length ``n`` is
    ``start[y_0] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_{n-1}]``,
    plus ``IMPOSSIBLE`` for every forbidden transition, start or end when constraints are given.

    Attributes:
        transitions: Learned ``[K, K]`` scores of moving from tag ``i`` to tag ``j``.
        start_transitions: Learned ``[K]`` scores of starting a sentence with each tag.
        end_transitions: Learned ``[K]`` scores of ending a sentence with each tag.
        transition_penalty, start_penalty, end_penalty: Fixed buffers, 0 where allowed and
            ``IMPOSSIBLE`` where forbidden (all zeros without constraints).
    """

    def __init__(self, num_tags: int, constraints: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """Creates the CRF.

        Args:
            num_tags: Number of tags ``K``.
            constraints: Optional ``(allowed [K, K], allowed_start [K], allowed_end [K])`` bool tensors, as
                returned by :func:`transition_constraints`.

        Raises:
            ValueError: If ``num_tags`` is not positive or the constraint shapes do not match it.
        """
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

        if constraints is None:
            allowed = torch.ones(num_tags, num_tags, dtype=torch.bool)
            allowed_start = allowed_end = torch.ones(num_tags, dtype=torch.bool)
        else:
            allowed, allowed_start, allowed_end = (torch.as_tensor(c).bool() for c in constraints)
            expected = {"allowed": (num_tags, num_tags), "allowed_start": (num_tags,), "allowed_end": (num_tags,)}
            for name, tensor in zip(expected, (allowed, allowed_start, allowed_end)):
                if tuple(tensor.shape) != expected[name]:
                    raise ValueError(f"constraint {name} has shape {tuple(tensor.shape)}, expected {expected[name]} for {num_tags} tags")
        # Buffers are always registered (zeros when unconstrained) so state dicts stay interchangeable.
        self.register_buffer("transition_penalty", self._penalty(allowed))
        self.register_buffer("start_penalty", self._penalty(allowed_start))
        self.register_buffer("end_penalty", self._penalty(allowed_end))

    @staticmethod
    def _penalty(allowed: torch.Tensor) -> torch.Tensor:
        return torch.where(allowed, 0.0, IMPOSSIBLE).float()

    def extra_repr(self) -> str:
        constrained = bool((self.transition_penalty != 0).any() or (self.start_penalty != 0).any() or (self.end_penalty != 0).any())
        return f"num_tags={self.num_tags}, constrained={constrained}"

    # ---- public API -------------------------------------------------------------------------------

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log of the sum of exp(score) over all tag paths (forward algorithm).

        Args:
            emissions: ``[B, T, K]`` per-token tag scores.
            mask: ``[B, T]`` bool, True on real tokens (a contiguous prefix, ``mask[:, 0]`` all True).

        Returns:
            ``[B]`` float32 (or wider) log-partition of each sentence.
        """
        emissions, mask = self._prepare(emissions, mask)
        return self._log_partition(emissions, mask)

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalized score of the given tag paths.

        Args:
            emissions: ``[B, T, K]`` per-token tag scores.
            tags: ``[B, T]`` tag indices; values at padded positions are ignored (may be -100).
            mask: ``[B, T]`` bool, True on real tokens.

        Returns:
            ``[B]`` score of each sentence's path.
        """
        emissions, mask = self._prepare(emissions, mask)
        return self._score(emissions, self._prepare_tags(tags, mask), mask)

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log-probability of the given tag paths: ``score - log_partition``.

        Args:
            emissions: ``[B, T, K]`` per-token tag scores.
            tags: ``[B, T]`` gold tag indices; values at padded positions are ignored.
            mask: ``[B, T]`` bool, True on real tokens.

        Returns:
            ``[B]`` log-likelihood of each sentence (at most 0).
        """
        emissions, mask = self._prepare(emissions, mask)
        tags = self._prepare_tags(tags, mask)
        return self._score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood of the gold paths (the training loss).

        Args:
            emissions: ``[B, T, K]`` per-token tag scores.
            tags: ``[B, T]`` gold tag indices; values at padded positions are ignored.
            mask: ``[B, T]`` bool, True on real tokens.
            reduction: ``"mean"`` over sentences, ``"sum"``, or ``"none"`` for a ``[B]`` tensor.

        Returns:
            The reduced loss (a scalar), or ``[B]`` with ``reduction="none"``.

        Raises:
            ValueError: On an unknown reduction or malformed inputs.
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")
        nll = -self.log_likelihood(emissions, tags, mask)
        if reduction == "mean":
            return nll.mean()
        if reduction == "sum":
            return nll.sum()
        return nll

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Most likely tag path of each sentence (Viterbi).

        Args:
            emissions: ``[B, T, K]`` per-token tag scores.
            mask: ``[B, T]`` bool, True on real tokens.

        Returns:
            ``[B, T]`` long tensor of tag indices; 0 where the mask is False.
        """
        emissions, mask = self._prepare(emissions, mask)
        batch_size, seq_len, _ = emissions.shape
        transitions, start, end = self._effective_scores()

        best_score = start + emissions[:, 0]  # [B, K]: best score of a path ending in each tag
        backpointers = []  # backpointers[t][b, j]: best tag at t given tag j at t + 1
        for t in range(1, seq_len):
            candidates = best_score.unsqueeze(2) + transitions  # [B, K(prev), K(next)]
            best_previous_score, best_previous_tag = candidates.max(dim=1)
            # Padded steps keep the score frozen at the sentence's last real position.
            best_score = torch.where(mask[:, t, None], best_previous_score + emissions[:, t], best_score)
            backpointers.append(best_previous_tag)

        last_position = mask.sum(dim=1) - 1  # [B]
        best_last_tag = (best_score + end).argmax(dim=1)
        path = torch.empty(batch_size, seq_len, dtype=torch.long, device=emissions.device)
        current_tag = best_last_tag
        for t in range(seq_len - 1, -1, -1):
            if t < seq_len - 1:
                followed = backpointers[t].gather(1, current_tag.unsqueeze(1)).squeeze(1)
                # At and beyond each sentence's last position, the path is its best final tag.
                current_tag = torch.where(t < last_position, followed, best_last_tag)
            path[:, t] = current_tag
        return path.masked_fill(~mask, 0)

    # ---- internals --------------------------------------------------------------------------------

    def _effective_scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Learned scores plus the constraint penalties: (transitions, start, end)."""
        return (
            self.transitions + self.transition_penalty,
            self.start_transitions + self.start_penalty,
            self.end_transitions + self.end_penalty,
        )

    def _prepare(self, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Checks shapes and the mask, upcasts to at least float32 and zeroes padded emissions."""
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            raise ValueError(f"emissions must have shape [B, T, {self.num_tags}], got {tuple(emissions.shape)}")
        if tuple(mask.shape) != tuple(emissions.shape[:2]):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match emissions {tuple(emissions.shape[:2])}")
        if emissions.shape[1] == 0:
            raise ValueError("sequences must have at least one time step")
        mask = mask.bool()
        # One host sync for both checks; the detailed message is only worked out on failure.
        if not bool(mask[:, 0].all() & (mask[:, 1:] <= mask[:, :-1]).all()):
            if not bool(mask[:, 0].all()):
                raise ValueError("mask[:, 0] must be True for every sentence (each sentence needs at least one token)")
            raise ValueError("each sentence's mask must be a contiguous prefix of True values (right padding only)")
        # Half-precision emissions (autocast) would lose the logsumexp; float64 is kept as is.
        emissions = emissions.to(torch.promote_types(emissions.dtype, torch.float32))
        # Zeroing padded emissions keeps garbage there (even inf/NaN) out of both the values and the gradients.
        return emissions.masked_fill(~mask.unsqueeze(2), 0.0), mask

    def _prepare_tags(self, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if tuple(tags.shape) != tuple(mask.shape):
            raise ValueError(f"tags shape {tuple(tags.shape)} does not match mask {tuple(mask.shape)}")
        # Padded tags may be -100 or anything else: clamp so gathering is safe; the mask drops them.
        return tags.long().clamp(0, self.num_tags - 1)

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        transitions, start, end = self._effective_scores()
        # The forward algorithm as one [B, K] x [K, K] product per step, in the exp domain rescaled by each
        # sentence's best tag. Forbidden transitions become exact zeros of exp(transitions), computed once,
        # so exp() never sees IMPOSSIBLE: a logsumexp over [B, K, K] scores did, every step, and ATen's CPU
        # exp is ~10x slower on inputs below about -87 (where float32 underflows).
        # Shifted by the largest score too, so that exp() cannot overflow whatever the CRF learns.
        transition_top = transitions.amax().detach()
        exp_transitions = (transitions - transition_top).exp()
        floor = torch.finfo(emissions.dtype).tiny  # a tag no live path reaches: keeps log() and gradients finite
        log_alpha = start + emissions[:, 0]  # [B, K]: log-sum of scores of all paths ending in each tag
        with torch.autocast(emissions.device.type, enabled=False):  # the product must not run in half precision
            for t in range(1, emissions.shape[1]):
                top = log_alpha.amax(dim=1, keepdim=True).detach()  # any shift is exact; its gradient cancels
                total = torch.mm((log_alpha - top).exp(), exp_transitions)
                next_log_alpha = total.clamp_min(floor).log() + top + transition_top + emissions[:, t]
                log_alpha = torch.where(mask[:, t, None], next_log_alpha, log_alpha)
        return torch.logsumexp(log_alpha + end, dim=1)

    def _score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        transitions, start, end = self._effective_scores()
        emission_scores = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, T]; padded are 0 already
        transition_scores = transitions[tags[:, :-1], tags[:, 1:]].masked_fill(~mask[:, 1:], 0.0)  # [B, T-1]
        last_position = mask.sum(dim=1) - 1
        last_tags = tags.gather(1, last_position.unsqueeze(1)).squeeze(1)
        return start[tags[:, 0]] + emission_scores.sum(dim=1) + transition_scores.sum(dim=1) + end[last_tags]
