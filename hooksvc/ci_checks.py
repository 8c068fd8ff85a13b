"""CI-gated deploys (`require_checks`): what a check report is, and whether a waiting push deploys.

Pure: the webhook side records reports (`hooksvc.web.hooks`), the worker reads the host's check
API (`workers.ci_status`) and decides here (`workers.ci_gate`). A report is one check run or
commit status (GitHub), commit status (Gitea, Forgejo) or pipeline (GitLab) on one commit, by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

#: `require_checks = "all"`: every check on the commit except hooksvc's own.
ALL = "all"


class CheckState(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class CheckReport:
    """One check on one commit: its name (check-run name, status context, pipeline name), how it
    stands, and where to read it."""

    name: str
    state: CheckState
    url: str = ""

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "state": str(self.state), "url": self.url}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> CheckReport:
        data = json.loads(raw)
        return cls(name=str(data["name"]), state=CheckState(data["state"]), url=str(data.get("url", "")))


def link(value: object) -> str:
    """A check's link as pages may show it: an http(s) URL, else "" (never a `javascript:` one)."""
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else ""


@dataclass(frozen=True)
class CheckEvent:
    """What a check webhook tells: reports on one commit, or that the host knows more (`refresh`)."""

    sha: str
    reports: tuple[CheckReport, ...] = ()
    #: Read the host's check API for this commit now: the event says something changed but names no
    #: check a requirement could match (a GitHub check suite is not a check run).
    refresh: bool = False


@dataclass(frozen=True)
class CheckRequirement:
    """An app's `require_checks`: the names every one of which must succeed, or every check (`every`)."""

    names: tuple[str, ...] = ()
    every: bool = False

    @property
    def label(self) -> str:
        """How the requirement reads in a status and on the dashboard: `ci/test, lint` or `all`."""
        return ALL if self.every else ", ".join(self.names)


class VerdictKind(StrEnum):
    DEPLOY = "deploy"
    SKIP = "skip"
    WAIT = "wait"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    #: The log line (deploy), the deployment's error (skip), or the status text (wait).
    reason: str
    #: The checks still awaited (wait).
    waiting_for: tuple[str, ...] = ()
    #: The check that failed (skip because of a failure).
    failed: CheckReport | None = None


def waiting_text(names: tuple[str, ...]) -> str:
    """The commit status text of a waiting push: `waiting for checks: ci/test, lint`."""
    return f"waiting for checks: {', '.join(names)}" if names else "waiting for checks"


def failed_text(report: CheckReport) -> str:
    """The error of a push a failed check kept from deploying (its link, where the host gave one)."""
    text = f"not deployed: {report.name} failed"
    return f"{text} ({report.url})" if report.url else text


def decide(
    requirement: CheckRequirement,
    reports: Mapping[str, CheckReport],
    *,
    own_context: str,
    waited: float,
    timeout: float,
    grace: float,
    complete: bool,
    age: float | None = None,
) -> Verdict:
    """Whether a push waiting for `requirement` deploys, is skipped, or waits on.

    `reports` are the checks known on its commit by name; hooksvc's own status (`own_context`)
    never counts. `waited` is the time it has waited for its checks (`timeout` bounds it): since the
    push arrived, or since a lock or freeze window that held it let it go. `age` is the time since
    the push arrived (default: `waited`): CI had that long to report a check. `complete` says that
    the host's check API was read since the last change, so `reports` names every check there is:
    only then can "all checks" pass, or a commit with none deploy (after `grace`). A failure wins
    over a timeout: the reason a team must read is the failed check.
    """
    age = waited if age is None else age
    known = {name: report for name, report in reports.items() if name != own_context}
    if requirement.every:
        failed = sorted((r for r in known.values() if r.state is CheckState.FAILURE), key=lambda r: r.name)
        if failed:
            return Verdict(VerdictKind.SKIP, failed_text(failed[0]), failed=failed[0])
        pending = tuple(sorted(n for n, r in known.items() if r.state is not CheckState.SUCCESS))
        if not pending and complete and known:
            return Verdict(VerdictKind.DEPLOY, f"every check succeeded: {', '.join(sorted(known))}")
        if not known and complete and age >= grace:
            return Verdict(VerdictKind.DEPLOY, f"no check reported on this commit within {_duration(grace)}: "
                                               "deploying without CI")
        waiting = pending or (ALL,)
    else:
        for name in requirement.names:
            report = known.get(name)
            if report is not None and report.state is CheckState.FAILURE:
                return Verdict(VerdictKind.SKIP, failed_text(report), failed=report)
        passed = {n for n, r in known.items() if r.state is CheckState.SUCCESS}
        waiting = tuple(n for n in requirement.names if n not in passed)
        if not waiting:
            return Verdict(VerdictKind.DEPLOY, f"required checks succeeded: {requirement.label}")
    if waited >= timeout:
        return Verdict(VerdictKind.SKIP, f"not deployed: checks did not finish within {_duration(timeout)} "
                                         f"(still waiting for {', '.join(waiting)})")
    return Verdict(VerdictKind.WAIT, waiting_text(waiting), waiting_for=waiting)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
