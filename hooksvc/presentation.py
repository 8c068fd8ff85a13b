"""How refs and times are shown to people, the same on the pages, in the CLI and in commit statuses."""

from __future__ import annotations

import time

#: The prefixes `short_ref` drops.
_REF_PREFIXES = ("refs/heads/", "refs/tags/")


def short_ref(ref: str) -> str:
    """`main` from `refs/heads/main`, `v1` from `refs/tags/v1`; anything else unchanged."""
    for prefix in _REF_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def format_ago(ts: float | None, now: float | None = None) -> str:
    """A rough age: `just now`, `42s ago`, `5m ago`, `3h ago`, `2d ago`; "" for no time."""
    if ts is None:
        return ""
    age = max(0.0, (time.time() if now is None else now) - ts)
    if age < 10:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if age >= size:
            return f"{int(age // size)}{unit} ago"
    return f"{int(age)}s ago"
