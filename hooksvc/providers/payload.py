"""Payload readers shared by the providers.

Gitea and Forgejo copy GitHub's payload format, so these readers serve both (only the signature
scheme differs), and their field checks serve GitLab too: one definition of a valid ref or sha for
every host.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hooksvc import defaults
from hooksvc.ci_checks import CheckEvent, CheckReport, CheckState, link
from hooksvc.errors import BadRequest
from hooksvc.providers.base import (
    ZERO_SHA,
    PreviewAction,
    PullRequestEvent,
    PushEvent,
    RefChange,
    WebhookDelivery,
    WebhookRequest,
)

JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_SHA = re.compile(r"[0-9a-fA-F]{40}")
# Roughly git-check-ref-format: a full ref without whitespace, control or glob characters. The ref
# ends up in logs, answers and git commands, so anything stranger is refused rather than escaped.
_REF = re.compile(r"refs/[^\x00-\x20\x7f~^:?*\[\\]+")
_EVENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}")
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}
#: Values quoted in error messages are cut to this length: a message must stay one readable line.
_SHOW_LIMIT = 80


def hmac_sha256_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def header_bytes(value: str) -> bytes:
    """A header value as bytes for `compare_digest`, which refuses non-ASCII `str` with a TypeError."""
    return value.encode("utf-8", "replace")


def show(value: object) -> str:
    """`repr(value)` cut short, for quoting untrusted input in an error message."""
    text = repr(value)
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 3] + "..."


def unsupported_content_type(content_type: str) -> str:
    return (
        f"unsupported content type {show(content_type)}: "
        f"expected {JSON_CONTENT_TYPE} or {FORM_CONTENT_TYPE} (a 'payload' field)"
    )


def posted_payload(req: WebhookRequest) -> bytes:
    """The JSON text of a POST: the body itself, or the `payload` field of a form-encoded body."""
    if req.content_type == JSON_CONTENT_TYPE:
        return req.body
    if req.content_type == FORM_CONTENT_TYPE:
        return form_payload(req.body).encode("utf-8")
    raise BadRequest(unsupported_content_type(req.content_type))


def json_body(req: WebhookRequest) -> dict[str, Any]:
    """The JSON object a JSON-only host (GitLab, Bitbucket) sends as the body."""
    if req.content_type != JSON_CONTENT_TYPE:
        raise BadRequest(f"unsupported content type {show(req.content_type)}: expected {JSON_CONTENT_TYPE}")
    return json_object(req.body)


@dataclass(frozen=True)
class BodySignature:
    """GitHub's scheme, which Bitbucket and hooksvc's own hook share: `<header>: sha256=<hex>`, the
    HMAC-SHA256 of the request body exactly as sent."""

    header: str
    prefix: str = "sha256="

    def signed_bytes(self, req: WebhookRequest) -> bytes:
        """The raw body: what the host signs, also when it is form-encoded."""
        return req.body

    def sign(self, secret: str, body: bytes) -> str:
        """The header value a sender puts on `body`."""
        return self.prefix + hmac_sha256_hex(secret, body)

    def verify(self, req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
        """True when the header is the signature of the raw body under `secret` (constant-time); a
        missing header or an empty secret never matches."""
        given = req.header(self.header)
        if not given or not secret:
            return False
        expected = self.sign(secret, signed if signed is not None else req.body)
        return hmac.compare_digest(header_bytes(given), expected.encode("ascii"))


def payload_signatures_match(
    req: WebhookRequest,
    headers: tuple[str, ...],
    secret: str,
    signed: bytes | None,
    extract: Callable[[WebhookRequest], bytes],
) -> bool:
    """Gitea's and Gogs' scheme: True when every one of `headers` that the host sent is the bare-hex
    HMAC-SHA256 of the payload text (`signed`, else `extract(req)`) under `secret`.

    Gitea sends the headers empty when the hook has no secret: present is not the same as signed.
    """
    given = [value for name in headers if (value := req.header(name))]
    if not given or not secret:
        return False
    if signed is None:
        try:
            signed = extract(req)
        except BadRequest:
            return False
    expected = hmac_sha256_hex(secret, signed).encode("ascii")
    return all(hmac.compare_digest(header_bytes(value), expected) for value in given)


def github_shaped_delivery(
    route: str, event: str, delivery: str, data: dict[str, Any], *, flags: bool
) -> WebhookDelivery:
    """The delivery of a host that copies GitHub's payload (Gitea, Forgejo, Gogs): one ref per push,
    the repository at `repository.full_name`. `flags`: as for `read_push`."""
    push = read_push(data, flags=flags) if event == "push" else None
    return WebhookDelivery(
        provider=route,
        event=event,
        delivery_id=delivery,
        repo=repository_name(data, required=push is not None),
        push=push,
    )


def form_payload(body: bytes) -> str:
    """The JSON text in the `payload` field of a form-encoded body.

    A body of more than WEBHOOK_FORM_MAX_FIELDS fields is refused before it is parsed: parsing
    thousands of empty fields costs seconds, and no git host sends more than one. The fields are
    split as `parse_qs` splits them, and decoded in C (`decode_form_value`): an unsigned form body
    must cost no more to refuse than a JSON one.
    """
    # Splitting on "&" is what parse_qs does; counting them is a fast scan, where parsing is not.
    if body.count(b"&") >= defaults.WEBHOOK_FORM_MAX_FIELDS:
        raise BadRequest(
            f"form body has more than {defaults.WEBHOOK_FORM_MAX_FIELDS} fields: expected one 'payload' field"
        )
    values = []
    for field in body.split(b"&"):
        if not field:
            continue
        name, _, value = field.partition(b"=")
        if decode_form_value(name) == "payload":
            values.append(decode_form_value(value))
    if len(values) != 1:
        # Two payloads would let the signed one and the parsed one differ.
        found = "no 'payload' field" if not values else f"{len(values)} 'payload' fields"
        raise BadRequest(f"form body has {found}: expected exactly one holding the JSON payload")
    return values[0]


def decode_form_value(raw: bytes) -> str:
    """A form field's name or value decoded as `parse_qs` decodes it ("+" is a space, `%XX` a byte, UTF-8).

    `urllib.parse.unquote` loops in Python over every escape: a 5 MiB body of escapes took a second
    of CPU. Rewritten as the `\\xXX` escapes of a bytes literal, C decodes it in milliseconds. An
    escape that is not `%` and two hex digits, which `unquote` would keep as it is, is refused: no
    git host sends one.
    """
    escaped = raw.replace(b"+", b" ").replace(b"\\", b"\\\\").replace(b"%", b"\\x")
    try:
        return codecs.escape_decode(escaped)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("form body is not valid UTF-8 url-encoded data") from None
    except ValueError:  # escape_decode's "invalid \\x escape"
        raise BadRequest("form body has a '%' that is not followed by two hex digits") from None


def json_object(text: bytes | str) -> dict[str, Any]:
    """The payload's JSON object; BadRequest for anything else (invalid UTF-8 and lone surrogates
    included, and nesting deeper than orjson's limit of 1024)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"payload is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"payload must be a JSON object, got {_JSON_KINDS.get(type(data), 'a JSON value')}")
    return data


