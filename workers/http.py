"""The one outgoing HTTP client: urllib, a timeout, no redirects, and nothing secret in its errors."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit

from hooksvc import defaults

#: Enough of an answer body for an error message; a misbehaving server cannot fill our memory.
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpRequest:
    """One outgoing HTTP request. Its repr shows neither the path (a Slack URL is a secret) nor credentials."""

    method: str
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    json: Mapping[str, object] | None = field(default=None, repr=False)

    def body(self) -> bytes:
        """The exact bytes sent (compact, key-sorted JSON), so a signature can be computed over them."""
        return encode_json(self.json) if self.json is not None else b""

    def describe(self) -> str:
        """`POST https://host` — safe for logs: no path, no query, no credentials."""
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{self.method} {parts.scheme}://{host}{port}"

    def __repr__(self) -> str:
        return f"HttpRequest({self.describe()}, headers={sorted(self.headers)})"


def encode_json(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, limit: int = 300) -> str:
        """The start of the body as one line of text, for a log line."""
        return " ".join(self.body[:limit].decode("utf-8", "replace").split())


@dataclass(frozen=True)
class PlannedRequest:
    """One step of an outbox event that takes several requests (a host deployment, a preview
    comment), made ready for the outbox sender: what to record once it is delivered or given up."""

    request: HttpRequest
    what: str
    #: Said with a refused request: what the operator may have to fix.
    hint: str
    delivered: Callable[[HttpResponse], None]
    #: Told when the step is given up (True: the host refused it).
    dropped: Callable[[bool], None]


def id_in_answer(answer: HttpResponse, what: str) -> str:
    """The numeric `id` of the object a create answered with (`what`: "deployment", "check-run");
    ValueError when there is none."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        raise ValueError(f"the answer is not JSON, so it holds no {what} id") from None
    value = body.get("id") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError(f"the answer holds no {what} id (id: {value!r})")
    return str(value)


def list_in_answer(answer: HttpResponse, what: str) -> list[object]:
    """The JSON array an answer listing `what` ("comment", "environment") holds; ValueError when it
    holds none."""
    try:
        listed = json.loads(answer.body)
    except ValueError:
        raise ValueError(f"the {what} list is not JSON") from None
    if not isinstance(listed, list):
        raise ValueError(f"the {what} list is no JSON array (got {type(listed).__name__})")
    return listed


class HttpTransportError(Exception):
    """No HTTP answer: connection refused, DNS failure, TLS error, timeout. Always worth retrying."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A status API never redirects; following one would resend the credentials to another URL."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send(
    request: HttpRequest, timeout: float = defaults.REPORT_HTTP_TIMEOUT_SECONDS, max_bytes: int = MAX_RESPONSE_BYTES
) -> HttpResponse:
    """Send `request`; any HTTP answer (also 3xx/4xx/5xx) is returned, a missing answer raises.
    At most `max_bytes` of the answer's body are read.

    Errors name only `request.describe()` (method, scheme, host): never a path, a query or a header.
    """
    if not request.url.startswith(("http://", "https://")):
        raise HttpTransportError(f"{request.describe()}: only http and https URLs are sent")
    try:
        req = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
            request.url,
            data=request.body() if request.json is not None else None,
            headers=dict(request.headers),
            method=request.method,
        )
        with _OPENER.open(req, timeout=timeout) as answer:
            return HttpResponse(status=answer.status, body=_read(answer, max_bytes))
    except urllib.error.HTTPError as exc:
        try:
            body = _read(exc, MAX_RESPONSE_BYTES)
        finally:
            exc.close()
        return HttpResponse(status=exc.code, body=body)
    except urllib.error.URLError as exc:
        raise HttpTransportError(f"{request.describe()}: {_reason(exc.reason)}") from None
    except TimeoutError:
        raise HttpTransportError(f"{request.describe()}: no answer within {timeout:g}s") from None
    except OSError as exc:
        raise HttpTransportError(f"{request.describe()}: {type(exc).__name__}: {_reason(exc)}") from None
    except (ValueError, http.client.HTTPException) as exc:
        # Their messages may quote the whole URL (a Slack URL is a secret): name the type only.
        raise HttpTransportError(f"{request.describe()}: {type(exc).__name__}") from None


def _read(stream: IO[bytes], max_bytes: int) -> bytes:
    try:
        return stream.read(max_bytes)
    except (OSError, http.client.HTTPException):
        return b""


def _reason(reason: object) -> str:
    """A transport failure's reason; a timeout reads as one whatever layer raised it."""
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__
