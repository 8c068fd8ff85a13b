"""Each deployment reported as a GitHub check run, beside its commit status (GitHub App hosts only).

GitHub lets only an App write check runs, so a host with a personal token gets commit statuses
alone. The run is named like the status context (`status_context`, `hooksvc/<app>` by default),
belongs to the deployed sha, links to the deployment page (`details_url`) and carries the
deployment's id as `external_id`. Its title is the status sentence; its summary holds the plan
(app, ref, commit, strategy, compose files, the release it replaces) and the outcome.

The events come through the outbox (kind `check_run`, one lane per deployment): the first one
creates the run (`POST /repos/{owner}/{repo}/check-runs`, `status: queued` or `in_progress`, or
already `completed`), every later one updates it (`PATCH .../check-runs/{id}`), a final state with
a `conclusion`. The run's id is kept in a small Redis record (`keys.check_run`) between the two.
The builders here are pure; `CheckRuns` holds the Redis side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from hooksvc import keys
from hooksvc.config import AppConfig, HostConfig
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.outbox import OutboxEvent
from workers.http import HttpRequest, HttpResponse, id_in_answer
from workers.statuses import truncate
from workers.statuses.github import github_headers, github_repo_url

#: GitHub's limits: a title of 255 characters; a summary of 65535 (kept far shorter here).
TITLE_LIMIT = 255
SUMMARY_LIMIT = 8000
#: A record outlives every retry of its events; it is deleted once the final state is delivered.
RECORD_TTL_SECONDS = 30 * 24 * 3600

#: (status, conclusion) per state. A deployment that never changed anything (superseded, cancelled)
#: is `cancelled`; a skipped one `neutral`: neither passed nor failed (but see CHECKS_FAILED). One
#: held by a lock or freeze window, or waiting for its CI checks, is still `queued`.
STATE_MAP: Mapping[DeploymentState, tuple[str, str | None]] = {
    DeploymentState.QUEUED: ("queued", None),
    DeploymentState.HELD: ("queued", None),
    DeploymentState.WAITING_FOR_CHECKS: ("queued", None),
    DeploymentState.RUNNING: ("in_progress", None),
    DeploymentState.SUCCEEDED: ("completed", "success"),
    DeploymentState.FAILED: ("completed", "failure"),
    DeploymentState.ERROR: ("completed", "failure"),
    DeploymentState.SKIPPED: ("completed", "neutral"),
    DeploymentState.SUPERSEDED: ("completed", "cancelled"),
    DeploymentState.CANCELLED: ("completed", "cancelled"),
}
#: A push its CI checks kept back (one failed, or they timed out) is skipped, but never green or
#: neutral on the commit: its run fails, as its commit status does.
CHECKS_FAILED = ("completed", "failure")


def run_state(state: DeploymentState, checks_failed: bool = False) -> tuple[str, str | None]:
    """The check run's (status, conclusion) for a deployment in `state`."""
    return CHECKS_FAILED if checks_failed and state is DeploymentState.SKIPPED else STATE_MAP[state]


@dataclass(frozen=True)
class CheckRunReport:
    """What one check-run request says about a deployment."""

    repo: str
    sha: str
    name: str
    state: DeploymentState
    deployment_id: str
    title: str
    summary: str
    details_url: str
    #: Set when the deployment was skipped because its CI checks failed or timed out.
    checks_failed: bool = False


def summary_text(app: AppConfig, event: OutboxEvent, deployment: Deployment | None, outcome: str) -> str:
    """The check run's summary (Markdown): the plan, then the outcome."""
    commit = f"`{event.sha[:12]}`"
    previous = deployment.previous_sha if deployment is not None else ""
    plan = [
        f"- app **{app.name}**, ref `{event.ref or '(none: a rollback or redeploy)'}`, commit {commit}",
        f"- strategy `{app.strategy}`, compose files {', '.join(f'`{f}`' for f in app.compose_files)}",
        f"- replaces release `{previous[:12]}`" if previous else "- no release of this app was live before",
    ]
    trigger = f" ({deployment.trigger})" if deployment is not None else ""
    text = "\n".join(["### Plan" + trigger, *plan, "", "### Outcome", outcome])
    return truncate(text, SUMMARY_LIMIT)


def _headers(host: HostConfig) -> dict[str, str]:
    return github_headers(host, "write check runs (with GitHub App credentials)")


def _body(report: CheckRunReport) -> dict[str, object]:
    status, conclusion = run_state(report.state, report.checks_failed)
    body: dict[str, object] = {
        "status": status,
        "output": {"title": truncate(report.title, TITLE_LIMIT), "summary": report.summary},
    }
    if conclusion is not None:
        body["conclusion"] = conclusion
    if report.details_url:
        body["details_url"] = report.details_url
    return body


def build_create_request(host: HostConfig, report: CheckRunReport) -> HttpRequest:
    """`POST /repos/{owner}/{repo}/check-runs`: the run, named like the status context, on `report.sha`."""
    body = {"name": report.name, "head_sha": report.sha, "external_id": report.deployment_id, **_body(report)}
    return HttpRequest("POST", f"{github_repo_url(host, report.repo)}/check-runs", headers=_headers(host), json=body)


def build_update_request(host: HostConfig, report: CheckRunReport, check_run_id: str) -> HttpRequest:
    """`PATCH /repos/{owner}/{repo}/check-runs/{id}`: the run's new status (and conclusion when final)."""
    url = f"{github_repo_url(host, report.repo)}/check-runs/{check_run_id}"
    return HttpRequest("PATCH", url, headers=_headers(host), json=_body(report))


def check_run_id_of(answer: HttpResponse) -> str:
    """The id in a create's answer; ValueError when there is none."""
    return id_in_answer(answer, "check-run")


@dataclass(frozen=True)
class CheckRunStep:
    """The next request of a check-run event, what it is called, and what to record once delivered."""

    request: HttpRequest
    what: str
    delivered: Callable[[HttpResponse], None]


class CheckRuns:
    """The Redis side: which check run reports a deployment, and which of its events GitHub has."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def _record(self, deployment_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(keys.check_run(deployment_id)).items()}

    def prepare(self, host: HostConfig, report: CheckRunReport, event: OutboxEvent) -> CheckRunStep | None:
        """Create the run, or update it with `event`; None once GitHub has this event (a final
        event's record is then deleted)."""
        record = self._record(event.deployment_id)
        where = f"{report.name!r} on {report.repo}@{report.sha[:12]}"
        status, conclusion = run_state(report.state, report.checks_failed)
        shown = f"{status}/{conclusion}" if conclusion else status
        if record.get("sent") == event.id:
            if event.state.is_final:
                self.redis.delete(keys.check_run(event.deployment_id))
            return None
        if not record.get("id"):
            return CheckRunStep(build_create_request(host, report), f"GitHub check run {where}: create {shown}",
                                lambda answer: self._remember(event, check_run_id_of(answer)))
        return CheckRunStep(build_update_request(host, report, record["id"]),
                            f"GitHub check run {record['id']} {where}: {shown} ({event.state})",
                            lambda _answer: self._remember(event, record["id"]))

    def _remember(self, event: OutboxEvent, check_run_id: str) -> None:
        key = keys.check_run(event.deployment_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"id": check_run_id, "sent": event.id})
            pipe.expire(key, RECORD_TTL_SECONDS)
            pipe.execute()

    def dropped(self, event: OutboxEvent) -> None:
        """An event given up: a final one leaves nothing more to update."""
        if event.state.is_final:
            self.redis.delete(keys.check_run(event.deployment_id))
