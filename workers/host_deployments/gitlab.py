"""GitLab deployments: `POST {api_url}/api/v4/projects/{id}/deployments` creates one in an
environment, `PUT .../deployments/{deployment_id}` changes its status (docs/contract.md,
"Deployments on the git host").

A preview is a review app: environment `review/mr-<iid>` (GitLab groups `review/…` environments in
one folder, as its own review apps do), created through the environments API with the preview's
address as `external_url` before its first deployment (`GET .../environments?name=` first, so a
reopened merge request reuses its environment, re-pointed with `PUT` if its address changed), and
stopped (`POST .../environments/{id}/stop`) when the preview is torn down."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import quote

from hooksvc.config import AppConfig, HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.outbox import OutboxEvent
from hooksvc.presentation import short_ref
from workers.host_deployments import Action, DeploymentsApi, Record, Step, Target
from workers.http import HttpRequest, HttpResponse, id_in_answer, list_in_answer
from workers.statuses import api_base, json_headers
from workers.statuses.gitlab import API_PATH, project_id

#: GitLab's API takes `running`, `success`, `failed` and `canceled`; a queued deployment has no
#: status it can be created with, so GitLab hears of a deployment once it starts (or, if it never
#: starts, once it ends). A skip deployed nothing: `canceled`.
STATE_MAP: dict[DeploymentState, str | None] = {
    DeploymentState.QUEUED: None,
    DeploymentState.WAITING_FOR_CHECKS: None,
    DeploymentState.HELD: None,
    DeploymentState.RUNNING: "running",
    DeploymentState.SUCCEEDED: "success",
    DeploymentState.FAILED: "failed",
    DeploymentState.ERROR: "failed",
    DeploymentState.SKIPPED: "canceled",
    DeploymentState.SUPERSEDED: "canceled",
    DeploymentState.CANCELLED: "canceled",
}


def _project_url(host: HostConfig, repo: str) -> str:
    return f"{api_base(host.api_url, API_PATH)}/projects/{project_id(repo)}"


def _headers(host: HostConfig) -> dict[str, str]:
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: GitLab needs one to record deployments")
    return json_headers(("PRIVATE-TOKEN", host.token.reveal()))


def build_create_request(
    host: HostConfig, repo: str, sha: str, ref: str, tag: bool, environment: str, status: str,
) -> HttpRequest:
    """The request that creates a deployment of `sha` (from branch or tag `ref`) in `environment`.

    GitLab requires all five fields, and `ref` must resolve in the project (a branch, a tag or the sha).
    """
    body: dict[str, object] = {"environment": environment, "sha": sha, "ref": ref, "tag": tag, "status": status}
    return HttpRequest(method="POST", url=f"{_project_url(host, repo)}/deployments", headers=_headers(host), json=body)


def build_update_request(host: HostConfig, repo: str, host_id: str, status: str) -> HttpRequest:
    """The request that sets deployment `host_id`'s status."""
    url = f"{_project_url(host, repo)}/deployments/{host_id}"
    return HttpRequest(method="PUT", url=url, headers=_headers(host), json={"status": status})


#: GitLab's tier for review apps (it guesses `development` for `review/…` names too).
PREVIEW_TIER = "development"


def build_find_environment_request(host: HostConfig, repo: str, name: str) -> HttpRequest:
    """The request that lists the project's environment called `name` (none or one)."""
    url = f"{_project_url(host, repo)}/environments?name={quote(name, safe='')}"
    return HttpRequest(method="GET", url=url, headers=_headers(host))


def build_create_environment_request(host: HostConfig, repo: str, name: str, url: str | None) -> HttpRequest:
    """The request that creates environment `name`, reached at `url`."""
    body: dict[str, object] = {"name": name, "tier": PREVIEW_TIER}
    if url:
        body["external_url"] = url
    return HttpRequest(method="POST", url=f"{_project_url(host, repo)}/environments", headers=_headers(host),
                       json=body)


def build_stop_environment_request(host: HostConfig, repo: str, environment_id: str) -> HttpRequest:
    """The request that stops environment `environment_id` (it then lists as stopped, its URL gone)."""
    url = f"{_project_url(host, repo)}/environments/{environment_id}/stop"
    return HttpRequest(method="POST", url=url, headers=_headers(host), json={})


