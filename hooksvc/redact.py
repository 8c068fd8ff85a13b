"""Redaction of secrets from text that goes to logs."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
#: Credentials embedded in URLs (`https://user:token@host`, `https://token@host`).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s]+)@")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value and every credential in a URL by `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)
