"""How a registry finds its entries: every module of a package that declares one (`PROVIDER`,
`REPORTER`, ...), so adding an entry is adding a module and no list has to learn of it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def declared(package: str, path: Iterable[str], attribute: str, kind: type[T]) -> list[T]:
    """`module.<attribute>` of each module of `package` (its `__path__`) that sets it, in module-name
    order; TypeError, naming the module, when one is not a `kind`."""
    found: list[T] = []
    for module in sorted(m.name for m in pkgutil.iter_modules(list(path))):
        value = getattr(importlib.import_module(f"{package}.{module}"), attribute, None)
        if value is None:
            continue  # a module the entries share (base, payload), not an entry
        if not isinstance(value, kind):
            raise TypeError(f"{package}.{module}.{attribute} must be a {kind.__name__}, got {type(value).__name__}")
        found.append(value)
    return found
