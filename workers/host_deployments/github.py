"""GitHub Deployments: `POST {api_url}/repos/{owner}/{repo}/deployments` creates a deployment,
`POST .../deployments/{id}/statuses` adds each of its statuses (docs/contract.md, "Deployments on
the git host")."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hooksvc.config import AppConfig, HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.outbox import OutboxEvent
from workers.host_deployments import Action, DeploymentsApi, Record, Step, Target, host_id_of
from workers.http import HttpRequest
from workers.statuses import describe_removal, truncate
from workers.statuses.github import DESCRIPTION_LIMIT, github_headers, github_repo_url

#: A deployment status for each of our states. A deployment that never changed the environment
#: (superseded or cancelled before it ran, skipped as stale or unchanged) is `inactive`: GitHub's
#: `error` would read as a broken environment, and `success` would make GitHub mark the release
#: that still serves inactive.
STATE_MAP = {
    DeploymentState.QUEUED: "queued",
    DeploymentState.WAITING_FOR_CHECKS: "pending",
    DeploymentState.HELD: "queued",
    DeploymentState.RUNNING: "in_progress",
    DeploymentState.SUCCEEDED: "success",
    DeploymentState.FAILED: "failure",
    DeploymentState.ERROR: "error",
    DeploymentState.SKIPPED: "inactive",
    DeploymentState.SUPERSEDED: "inactive",
    DeploymentState.CANCELLED: "inactive",
}
INACTIVE = "inactive"


def _headers(host: HostConfig) -> dict[str, str]:
    return github_headers(host, "record deployments")


def build_create_request(
    host: HostConfig, repo: str, sha: str, environment: str, payload: Mapping[str, object], description: str,
    preview: bool = False,
) -> HttpRequest:
    """The request that creates a deployment of exactly `sha` in `environment`.

    `auto_merge` is off (GitHub would merge the default branch into the ref: not what was deployed)
    and `required_contexts` empty (by default every commit status must be `success`, and hooksvc's
    own status for this commit is still `pending`). A preview's environment is transient (it goes
    away with its pull request) and never production.
    """
    body: dict[str, object] = {
        "ref": sha,
        "environment": environment,
        "auto_merge": False,
        "required_contexts": [],
        "payload": payload,
        "description": truncate(description, DESCRIPTION_LIMIT),
    }
    if preview:
        body |= {"transient_environment": True, "production_environment": False}
    url = f"{github_repo_url(host, repo)}/deployments"
    return HttpRequest(method="POST", url=url, headers=_headers(host), json=body)


def build_status_request(
    host: HostConfig, repo: str, host_id: str, state: str, description: str, log_url: str, environment_url: str | None,
) -> HttpRequest:
    """The request that adds status `state` (a GitHub deployment state) to deployment `host_id`.

    `log_url` also sets `target_url` on GitHub's side; `auto_inactive` keeps GitHub's default.
    """
    body: dict[str, object] = {"state": state, "description": truncate(description, DESCRIPTION_LIMIT)}
    if log_url:
        body["log_url"] = log_url
    if environment_url:
        body["environment_url"] = environment_url
    url = f"{github_repo_url(host, repo)}/deployments/{host_id}/statuses"
    return HttpRequest(method="POST", url=url, headers=_headers(host), json=body)


def plan(
    host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, target: Target, description: str,
    page_url: Callable[[str], str], where: str,
) -> Step | None:
    """Create, then this event's status, then (after a success) `inactive` on the replaced release;
    for a preview torn down, `inactive` on its deployments instead."""
    if event.removed:  # a teardown: only one that succeeded removed the preview
        return plan_removal(host, app, event, target) if event.state is DeploymentState.SUCCEEDED else None
    if not record.host_id:
        about: dict[str, object] = {"app": app.name, "deployment_id": event.deployment_id}
        if page_url(event.deployment_id):
            about["url"] = page_url(event.deployment_id)
        if target.preview is not None:
            about["pull_request"] = target.preview
        payload = {"hooksvc": about}
        request = build_create_request(host, app.repo, event.sha, target.environment, payload,
                                       f"hooksvc deployment {event.deployment_id}", preview=target.preview is not None)
        remember = (lambda answer: {"latest": host_id_of(answer)}) if target.preview is not None else None
        return Step(Action.CREATE, request, f"GitHub deployment {where}: create", remember=remember)
    if record.sent != event.id:
        state = STATE_MAP[event.state]
        request = build_status_request(host, app.repo, record.host_id, state, description,
                                       page_url(event.deployment_id), target.url)
        return Step(Action.STATUS, request, f"GitHub deployment {record.host_id} {where}: {state} ({event.state})",
                    activates=event.state is DeploymentState.SUCCEEDED)
    if record.replaces:
        request = build_status_request(
            host, app.repo, record.replaces, INACTIVE,
            f"Replaced by deployment {event.deployment_id} ({event.sha[:12]})",
            page_url(record.replaces_deployment) if record.replaces_deployment else "", None,
        )
        return Step(Action.INACTIVATE, request,
                    f"GitHub deployment {record.replaces} in environment {target.environment!r}: inactive "
                    f"(replaced by deployment {event.deployment_id})")
    return None


def plan_removal(host: HostConfig, app: AppConfig, event: OutboxEvent, target: Target) -> Step | None:
    """A torn-down preview: `inactive` on the deployment GitHub shows active in its environment, then on
    the last one created there if that is another (one that failed, or never ended).

    GitHub keeps a transient environment's deployments active until told otherwise (`auto_inactive`
    spares them). The environment itself is left: deleting one takes the repository administration
    permission, which a token that records deployments should not need; an environment whose
    deployments are all inactive reads as gone in the pull request's timeline.
    """
    shown = [name for name in ("host_id", "latest") if target.record.get(name)]
    if not shown:
        return None
    host_id = target.record[shown[0]]
    forget = tuple(name for name in ("host_id", "latest") if target.record.get(name) == host_id)
    description = f"Preview removed: {describe_removal(event.removed)}"
    request = build_status_request(host, app.repo, host_id, INACTIVE, description, "", None)
    return Step(Action.ENVIRONMENT, request,
                f"GitHub deployment {host_id} in environment {target.environment!r}: inactive (preview removed: "
                f"{event.removed})", forget=forget)


DEPLOYMENTS = DeploymentsApi(
    kinds=frozenset({"github"}),
    plan=plan,
    permission_hint="if the token may not write deployments, give it the repo_deployment scope (fine-grained: "
                    "Deployments read and write), or set the app's environment = \"\" to record none",
    preview_environment=lambda number: f"pr-{number}",
)
