"""The webhook endpoints: verify, route, dedupe, queue — and answer within the sender's timeout."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from flask import Blueprint, Response, g, jsonify, request
from werkzeug.datastructures import Headers

from hooksvc import counters, routing
from hooksvc.ci_checks import CheckEvent
from hooksvc.config import AppConfig
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import BadRequest, BodyTooLarge, NotFound, Unauthorized
from hooksvc.providers import PROVIDERS, Provider, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import FORM_CONTENT_TYPE
from hooksvc.redact import loggable
from hooksvc.web.context import context

log = logging.getLogger("hooksvc.hooks")
bp = Blueprint("hooks", __name__)

#: Read the body in chunks of this size, so an over-limit body stops being read as soon as it is.
READ_CHUNK = 64 * 1024


def read_body_limited(limit: int) -> bytes:
    """The request body, or BodyTooLarge as soon as it is known to exceed `limit` bytes.

    A declared Content-Length over the limit is refused before a single body byte is read; a
    chunked body is read only up to one byte past the limit.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    if declared is not None:
        # The common case: one read of exactly Content-Length bytes, which WSGI allows on the raw
        # input (werkzeug's limiting wrapper around it is a measurable share of a webhook).
        body: bytes = request.environ["wsgi.input"].read(declared)
        if len(body) < declared:
            raise BadRequest(f"body ended after {len(body)} of the {declared} bytes announced")
        return body
    stream = request.stream
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
    return b"".join(parts)


def _app_names(apps: Sequence[AppConfig]) -> str:
    return " ".join(sorted(a.name for a in apps))


def _delivery_key(route: str, delivery_id: str, apps: Sequence[AppConfig]) -> str:
    """Identifies a delivery by the host's id, per route and per apps it verified for.

    Delivery ids are unique per host, not per route: two hosts of one kind (two Gitea servers), or
    anyone holding one app's secret, can send an id another app's host used. Keyed on the apps, a
    delivery seen for one app never drops another app's push as a duplicate.
    """
    return f"delivery:{route}:{_app_names(apps)}:{delivery_id}"


def _replay_key(route: str, signed: bytes, apps: Sequence[AppConfig]) -> str:
    """Identifies what the signature covers, so a replay is a duplicate whatever else changes.

    That is the route, the apps the request verified for, and the signed bytes — nothing the
    sender of a replay could vary without the secret (delivery id, query string, the body's
    encoding when the host signs the payload text). The apps are part of it: two webhooks on one
    repository, each with its own app's secret, deliver the same body, and the second is not a
    replay of the first.
    """
    digest = hashlib.sha256()
    digest.update(route.encode() + b"\0" + _app_names(apps).encode() + b"\0")
    digest.update(signed)
    return f"body:{digest.hexdigest()}"


#: Webhook outcome for each answer status; a 200 says which in its body.
_OUTCOMES = {202: "accepted", 401: "unauthorized", 413: "too_large", 503: "unavailable"}


@bp.after_request
def count_webhook(response: Response) -> Response:
    """One count per webhook request, by provider and outcome, for /metrics."""
    if g.get("webhook_counted") and response.status_code in (200, 202):
        return response
    route = (request.view_args or {}).get("route", "unknown")
    outcome = _OUTCOMES.get(response.status_code, "bad_request")
    if response.status_code == 200:
        body = response.get_json(silent=True) or {}
        outcome = "duplicate" if "duplicate" in body else "ignored" if "ignored" in body else "ping"
    counters.record_webhook(context().store.redis, route, outcome)
    return response


