"""End to end as a GitHub App: a signed push to the real web app → Redis → real `hooksvc worker`
processes that clone a private repository over git's HTTP protocol with an installation token,
read the push's CI checks, deploy it with compose, and report the commit status, the GitHub
deployment and the check run with that token.

Everything is real (Redis, the Docker engine, git and its http-backend, the worker processes) except
GitHub's API, which is the checking stand-in of fake_git_host: it verifies the App's JWT with the
App's public key and hands out the installation tokens the git server accepts, which expire.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc.deployments import DeploymentState
from tests.helpers.docker import wait_for
from tests.helpers.fake_git_host import FakeGitHost, FakeGitHubApp
from tests.helpers.git import GitHttpServer
from tests.helpers.github_app import APP_ID, INSTALLATION_ID, app_key, write_app_key
from tests.helpers.payloads import github_request, load
from tests.helpers.worker_harness import SECRET, Harness, github_app_host

pytestmark = pytest.mark.docker

#: The gate's first read of the check APIs comes 15 s after the push (defaults.CHECKS_POLL_FIRST_SECONDS).
FIRST_READ_TIMEOUT = 60.0


class AppRig:
    """The stand-in GitHub as an App installed on acme/web, a private git origin that accepts only its
    installation tokens, and the harness of app `web` on them."""

    def __init__(self, tmp: Path, project: str, redis: redis_lib.Redis, fake: FakeGitHost, git_server: GitHttpServer,
                 app_extra: str = "") -> None:
        self.fake = fake
        self.git_server = git_server
        self.harness = Harness(tmp, git_server.origin("web"), project, fake, redis, app_extra=app_extra,
                               host_table=github_app_host(fake, write_app_key(tmp)))

    def assert_only_installation_tokens(self) -> None:
        """Every JWT was the App's; every clone and report went out with an installation token."""
        assert self.fake.issued_tokens, "no installation token was handed out"
        assert self.fake.jwt_claims and {c["iss"] for c in self.fake.jwt_claims} == {str(APP_ID)}
        assert self.git_server.requests and all(ok for _, _, ok, _ in self.git_server.requests)
        assert {user for *_, user in self.git_server.requests} == {"x-access-token"}
        tokens = {f"Bearer {t}" for t in self.fake.issued_tokens}
        assert {a.headers["authorization"] for a in self.fake.accepted} <= tokens

    def assert_no_token_kept(self, *texts: str) -> None:
        """No installation token in `texts` (logs, output) nor in any file under the state folder."""
        for token in self.fake.issued_tokens:
            assert all(token not in text for text in texts)
            hits = [p for p in (self.harness.tmp / "state").rglob("*")
                    if p.is_file() and not p.is_symlink() and token.encode() in p.read_bytes()]
            assert hits == []


def installed_app() -> FakeGitHubApp:
    return FakeGitHubApp(APP_ID, app_key().public_key(), INSTALLATION_ID, frozenset({"acme/web"}))


@pytest.fixture
def rig(tmp_path: Path, compose_project: str, base_image: str, redis: redis_lib.Redis,
        request: pytest.FixtureRequest) -> Iterator[AppRig]:
    """`@pytest.mark.parametrize("rig", [app_extra], indirect=True)` adds keys to `[apps.web]`."""
    with FakeGitHost({}, github_app=installed_app()) as fake, \
            GitHttpServer(tmp_path / "git", token=None, accepts=fake.accepts_installation_token) as git_server:
        rig = AppRig(tmp_path, compose_project, redis, fake, git_server, getattr(request, "param", ""))
        try:
            yield rig
        finally:
            rig.harness.stop()


def test_a_push_deploys_a_private_repository_and_reports_as_the_app(rig: AppRig) -> None:
    """Push → deployed by a burst worker from a private origin read with the installation token →
    status success and check run completed success, every request with that token, which no log
    line and no file holds."""
    h = rig.harness
    sha = h.commit("v1")
    deployment = h.push(sha)
    result = h.burst()
    done = h.store.get(deployment)
    log = "\n".join(h.log(done.id))
    assert done.state is DeploymentState.SUCCEEDED, log[-3000:]

    rig.assert_only_installation_tokens()
    assert rig.fake.violations == []
    assert h.statuses(sha) == ["pending", "pending", "success"]
    [host_deployment] = rig.fake.deployments("github")
    assert host_deployment.state == "success"
    [run] = rig.fake.check_runs()
    assert (run.name, run.head_sha, run.status, run.conclusion) == ("hooksvc/web", sha, "completed", "success")
    assert run.latest["details_url"] == f"http://deploy.test/deployments/{done.id}"
    rig.assert_no_token_kept(log, result.stderr, result.stdout)


GATED = 'require_checks = ["ci/test", "lint"]\nchecks_timeout = "10m"\n'


@pytest.mark.parametrize("rig", [GATED], indirect=True, ids=["gated"])
def test_a_gated_push_reads_its_checks_as_the_app(rig: AppRig) -> None:
    """require_checks on an App host: the worker's gate reads the Checks and combined-status APIs with
    an installation token (the stand-in verified the App's JWT), and deploys once both checks passed;
    the token, lapsed between two reads, is renewed and the read retried at once, not at the next poll."""
    h = rig.harness
    h.start_worker()
    sha = h.commit("v1")
    rig.fake.set_check_runs("acme/web", sha, [{"name": "ci/test", "status": "in_progress"}])
    deployment = h.push(sha)
    # The first read: both APIs, while ci/test runs.
    assert wait_for(lambda: rig.fake.check_reads("github") >= 2, FIRST_READ_TIMEOUT)
    assert h.store.get(deployment).state is DeploymentState.WAITING_FOR_CHECKS
    issued_before = len(rig.fake.issued_tokens)

    rig.fake.expire_app_tokens()
    rig.fake.set_check_runs("acme/web", sha, [{"name": "ci/test", "status": "completed", "conclusion": "success"}])
    rig.fake.set_commit_statuses("github", "acme/web", sha, [{"context": "lint", "state": "success"}])
    # GitHub's check_suite event names no check run: the gate reads the APIs at once.
    suite = load("github_check_suite_completed")
    suite["repository"]["full_name"] = "acme/web"
    suite["check_suite"]["head_sha"] = sha
    answer = h.client.open("/hooks/github", **github_request(suite, SECRET, event="check_suite").client_kwargs())
    assert answer.status_code == 202, answer.json
    done = h.wait(deployment)
    assert done.state is DeploymentState.SUCCEEDED, "\n".join(h.log(deployment)[-30:])
    assert "required checks succeeded: ci/test, lint" in h.log(deployment)
    assert wait_for(lambda: h.statuses(sha)[-1:] == ["success"], 30)

    assert rig.fake.refused_tokens >= 1 and len(rig.fake.issued_tokens) > issued_before
    assert rig.fake.check_reads("github") >= 4
    assert {v.split(": ")[-1] for v in rig.fake.violations} == {"Bad credentials"}  # only the lapsed token's
    worker_log = (h.tmp / "worker-0.log").read_text()
    assert "check API" not in worker_log, worker_log[-3000:]  # no read failed: the refused one was retried
    rig.assert_only_installation_tokens()
    rig.assert_no_token_kept(worker_log, "\n".join(h.log(deployment)))
