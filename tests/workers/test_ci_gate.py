"""The CI gate against a real Redis and the stand-in hosts' check APIs: a gated push waits with a
`pending` status naming its checks, deploys once they passed (webhook or polling), is skipped with a
`failure` naming a failed check or on timeout, and a newer push supersedes it."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc import keys
from hooksvc.app_locks import lock, unlock
from hooksvc.cli import cmd_status
from hooksvc.config import Config
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.recovery import release_ungated
from hooksvc.store import DeploymentStore, open_store
from hooksvc.web import create_app
from tests.helpers.config import make_config
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.payloads import (
    commit_sha,
    gitea_push,
    gitea_request,
    github_push,
    github_request,
    gitlab_push,
    gitlab_request,
    load,
)
from workers.ci_gate import ChecksGate, GateTimings
from workers.outbox_sender import OutboxSender

TOKEN = "gh-api-token"
SECRET = "gated-webhook-secret"
SHA = commit_sha(21)
NEWER = commit_sha(22)
#: A check run of the Checks API that passed.
PASSED = {"name": "ci/test", "status": "completed", "conclusion": "success"}
#: The gate's pace in these tests: its first read of the host's API a second after the push.
TIMINGS = GateTimings(poll_first=1.0, poll_max=4.0, grace=2.0, tick=0.05)


def gated_config(tmp_path: Path, api: str, require: str | None = '["ci/test", "lint"]', timeout: str = "1h") -> Config:
    """Apps gated on checks on each host kind; `require` None leaves app `gated` without a requirement."""
    gate = f'require_checks = {require}\n        checks_timeout = "{timeout}"' if require else ""
    return make_config(tmp_path, f"""
        [hosts.gh]
        kind = "github"
        api_url = "{api}/github"
        token_env = "GH_TOKEN"
        [hosts.tea]
        kind = "gitea"
        api_url = "{api}/gitea"
        token_env = "GH_TOKEN"
        [hosts.lab]
        kind = "gitlab"
        api_url = "{api}/gitlab"
        token_env = "GH_TOKEN"
        [apps.gated]
        host = "gh"
        repo = "acme/gated"
        clone_url = "{tmp_path / 'gated.git'}"
        secret_env = "GATED_SECRET"
        {gate}
        [apps.teagated]
        host = "tea"
        repo = "acme/teagated"
        clone_url = "{tmp_path / 'teagated.git'}"
        secret_env = "GATED_SECRET"
        require_checks = ["ci/woodpecker/push/test"]
        [apps.labgated]
        host = "lab"
        repo = "acme/labgated"
        clone_url = "{tmp_path / 'labgated.git'}"
        secret_env = "GATED_SECRET"
        require_checks = "all"
    """, env={"GATED_SECRET": SECRET})


@pytest.fixture
def fake() -> Iterator[FakeGitHost]:
    with FakeGitHost(tokens={"github": TOKEN, "gitea": TOKEN, "gitlab": TOKEN}) as host:
        yield host


class Rig:
    """A config, the web app on it, its store with every listener, the gate and the outbox sender."""

    def __init__(self, config: Config, redis: redis_lib.Redis, fake: FakeGitHost, offset: list[float]) -> None:
        self.config = config
        self.fake = fake
        self.store: DeploymentStore = open_store(config, redis)
        self.client: FlaskClient = create_app(config, connection=redis).test_client()
        self.gate = ChecksGate(config, self.store, TIMINGS, clock=lambda: time.time() + offset[0])
        self.sender = OutboxSender(config, redis)
        self.offset = offset

    def push_github(self, sha: str = SHA) -> Deployment:
        hook = github_request(github_push("acme/gated", "refs/heads/main", sha), SECRET)
        answer = self.client.open("/hooks/github", **hook.client_kwargs())
        assert answer.status_code == 202, answer.get_json()
        self.store.intake.dispatch()
        return self.store.get(answer.get_json()["deployments"][0]["id"])

    def check_run(self, name: str, conclusion: str | None, sha: str = SHA,
                  repo: str = "acme/gated") -> dict[str, object]:
        payload = load("github_check_run_completed")
        payload["repository"]["full_name"] = repo
        run = payload["check_run"]
        run.update(name=name, head_sha=sha, status="completed" if conclusion else "in_progress", conclusion=conclusion,
                   html_url=f"https://github.com/{repo}/runs/77")
        answer = self.client.open("/hooks/github", **github_request(payload, SECRET, event="check_run").client_kwargs())
        assert answer.status_code == 202, answer.get_json()
        body: dict[str, object] = answer.get_json()
        return body

    def statuses(self, kind: str = "github", sha: str = SHA, context: str = "hooksvc/gated") -> list[tuple[str, str]]:
        self.sender.run_once()
        return [(a.state, a.description) for a in self.fake.accepted
                if a.kind == kind and a.sha == sha and a.context == context]


@pytest.fixture
def rig(tmp_path: Path, redis: redis_lib.Redis, fake: FakeGitHost) -> Rig:
    return Rig(gated_config(tmp_path, fake.url), redis, fake, [0.0])


class TestWaiting:
    def test_a_gated_push_waits_with_a_pending_status_naming_its_checks(self, rig: Rig) -> None:
        """The push is recorded waiting-for-checks, holds the queued slot, has no job, and says what it waits for."""
        dep = rig.push_github()
        assert dep.state is DeploymentState.WAITING_FOR_CHECKS
        assert dep.required_checks == "ci/test, lint"
        assert rig.store.queued_id("gated") == dep.id
        assert rig.store.queue.job_ids == []
        assert rig.statuses() == [("pending", "waiting for checks: ci/test, lint")]
        assert dep.to_json()["state"] == "waiting-for-checks"

    def test_check_webhooks_then_deploys(self, rig: Rig) -> None:
        """Each passing check narrows the wait; when all passed the push is queued with its RQ job."""
        dep = rig.push_github()
        rig.check_run("ci/test", "success")
        assert rig.gate.tick() == []
        assert rig.store.get(dep.id).error == "waiting for checks: lint"
        assert rig.statuses()[-1] == ("pending", "waiting for checks: lint")
        rig.check_run("lint", "success")
        [released] = rig.gate.tick()
        assert released.state is DeploymentState.QUEUED and released.error == ""
        assert rig.store.queue.job_ids == [f"deploy-{dep.id}"]
        lines, _ = rig.store.logs.read(dep.id, "0")
        assert "required checks succeeded: ci/test, lint" in lines

    def test_a_failed_check_skips_with_a_failure_status_naming_it(self, rig: Rig) -> None:
        """A failed required check ends the push skipped, its status `failure` naming and linking the check."""
        rig.push_github()
        rig.check_run("ci/test", "failure")
        [done] = rig.gate.tick()
        assert done.state is DeploymentState.SKIPPED and done.checks_failed
        assert done.error == "not deployed: ci/test failed (https://github.com/acme/gated/runs/77)"
        assert rig.store.queue.job_ids == []
        assert rig.store.queued_id("gated") is None
        state, description = rig.statuses()[-1]
        assert state == "failure"
        assert description.startswith("not deployed: ci/test failed")
        assert all(s != "success" for s, _ in rig.statuses())

    def test_a_newer_push_supersedes_the_waiting_one(self, rig: Rig) -> None:
        """A newer push supersedes a waiting one, which never deploys; the newer one waits in its place."""
        first = rig.push_github(SHA)
        second = rig.push_github(NEWER)
        assert rig.store.get(first.id).state is DeploymentState.SUPERSEDED
        assert rig.store.queued_id("gated") == second.id
        rig.check_run("ci/test", "success")
        rig.check_run("lint", "success")
        assert rig.gate.tick() == []  # the checks of the superseded commit do not release the newer one
        assert rig.store.get(second.id).state is DeploymentState.WAITING_FOR_CHECKS

    def test_an_operator_may_cancel_a_waiting_push(self, rig: Rig) -> None:
        """A waiting push ends like a queued one: an operator may cancel it, which frees the slot."""
        dep = rig.push_github()
        assert rig.store.cancel(dep.id).state is DeploymentState.CANCELLED
        assert rig.store.queued_id("gated") is None

    def test_a_manual_deploy_is_not_gated(self, rig: Rig) -> None:
        """A manual deploy of a gated app is queued at once: an operator decides."""
        answer = rig.client.post("/api/apps/gated/deploy", json={"sha": SHA},
                                 headers={"Authorization": "Bearer operator-token-1"})
        assert answer.status_code == 202, answer.get_json()
        assert answer.get_json()["state"] == "queued"


class TestPolling:
    def test_polling_finds_success_when_no_webhook_comes(self, rig: Rig) -> None:
        """No check webhook at all: the gate reads the Checks and combined-status APIs and deploys."""
        dep = rig.push_github()
        rig.fake.set_check_runs("acme/gated", SHA, [PASSED])
        rig.fake.set_commit_statuses("github", "acme/gated", SHA, [{"context": "lint", "state": "success"}])
        assert rig.gate.tick() == []  # before the first read is due
        assert rig.fake.check_reads("github") == 0
        rig.offset[0] = TIMINGS.poll_first
        [released] = rig.gate.tick()
        assert released.id == dep.id and released.state is DeploymentState.QUEUED
        assert rig.fake.check_reads("github") == 2
        assert rig.fake.violations == []

    def test_reads_back_off(self, rig: Rig) -> None:
        """Reads of a still-pending commit come at doubling gaps, bounded: not once per tick."""
        rig.push_github()
        rig.fake.set_check_runs("acme/gated", SHA, [{"name": "ci/test", "status": "in_progress"}])
        reads = []
        for second in range(0, 12):
            rig.offset[0] = float(second)
            rig.gate.tick()
            reads.append(rig.fake.check_reads("github") // 2)
        # first read at 1 s, then gaps of 2 s and 4 s (the bound): reads at 1, 3, 7, 11
        assert reads == [0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4]

    def test_a_check_suite_webhook_triggers_a_read(self, rig: Rig) -> None:
        """A check_suite event names no check: the gate reads the API at once rather than at its next poll."""
        rig.push_github()
        rig.fake.set_check_runs("acme/gated", SHA, [{**PASSED, "conclusion": "failure"}])
        payload = load("github_check_suite_completed")
        payload["repository"]["full_name"] = "acme/gated"
        payload["check_suite"]["head_sha"] = SHA
        hook = github_request(payload, SECRET, event="check_suite")
        answer = rig.client.open("/hooks/github", **hook.client_kwargs())
        assert answer.status_code == 202
        [done] = rig.gate.tick()
        assert done.state is DeploymentState.SKIPPED
        assert done.error == "not deployed: ci/test failed (https://github.com/acme/gated/runs/4000)"

    def test_timeout_skips_with_the_reason(self, tmp_path: Path, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """Checks that never finish end the push skipped after checks_timeout, counted from its arrival."""
        rig = Rig(gated_config(tmp_path, fake.url, timeout="30s"), redis, fake, [0.0])
        dep = rig.push_github()
        rig.check_run("ci/test", None)
        assert rig.gate.tick() == []
        rig.offset[0] = 30.0
        [done] = rig.gate.tick()
        assert done.id == dep.id and done.state is DeploymentState.SKIPPED
        assert done.error == "not deployed: checks did not finish within 30s (still waiting for ci/test, lint)"
        assert rig.statuses()[-1][0] == "failure"


    def test_a_timeout_is_confirmed_by_a_read(self, tmp_path: Path, redis: redis_lib.Redis,
                                              fake: FakeGitHost) -> None:
        """Past checks_timeout, checks that passed at the host (their webhooks lost) deploy the push, not skip it."""
        rig = Rig(gated_config(tmp_path, fake.url, timeout="30s"), redis, fake, [0.0])
        dep = rig.push_github()
        rig.check_run("ci/test", None)
        rig.fake.set_check_runs("acme/gated", SHA, [PASSED])
        rig.fake.set_commit_statuses("github", "acme/gated", SHA, [{"context": "lint", "state": "success"}])
        rig.offset[0] = 31.0
        [released] = rig.gate.tick()
        assert released.id == dep.id and released.state is DeploymentState.QUEUED
        assert rig.fake.check_reads("github") == 2


class TestBurstPass:
    def test_a_pass_reads_every_waiting_push_at_once(self, rig: Rig, redis: redis_lib.Redis) -> None:
        """A burst worker's pass reads the host's API right away (no first-poll delay), acts, and frees the lease."""
        dep = rig.push_github()
        rig.fake.set_check_runs("acme/gated", SHA, [PASSED])
        rig.fake.set_commit_statuses("github", "acme/gated", SHA, [{"context": "lint", "state": "success"}])
        [released] = rig.gate.run_once()
        assert released.id == dep.id and released.state is DeploymentState.QUEUED
        assert rig.fake.check_reads("github") == 2
        assert redis.get(keys.CHECKS_GATE) is None

    def test_a_pass_leaves_the_pushes_to_the_acting_gate(self, rig: Rig, redis: redis_lib.Redis) -> None:
        """While another worker's gate holds the lease, a burst pass reads nothing and changes nothing."""
        assert redis.set(keys.CHECKS_GATE, "someone-else", px=10_000)
        dep = rig.push_github()
        rig.fake.set_check_runs("acme/gated", SHA, [PASSED])
        assert rig.gate.run_once() == []
        assert rig.fake.check_reads("github") == 0
        assert rig.store.get(dep.id).state is DeploymentState.WAITING_FOR_CHECKS


