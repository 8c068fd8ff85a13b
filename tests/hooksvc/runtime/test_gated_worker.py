"""End to end for CI-gated deploys: signed push → Redis → a real `hooksvc worker` process (its checks
gate and its deploy jobs) → git → compose → live, with the checks reported by webhook or found by
polling the stand-in GitHub's Checks API.

Everything is real (Redis, the Docker engine, git, the worker process) except the git host's APIs,
which are the checking stand-in of fake_git_host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc.deployments import DeploymentState
from tests.helpers.docker import wait_for
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.payloads import github_request, load
from tests.hooksvc.runtime.test_worker import DEPLOY_TIMEOUT, GH_TOKEN, SECRET, Harness

pytestmark = pytest.mark.docker

CONTEXT = "hooksvc/web"
#: The gate's first read of the Checks API comes 15 s after the push (defaults.CHECKS_POLL_FIRST_SECONDS).
POLL_TIMEOUT = 60.0


class GatedHarness(Harness):
    """App `web` requiring the check `ci/test` (timeout 20 s), with a worker process running."""

    def check_run(self, sha: str, conclusion: str) -> None:
        payload = load("github_check_run_completed")
        payload["repository"]["full_name"] = "acme/web"
        payload["check_run"].update(name="ci/test", head_sha=sha, conclusion=conclusion,
                                    html_url="https://github.com/acme/web/runs/9")
        answer = self.client.open("/hooks/github", **github_request(payload, SECRET, event="check_run").client_kwargs())
        assert answer.status_code == 202, answer.json

    def status_texts(self, sha: str) -> list[tuple[str, str]]:
        return [(a.state, a.description) for a in self.host.accepted if a.sha == sha and a.context == CONTEXT]


@pytest.fixture
def harness(tmp_path: Path, make_git_origin: object, compose_project: str, base_image: str,
            redis: redis_lib.Redis) -> Iterator[GatedHarness]:
    origin = make_git_origin("web")  # type: ignore[operator]
    with FakeGitHost(tokens={"github": GH_TOKEN}) as host:
        h = GatedHarness(tmp_path, origin, compose_project, host, redis,
                         app_extra='require_checks = ["ci/test"]\nchecks_timeout = "20s"\n')
        try:
            h.start_worker()
            yield h
        finally:
            h.stop()


def test_push_waits_then_a_check_webhook_deploys_it(harness: GatedHarness) -> None:
    """push → waits (pending "waiting for checks: ci/test") → check_run success webhook → deployed."""
    v1 = harness.commit("v1")
    d1 = harness.push(v1)
    assert wait_for(lambda: harness.status_texts(v1)[:1] == [("pending", "waiting for checks: ci/test")], 30)
    assert harness.store.get(d1).state is DeploymentState.WAITING_FOR_CHECKS
    harness.check_run(v1, "success")
    done = harness.wait(d1)
    assert done.state is DeploymentState.SUCCEEDED, done.error
    assert wait_for(lambda: harness.statuses(v1)[-1:] == ["success"], 30)
    assert harness.host.violations == []


def test_a_failed_check_skips_the_push_naming_it(harness: GatedHarness) -> None:
    """push → check_run failure → skipped naming the check; its status is `failure`, never green."""
    v1 = harness.commit("v1")
    d1 = harness.push(v1)
    harness.check_run(v1, "failure")
    done = harness.wait(d1, timeout=30)
    assert done.state is DeploymentState.SKIPPED
    assert done.error == "not deployed: ci/test failed (https://github.com/acme/web/runs/9)"
    assert wait_for(lambda: harness.status_texts(v1)[-1:] == [("failure", done.error)], 30)
    assert "success" not in harness.statuses(v1)


def test_a_newer_push_supersedes_the_waiting_one(harness: GatedHarness) -> None:
    """push, newer push → the first superseded (never deployed); the newer one deploys once its check passed."""
    v1 = harness.commit("v1")
    d1 = harness.push(v1)
    v2 = harness.commit("v2")
    d2 = harness.push(v2, before=v1)
    first = harness.wait(d1, timeout=10)
    assert first.state is DeploymentState.SUPERSEDED and first.started_at is None
    harness.check_run(v2, "success")
    assert harness.wait(d2).state is DeploymentState.SUCCEEDED


def test_polling_finds_the_success_no_webhook_reported(harness: GatedHarness) -> None:
    """A check webhook that never comes: the worker's gate reads the Checks API and deploys."""
    v1 = harness.commit("v1")
    harness.host.set_check_runs("acme/web", v1, [{"name": "ci/test", "status": "completed", "conclusion": "success"}])
    d1 = harness.push(v1)
    done = harness.wait(d1, timeout=POLL_TIMEOUT + DEPLOY_TIMEOUT)
    assert done.state is DeploymentState.SUCCEEDED, done.error
    assert harness.host.check_reads("github") >= 1
    assert harness.host.violations == []


def test_checks_that_never_finish_time_out(harness: GatedHarness) -> None:
    """No check ever reports: after checks_timeout (20 s from the push) the push is skipped with the reason."""
    v1 = harness.commit("v1")
    d1 = harness.push(v1)
    done = harness.wait(d1, timeout=60)
    assert done.state is DeploymentState.SKIPPED
    assert done.error == "not deployed: checks did not finish within 20s (still waiting for ci/test)"
    assert done.created_at + 20 <= (done.finished_at or 0) < done.created_at + 40
