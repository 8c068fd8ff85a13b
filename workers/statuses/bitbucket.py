"""Bitbucket Cloud build statuses:
`POST {api_url}/2.0/repositories/{workspace}/{repo_slug}/commit/{sha}/statuses/build`."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from hooksvc import defaults
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.presentation import short_ref
from workers.http import HttpRequest
from workers.statuses import StatusReporter, StatusUpdate, api_base, json_headers, mark_skipped, truncate

API_PATH = "/2.0"
#: Bitbucket documents no limit; GitLab's 255 keeps the text readable.
DESCRIPTION_LIMIT = defaults.GITLAB_DESCRIPTION_LIMIT

#: Bitbucket's four states. A skip deployed nothing wrong: SUCCESSFUL, saying it was skipped; a
#: deployment that never ran is STOPPED.
STATE_MAP = {
    DeploymentState.QUEUED: "INPROGRESS",
    DeploymentState.HELD: "INPROGRESS",
    DeploymentState.RUNNING: "INPROGRESS",
    DeploymentState.SUCCEEDED: "SUCCESSFUL",
    DeploymentState.FAILED: "FAILED",
    DeploymentState.ERROR: "FAILED",
    DeploymentState.SKIPPED: "SUCCESSFUL",
    DeploymentState.SUPERSEDED: "STOPPED",
    DeploymentState.CANCELLED: "STOPPED",
}


def build_status_request(host: HostConfig, update: StatusUpdate) -> HttpRequest:
    """The request that sets build status `update.context` (Bitbucket's `key`, which a later status
    of the same key overwrites) on commit `update.sha` of `update.repo` ('workspace/repo_slug').

    `refname` is the pushed branch or tag, which Bitbucket shows with the status.
    """
    body = build_body(host, update, STATE_MAP)
    if branch := short_ref(update.ref):
        body["refname"] = branch
    workspace, slug = update.repo.split("/", 1)
    url = (f"{api_base(host.api_url, API_PATH)}/repositories/{quote(workspace, safe='')}/{quote(slug, safe='')}"
           f"/commit/{update.sha}/statuses/build")
    return HttpRequest(method="POST", url=url, headers=bearer_headers(host), json=body)


def build_body(host: HostConfig, update: StatusUpdate, states: Mapping[DeploymentState, str]) -> dict[str, object]:
    """The fields Bitbucket Cloud and Data Center share: key, state, name, description and url.

    Both require the `url`, so without `[server] public_url` no status is sent (ValueError).
    """
    if not update.target_url:
        raise ValueError("Bitbucket needs a link with every build status: set [server] public_url")
    description = mark_skipped(update.description) if update.state is DeploymentState.SKIPPED else update.description
    return {
        "key": update.context,
        "state": states[update.state],
        "name": update.context,
        "description": truncate(description, DESCRIPTION_LIMIT),
        "url": update.target_url,
    }


def bearer_headers(host: HostConfig) -> dict[str, str]:
    """An access token as a bearer token, which Bitbucket Cloud and Data Center both take."""
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: Bitbucket needs one to post build statuses")
    return json_headers(("Authorization", f"Bearer {host.token.reveal()}"))


REPORTER = StatusReporter(kinds=frozenset({"bitbucket"}), build=build_status_request)
