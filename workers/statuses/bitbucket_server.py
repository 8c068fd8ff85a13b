"""Bitbucket Data Center build statuses:
`POST {api_url}/rest/api/latest/projects/{projectKey}/repos/{slug}/commits/{sha}/builds`
(Bitbucket 7.4 and later; the older `/rest/build-status/1.0` API is not used)."""

from __future__ import annotations

from urllib.parse import quote

from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from workers.http import HttpRequest
from workers.statuses import StatusReporter, StatusUpdate, bitbucket

#: Data Center's states: Cloud's, except that a deployment that never ran is CANCELLED.
STATE_MAP = bitbucket.STATE_MAP | {DeploymentState.SUPERSEDED: "CANCELLED", DeploymentState.CANCELLED: "CANCELLED"}


def build_status_request(host: HostConfig, update: StatusUpdate) -> HttpRequest:
    """The request that sets build `update.context` (Bitbucket's `key`) on commit `update.sha` of
    `update.repo` ('PROJECT/slug').

    `key`, `state` and `url` are required (see `bitbucket.build_body`). `ref` is the full pushed
    ref, which Bitbucket shows with the build.
    """
    body = bitbucket.build_body(host, update, STATE_MAP)
    if update.ref:
        body["ref"] = update.ref
    project, slug = update.repo.split("/", 1)
    url = (f"{host.api_url.rstrip('/')}/rest/api/latest/projects/{quote(project, safe='')}"
           f"/repos/{quote(slug, safe='')}/commits/{update.sha}/builds")
    return HttpRequest(method="POST", url=url, headers=bitbucket.bearer_headers(host), json=body)


REPORTER = StatusReporter(kinds=frozenset({"bitbucket-server"}), build=build_status_request)