class TestHeldFirst:
    """A gated push and a lock: its checks_timeout counts from the unlock, not from its arrival, and a
    lock holds it whether it came before the push or while the push waited for its CI."""

    def held_an_hour(self, rig: Rig, redis: redis_lib.Redis) -> Deployment:
        """A push that arrived an hour ago (a 30 s checks_timeout) and was held by a lock all along, its
        check `ci/test` still running; then the unlock."""
        app = rig.config.apps["gated"]
        lock(rig.store, app, "token-1", "database migration")
        dep = rig.push_github()
        assert dep.state is DeploymentState.HELD
        rig.check_run("ci/test", None)
        redis.hset(keys.deployment(dep.id), "created_at", repr(time.time() - 3600))
        assert rig.gate.tick() == []  # a held push is not the gate's
        released = unlock(rig.store, app)
        assert released is not None and released.state is DeploymentState.WAITING_FOR_CHECKS
        return released

    def test_checks_passing_after_the_unlock_deploy_it(self, tmp_path: Path, redis: redis_lib.Redis,
                                                       fake: FakeGitHost) -> None:
        """Held longer than checks_timeout, it still waits after the unlock, and deploys once its checks passed."""
        rig = Rig(gated_config(tmp_path, fake.url, timeout="30s"), redis, fake, [0.0])
        dep = self.held_an_hour(rig, redis)
        assert rig.gate.tick() == []
        assert rig.store.get(dep.id).state is DeploymentState.WAITING_FOR_CHECKS
        rig.check_run("ci/test", "success")
        rig.check_run("lint", "success")
        [released] = rig.gate.tick()
        assert released.id == dep.id and released.state is DeploymentState.QUEUED

    def test_the_timeout_counts_from_the_unlock(self, tmp_path: Path, redis: redis_lib.Redis,
                                                fake: FakeGitHost) -> None:
        """Checks still unfinished 30 s after the unlock end it skipped, with the usual reason."""
        rig = Rig(gated_config(tmp_path, fake.url, timeout="30s"), redis, fake, [0.0])
        dep = self.held_an_hour(rig, redis)
        rig.offset[0] = 29.0
        assert rig.gate.tick() == []
        rig.offset[0] = 31.0
        [done] = rig.gate.tick()
        assert done.id == dep.id and done.state is DeploymentState.SKIPPED
        assert done.error == "not deployed: checks did not finish within 30s (still waiting for ci/test, lint)"


    def test_checks_passing_while_the_app_is_locked_hold_the_push(self, rig: Rig) -> None:
        """Locked while the push waited for its CI: its checks passing hold it (no job, its status naming
        the lock), and the unlock deploys it."""
        app = rig.config.apps["gated"]
        dep = rig.push_github()
        lock(rig.store, app, "token-1", "database migration")
        assert rig.store.get(dep.id).state is DeploymentState.WAITING_FOR_CHECKS
        rig.check_run("ci/test", "success")
        rig.check_run("lint", "success")
        [held] = rig.gate.tick()
        assert held.id == dep.id and held.state is DeploymentState.HELD
        assert held.error == "deploys to gated are locked by token-1: database migration"
        assert rig.store.queue.job_ids == []
        assert rig.statuses()[-1] == ("pending", held.error)
        assert rig.gate.tick() == []
        assert unlock(rig.store, app) is not None
        [released] = rig.gate.tick()
        assert released.state is DeploymentState.QUEUED and rig.store.queue.job_ids == [f"deploy-{dep.id}"]
        lines, _ = rig.store.logs.read(dep.id, "0")
        assert ("its checks passed, but held: deploys to gated are locked by token-1: database migration" in lines)