def build_update_environment_request(host: HostConfig, repo: str, environment_id: str, url: str) -> HttpRequest:
    """The request that points environment `environment_id` at `url`."""
    return HttpRequest(method="PUT", url=f"{_project_url(host, repo)}/environments/{environment_id}",
                       headers=_headers(host), json={"external_url": url})


def found_environment(answer: HttpResponse) -> Mapping[str, str]:
    """The environment record after a lookup: its id and URL, or that there is none (ValueError: no list)."""
    for environment in list_in_answer(answer, "environment"):
        if isinstance(environment, dict) and isinstance(environment.get("id"), int):
            url = str(environment.get("external_url") or "")
            return {"environment_id": str(environment["id"]), "external_url": url}
    return {"looked_up": "1"}


def plan_environment(host: HostConfig, app: AppConfig, target: Target) -> Step | None:
    """A preview's environment, found or created before its first deployment, its URL the preview's
    (a reopened merge request's preview may have another port); None once it is so."""
    name, environment_id = target.environment, target.record.get("environment_id")
    if environment_id:
        if not target.url or target.record.get("external_url") == target.url:
            return None
        url = target.url
        return Step(Action.ENVIRONMENT, build_update_environment_request(host, app.repo, environment_id, url),
                    f"GitLab environment {name!r} of {app.repo}: point it at {url}",
                    remember=lambda _answer: {"external_url": url})
    if not target.record.get("looked_up"):
        return Step(Action.ENVIRONMENT, build_find_environment_request(host, app.repo, name),
                    f"GitLab environment {name!r} of {app.repo}: look it up", remember=found_environment)
    return Step(Action.ENVIRONMENT, build_create_environment_request(host, app.repo, name, target.url),
                f"GitLab environment {name!r} of {app.repo}: create",
                remember=lambda answer: {"environment_id": id_in_answer(answer, "environment"),
                                         "external_url": target.url or ""})


def plan_removal(host: HostConfig, app: AppConfig, event: OutboxEvent, target: Target) -> Step | None:
    """A torn-down preview: its environment stopped (found by name first if its id is not known)."""
    environment_id = target.record.get("environment_id")
    if environment_id:
        return Step(Action.ENVIRONMENT, build_stop_environment_request(host, app.repo, environment_id),
                    f"GitLab environment {target.environment!r} of {app.repo}: stop (preview removed: "
                    f"{event.removed})", forget=("environment_id",))
    if not target.record.get("looked_up"):
        return Step(Action.ENVIRONMENT, build_find_environment_request(host, app.repo, target.environment),
                    f"GitLab environment {target.environment!r} of {app.repo}: look it up", remember=found_environment)
    return None


def gitlab_ref(app: AppConfig, event: OutboxEvent) -> tuple[str, bool]:
    """GitLab's `ref` and `tag` for a deployment: its branch or tag, else (a rollback names none)
    the app's branch, else the sha itself, which GitLab resolves too."""
    if event.ref:
        return short_ref(event.ref), event.ref.startswith("refs/tags/")
    if app.single_branch and app.branch:
        return app.branch, False
    return event.sha, False


def plan(
    host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, target: Target, description: str,
    page_url: Callable[[str], str], where: str,
) -> Step | None:
    """Create with this event's status once there is one GitLab can take; later, update the status.
    A preview's environment is found or created first, and stopped when the preview is torn down.

    GitLab's deployment has no description or link: `description` and `page_url` play no part.
    """
    if event.removed:  # a teardown: only one that succeeded removed the preview
        return plan_removal(host, app, event, target) if event.state is DeploymentState.SUCCEEDED else None
    status = STATE_MAP[event.state]
    if status is None:
        return None
    if target.preview is not None and (step := plan_environment(host, app, target)) is not None:
        return step
    if not record.host_id:
        ref, tag = gitlab_ref(app, event)
        request = build_create_request(host, app.repo, event.sha, ref, tag, target.environment, status)
        return Step(Action.CREATE, request, f"GitLab deployment {where}: create {status} ({event.state})",
                    carries_state=True)
    if record.sent != event.id:
        request = build_update_request(host, app.repo, record.host_id, status)
        return Step(Action.STATUS, request, f"GitLab deployment {record.host_id} {where}: {status} ({event.state})")
    return None


DEPLOYMENTS = DeploymentsApi(
    kinds=frozenset({"gitlab"}),
    plan=plan,
    permission_hint="if the token may not create deployments, give it the api scope and at least the Developer "
                    "role, or set the app's environment = \"\" to record none",
    preview_environment=lambda number: f"review/mr-{number}",
)
