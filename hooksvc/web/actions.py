"""The dashboard's actions: deploy, redeploy, roll back, cancel, lock and unlock from the browser.

A GET shows what a deploy, redeploy or rollback would do (`/apps/<app>/deploy?sha=`,
`/apps/<app>/redeploy`, `/apps/<app>/rollback?to=`) with a form that POSTs to the same path;
`/apps/<app>/rollback` without `to` lists the releases to roll back to; a waiting deployment's page
posts to `/deployments/<id>/cancel`; an app's card posts to `/apps/<app>/lock` (with a reason) and
`/apps/<app>/unlock`. Every route needs a login session (basic auth and `public_read` open none of
them) and the deployer role (lock and unlock: admin). A POST must come
from this site (Origin) and carry the session's CSRF token (`csrf_token`, synchronizer pattern:
kept in the session's Redis record); without it the answer is 403 and nothing changes. Each
action, and each refusal, is written to the audit trail like the API's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from hooksvc import app_locks, audit, defaults
from hooksvc.config import AppConfig
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import BadRequest, Forbidden, HooksvcError
from hooksvc.operations import app_overview, queue_manual, queue_redeploy, queue_rollback
from hooksvc.operators import Role
from hooksvc.plans import request_plan
from hooksvc.preview_records import request_teardown
from hooksvc.redact import loggable
from hooksvc.store import DeploymentStore
from hooksvc.web import pages
from hooksvc.web.auth import audit_request, audited, authorize, current_session, refused_action, same_origin_post
from hooksvc.web.context import app_or_404, claim_stream_slot, client_address, context
from hooksvc.web.inputs import REF, SHA, field

log = logging.getLogger("hooksvc.actions")
bp = Blueprint("actions", __name__)

#: An action's form holds a token, a sha and a ref: a bigger body is refused unread.
ACTION_FORM_MAX_BYTES = 16 * 1024
#: How long a confirm page waits for a worker's plan (`?plan=1`) before it says none answered.
CONFIRM_PLAN_WAIT_SECONDS = defaults.PLAN_WAIT_SECONDS
#: Releases the rollback page lists: every succeeded deployment retention keeps is too many to scan.
ROLLBACK_CHOICES = 30

bp.after_request(pages.protect)
bp.context_processor(pages.template_helpers)
bp.register_error_handler(HooksvcError, pages.page_error)


@bp.before_request
def check_session_and_token() -> BaseResponse | None:
    """A login session for every route; for a POST also this site's Origin and the session's CSRF token."""
    ctx = context()
    found = current_session(ctx)
    if found is None:
        if request.method == "GET":
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        raise Forbidden("this action needs a login session: log in through the form, then try again")
    session, g.operator = found
    if request.method != "POST":
        return None
    # Bounds the form parsing below, chunked bodies included (werkzeug answers 413 beyond it).
    request.max_content_length = ACTION_FORM_MAX_BYTES
    if not same_origin_post():
        reason = f"cross-site form from origin '{loggable(request.headers.get('Origin'))}'"
    elif not session.accepts_csrf(request.form.get("csrf_token")):
        reason = "missing or wrong CSRF token"
    else:
        return None
    log.warning("%s %s refused from %s: %s", request.method, loggable(request.path), client_address(), reason)
    audit_request(ctx, refused_action(), audit.REFUSED, g.operator, reason=reason)
    raise Forbidden(f"{reason}: reload the page and submit its form again")


def _filled(*names: str) -> dict[str, str]:
    """The request's non-empty values of `names` (query for a GET, form for a POST), stripped."""
    values = request.form if request.method == "POST" else request.args
    return {n: v.strip() for n in names if (v := values.get(n, "")).strip()}


@dataclass(frozen=True)
class Release:
    """A release that went live: the sha and the deployment that shipped it (the newest, when shipped twice)."""

    sha: str
    deployment: Deployment
    live: bool


def kept_releases(store: DeploymentStore, app: str, limit: int = ROLLBACK_CHOICES) -> list[Release]:
    """The app's releases that went live, newest first, one per sha (the ones a rollback can name)."""
    live = store.live(app)
    out: list[Release] = []
    seen: set[str] = set()
    for dep in store.recent(app=app, state=DeploymentState.SUCCEEDED, limit=limit * 2):
        if dep.sha and dep.sha not in seen and dep.preview is None:
            seen.add(dep.sha)
            out.append(Release(dep.sha, dep, live is not None and live.sha == dep.sha))
    return out[:limit]


def _plan(app: AppConfig, sha: str) -> tuple[dict[str, Any] | None, str]:
    """With `?plan=1`, a worker's plan of deploying `sha` (services, images old → new, release steps),
    or why there is none; (None, "") without it, since asking holds this request until a worker answers."""
    if request.args.get("plan") != "1":
        return None, ""
    ctx = context()
    # The wait holds a request thread: it takes one of the process's few slots for long requests.
    release = claim_stream_slot(ctx)
    try:
        return request_plan(ctx.store.redis, app.name, sha, wait=CONFIRM_PLAN_WAIT_SECONDS), ""
    except HooksvcError as exc:
        return None, str(exc)
    finally:
        release()


