from __future__ import annotations

from typing import Any

from spaces import Categorical, Fixed, Float, Int
from spaces._base import Param


def lowest(param: Param) -> Any:
    """The low end of a declared range, or its first choice."""
    if isinstance(param, (Float, Int)):
        return param.low
    if isinstance(param, Categorical):
        return param.choices[0]
    assert isinstance(param, Fixed)
    return param.value
