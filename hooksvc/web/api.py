"""The operator API under /api, and /healthz."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from hooksvc import app_locks, audit, defaults
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import BadRequest, HooksvcError, NotFound
from hooksvc.operations import FreezeOverride, app_overview, queue_manual, queue_redeploy, queue_rollback
from hooksvc.operators import Role
from hooksvc.plans import request_plan
from hooksvc.preview_records import PreviewRecords, request_teardown
from hooksvc.web.auth import audit_request, audited, authorize, require_operator
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
        return queue_manual(context().store, app, field(data, "sha", SHA), ref, operator,
                            _freeze_override(name, data))

    return jsonify(audited(audit.DEPLOY, Role.DEPLOYER, f"deploying {name}", act).to_json()), 202


def _freeze_override(name: str, data: dict[str, Any]) -> FreezeOverride | None:
    """An admin's `{"override_freeze": true, "reason": ...}` (audited), None when not asked for."""
    asked = data.get("override_freeze", False)
    if not isinstance(asked, bool):
        raise BadRequest(f"'override_freeze' must be true or false, got {asked!r}")
    if not asked:
        return None
    ctx = context()
    operator = authorize(ctx, Role.ADMIN, f"deploying {name} through its freeze window")
    reason = data.get("reason")
    override = FreezeOverride.asked(operator.name, reason if isinstance(reason, str) else "")
    audit_request(ctx, audit.OVERRIDE_FREEZE, audit.OK, operator, reason=override.reason)
    return override


@bp.post("/api/apps/<name>/redeploy")
def redeploy(name: str) -> tuple[Response, int]:
    """The live release again, every service recreated (202 like deploy)."""
    ctx = context()
    app = app_or_404(name)
    operator = authorize(ctx, Role.DEPLOYER, f"redeploying {name}")
    try:
        dep = queue_redeploy(ctx.store, app, operator.name)
    except HooksvcError as exc:
        audit_request(ctx, audit.REDEPLOY, audit.FAILED, operator, reason=str(exc))
        raise
    audit_request(ctx, audit.REDEPLOY, audit.OK, operator, sha=dep.sha, deployment=dep.id)
    return jsonify(dep.to_json()), 202


@bp.get("/api/apps/<name>/plan")
def plan(name: str) -> Response:
    """What a deploy of `?sha=` (the branch head without one) would change, computed by a worker
    without changing anything; 504 when no worker answered in time."""
    ctx = context()
    app_or_404(name)
    # A read, but it makes a worker fetch and run compose: never for an anonymous `public_read` reader.
    authorize(ctx, Role.VIEWER, f"planning a deploy of {name}")
    sha = field(dict(request.args), "sha", SHA)
    # The wait holds a request thread: it takes one of the process's few slots for long requests.
    release = claim_stream_slot(ctx)
    try:
        return jsonify(request_plan(ctx.store.redis, name, sha))
    finally:
        release()


@bp.post("/api/apps/<name>/lock")
def lock(name: str) -> Response:
    """Hold the app's deployments until it is unlocked: 200 with its lock state (admins)."""
    ctx = context()
    app = app_or_404(name)
    operator = authorize(ctx, Role.ADMIN, f"locking {name}")
    reason = _json_body().get("reason")
    if not isinstance(reason, str):
        raise BadRequest('the body must name the lock\'s "reason" as a string: {"reason": "database migration"}')
    state = app_locks.lock(ctx.store, app, operator.name, reason)
    audit_request(ctx, audit.LOCK, audit.OK, operator, reason=state.reason)
    return jsonify(_lock_state(name, state))


@bp.post("/api/apps/<name>/unlock")
def unlock(name: str) -> Response:
    """Lift the app's lock; its newest held deployment runs unless a freeze window holds it (admins)."""
    ctx = context()
    app = app_or_404(name)
    operator = authorize(ctx, Role.ADMIN, f"unlocking {name}")
    settled = app_locks.unlock(ctx.store, app)
    audit_request(ctx, audit.UNLOCK, audit.OK, operator, deployment=settled.id if settled else None)
    return jsonify(_lock_state(name, None, settled.to_json() if settled else None))


def _lock_state(name: str, state: app_locks.AppLockState | None,
                released: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer of lock and unlock: whether the app is locked, by whom, and what unlock moved on."""
    answer: dict[str, Any] = {"app": name, "locked": state is not None, "lock": state.to_json() if state else None}
    if released is not None:
        answer["deployment"] = released
    return answer


@bp.post("/api/apps/<name>/rollback")
def rollback(name: str) -> tuple[Response, int]:
    def act(operator: str) -> Deployment:
        return queue_rollback(context().store, app_or_404(name), field(_json_body(), "to", SHA), operator)

    return jsonify(audited(audit.ROLLBACK, Role.DEPLOYER, f"rolling back {name}", act).to_json()), 202


@bp.get("/api/apps/<name>/previews")
def previews(name: str) -> Response:
    """The app's previews (SPEC §13): number, url, sha, state, updated_at."""
    app = app_or_404(name)
    found = PreviewRecords(context().store.redis).of_app(app.name)
    return jsonify(previews=[p.to_json() for p in found])


@bp.delete("/api/apps/<name>/previews/<int:number>")
def remove_preview(name: str, number: int) -> tuple[Response, int]:
    """Tear pull request `number`'s preview down: a teardown deployment, queued (deployers; audited)."""

    def act(operator: str) -> Deployment:
        return request_teardown(context().store, app_or_404(name), number, operator=operator)

    return jsonify(audited(audit.REMOVE_PREVIEW, Role.DEPLOYER, f"removing preview #{number} of {name}",
                           act).to_json()), 202


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
