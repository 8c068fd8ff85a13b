"""What may reach a log: secrets redacted, and untrusted values made safe for a line-based log.

A value from outside (a repository name, a request path) is logged through `loggable`, which cuts it
and escapes its control characters, so one request can neither write a huge line nor start a forged
one. `EscapeControlCharacters`, a filter on the process's log handler (`log_handler`), escapes what
any formatted message still carries, whoever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

from hooksvc import defaults

MASK = "***"
#: Credentials embedded in URLs (`https://user:token@host`, `https://token@host`).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s]+)@")

#: C0 controls (CR and LF among them), DEL, C1 controls (NEL among them), and the Unicode line and
#: paragraph separators: everything a log reader or terminal may take as a line break or a command.
_CONTROL = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES = str.maketrans({c: f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}" for c in _CONTROL})
_HAS_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value and every credential in a URL by `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)


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