def normalised_event(header: str, value: str | None) -> str:
    """The event named by `header`'s value, lower-cased: GitHub's "push" and "ping" stay as they are."""
    value = (value or "").strip()
    if not value:
        raise BadRequest(f"missing {header} header: cannot tell which event this is")
    if not _EVENT.fullmatch(value):
        raise BadRequest(f"{header} header is not an event name, got {show(value)}")
    return value.lower()


def delivery_id(header: str, value: str | None) -> str:
    """The host's delivery id, "" when it sent none (deduplication then falls back to the body)."""
    value = (value or "").strip()
    if value and not _DELIVERY_ID.fullmatch(value):
        raise BadRequest(f"{header} header is not a delivery id, got {show(value)}")
    return value


def read_ref(data: dict[str, Any], key: str = "ref") -> str:
    ref = data.get(key)
    if not isinstance(ref, str) or not _REF.fullmatch(ref) or ".." in ref or "@{" in ref:
        raise BadRequest(f"push payload: {key!r} must be a full git ref like 'refs/heads/main', got {show(ref)}")
    return ref


def read_sha(data: dict[str, Any], key: str, *, where: str = "push payload") -> str:
    sha = data.get(key)
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise BadRequest(f"{where}: {key!r} must be a 40-character hex commit sha, got {show(sha)}")
    return sha.lower()


def read_flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"push payload: {key!r} must be true or false, got {show(value)}")
    return value


