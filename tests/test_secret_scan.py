"""No secret anywhere it could be seen: one full run of real processes, then every output scanned.

`hooksvc serve` and `hooksvc worker` run as the README starts them, against real Redis, Docker and a
token-protected git server; the git host's status API and the notification receivers are the
checking stand-in. The run covers a good deploy, a failed build whose output prints a secret, a
refused webhook, the API, the pages and `/metrics`. Then every place an operator, a git host or a
notification receiver can read is searched for each secret: server and worker logs, deployment
logs, API answers, pages, `/metrics`, commit-status and notification bodies, and every file under
`state_dir`, and the worker's own environment as `/proc/<pid>/environ` shows it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import keys
from hooksvc.deployments import DeploymentState
from hooksvc.store import DeploymentStore
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.docker import get_text, wait_for, write_sample_app
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.git import GitHttpServer
from tests.helpers.payloads import HookRequest, github_push, github_request
from tests.helpers.processes import stop_process_groups
from tests.helpers.redis_server import free_port

pytestmark = pytest.mark.docker

#: Distinctive values, so a hit can only be a leak.
WEBHOOK_SECRET = "scan-webhook-secret-Q7wX"
OTHER_APP_SECRET = "scan-other-app-secret-L3pZ"
API_TOKEN = "scan-api-token-V9kR"
HOST_TOKEN = "scan-github-token-M2tB"
CLONE_TOKEN = "scan-clone-token-H5nC"
NOTIFY_SECRET = "scan-notify-secret-D8sF"
SLACK_SECRET = "scan-slack-secret-J4gY"
SECRETS = (WEBHOOK_SECRET, OTHER_APP_SECRET, API_TOKEN, HOST_TOKEN, CLONE_TOKEN, NOTIFY_SECRET, SLACK_SECRET)
DEPLOY_TIMEOUT = 120.0


def release_files(tmp: Path, version: str, *, leak_on_build: bool = False) -> dict[str, str | bytes | None]:
    """The sample app at `version`; with `leak_on_build`, a build step that prints the webhook secret and fails
    (as a misconfigured build printing a credential would). The repository holds it base64-encoded, so
    only the build's output has it in plain text."""
    root = write_sample_app(tmp / f"src-{version}", version)
    files: dict[str, str | bytes | None] = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
                                            if p.is_file()}
    if leak_on_build:
        dockerfile = files["Dockerfile"]
        text = dockerfile.decode() if isinstance(dockerfile, bytes) else str(dockerfile)
        encoded = base64.b64encode(WEBHOOK_SECRET.encode()).decode()
        files["Dockerfile"] = text + f'RUN echo "token is $(echo {encoded} | base64 -d)" && exit 3\n'
    return files


def post(port: int, path: str, hook: HookRequest) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=hook.body, headers=hook.headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def get(port: int, path: str, token: str = API_TOKEN) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return f"{resp.status} {dict(resp.getheaders())} {resp.read().decode('utf-8', 'replace')}"
    finally:
        conn.close()


class Run:
    """The processes, their logs and what they were configured with."""

    def __init__(self, tmp: Path, project: str, host: FakeGitHost, git_server: GitHttpServer) -> None:
        self.tmp = tmp
        self.host = host
        self.port = free_port()
        self.state_dir = tmp / "state"
        self.origin = git_server.origin("web")
        self.env = {
            **os.environ, "WEB_SECRET": WEBHOOK_SECRET, "OTHER_SECRET": OTHER_APP_SECRET,
            "HOOKSVC_API_TOKENS": API_TOKEN, "GH_TOKEN": HOST_TOKEN, "CLONE_TOKEN": CLONE_TOKEN,
            "NOTIFY_SECRET": NOTIFY_SECRET, "SLACK_URL": f"{host.url}/slack/services/T1/B1/{SLACK_SECRET}",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }
        self.env.pop("REDIS_URL", None)
        self.config_path = tmp / "hooksvc.toml"
        self.config_path.write_text(textwrap.dedent(f"""
            [server]
            listen = "127.0.0.1:{self.port}"
            public_url = "http://deploy.test"
            [redis]
            url = "{TEST_REDIS_URL}"
            [worker]
            state_dir = "{self.state_dir}"
            [hosts.github]
            kind = "github"
            api_url = "{host.url}/github"
            token_env = "GH_TOKEN"
            [apps.web]
            host = "github"
            repo = "acme/web"
            clone_url = "{self.origin.url}"
            token_env = "CLONE_TOKEN"
            branch = "main"
            secret_env = "WEB_SECRET"
            project = "{project}"
            health_timeout = "40s"
            start_grace = "2s"
            notify_url = "{host.url}/notify"
            notify_secret_env = "NOTIFY_SECRET"
            slack_url_env = "SLACK_URL"
            [apps.other]
            host = "github"
            repo = "acme/other"
            clone_url = "{tmp / 'other.git'}"
            secret_env = "OTHER_SECRET"
        """))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, *command: str) -> None:
        log = self.tmp / f"{command[0]}.log"
        self.logs.append(log)
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "hooksvc.cli", "--config", str(self.config_path), *command],
            env=self.env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        ))

    def stop(self) -> None:
        stop_process_groups(self.procs, grace=20)


