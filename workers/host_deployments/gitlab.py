"""GitLab deployments: `POST {api_url}/api/v4/projects/{id}/deployments` creates one in an
environment, `PUT .../deployments/{deployment_id}` changes its status (docs/contract.md,
"Deployments on the git host")."""

from __future__ import annotations

from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from workers.http import HttpRequest
from workers.statuses import api_base, json_headers
from workers.statuses.gitlab import API_PATH, project_id

#: GitLab's API takes `running`, `success`, `failed` and `canceled`; a queued deployment has no
#: status it can be created with, so GitLab hears of a deployment once it starts (or, if it never
#: starts, once it ends). A skip deployed nothing: `canceled`.
STATE_MAP: dict[DeploymentState, str | None] = {
    DeploymentState.QUEUED: None,
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
