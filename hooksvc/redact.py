"""What may reach a log: secrets redacted, and untrusted values made safe for a line-based log.

A value from outside (a repository name, a request path) is logged through `loggable`, which cuts it
and escapes its control characters, so one request can neither write a huge line nor start a forged
one. `EscapeControlCharacters`, a filter on the process's log handler (`log_handler`), escapes what
any formatted message still carries, whoever logged it.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import sys
from collections.abc import Iterable

from hooksvc import defaults

MASK = "***"
#: Characters of a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `.`, `-`).
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
#: What ends the credentials of `scheme://user:token@host`: the first `/`, `@` or whitespace.
_CREDENTIALS_END = re.compile(r"[/@\s]")

#: C0 controls (CR and LF among them), DEL, C1 controls (NEL among them), and the Unicode line and
#: paragraph separators: everything a log reader or terminal may take as a line break or a command.
_CONTROL = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES = str.maketrans({c: f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}" for c in _CONTROL})
_HAS_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value, its base64 and hex forms, and every credential in a URL by `***`.

    Linear in the length of `text` whatever it holds: one `str.replace` per form of each secret
    (CPython's search is linear), and a URL scan that looks at each character a bounded number of times.
    """
    for form in secret_forms(frozenset(s for s in secrets if s)):
        if form in text:
            text = text.replace(form, MASK)
    return _mask_url_credentials(text)


@functools.lru_cache(maxsize=64)
def secret_forms(secrets: frozenset[str]) -> tuple[str, ...]:
    """Each secret, and the base64 (standard and URL-safe, at any offset in a longer encoded text) and
    hex (lower and upper case) text it shows as once encoded; the longest first, so no form is cut by a
    shorter one. Encoded fragments shorter than `defaults.REDACT_MIN_ENCODED` are left out: they would
    mask ordinary words."""
    forms: set[str] = set()
    for secret in secrets:
        forms.add(secret)
        raw = secret.encode()
        encoded: set[str] = {raw.hex(), raw.hex().upper()}
        for offset in range(3):
            # With `offset` bytes before it, the secret's bits fill base64 characters from
            # ceil(8*offset/6) up to floor(8*(offset+len)/6): those never depend on its neighbours.
            first, last = -(-8 * offset // 6), 8 * (offset + len(raw)) // 6
            padded = bytes(offset) + raw
            encoded.add(base64.b64encode(padded).decode()[first:last])
            encoded.add(base64.urlsafe_b64encode(padded).decode()[first:last])
        forms.update(e for e in encoded if len(e) >= defaults.REDACT_MIN_ENCODED)
    return tuple(sorted(forms, key=len, reverse=True))


def _mask_url_credentials(text: str) -> str:
    """`scheme://user:token@host` -> `scheme://***@host`, for every URL in `text`, in one pass."""
    if "://" not in text:
        return text
    out: list[str] = []
    done = 0  # text[:done] is in `out` already
    at = text.find("://")
    while at != -1:
        start = at
        while start > done and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        # The scheme begins at the first letter of that run (as a regex's leftmost match would).
        while start < at and not text[start].isalpha():
            start += 1
        stop = _CREDENTIALS_END.search(text, at + 3)
        if start < at and stop is not None and text[stop.start()] == "@" and stop.start() > at + 3:
            out.append(text[done:at + 3])
            out.append(f"{MASK}@")
            done = stop.start() + 1
            at = text.find("://", done)
        else:
            at = text.find("://", at + 3)
    out.append(text[done:])
    return "".join(out)


def escape_controls(text: str) -> str:
    r"""`text` with every control character written as an escape (a line feed as `\x0a`)."""
    return text.translate(_ESCAPES) if _HAS_CONTROL.search(text) else text


#: A terminal shows a tab as blank space and nothing more; every other control character is escaped.
_TERMINAL_ESCAPES = str.maketrans({c: e for c, e in _ESCAPES.items() if c != ord("\t")})
_HAS_TERMINAL_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def terminal_safe(text: str) -> str:
    r"""`text` as one line a terminal shows as it is: build output's escape sequences (a window title,
    a cleared screen, a carriage return that overwrites the line) written out (ESC as `\x1b`), tabs kept."""
    return text.translate(_TERMINAL_ESCAPES) if _HAS_TERMINAL_CONTROL.search(text) else text


def loggable(value: object, limit: int = defaults.LOG_VALUE_LIMIT) -> str:
    """`value` as part of one log line: control characters escaped, cut to `limit` characters."""
    text = str(value)
    size = len(text)
    # Cut before escaping (a huge value is not translated whole), and again after (escapes are longer).
    text = escape_controls(text[:limit])[:limit]
    return text if size <= limit else f"{text}...[{size} characters]"


class EscapeControlCharacters(logging.Filter):
    """A handler filter: every record's formatted message leaves as one line, control characters escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def log_handler() -> logging.Handler:
    """The process's log handler: standard error, with `EscapeControlCharacters` (for `basicConfig`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(EscapeControlCharacters())
    return handler