@pytest.fixture
def run(tmp_path: Path, compose_project: str, base_image: str, redis: redis_lib.Redis) -> Iterator[Run]:
    del base_image, redis  # the image the sample app builds from; a flushed test database
    with (FakeGitHost(tokens={"github": HOST_TOKEN}, notify_secret=NOTIFY_SECRET,
                      slack_path=f"/slack/services/T1/B1/{SLACK_SECRET}") as host,
          GitHttpServer(tmp_path / "git-http", token=CLONE_TOKEN) as git_server):
        r = Run(tmp_path, compose_project, host, git_server)
        try:
            yield r
        finally:
            r.stop()


def test_no_secret_appears_in_any_output(run: Run, redis: redis_lib.Redis) -> None:
    """After deploys (one good, one failing with a secret in its build output), a refused webhook, API and
    page reads, no secret appears in any log, answer, page, metric, status, notification or state file."""
    host = run.host
    run.start("serve")
    run.start("worker")
    assert wait_for(lambda: get_text(f"http://127.0.0.1:{run.port}/healthz")[0] == 200, 30)
    store = DeploymentStore(redis)

    def deploy(sha: str, before: str | None = None) -> str:
        status, body = post(run.port, "/hooks/github",
                            github_request(github_push(repo="acme/web", after=sha, before=before), WEBHOOK_SECRET))
        assert status == 202, body
        deployment_id = str(json.loads(body)["deployments"][0]["id"])
        assert wait_for(lambda: store.get(deployment_id).state.is_final, DEPLOY_TIMEOUT)
        return deployment_id

    v1 = run.origin.commit("v1", release_files(run.tmp, "v1"))
    good = deploy(v1)
    assert store.get(good).state is DeploymentState.SUCCEEDED, store.get(good).error
    v2 = run.origin.commit("v2", release_files(run.tmp, "v2", leak_on_build=True))
    bad = deploy(v2, before=v1)
    failed = store.get(bad)
    assert failed.state is DeploymentState.FAILED
    assert any("token is" in line for line in store.logs.read(bad)[0]), "the build output was not logged"
    # A refused delivery: signed with another app's secret for this repository.
    refused = github_request(github_push(repo="acme/web", after=v2), OTHER_APP_SECRET)
    assert post(run.port, "/hooks/github", refused)[0] == 401
    assert wait_for(lambda: len(host.notifications) >= 4, 30), host.notifications
    assert wait_for(lambda: [d.state for d in host.deployments("github")] == ["success", "failure"], 30)

    seen: dict[str, str] = {}
    for path in run.logs:
        seen[f"log {path.name}"] = path.read_text("utf-8", "replace")
    for deployment_id in (good, bad):
        seen[f"deployment log {deployment_id}"] = "\n".join(store.logs.read(deployment_id)[0])
        for route in (f"/api/deployments/{deployment_id}", f"/api/deployments/{deployment_id}/log",
                      f"/deployments/{deployment_id}"):
            seen[f"GET {route}"] = get(run.port, route)
    for route in ("/api/apps", "/api/deployments", "/", "/metrics", "/healthz"):
        seen[f"GET {route}"] = get(run.port, route)
    seen["deployment records"] = repr([redis.hgetall(keys.deployment(i)) for i in (good, bad)])
    seen["commit statuses"] = repr([(s.sha, s.state, s.description, s.target_url) for s in host.accepted])
    seen["notifications"] = repr([(n.kind, n.headers, n.raw) for n in host.notifications])
    seen["host deployments"] = repr([(d.created, d.updates) for d in host.deployments("github")])
    # What a build context of /proc/<worker pid> would read: the worker dropped every secret from its
    # environment once its config held them, and still fetched with the clone token above.
    worker = run.procs[1]
    assert worker.poll() is None
    seen["worker's /proc/<pid>/environ"] = Path(f"/proc/{worker.pid}/environ").read_bytes().decode("utf-8", "replace")
    for path in run.state_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            seen[f"file {path.relative_to(run.state_dir)}"] = path.read_bytes().decode("utf-8", "replace")

    assert len(seen) > 20  # the scan looked at a real run's outputs
    leaks = [(where, secret) for where, text in seen.items() for secret in SECRETS if secret in text]
    assert leaks == [], leaks
