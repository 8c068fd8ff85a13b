"""What the API's JSON bodies and the dashboard's forms may name: a sha or a ref, checked the same way."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hooksvc.errors import BadRequest

#: A commit: 7 to 40 lower-case hex digits.
SHA = re.compile(r"[0-9a-f]{7,40}")
#: A branch or tag name (or a full ref): no leading dash or dot, no `..` (checked apart).
REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def field(data: Mapping[str, object], key: str, pattern: re.Pattern[str]) -> str:
    """`data[key]` when it is a valid sha or ref (per `pattern`), "" when absent; else BadRequest naming the key."""
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise BadRequest(f"{key!r} is not a valid {'sha' if pattern is SHA else 'ref'}: {value!r}")
    return value
