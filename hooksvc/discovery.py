"""How a registry finds its entries: every module of a package that declares one (`PROVIDER`,
`REPORTER`, ...), so adding an entry is adding a module and no list has to learn of it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")


class ForKinds(Protocol):
    """An entry of a registry keyed by host kind (a status reporter, a comments API)."""

    @property
    def kinds(self) -> frozenset[str]: ...


K = TypeVar("K", bound=ForKinds)


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


def by_kind(entries: Iterable[K], what: str) -> dict[str, K]:
    """kind -> the entry that claims it; ValueError when two entries claim one kind (`what` names
    the entries in the message: "status reporters")."""
    found: dict[str, K] = {}
    for entry in entries:
        for kind in entry.kinds:
            if kind in found:
                raise ValueError(f"host kind {kind!r} has two {what}")
            found[kind] = entry
    return found