class HeaderView(Mapping[str, str]):
    """The request's headers as a read-only mapping with case-insensitive lookups.

    Wraps werkzeug's headers instead of copying them: a webhook looks at a handful of its dozen
    or more headers, and copying them all is a measurable share of the request.
    """

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        return self._headers[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._headers.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return (name.lower() for name, _ in self._headers.items())

    def __len__(self) -> int:
        return len(self._headers)


@bp.route("/hooks/<route>", methods=["POST", "GET"])
def receive(route: str) -> tuple[Response, int]:
    ctx = context()
    provider = PROVIDERS.get(route)
    if provider is None:
        raise NotFound(f"no webhook endpoint /hooks/{route} (known: {', '.join(sorted(PROVIDERS))})")
    if request.method not in provider.methods:
        # Each provider names the methods its host delivers with: only Gitea/Forgejo use GET (`?payload=`).
        raise BadRequest(f"/hooks/{route} accepts {' or '.join(sorted(provider.methods, reverse=True))} only")
    body = read_body_limited(ctx.config.server.max_body_bytes)
    req = WebhookRequest(
        headers=HeaderView(request.headers),
        body=body,
        query=request.args.to_dict() if request.query_string else {},
        method=request.method,
    )
    candidates = ctx.apps_for(provider.kind_names)
    try:
        # Once per request, not once per candidate secret (for Gitea it parses a form body).
        signed = provider.signed_bytes(req)
    except BadRequest as exc:
        raise Unauthorized(_why_unverified(route, exc, candidates)) from None  # nothing signed to verify
    parsed, verified = _verify(provider, req, signed, candidates)
    if not verified:
        raise Unauthorized(_why_unverified(route, parsed, candidates))
    if isinstance(parsed, BadRequest):
        raise parsed  # signed, but malformed: the reason is the sender's to read
    delivery = parsed
    if delivery.event == "ping":
        log.info("ping from %s (delivery %s)", route, delivery.delivery_id)
        return jsonify(ok=True, event="ping"), 200
    apps = routing.select_apps(delivery, verified)
    if not apps:
        names = ", ".join(a.name for a in verified)
        repo = loggable(delivery.repo)
        raise Unauthorized(f"{route}: signature valid for app(s) {names}, but repository '{repo}' is none of theirs")
    if delivery.checks is not None:
        return _record_checks(route, delivery.checks, apps)
    if delivery.pull_request is not None:
        decision = routing.plan_previews(delivery, apps)
    else:
        decision = routing.plan_deployments(delivery, apps)
    if decision.ignored is not None and not decision.refused:
        log.info("%s delivery %s ignored: %s", route, delivery.delivery_id, loggable(decision.ignored))
        return jsonify(ignored=decision.ignored), 200
    keys = [_replay_key(route, signed, apps)]
    if delivery.delivery_id:
        keys.insert(0, _delivery_key(route, delivery.delivery_id, apps))
    # The script counts this webhook itself (accepted or duplicate): no second round trip.
    g.webhook_counted = True
    refused = tuple(new for new, _ in decision.refused)
    result = ctx.store.intake.submit(decision.deployments + refused, keys, webhook_provider=route)
    if result.duplicate_of is not None:
        log.info("%s delivery %s is a duplicate", route, delivery.delivery_id)
        answer: dict[str, Any] = {"duplicate": True, "deployments": list(result.duplicate_of)}
        return jsonify(answer), 200
    if decision.refused:
        _end_refused(result.deployments[len(decision.deployments):], [why for _, why in decision.refused])
    if decision.ignored is not None:
        return jsonify(ignored=decision.ignored), 200
    # The server log's line for each queued deployment comes from the workers' intake dispatcher
    # (`Intake.dispatch`): a log line here is a measurable share of the answer.
    # Built directly: Flask's jsonify costs more than the rest of the answer on this hot path.
    answer_json = orjson.dumps({"deployments": [d.summary() for d in result.deployments]})
    return Response(answer_json, status=202, content_type="application/json"), 202


def _end_refused(recorded: Sequence[Deployment], reasons: Sequence[str]) -> None:
    """End `failed` the deployments recorded only to say why they never run (a fork's pull request):
    their commit status and the deployment list say so."""
    store = context().store
    for dep, why in zip(recorded, reasons, strict=True):
        store.finish(dep.id, DeploymentState.FAILED, why)
        log.info("deployment %s of %s refused: %s", dep.id, dep.app, why)


def _record_checks(route: str, event: CheckEvent, apps: Sequence[AppConfig]) -> tuple[Response, int]:
    """Record a CI event's check reports for each of the apps that gate pushes on checks; the
    worker's gate decides (`workers.ci_gate`). Recording twice is harmless: no dedupe needed."""
    gated = [a for a in apps if a.require_checks is not None]
    if not gated:
        return jsonify(ignored="no app of this repository sets require_checks"), 200
    for app in gated:
        context().store.checks.record(app.name, event)
    names = [r.name for r in event.reports]
    log.info("%s: checks of %s recorded for %s: %s", route, event.sha[:12], _app_names(gated),
             loggable(", ".join(f"{r.name} {r.state}" for r in event.reports) or "refresh"))
    return jsonify(checks={"sha": event.sha, "apps": [a.name for a in gated], "names": names}), 202


#: What `_verify` has for a form body that no secret verifies: it was never parsed (never raised).
_FORM_NOT_PARSED = BadRequest("form body not parsed: no secret verifies it")


def _verify(
    provider: Provider, req: WebhookRequest, signed: bytes, candidates: Sequence[AppConfig]
) -> tuple[WebhookDelivery | BadRequest, list[AppConfig]]:
    """The parsed delivery (or why it does not parse) and the apps whose secret the request verifies.

    `signed` is `provider.signed_bytes(req)`, computed once by the caller. The apps of the
    repository the payload names are tried first: with many apps on one server, checking every
    secret is most of a webhook's own time. Parsing before verifying trusts nothing (the parsed
    repository only orders the work). When none of them verifies, or the payload names no
    repository (an organisation's ping) or does not parse, the other candidates are tried. Either
    way a bad signature costs one check per candidate, for a configured repository as for an
    unknown one: the time of a 401 does not tell which repositories are configured.

    A form-encoded body is parsed only once a secret verifies it: decoding its `payload` field is
    work an unsigned sender must not get for free (for GitHub, which signs the body as sent, an
    unsigned form is then refused without being decoded at all).
    """
    if req.content_type == FORM_CONTENT_TYPE:
        verified = [a for a in candidates if provider.verify(req, a.secret.reveal(), signed)]
        if not verified:
            return _FORM_NOT_PARSED, []
        try:
            return provider.parse(req, signed), verified
        except BadRequest as exc:
            return exc, verified
    try:
        parsed: WebhookDelivery | BadRequest = provider.parse(req, signed)
    except BadRequest as exc:
        parsed = exc
    own = routing.select_apps(parsed, candidates) if isinstance(parsed, WebhookDelivery) else []
    verified = [a for a in own if provider.verify(req, a.secret.reveal(), signed)]
    if verified:
        return parsed, verified
    tried = {a.name for a in own}
    return parsed, [a for a in candidates if a.name not in tried and provider.verify(req, a.secret.reveal(), signed)]


def _why_unverified(route: str, parsed: WebhookDelivery | BadRequest, candidates: Sequence[AppConfig]) -> str:
    """The server-log reason for a 401: unknown repository or bad signature (never the expected MAC).

    `parsed` is the payload as `_verify` parsed it, or why it did not parse.
    """
    if not candidates:
        return f"{route}: no app is configured for this kind of git host"
    if isinstance(parsed, BadRequest):
        detail = "form body not parsed" if parsed is _FORM_NOT_PARSED else "body unparsable"
        return f"{route}: signature does not verify against any app's secret ({detail})"
    repo = parsed.repo
    if not any(a.repo.lower() == repo.lower() for a in candidates):
        return f"{route}: no app for repository '{loggable(repo)}'"
    return f"{route}: signature missing or wrong for repository '{loggable(repo)}'"
