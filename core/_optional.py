"""Lazy imports of optional dependencies, each tied to the pip extra that provides it."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from rerankit.errors import MissingDependencyError


def is_available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, extra: str, purpose: str = "This feature") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``rerankit[extra]``."""
    if not is_available(module):
        raise MissingDependencyError(module, extra, purpose)
    return importlib.import_module(module)