def _confirm(app: AppConfig, action: str, sha: str, ref: str) -> str:
    """The confirm page of a deploy, redeploy or rollback: what it deploys, what it replaces, and on
    request the worker's plan."""
    ctx = context()
    overview = app_overview(ctx.store, app)
    plan, plan_error = _plan(app, sha) if action != audit.REDEPLOY else (None, "")
    shipped = next((r.deployment for r in kept_releases(ctx.store, app.name) if r.sha.startswith(sha)), None) \
        if sha else None
    return render_template("confirm.html", app=app, action=action, sha=sha, ref=ref, overview=overview,
                           shipped=shipped, live=ctx.store.live(app.name),
                           lock=app_locks.read_lock(ctx.store.redis, app.name), plan=plan, plan_error=plan_error)


def _confirmable(name: str, what: str) -> AppConfig:
    """The app a confirm page is about, once the operator's role allows `what` (the page holds the form)."""
    authorize(context(), Role.DEPLOYER, what)
    return app_or_404(name)


def _done(dep: Deployment) -> BaseResponse:
    """After an action: the deployment's page (303, so reloading it does not post the form again)."""
    return redirect(url_for("pages.deployment", deployment_id=dep.id), 303)


@bp.route("/apps/<name>/deploy", methods=["GET", "POST"])
def deploy(name: str) -> BaseResponse | str:
    """GET: confirm a deploy of `sha` (or the head of `ref`, or of the branch); POST: queue it."""
    ctx = context()
    if request.method == "GET":
        app = _confirmable(name, f"deploying {name}")
        data = _filled("sha", "ref")
        sha, ref = field(data, "sha", SHA), field(data, "ref", REF)
        if not sha and not ref and not app.single_branch:
            raise BadRequest(f"app {name!r} deploys {app.ref_pattern}: give a ref or a sha")
        return _confirm(app, audit.DEPLOY, sha, app.full_ref(ref) if ref else "")

    def act(operator: str) -> Deployment:
        app = app_or_404(name)
        data = _filled("sha", "ref")
        ref = app.full_ref(field(data, "ref", REF))
        return queue_manual(ctx.store, app, field(data, "sha", SHA), ref, operator)

    return _done(audited(audit.DEPLOY, Role.DEPLOYER, f"deploying {name}", act))


@bp.route("/apps/<name>/rollback", methods=["GET", "POST"])
def rollback(name: str) -> BaseResponse | str:
    """GET: the releases to roll back to, or with `to` the confirm step; POST: queue the rollback."""
    ctx = context()
    if request.method == "GET":
        app = _confirmable(name, f"rolling back {name}")
        to = field(_filled("to"), "to", SHA)
        if to:
            return _confirm(app, audit.ROLLBACK, to, "")
        return render_template("rollback.html", app=app, releases=kept_releases(ctx.store, app.name))

    return _done(audited(audit.ROLLBACK, Role.DEPLOYER, f"rolling back {name}", lambda operator: queue_rollback(
        ctx.store, app_or_404(name), field(_filled("to"), "to", SHA), operator)))


@bp.post("/deployments/<deployment_id>/cancel")
def cancel(deployment_id: str) -> BaseResponse:
    """Cancel a deployment that has not started (queued or held), then show its page."""
    what = f"cancelling deployment {deployment_id}"
    return _done(audited(audit.CANCEL, Role.DEPLOYER, what, lambda _operator: context().store.cancel(deployment_id)))


@bp.post("/apps/<name>/previews/<int:number>/remove")
def remove_preview(name: str, number: int) -> BaseResponse:
    """Tear pull request `number`'s preview of the app down (deployers), then show the teardown's page."""
    what = f"removing preview #{number} of {name}"
    return _done(audited(audit.REMOVE_PREVIEW, Role.DEPLOYER, what, lambda operator: request_teardown(
        context().store, app_or_404(name), number, operator=operator)))


@bp.route("/apps/<name>/redeploy", methods=["GET", "POST"])
def redeploy(name: str) -> BaseResponse | str:
    """GET: confirm a redeploy of the live release (every service recreated); POST: queue it."""
    ctx = context()
    if request.method == "GET":
        app = _confirmable(name, f"redeploying {name}")
        live = ctx.store.live(app.name)
        return _confirm(app, audit.REDEPLOY, live.sha if live else "", "")

    return _done(audited(audit.REDEPLOY, Role.DEPLOYER, f"redeploying {name}",
                         lambda operator: queue_redeploy(ctx.store, app_or_404(name), operator)))


@bp.post("/apps/<name>/lock")
def lock(name: str) -> BaseResponse:
    """Lock the app with the form's reason (admins): its new deployments are held until it is unlocked."""
    return _change_lock(name, audit.LOCK, f"locking {name}")


@bp.post("/apps/<name>/unlock")
def unlock(name: str) -> BaseResponse:
    """Unlock the app (admins): its newest held deployment runs, unless a freeze window still holds it."""
    return _change_lock(name, audit.UNLOCK, f"unlocking {name}")


def _change_lock(name: str, action: str, what: str) -> BaseResponse:
    """Lock or unlock `name` as the session's admin, audit how it ended, and show the dashboard."""
    ctx = context()
    operator = authorize(ctx, Role.ADMIN, what)
    reason = request.form.get("reason", "")
    try:
        app = app_or_404(name)
        if action == audit.LOCK:
            app_locks.lock(ctx.store, app, operator.name, reason)
        else:
            app_locks.unlock(ctx.store, app)
    except HooksvcError as exc:
        audit_request(ctx, action, audit.FAILED, operator, reason=str(exc))
        raise
    audit_request(ctx, action, audit.OK, operator, reason=" ".join(reason.split()))
    return redirect(url_for("pages.dashboard", _anchor=f"app-{name}"), 303)
