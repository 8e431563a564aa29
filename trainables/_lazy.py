"""Deferred imports for modules whose classes travel to Ray workers.

A trial worker unpickles the encoded data (classes defined next to the loaders); with a plain
`import datasets` at the top of the loader module it would also import `datasets` and pyarrow
(~100 MiB and 0.4 s per worker) for nothing: only the driver reads files.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """`name`, imported on first attribute access (importlib's LazyLoader)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
