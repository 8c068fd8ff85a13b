"""End to end: signed webhook → Redis → real `hooksvc worker` processes → git → compose → live.

Everything is real (Redis, the Docker engine, git repositories, RQ workers in their own
processes) except the git host's status API, which is the checking stand-in of fake_git_host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc import keys
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from tests.helpers.docker import HealthyProxy, LoadLoop, get_text, wait_for
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.fleet import sample_app_files as app_files
from tests.helpers.payloads import github_push, github_request
from tests.helpers.worker_harness import DEPLOY_TIMEOUT, HOST_TOKEN, SECRET, Harness

pytestmark = pytest.mark.docker


@pytest.fixture
def harness(tmp_path: Path, make_git_origin: object, compose_project: str, base_image: str,
            redis: redis_lib.Redis) -> Iterator[Harness]:
    origin = make_git_origin("web")  # type: ignore[operator]
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as host:
        h = Harness(tmp_path, origin, compose_project, host, redis)
        try:
            yield h
        finally:
            h.stop()


@pytest.fixture
def proxy(harness: Harness, docker_client: docker.DockerClient) -> Iterator[str]:
    with HealthyProxy(docker_client, harness.project, "web") as p:
        yield p.url


def serves(url: str, version: str) -> bool:
    return get_text(f"{url}/version.txt") == (200, version)


class TestPushToLive:
    def test_push_deploys_rolls_and_keeps_old_version_on_failures(self, harness: Harness, proxy: str) -> None:
        """v1 deploys; v2 rolls in with 0 failed requests; unhealthy v3 and unbuildable v4 fail while v2 serves."""
        harness.start_worker()
        v1 = harness.commit("v1")
        d1 = harness.wait(harness.push(v1))
        assert d1.state is DeploymentState.SUCCEEDED, d1.error
        assert wait_for(lambda: serves(proxy, "v1"), 20)

        v2 = harness.commit("v2")
        with LoadLoop(f"{proxy}/version.txt", rate=25, max_seconds=DEPLOY_TIMEOUT) as load:
            d2 = harness.wait(harness.push(v2, before=v1))
            assert wait_for(lambda: serves(proxy, "v2"), 20)
            time.sleep(1)
        report = load.stop()
        assert d2.state is DeploymentState.SUCCEEDED, d2.error
        assert report.failed == 0, report.failures[:5]
        assert report.versions["v1"] > 0 and report.versions["v2"] > 0
        assert d2.previous_sha == v1

        v3 = harness.commit("v3", healthy=False)
        with LoadLoop(f"{proxy}/version.txt", rate=25, max_seconds=DEPLOY_TIMEOUT) as load:
            d3 = harness.wait(harness.push(v3, before=v2))
        report = load.stop()
        assert d3.state is DeploymentState.FAILED
        assert "unhealthy" in d3.error or "health" in d3.error
        assert report.failed == 0 and set(report.versions) == {"v2"}

        v4 = harness.commit("v4", build_fails=True)
        d4 = harness.wait(harness.push(v4, before=v3))
        assert d4.state is DeploymentState.FAILED and "build" in d4.error.lower()
        assert serves(proxy, "v2")
        live = harness.store.live("web")
        assert live is not None and live.sha == v2

        # Each commit got pending (queued), pending (started) and its final status, in order.
        assert wait_for(lambda: harness.statuses(v4)[-1:] == ["failure"], 30)
        assert harness.statuses(v1) == ["pending", "pending", "success"]
        assert harness.statuses(v2) == ["pending", "pending", "success"]
        assert harness.statuses(v3) == ["pending", "pending", "failure"]
        assert harness.statuses(v4) == ["pending", "pending", "failure"]
        assert harness.host.violations == []


class TestRefusals:
    def test_stale_push_is_skipped_and_foreign_sha_refused(self, harness: Harness) -> None:
        """An ancestor of the live sha is skipped as stale; a sha not on the branch is refused."""
        harness.start_worker()
        old = harness.commit("v1")
        new = harness.commit("v2")
        # v2 is live (as if deployed earlier); a delayed webhook for v1 must not move the app back.
        manual = NewDeployment("web", new, "refs/heads/main", Trigger.MANUAL)
        done = harness.store.intake.submit([manual]).deployments[0]
        harness.store.cancel(done.id)
        harness.redis.hset("hooksvc:app:web:live", mapping={"sha": new, "deployment_id": done.id, "since": "0"})
        stale = harness.wait(harness.push(old, before="0" * 40))
        assert stale.state is DeploymentState.SKIPPED and "stale" in stale.error

        other = harness.origin.commit("feature", {"x.txt": "x"}, branch="feature", start=old)
        refused = harness.wait(harness.push(other, before=new))
        assert refused.state is DeploymentState.FAILED
        assert "is not on refs/heads/main" in refused.error
        assert wait_for(lambda: harness.statuses(other)[-1:] == ["failure"], 30)
        # Skipped: nothing wrong with that commit. Its statuses travel in a lane of their own, so
        # they may arrive after the refused push's.
        assert wait_for(lambda: harness.statuses(old)[-1:] == ["success"], 30), harness.statuses(old)


class TestHostileReleases:
    """What a pusher can try against a real worker process, and what it gets."""

    def test_a_build_context_of_the_workers_proc_directory_is_refused(self, harness: Harness) -> None:
        """A release whose build context is `/proc/<worker pid>` (its `environ` once held every secret) fails
        before the build, naming key and path; the worker's own environ holds no secret either way."""
        worker = harness.start_worker()
        files = app_files(harness.tmp, "v1")
        files["docker-compose.yml"] = f"services:\n  web:\n    build: /proc/{worker.pid}\n"
        done = harness.wait(harness.push(harness.origin.commit("read the worker", files)))
        assert done.state is DeploymentState.FAILED
        assert f"services.web.build.context: '/proc/{worker.pid}' is outside the release checkout" in done.error
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes()
        assert SECRET.encode() not in environ and HOST_TOKEN.encode() not in environ

    def test_a_replayed_forced_push_does_not_roll_the_app_back(self, harness: Harness) -> None:
        """A forced push deploys while it is the branch head; the same delivery replayed once the branch has
        moved on and the dedupe period has passed is skipped, and the live release stays."""
        harness.start_worker()
        old = harness.commit("v1")
        harness.commit("v2")
        harness.origin.reset("main", old)
        captured = github_request(github_push(repo="acme/web", after=old, before="1" * 40, forced=True), SECRET)

        def deliver() -> Deployment:
            resp = harness.client.open("/hooks/github", **captured.client_kwargs())
            assert resp.status_code == 202, resp.json
            return harness.wait(str(resp.json["deployments"][0]["id"]))

        assert deliver().state is DeploymentState.SUCCEEDED
        newest = harness.commit("v3")
        assert harness.wait(harness.push(newest, before=old)).state is DeploymentState.SUCCEEDED
        for key in harness.redis.scan_iter(f"{keys.SEEN_PREFIX}*"):  # the dedupe period is over
            harness.redis.delete(key)
        replay = deliver()
        assert replay.state is DeploymentState.SKIPPED
        assert f"stale forced push: {old[:12]} is no longer the head of refs/heads/main" in replay.error
        assert harness.redis.hget("hooksvc:app:web:live", "sha") == newest.encode()


