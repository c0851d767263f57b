"""Package attributes imported from their modules on first use (PEP 562).

Why: ``certgate --version`` and ``policy check`` must not pay for importing asyncssh, the
YAML parser or the evaluator when they do not use them, yet callers keep writing
``from certgate.consoles import open_console``. One implementation for every package that
exports this way.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class LazyExports:
    """A package's ``__getattr__``/``__dir__``: ``module_of`` maps an exported name to the
    submodule defining it; a loaded name is stored in the package so later lookups are plain."""

    def __init__(self, package: str, module_of: Mapping[str, str],
                 namespace: dict[str, Any]) -> None:
        self._package = package
        self._module_of = module_of
        self._namespace = namespace

    def load(self, name: str) -> Any:
        module = self._module_of.get(name)
        if module is None:
            raise AttributeError(f"module {self._package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{self._package}.{module}"), name)
        self._namespace[name] = value  # later lookups skip the package's __getattr__
        return value

    def names(self) -> list[str]:
        return sorted([*self._namespace, *self._module_of])
