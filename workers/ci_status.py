"""Reading a commit's CI checks from the git host's API, one reader per host kind.

What the webhooks of `hooksvc.providers` report as it happens, this reads as it stands: GitHub's
check runs and combined status, Gitea's and Forgejo's combined status, GitLab's pipelines. Request
building and answer parsing are pure; `read_checks` sends (through `workers.http`). Every request
carries `authorization(host, repo)`, the one place a host's credential for reading is chosen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hooksvc import defaults
from hooksvc.ci_checks import CheckReport, link
from hooksvc.config import HostConfig
from hooksvc.errors import HooksvcError
from hooksvc.providers.github import check_run_state
from hooksvc.providers.gitlab import pipeline_name, pipeline_state
from hooksvc.providers.payload import commit_status_state
from workers import host_auth
from workers.http import HttpRequest, send
from workers.statuses import USER_AGENT, api_base
from workers.statuses.github import API_VERSION
from workers.statuses.gitlab import API_PATH as GITLAB_API_PATH
from workers.statuses.gitlab import project_id

GITEA_API_PATH = "/api/v1"


class CheckReadError(HooksvcError):
    """The host's check API gave no usable answer (the message names the host and the status, never the token)."""


def authorization(host: HostConfig, repo: str) -> tuple[str, str]:
    """The header that authorizes reading `repo`'s checks on `host`.

    GitHub's comes from `workers.host_auth` (the host's token, or its App's installation token for
    `repo`); Gitea's, Forgejo's and GitLab's is the host's token in the header each documents.
    """
    missing = CheckReadError(f"host {host.name!r} has no credentials: reading {repo}'s checks needs a token "
                             "(token_env or token_file) with read access to commit statuses and checks")
    if host.kind == "github":
        value = host_auth.authorization(host, repo)
        if value is None:
            raise missing
        return ("Authorization", value)
    if host.token is None:
        raise missing
    token = host.token.reveal()
    if host.kind == "gitlab":
        return ("PRIVATE-TOKEN", token)
    return ("Authorization", f"token {token}")


def _get(host: HostConfig, repo: str, url: str, accept: str = "application/json") -> HttpRequest:
    name, value = authorization(host, repo)
    headers = {name: value, "Accept": accept, "User-Agent": USER_AGENT}
    if host.kind == "github":
        headers["X-GitHub-Api-Version"] = API_VERSION
    return HttpRequest(method="GET", url=url, headers=headers)


def _repo_path(repo: str) -> str:
    owner, name = repo.split("/", 1)
    return f"repos/{quote(owner, safe='')}/{quote(name, safe='')}"


@dataclass(frozen=True)
class CheckSource:
    """One read of a host's check API: the requests, and how each answer turns into reports."""

    requests: Callable[[HostConfig, str, str], list[HttpRequest]]
    parse: Callable[[list[Any]], list[CheckReport]]


def github_requests(host: HostConfig, repo: str, sha: str) -> list[HttpRequest]:
    """The commit's check runs (the latest run per name) and its combined status."""
    base = f"{host.api_url.rstrip('/')}/{_repo_path(repo)}/commits/{sha}"
    size = defaults.CHECKS_API_PAGE_SIZE
    accept = "application/vnd.github+json"
    return [_get(host, repo, f"{base}/check-runs?filter=latest&per_page={size}", accept),
            _get(host, repo, f"{base}/status?per_page={size}", accept)]


def github_reports(answers: list[Any]) -> list[CheckReport]:
    """Check runs by name and statuses by context. A check suite with no check runs (an app with
    no workflow for the branch) shows up as nothing here: it neither passes nor holds a deploy."""
    runs, combined = answers
    reports = []
    for run in _list(runs, "check_runs"):
        state = check_run_state(run.get("status"), run.get("conclusion"))
        if isinstance(run.get("name"), str) and state is not None:
            reports.append(CheckReport(run["name"], state, _text(run.get("html_url"))))
    reports += _statuses(_list(combined, "statuses"), "state")
    return reports


