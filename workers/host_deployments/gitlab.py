"""GitLab deployments: `POST {api_url}/api/v4/projects/{id}/deployments` creates one in an
environment, `PUT .../deployments/{deployment_id}` changes its status (docs/contract.md,
"Deployments on the git host")."""

from __future__ import annotations

from collections.abc import Callable

from hooksvc.config import AppConfig, HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.outbox import OutboxEvent
from hooksvc.presentation import short_ref
from workers.host_deployments import Action, DeploymentsApi, Record, Step
from workers.http import HttpRequest
from workers.statuses import api_base, json_headers
from workers.statuses.gitlab import API_PATH, project_id

#: GitLab's API takes `running`, `success`, `failed` and `canceled`; a queued deployment has no
#: status it can be created with, so GitLab hears of a deployment once it starts (or, if it never
#: starts, once it ends). A skip deployed nothing: `canceled`.
STATE_MAP: dict[DeploymentState, str | None] = {
    DeploymentState.QUEUED: None,
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


def gitlab_ref(app: AppConfig, event: OutboxEvent) -> tuple[str, bool]:
    """GitLab's `ref` and `tag` for a deployment: its branch or tag, else (a rollback names none)
    the app's branch, else the sha itself, which GitLab resolves too."""
    if event.ref:
        return short_ref(event.ref), event.ref.startswith("refs/tags/")
    if app.single_branch and app.branch:
        return app.branch, False
    return event.sha, False


def plan(
    host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, description: str,
    page_url: Callable[[str], str], where: str,
) -> Step | None:
    """Create with this event's status once there is one GitLab can take; later, update the status.

    GitLab's deployment has no description or link: `description` and `page_url` play no part.
    """
    status = STATE_MAP[event.state]
    if status is None:
        return None
    if not record.host_id:
        ref, tag = gitlab_ref(app, event)
        request = build_create_request(host, app.repo, event.sha, ref, tag, app.environment, status)
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
)