def repository_name(
    data: dict[str, Any], *, required: bool, container: str = "repository", key: str = "full_name"
) -> str:
    """The repository's `owner/name` at `data[container][key]` (GitHub's and Gitea's
    `repository.full_name`, GitLab's `project.path_with_namespace`); "" when absent and not required."""
    holder = data.get(container)
    name = holder.get(key) if isinstance(holder, dict) else None
    if isinstance(name, str) and name.strip():
        return name.strip()
    if required:
        raise BadRequest(f"push payload: '{container}.{key}' must name the repository, got {show(name)}")
    return ""


def read_push(data: dict[str, Any], *, flags: bool) -> PushEvent:
    """The one ref update of a GitHub-shaped push payload.

    `flags`: whether the host sends `deleted`/`forced` (GitHub does, Gitea does not). `after` is the
    commit the ref now points to: for an annotated tag the payload's `after` is the tag object, which
    cannot be checked out as a release or carry a commit status, so the tagged commit is taken from
    `head_commit` instead.
    """
    ref = read_ref(data)
    after = read_sha(data, "after")
    before = read_sha(data, "before") if "before" in data else ""
    deleted = after == ZERO_SHA or (flags and read_flag(data, "deleted"))
    forced = flags and read_flag(data, "forced")
    head = data.get("head_commit")
    if not deleted and ref.startswith("refs/tags/") and isinstance(head, dict) and "id" in head:
        after = read_sha(head, "id", where="push payload head_commit")
    return PushEvent((RefChange(ref=ref, before=before, after=after, deleted=deleted, forced=forced),))


def check_report(name: object, state: CheckState | None, url: object, where: str) -> CheckReport:
    """A check report from a payload's fields; BadRequest naming `where` when the name is missing."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{where}: expected the check's name, got {show(name)}")
    if state is None:
        raise BadRequest(f"{where}: the state of check {show(name)} is none hooksvc knows")
    return CheckReport(name=name, state=state, url=link(url))


def commit_status_state(value: object) -> CheckState | None:
    """A commit status's state (GitHub, Gitea, Forgejo): pending waits, success passes, and the rest
    (failure, error, Gitea's warning) fail: a deploy waits for a check that passed, nothing less."""
    if value == "pending":
        return CheckState.PENDING
    if value == "success":
        return CheckState.SUCCESS
    if value in ("failure", "error", "warning"):
        return CheckState.FAILURE
    return None


def commit_status_event(data: dict[str, Any], where: str) -> CheckEvent:
    """The check report of a GitHub-shaped `status` webhook (GitHub, Gitea, Forgejo): sha, context,
    state, target_url."""
    sha = read_sha(data, "sha", where=where)
    report = check_report(data.get("context"), commit_status_state(data.get("state")), data.get("target_url"), where)
    return CheckEvent(sha=sha, reports=(report,))


def read_number(data: dict[str, Any], key: str, where: str) -> int:
    """A pull request's number (GitLab: a merge request's iid): a positive integer."""
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**53:
        raise BadRequest(f"{where}: {key!r} must be the pull request's number, got {show(value)}")
    return value


def _repo_of(branch: dict[str, Any]) -> str | None:
    repo = branch.get("repo")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return name.casefold() if isinstance(name, str) and name else None


def github_shaped_pull_request(data: dict[str, Any], actions: Mapping[str, PreviewAction]) -> PullRequestEvent:
    """The pull request of a GitHub-shaped `pull_request` payload (GitHub, Gitea, Forgejo).

    `actions` maps the host's `action` names to what the preview does; any other action leaves it as
    it is. The head is a fork's when its repository is not the base's, or is gone (a deleted fork).
    """
    where = "pull_request payload"
    action = data.get("action")
    if not isinstance(action, str):
        raise BadRequest(f"{where}: 'action' must be a string, got {show(action)}")
    pull = data.get("pull_request")
    if not isinstance(pull, dict):
        raise BadRequest(f"{where}: 'pull_request' must be an object, got {show(pull)}")
    head, base = pull.get("head"), pull.get("base")
    if not isinstance(head, dict) or not isinstance(base, dict):
        raise BadRequest(f"{where}: 'pull_request.head' and 'pull_request.base' must be objects")
    number = read_number(data if "number" in data else pull, "number", where)
    head_repo, base_repo = _repo_of(head), _repo_of(base) or repository_name(data, required=True).casefold()
    branch = head.get("ref")
    return PullRequestEvent(
        number=number,
        action=actions.get(action, PreviewAction.NONE),
        host_action=action,
        head_sha=read_sha(head, "sha", where=f"{where} pull_request.head"),
        fork=head_repo is None or head_repo != base_repo,
        head_branch=branch if isinstance(branch, str) else "",
    )