def gitea_requests(host: HostConfig, repo: str, sha: str) -> list[HttpRequest]:
    base = api_base(host.api_url, GITEA_API_PATH)
    return [_get(host, repo, f"{base}/{_repo_path(repo)}/commits/{sha}/status?limit={defaults.CHECKS_API_PAGE_SIZE}")]


def gitea_reports(answers: list[Any]) -> list[CheckReport]:
    """The combined status's statuses: Gitea names a status's state `status` (its webhook: `state`)."""
    return _statuses(_list(answers[0], "statuses"), "status")


def gitlab_requests(host: HostConfig, repo: str, sha: str) -> list[HttpRequest]:
    base = f"{api_base(host.api_url, GITLAB_API_PATH)}/projects/{project_id(repo)}/pipelines"
    query = f"sha={sha}&order_by=id&sort=desc&per_page={defaults.CHECKS_API_PAGE_SIZE}"
    return [_get(host, repo, f"{base}?{query}")]


def gitlab_reports(answers: list[Any]) -> list[CheckReport]:
    """The newest pipeline of each name (a retried or re-run pipeline replaces the older one)."""
    pipelines = answers[0]
    if not isinstance(pipelines, list):
        raise CheckReadError("GitLab pipelines answer is not a list")
    newest: dict[str, CheckReport] = {}
    for item in sorted((p for p in pipelines if isinstance(p, dict)), key=lambda p: _int(p.get("id"))):
        state = pipeline_state(item.get("status"))
        if state is not None:
            name = pipeline_name(item.get("name"))
            newest[name] = CheckReport(name, state, _text(item.get("web_url")))
    return list(newest.values())


#: Each host kind with a check API, and how to read it.
SOURCES = {
    "github": CheckSource(github_requests, github_reports),
    "gitea": CheckSource(gitea_requests, gitea_reports),
    "forgejo": CheckSource(gitea_requests, gitea_reports),
    "gitlab": CheckSource(gitlab_requests, gitlab_reports),
}


def read_checks(host: HostConfig, repo: str, sha: str) -> list[CheckReport]:
    """Every check the host reports on `repo`'s commit `sha`; CheckReadError when it cannot tell.

    A GitHub App's installation token can lapse between two reads (GitHub revoked it, or this
    process's clock ran behind): answered 401, the token is renewed and the read tried once more.
    """
    source = SOURCES.get(host.kind)
    if source is None:
        raise CheckReadError(f"hosts of kind {host.kind!r} have no check API hooksvc reads")
    try:
        return source.parse(_answers(source, host, repo, sha))
    except _Refused:
        host_auth.refused(host, repo)  # the next `authorization` renews the token
        return source.parse(_answers(source, host, repo, sha, retry=False))


class _Refused(Exception):
    """A GitHub App host answered 401: its installation token is to be renewed before a retry."""


def _answers(source: CheckSource, host: HostConfig, repo: str, sha: str, retry: bool = True) -> list[Any]:
    answers = []
    for request in source.requests(host, repo, sha):
        response = send(request, max_bytes=defaults.CHECKS_API_MAX_BYTES)
        if response.status == 401 and host.kind == "github":
            if retry and host.app is not None:
                raise _Refused
            host_auth.refused(host, repo)  # the next read renews it
        if not response.ok:
            raise CheckReadError(f"{host.kind} check API {request.describe()} answered {response.status}: "
                                 f"{response.text()}")
        try:
            answers.append(json.loads(response.body))
        except ValueError:
            raise CheckReadError(f"{host.kind} check API {request.describe()} answered with no JSON") from None
    return answers


def _statuses(statuses: list[dict[str, Any]], state_key: str) -> list[CheckReport]:
    """Commit statuses by context: the first one listed is the newest (both hosts list newest first)."""
    reports: dict[str, CheckReport] = {}
    for item in statuses:
        context, state = item.get("context"), commit_status_state(item.get(state_key))
        if isinstance(context, str) and state is not None and context not in reports:
            reports[context] = CheckReport(context, state, _text(item.get("target_url")))
    return list(reports.values())


def _list(answer: Any, key: str) -> list[dict[str, Any]]:
    items = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise CheckReadError(f"check API answer has no {key!r} list")
    return [item for item in items if isinstance(item, dict)]


def _text(value: object) -> str:
    return link(value)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