class TestAllChecks:
    def test_hooksvc_own_status_and_a_suite_without_runs_count_for_nothing(self, tmp_path: Path,
                                                                          redis: redis_lib.Redis,
                                                                          fake: FakeGitHost) -> None:
        """"all" with no CI on the commit (hooksvc's own pending status only) deploys after the grace."""
        rig = Rig(gated_config(tmp_path, fake.url, require='"all"'), redis, fake, [0.0])
        dep = rig.push_github()
        rig.statuses()  # hooksvc's own pending status is now on the commit at the host
        rig.offset[0] = TIMINGS.poll_first
        assert rig.gate.tick() == []  # read: nothing but its own status, within the grace
        rig.offset[0] = TIMINGS.grace
        [released] = rig.gate.tick()
        assert released.id == dep.id and released.state is DeploymentState.QUEUED
        lines, _ = rig.store.logs.read(dep.id, "0")
        assert "no check reported on this commit within 2s: deploying without CI" in lines

    def test_all_deploys_on_a_fresh_read_only(self, tmp_path: Path, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """"all": a webhook's success is confirmed by a read of the host's list before the push deploys."""
        rig = Rig(gated_config(tmp_path, fake.url, require='"all"'), redis, fake, [0.0])
        rig.push_github()
        rig.fake.set_check_runs("acme/gated", SHA, [{"name": "ci/test", "status": "completed", "conclusion": "success"},
                                                    {"name": "e2e", "status": "in_progress"}])
        rig.check_run("ci/test", "success")
        assert rig.gate.tick() == []  # the read found e2e still running
        assert rig.store.get(rig.store.queued_id("gated") or "").error == "waiting for checks: e2e"


class TestOtherHosts:
    def test_gitea_status_webhook_releases(self, rig: Rig) -> None:
        """A Gitea `status` webhook of the required context releases the waiting push."""
        hook = gitea_request(gitea_push("acme/teagated", "refs/heads/main", SHA), SECRET)
        answer = rig.client.open("/hooks/gitea", **hook.client_kwargs())
        assert answer.status_code == 202
        rig.store.intake.dispatch()
        status = load("gitea_status")
        status["repository"]["full_name"] = "acme/teagated"
        status["sha"] = SHA
        answer = rig.client.open("/hooks/gitea", **gitea_request(status, SECRET, event="status").client_kwargs())
        assert answer.status_code == 202
        [released] = rig.gate.tick()
        assert released.app == "teagated" and released.state is DeploymentState.QUEUED

    def test_gitea_polling_reads_the_combined_status(self, rig: Rig) -> None:
        """With no webhook, the Gitea combined-status API is read and its failure skips the push."""
        hook = gitea_request(gitea_push("acme/teagated", "refs/heads/main", SHA), SECRET)
        assert rig.client.open("/hooks/gitea", **hook.client_kwargs()).status_code == 202
        rig.store.intake.dispatch()
        rig.fake.set_commit_statuses("gitea", "acme/teagated", SHA,
                                     [{"context": "ci/woodpecker/push/test", "state": "failure",
                                       "target_url": "https://ci.example/7"}])
        rig.offset[0] = TIMINGS.poll_first
        [done] = rig.gate.tick()
        assert done.state is DeploymentState.SKIPPED
        assert done.error == "not deployed: ci/woodpecker/push/test failed (https://ci.example/7)"
        assert rig.fake.check_reads("gitea") == 1 and rig.fake.violations == []

    def test_gitlab_pipeline_webhook_then_polling(self, rig: Rig) -> None:
        """GitLab: a running pipeline's webhook keeps the push waiting; the pipelines API then shows success."""
        hook = gitlab_request(gitlab_push("acme/labgated", "refs/heads/main", SHA), SECRET)
        assert rig.client.open("/hooks/gitlab", **hook.client_kwargs()).status_code == 202
        rig.store.intake.dispatch()
        pipeline = load("gitlab_pipeline")
        pipeline["project"]["path_with_namespace"] = "acme/labgated"
        pipeline["object_attributes"].update(sha=SHA, status="running")
        answer = rig.client.open("/hooks/gitlab", **gitlab_request(pipeline, SECRET, event="Pipeline Hook")
                                 .client_kwargs())
        assert answer.status_code == 202
        assert rig.gate.tick() == []
        name = "Pipeline for branch: master"
        rig.fake.set_pipelines("acme/labgated", SHA, [{"id": 30, "status": "failed", "name": name},
                                                      {"id": 31, "status": "success", "name": name}])
        rig.offset[0] = TIMINGS.poll_first
        [released] = rig.gate.tick()
        assert released.app == "labgated" and released.state is DeploymentState.QUEUED
        assert rig.fake.check_reads("gitlab") >= 1 and rig.fake.violations == []


class TestVisibility:
    def test_api_and_status_show_what_it_waits_for(self, rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
        """/api/apps and `hooksvc status` show the waiting push, what it needs and what is known."""
        dep = rig.push_github()
        rig.check_run("ci/test", "success")
        rig.gate.tick()
        apps = rig.client.get("/api/apps", headers={"Authorization": "Bearer operator-token-1"}).get_json()["apps"]
        [gated] = [a for a in apps if a["name"] == "gated"]
        assert gated["waiting_for_checks"] == {
            "deployment": dep.id, "sha": SHA, "required": "ci/test, lint", "waiting_for": "waiting for checks: lint",
            "checks": [{"name": "ci/test", "state": "success", "url": "https://github.com/acme/gated/runs/77"}],
        }
        rig.client.post("/login", data={"token": "operator-token-1", "next": "/"})
        page = rig.client.get("/").get_data(as_text=True)
        assert "waiting for checks: lint" in page and "(requires ci/test, lint)" in page
        assert 'href="https://github.com/acme/gated/runs/77"' in page
        detail = rig.client.get(f"/deployments/{dep.id}").get_data(as_text=True)
        assert "<dt>waits for</dt>" in detail and "<dt>requires</dt><dd class=\"mono\">ci/test, lint</dd>" in detail
        assert cmd_status(rig.config, argparse.Namespace(app="gated")) == 0
        out = capsys.readouterr().out
        assert (f"gated: deployment #{dep.id} ({SHA[:12]}) waiting for checks: lint (requires ci/test, lint; "
                "known: ci/test success)") in out

    def test_the_gate_keeps_one_acting_worker(self, rig: Rig, redis: redis_lib.Redis) -> None:
        """The gate's lease lets one worker's gate act at a time."""
        assert redis.set(keys.CHECKS_GATE, "someone-else", px=10_000)
        assert not rig.gate.lease.acquire()


def test_the_host_lists_no_deployment_for_a_push_ci_kept_back(rig: Rig) -> None:
    """A waiting push, and one a failed check skipped, create no deployment on GitHub: only statuses."""
    rig.push_github()
    rig.check_run("ci/test", "failure")
    rig.gate.tick()
    assert [s for s, _ in rig.statuses()] == ["pending", "failure"]
    assert rig.fake.deployments("github") == []


def test_a_push_waiting_for_checks_no_longer_required_is_queued(rig: Rig, tmp_path: Path) -> None:
    """After require_checks is removed from the config, the janitor queues the push that still waits."""
    dep = rig.push_github()
    ungated = gated_config(tmp_path, rig.fake.url, require=None)
    assert release_ungated(rig.store, rig.config.apps) == []  # still gated: nothing to do
    [released] = release_ungated(rig.store, ungated.apps)
    assert released.id == dep.id and released.state is DeploymentState.QUEUED
    assert rig.store.queue.job_ids == [f"deploy-{dep.id}"]


def test_a_push_no_longer_gated_is_held_while_its_app_is_locked(rig: Rig, tmp_path: Path) -> None:
    """Once require_checks is removed, a push that still waits for its checks is held, not queued, while its
    app is locked: the lock holds whatever has not started."""
    dep = rig.push_github()
    ungated = gated_config(tmp_path, rig.fake.url, require=None)
    lock(rig.store, ungated.apps["gated"], "alice", "database migration")
    assert release_ungated(rig.store, ungated.apps) == []
    held = rig.store.get(dep.id)
    assert held.state is DeploymentState.HELD and "locked by alice: database migration" in held.error
    assert rig.store.queue.job_ids == []
