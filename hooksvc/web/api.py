"""The operator API under /api, and /healthz."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from hooksvc import audit, defaults
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import BadRequest, HooksvcError, NotFound
from hooksvc.operations import app_overview, queue_manual, queue_rollback
from hooksvc.operators import Role
from hooksvc.web.auth import audited, authorize, require_operator
from hooksvc.web.context import app_or_404, claim_stream_slot, client_gone, context
from hooksvc.web.inputs import REF, SHA, field

bp = Blueprint("api", __name__)

#: Most deployments one list request may return.
MAX_LIST_LIMIT = 500


@bp.before_request
def authenticate() -> None:
    """A bearer token for everything but /healthz; a body, on a request that changes state, only as JSON.

    Basic auth and the pages' session cookie do not open the API: a browser sends those by itself,
    also when another web site makes it POST here (docs/contract.md, HTTP interface). A JSON body
    is a second line: no other site can make a browser send one without asking this server first.
    """
    if request.endpoint == "api.healthz":
        return
    g.operator = require_operator(context(), read_only=request.method == "GET")
    if request.method != "GET" and request.get_data() and not request.is_json:
        raise BadRequest(f"the body must be JSON (Content-Type: application/json), got {request.mimetype!r}")


def _json_body() -> dict[str, Any]:
    if not request.get_data():
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


@bp.post("/api/apps/<name>/deploy")
def deploy(name: str) -> tuple[Response, int]:
    def act(operator: str) -> Deployment:
        app = app_or_404(name)
        data = _json_body()
        ref = app.full_ref(field(data, "ref", REF))
        return queue_manual(context().store, app, field(data, "sha", SHA), ref, operator)

    return jsonify(audited(audit.DEPLOY, Role.DEPLOYER, f"deploying {name}", act).to_json()), 202


@bp.post("/api/apps/<name>/rollback")
def rollback(name: str) -> tuple[Response, int]:
    def act(operator: str) -> Deployment:
        return queue_rollback(context().store, app_or_404(name), field(_json_body(), "to", SHA), operator)

    return jsonify(audited(audit.ROLLBACK, Role.DEPLOYER, f"rolling back {name}", act).to_json()), 202


@bp.post("/api/deployments/<deployment_id>/cancel")
def cancel(deployment_id: str) -> Response:
    def act(_operator: str) -> Deployment:
        return context().store.cancel(deployment_id)

    return jsonify(audited(audit.CANCEL, Role.DEPLOYER, f"cancelling deployment {deployment_id}", act).to_json())


@bp.get("/api/audit")
def audit_trail() -> Response:
    """The audit trail, newest first: `?app=`, `?operator=`, `?limit=` (deployers and admins)."""
    ctx = context()
    authorize(ctx, Role.DEPLOYER, "reading the audit trail")
    app = request.args.get("app") or None
    if app is not None:
        app_or_404(app)
    limit = _limit(defaults.AUDIT_LIST_LIMIT, defaults.AUDIT_LIST_MAX)
    found = audit.recent(ctx.store.redis, app=app, operator=request.args.get("operator") or None, limit=limit)
    return jsonify(entries=[e.to_json() for e in found])


def _limit(default: int, most: int) -> int:
    """The request's `limit` argument, from 1 to `most`."""
    raw = request.args.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise BadRequest(f"limit must be a number from 1 to {most}, got {raw!r}")
    return int(raw)


@bp.get("/api/apps")
def apps() -> Response:
    ctx = context()
    return jsonify(apps=[app_overview(ctx.store, a).to_json() for a in ctx.config.apps.values()])


@bp.get("/api/deployments")
def deployments() -> Response:
    ctx = context()
    app = request.args.get("app") or None
    if app is not None:
        app_or_404(app)
    state = request.args.get("state") or None
    if state is not None and state not in {s.value for s in DeploymentState}:
        raise BadRequest(f"unknown state {state!r} (one of {', '.join(s.value for s in DeploymentState)})")
    found = ctx.store.recent(app=app, state=state, limit=_limit(50, MAX_LIST_LIMIT))
    return jsonify(deployments=[d.to_json() for d in found])


@bp.get("/api/deployments/<deployment_id>")
def deployment(deployment_id: str) -> Response:
    return jsonify(context().store.get(deployment_id).to_json())


@bp.get("/api/deployments/<deployment_id>/log")
def deployment_log(deployment_id: str) -> Response:
    store = context().store
    store.get(deployment_id)
    if request.args.get("follow") not in ("1", "true"):
        lines, _ = store.logs.read(deployment_id)
        return Response("".join(f"{line}\n" for line in lines), mimetype="text/plain")

    # The stream holds a request thread while it lasts: it takes one of the process's few stream
    # slots, and lasts at most STREAM_MAX_SECONDS (then says so: the client asks again).
    release = claim_stream_slot(context())
    abandoned = client_gone()
    try:

        def generate() -> Iterator[str]:
            try:
                for line in store.follow_log(deployment_id, max_seconds=defaults.STREAM_MAX_SECONDS,
                                             abandoned=abandoned):
                    yield f"{line}\n"
                final = store.get(deployment_id).state.is_final
            except NotFound:
                return  # deleted while followed (retention trimmed it): nothing more to follow
            if not final:
                yield (f"[hooksvc stopped following after {defaults.STREAM_MAX_SECONDS:.0f} s; the deployment "
                       "goes on: request the log again to follow it further]\n")

        response = Response(stream_with_context(generate()), mimetype="text/plain")
    except BaseException:
        release()
        raise
    response.call_on_close(release)
    return response


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        context().store.ping()
    except HooksvcError as exc:
        return jsonify(ok=False, error=str(exc)), 503
    return jsonify(ok=True, redis="ok", version=_version()), 200


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hooksvc")
    except PackageNotFoundError:
        return "unknown"
