"""End to end for CI-gated deploys: signed push → Redis → a real `hooksvc worker` process (its checks
gate and its deploy jobs), or `hooksvc worker --burst` processes (one pass of the gate each) → git →
compose → live, with the checks reported by webhook or found by polling the stand-in GitHub's Checks API.

Everything is real (Redis, the Docker engine, git, the worker process) except the git host's APIs,
which are the checking stand-in of fake_git_host.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc.deployments import DeploymentState
from tests.helpers.docker import wait_for
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.payloads import github_request, load
from tests.helpers.worker_harness import BEARER, DEPLOY_TIMEOUT, HOST_TOKEN, SECRET, Harness

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

    def ci_reports(self, sha: str, test: str, lint: str = "pending") -> None:
        """What the Checks and combined-status APIs say of `sha` (no webhook): `ci/test` a check run in
        `test` (in_progress or a conclusion), `lint` a commit status."""
        run = {"name": "ci/test", "status": "in_progress"} if test == "in_progress" else {
            "name": "ci/test", "status": "completed", "conclusion": test}
        self.host.set_check_runs("acme/web", sha, [run])
        self.host.set_commit_statuses("github", "acme/web", sha, [{"context": "lint", "state": lint}])

    def status_texts(self, sha: str) -> list[tuple[str, str]]:
        return [(a.state, a.description) for a in self.host.accepted if a.sha == sha and a.context == CONTEXT]


@pytest.fixture
def harness(tmp_path: Path, make_git_origin: object, compose_project: str, base_image: str,
            redis: redis_lib.Redis) -> Iterator[GatedHarness]:
    origin = make_git_origin("web")  # type: ignore[operator]
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as host:
        h = GatedHarness(tmp_path, origin, compose_project, host, redis,
                         app_extra='require_checks = ["ci/test"]\nchecks_timeout = "20s"\n')
        try:
            h.start_worker()
            yield h
        finally:
            h.stop()


@pytest.fixture
def bursts(tmp_path: Path, make_git_origin: object, compose_project: str, base_image: str,
           redis: redis_lib.Redis) -> Iterator[GatedHarness]:
    """App `web` requiring `ci/test` and `lint` (timeout 10 s), and no worker running: the test runs
    `hooksvc worker --burst` processes."""
    origin = make_git_origin("web")  # type: ignore[operator]
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as host:
        yield GatedHarness(tmp_path, origin, compose_project, host, redis,
                           app_extra='require_checks = ["ci/test", "lint"]\nchecks_timeout = "10s"\n')


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


class TestBurstWorker:
    """A burst worker runs no gate thread: it reads each waiting push's checks once, then runs what is queued."""

    def test_a_burst_deploys_what_passed_and_leaves_what_still_runs(self, bursts: GatedHarness) -> None:
        """Checks still running: the push keeps waiting; once the APIs say they passed (no webhook came),
        the next burst deploys it."""
        v1 = bursts.commit("v1")
        d1 = bursts.push(v1)
        bursts.ci_reports(v1, test="in_progress")
        bursts.burst()
        assert bursts.store.get(d1).state is DeploymentState.WAITING_FOR_CHECKS
        assert bursts.host.check_reads("github") == 2  # the check runs and the combined status, once
        assert bursts.status_texts(v1) == [("pending", "waiting for checks: ci/test, lint")]
        bursts.ci_reports(v1, test="success", lint="success")
        bursts.burst()
        done = bursts.store.get(d1)
        assert done.state is DeploymentState.SUCCEEDED, "\n".join(bursts.log(d1)[-30:])
        assert "required checks succeeded: ci/test, lint" in bursts.log(d1)
        assert bursts.statuses(v1)[-1:] == ["success"]
        assert bursts.host.violations == []

    def test_a_burst_skips_a_failed_push_and_one_past_its_timeout(self, bursts: GatedHarness) -> None:
        """A failed check skips the push, naming it; checks unfinished after checks_timeout skip the next one."""
        v1 = bursts.commit("v1")
        d1 = bursts.push(v1)
        bursts.ci_reports(v1, test="failure", lint="success")
        bursts.burst()
        failed = bursts.store.get(d1)
        assert failed.state is DeploymentState.SKIPPED
        assert failed.error == "not deployed: ci/test failed (https://github.com/acme/web/runs/4000)"
        v2 = bursts.commit("v2")
        d2 = bursts.push(v2, before=v1)
        bursts.ci_reports(v2, test="in_progress")
        time.sleep(10.5)  # checks_timeout
        bursts.burst()
        late = bursts.store.get(d2)
        assert late.state is DeploymentState.SKIPPED
        assert late.error == "not deployed: checks did not finish within 10s (still waiting for ci/test, lint)"
        assert [state for state, _ in bursts.status_texts(v2)] == ["pending", "failure"]
        assert bursts.store.live("web") is None


def test_time_held_by_a_lock_does_not_count_against_checks_timeout(bursts: GatedHarness) -> None:
    """Locked longer than checks_timeout, with one check passed meanwhile and one still running at the
    unlock: the push waits on (its timeout counts from the unlock) and deploys once that check passed."""
    assert bursts.client.post("/api/apps/web/lock", json={"reason": "database migration"},
                              headers=BEARER).status_code == 200
    v1 = bursts.commit("v1")
    d1 = bursts.push(v1)
    bursts.ci_reports(v1, test="success", lint="pending")
    bursts.burst()  # the lock holds it: nothing read, nothing run
    assert bursts.store.get(d1).state is DeploymentState.HELD
    time.sleep(10.5)  # the lock outlasts checks_timeout
    unlocked = bursts.client.post("/api/apps/web/unlock", headers=BEARER)
    assert unlocked.status_code == 200 and unlocked.json["deployment"]["state"] == "waiting-for-checks"
    bursts.burst()
    waiting = bursts.store.get(d1)
    assert waiting.state is DeploymentState.WAITING_FOR_CHECKS, waiting.error
    assert waiting.error == "waiting for checks: lint"
    bursts.ci_reports(v1, test="success", lint="success")
    bursts.burst()
    done = bursts.store.get(d1)
    assert done.state is DeploymentState.SUCCEEDED, "\n".join(bursts.log(d1)[-30:])
    assert bursts.host.violations == []
