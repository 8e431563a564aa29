"""Which components a task can train: each component's `supports` against the task's `Offer`s.

Checked when the space is built, so that a study pairing a task with a component that cannot
work with it (a loss that needs whole distributions with a CRF head) is refused before anything
runs, not by every trial at run time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from spaces._base import Component, Offer, SpaceError


def unsupported(component: Component, offers: Sequence[Offer], candidates: Mapping[str, Sequence[str]]) -> Offer | None:
    """The first offer `component` cannot work with, among those that apply to the space's
    candidates (`candidates`: family -> components the space may choose); None when it can."""
    if not component.supports:
        return None
    for offer in offers:
        if offer.when is not None and offer.when[1] not in candidates.get(offer.when[0], ()):
            continue
        if not component.supports & offer.forms:
            return offer
    return None


def refusal(component: Component, family: str, task: str, offer: Offer) -> str:
    why = f" ({offer.why})" if offer.why else ""
    condition = f"with {offer.when[0]} {offer.when[1]!r}" if offer.when else "here"
    fix = f"; leave it out, or leave {offer.when[1]!r} out of {offer.when[0]}" if offer.when else "; leave it out"
    return (
        f"{component.name!r} cannot be used by task {task} {condition}: it supports {', '.join(sorted(component.supports))}, "
        f"and the task offers {family} {', '.join(sorted(offer.forms))}{why}{fix}"
    )


def restrict_to_supported(
    families: Mapping[str, Any], spec: Mapping[str, Any], offers: Mapping[str, Sequence[Offer]], task: str, where: str,
) -> dict[str, Any]:
    """`families` (family -> FamilySpace) without the components the task cannot train.

    A family the study names keeps what it names, and a component there that cannot work is
    refused with the reason. A family it omits (every component, default ranges) quietly leaves
    such components out: they stay available to a study that asks for them where they work.
    """
    candidates = {family: (*fs.candidates, *fs.always) for family, fs in families.items()}
    restricted = dict(families)
    for family, family_offers in offers.items():
        if family not in families:
            continue
        fs = families[family]
        blocked = {}
        for name in candidates[family]:
            offer = unsupported(fs.registry[name], family_offers, candidates)
            if offer is not None:
                blocked[name] = offer
        if not blocked:
            continue
        if family in spec:
            name, offer = next(iter(blocked.items()))
            raise SpaceError(f"{where}.{family}", refusal(fs.registry[name], family, task, offer))
        kept = tuple(name for name in fs.candidates if name not in blocked)
        if fs.registry.kind == "choice" and not kept:
            name, offer = next(iter(blocked.items()))
            raise SpaceError(f"{where}.{family}", refusal(fs.registry[name], family, task, offer))
        restricted[family] = replace(
            fs, candidates=kept, always=tuple(n for n in fs.always if n not in blocked),
            params={n: p for n, p in fs.params.items() if n not in blocked},
        )
    return restricted