class TestOneAtATime:
    def test_two_workers_never_run_one_app_twice_at_once(self, harness: Harness) -> None:
        """With two workers and a burst of pushes, deployments of one app never overlap in time."""
        harness.start_worker()
        harness.start_worker()
        shas = [harness.commit(f"v{i}") for i in range(1, 5)]
        first = harness.push(shas[0])
        harness.wait_for_log(first, "rolling out")
        later = [harness.push(sha) for sha in shas[1:]]
        ran = [harness.wait(i) for i in [first, *later]]
        states = [d.state for d in ran]
        assert states == [DeploymentState.SUCCEEDED, DeploymentState.SUPERSEDED,
                          DeploymentState.SUPERSEDED, DeploymentState.SUCCEEDED]
        intervals = sorted((d.started_at, d.finished_at) for d in ran if d.started_at is not None)
        assert len(intervals) == 2
        (_, end_a), (start_b, _) = intervals
        assert end_a is not None and start_b is not None and end_a <= start_b
        assert harness.statuses(shas[1])[-1] == "error"  # superseded commits get a final status too


def kill_process_tree(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and its RQ work horse (which runs in a session of its own), as a crash would."""
    children = [
        int(p.name) for p in Path("/proc").iterdir()
        if p.name.isdigit() and _parent_pid(p) == worker.pid
    ]
    for child in children:
        os.killpg(child, signal.SIGKILL)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def _parent_pid(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class TestWorkerDeath:
    def test_killed_worker_ends_error_and_the_next_rollout_cleans_up(
        self, harness: Harness, proxy: str, docker_client: docker.DockerClient
    ) -> None:
        """SIGKILL mid-rollout: it ends error, the lock is freed, v1 keeps serving, the next rollout cleans up."""
        worker = harness.start_worker()
        v1 = harness.commit("v1")
        assert harness.wait(harness.push(v1)).state is DeploymentState.SUCCEEDED
        v2 = harness.commit("v2")
        d2 = harness.push(v2, before=v1)
        harness.wait_for_log(d2, "to be healthy")
        kill_process_tree(worker)
        harness.start_worker()
        died = harness.wait(d2, timeout=60)
        assert died.state is DeploymentState.ERROR and "worker" in died.error
        assert harness.redis.get(keys.app_lock("web")) is None
        # The old container was never touched; a new one the dead worker started may be serving beside it.
        assert get_text(f"{proxy}/version.txt")[0] == 200
        assert wait_for(lambda: harness.statuses(v2)[-1:] == ["error"], 30)

        v3 = harness.commit("v3")
        d3 = harness.wait(harness.push(v3, before=v2))
        assert d3.state is DeploymentState.SUCCEEDED, d3.error
        assert wait_for(lambda: serves(proxy, "v3"), 20)
        def web() -> list[str]:
            return [c.name for c in docker_client.containers.list(all=True, filters={
                "label": [f"com.docker.compose.project={harness.project}", "com.docker.compose.service=web"]})]

        # The stopped old container is removed once the deployment is recorded (the job's upkeep).
        assert wait_for(lambda: len(web()) == 1, 20), web()


class TestCommandLine:
    def test_deploy_and_rollback_wait_for_the_result(self, harness: Harness, proxy: str) -> None:
        """`hooksvc deploy --wait` and `hooksvc rollback --wait` show progress and exit 0 on success."""
        harness.start_worker()
        v1 = harness.commit("v1")
        cli = [sys.executable, "-m", "hooksvc.cli", "--config", str(harness.config_path)]
        first = subprocess.run([*cli, "deploy", "web", "--wait"], env=harness.env, capture_output=True,
                               text=True, timeout=DEPLOY_TIMEOUT)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "==> rolling out" in first.stdout and "succeeded" in first.stdout
        assert v1 in first.stdout
        v2 = harness.commit("v2")
        second = subprocess.run([*cli, "deploy", "web", "--sha", v2, "--wait"], env=harness.env,
                                capture_output=True, text=True, timeout=DEPLOY_TIMEOUT)
        assert second.returncode == 0 and serves(proxy, "v2")
        back = subprocess.run([*cli, "rollback", "web", "--wait"], env=harness.env, capture_output=True,
                              text=True, timeout=DEPLOY_TIMEOUT)
        assert back.returncode == 0, back.stdout + back.stderr
        assert wait_for(lambda: serves(proxy, "v1"), 20)
        status = subprocess.run([*cli, "status", "web"], env=harness.env, capture_output=True, text=True,
                                timeout=30)
        assert v1[:12] in status.stdout and "rollback" in status.stdout

    def test_deploy_wait_exits_non_zero_on_failure(self, harness: Harness) -> None:
        """`hooksvc deploy --wait` exits 1 when the deployment fails."""
        harness.start_worker()
        harness.commit("v1", build_fails=True)
        cli = [sys.executable, "-m", "hooksvc.cli", "--config", str(harness.config_path)]
        result = subprocess.run([*cli, "deploy", "web", "--wait"], env=harness.env, capture_output=True,
                                text=True, timeout=DEPLOY_TIMEOUT)
        assert result.returncode == 1
        assert "failed" in result.stdout
