"""Tag schemes for entity tagging: IOB1, IOB2 and BIOES (prefixes, parsing a tag, conversions).

A tag is "O" or PREFIX-TYPE; entity types may contain "-" ("B-creative-work"), so a tag splits on
its first "-" only. IOB1 is only ever a file format (the original CoNLL-2003 files): models are
trained and evaluated in a target scheme, IOB2 or BIOES.
"""

from __future__ import annotations

from collections.abc import Sequence

SCHEMES = ("iob1", "iob2", "bioes")
# Schemes a model is trained and evaluated in.
TARGET_SCHEMES = ("iob2", "bioes")
PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "bioes": ("B", "I", "E", "S")}
# Tag-set order within a type: the order the prefixes occur in an entity.
_PREFIX_ORDER = {"B": 0, "I": 1, "E": 2, "S": 3}


class TagError(ValueError):
    """A tag that does not fit its scheme; `position` is its index in the sentence, when known."""

    def __init__(self, tag: str, scheme: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        expected = "/".join(f"{prefix}-TYPE" for prefix in PREFIXES[scheme])
        super().__init__(f"tag {tag!r}{where} is not a valid {scheme} tag (expected O or {expected})")
        self.tag, self.scheme, self.position = tag, scheme, position


def parse_tag(tag: str, scheme: str, position: int | None = None) -> tuple[str, str | None]:
    """(prefix, entity type) of a tag; ("O", None) for "O".

    Raises:
        TagError: The tag is not "O" or PREFIX-TYPE with a prefix of `scheme` and a non-empty type.
    """
    if tag == "O":
        return "O", None
    prefix, dash, kind = tag.partition("-")
    if not dash or not kind or prefix not in PREFIXES[scheme]:
        raise TagError(tag, scheme, position)
    return prefix, kind


def tag_order_key(tag: str) -> tuple[int, str, int]:
    """Sort key of a tag set: "O" first, then by entity type, then by prefix in entity order
    (B, I, E, S); anything else last, by name."""
    if tag == "O":
        return 0, "", 0
    prefix, _, kind = tag.partition("-")
    if prefix not in _PREFIX_ORDER:
        return 2, tag, 0
    return 1, kind, _PREFIX_ORDER[prefix]


def convert_scheme(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Convert one sentence's tags between IOB1, IOB2 and BIOES.

    An entity starts at a B-X or S-X tag, or at an I-X/E-X tag not continuing an entity of type X
    (after O, another type, or an entity that ended with E-X/S-X). So IOB1's I-X that opens an
    entity becomes B-X in IOB2, and a stray I-X in IOB2 input is read the same way (as conlleval
    does). The output is always well-formed in the target scheme, so converting to the same
    scheme returns well-formed tags unchanged and only repairs such a stray I-X.

    Args:
        tags: The sentence's tags, e.g. ["I-ORG", "O", "I-PER", "B-PER"].
        source: Scheme of `tags`: "iob1", "iob2" or "bioes".
        target: Scheme to convert to: "iob1", "iob2" or "bioes".

    Returns:
        The converted tags, one per input tag.

    Raises:
        ValueError: An unknown scheme.
        TagError: A tag that does not fit the source scheme (e.g. "X-PER", "B-" or "E-PER" in
            IOB2), with its position in the sentence.
    """
    for scheme in (source, target):
        if scheme not in SCHEMES:
            raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    parsed = [parse_tag(tag, source, index) for index, tag in enumerate(tags)]

    begins = [False] * len(parsed)
    previous_prefix, previous_kind = "O", None
    for index, (prefix, kind) in enumerate(parsed):
        if prefix != "O":
            begins[index] = prefix in ("B", "S") or kind != previous_kind or previous_prefix in ("E", "S")
        previous_prefix, previous_kind = prefix, kind

    converted = []
    last = len(parsed) - 1
    for index, (prefix, kind) in enumerate(parsed):
        if prefix == "O":
            converted.append("O")
        elif target == "iob2":
            converted.append(("B-" if begins[index] else "I-") + kind)
        elif target == "iob1":
            # IOB1 marks B- only where an entity directly follows one of the same type.
            follows_same = begins[index] and index > 0 and parsed[index - 1][1] == kind
            converted.append(("B-" if follows_same else "I-") + kind)
        else:
            ends = index == last or parsed[index + 1][0] == "O" or begins[index + 1]
            if begins[index]:
                converted.append(("S-" if ends else "B-") + kind)
            else:
                converted.append(("E-" if ends else "I-") + kind)
    return converted
