"""One app deployed end to end by real `hooksvc worker` processes, for the runtime tests: its config
file, the web app's test client on it, signed pushes, and workers, long-running or `--burst`.

Everything it drives is real (Redis, the Docker engine, git, the worker processes) except the git
host's API, the checking stand-in of fake_git_host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc.config import Config, load_config
from hooksvc.deployments import Deployment
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.docker import wait_for
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.fleet import sample_app_files
from tests.helpers.git import GitOrigin
from tests.helpers.github_app import APP_ID
from tests.helpers.payloads import github_push, github_request
from tests.helpers.processes import stop_process_groups

SECRET = "web-webhook-secret"
#: The host's API token (`token_env = "HOST_TOKEN"`), which the stand-in accepts.
HOST_TOKEN = "gh-status-token"
#: The operators' API token: `token-1`, an admin.
OPERATOR_TOKEN = "operator-token-000001"
BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
PUBLIC_URL = "http://deploy.test"
#: A deployment of the sample app takes a few seconds; this bounds a stuck one on a busy machine.
DEPLOY_TIMEOUT = 180.0


def token_host(kind: str, api_url: str) -> str:
    """A `[hosts.origin]` table's keys: a host of `kind` with a personal token (no `api_url` when "")."""
    api = f'api_url = "{api_url}"\n' if api_url else ""
    return f'kind = "{kind}"\n{api}token_env = "HOST_TOKEN"\n'


def github_host(fake: FakeGitHost) -> str:
    """The stand-in GitHub with a personal token: the host most tests deploy from."""
    return token_host("github", f"{fake.url}/github")


def environment() -> dict[str, str]:
    """A worker's environment: the webhook secret, the host token and the operator token; no REDIS_URL
    (the config names the tests' Redis)."""
    env = {**os.environ, "WEB_SECRET": SECRET, "HOST_TOKEN": HOST_TOKEN, "HOOKSVC_API_TOKENS": OPERATOR_TOKEN}
    env.pop("REDIS_URL", None)
    return env


def write_config(tmp: Path, host: str, origin: GitOrigin, project: str, *, repo: str = "acme/web",
                 app_extra: str = "") -> Path:
    """`tmp/hooksvc.toml`: the host `origin` (`host`: its table's keys) and app `web` deploying `repo`
    from `origin` as compose project `project`; `app_extra` adds keys to `[apps.web]`, one per line."""
    path = tmp / "hooksvc.toml"
    path.write_text(textwrap.dedent(f"""
        [server]
        public_url = "{PUBLIC_URL}"
        [redis]
        url = "{TEST_REDIS_URL}"
        [worker]
        state_dir = "{tmp / 'state'}"
        keep_releases = 2
        [hosts.origin]
    """) + host + textwrap.dedent(f"""
        [apps.web]
        host = "origin"
        repo = "{repo}"
        clone_url = "{origin.url}"
        branch = "main"
        secret_env = "WEB_SECRET"
        project = "{project}"
        health_timeout = "40s"
        start_grace = "2s"
    """) + textwrap.dedent(app_extra))
    return path


def run_burst(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A `hooksvc worker --burst` on the config at `path`, to its end; it must exit 0."""
    result = subprocess.run([sys.executable, "-m", "hooksvc.cli", "--config", str(path), "worker", "--burst"],
                            env=env or environment(), capture_output=True, text=True, timeout=DEPLOY_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


class Harness:
    """App `web` on a git origin, its config, a webhook client, and the worker processes started."""

    def __init__(self, tmp: Path, origin: GitOrigin, project: str, host: FakeGitHost, redis: redis_lib.Redis,
                 app_extra: str = "", host_table: str | None = None) -> None:
        """`app_extra`: more keys of `[apps.web]`, one per line; `host_table`: the host's keys (default:
        the stand-in GitHub with a personal token)."""
        self.tmp = tmp
        self.origin = origin
        self.project = project
        self.host = host
        self.env = environment()
        self.config_path = write_config(tmp, github_host(host) if host_table is None else host_table, origin,
                                        project, app_extra=app_extra)
        self.config: Config = load_config(str(self.config_path), self.env)
        self.redis = redis
        self.store = DeploymentStore(redis)
        self.client: FlaskClient = create_app(self.config, connection=redis).test_client()
        self.workers: list[subprocess.Popen[bytes]] = []

    def commit(self, version: str, **kwargs: bool) -> str:
        return self.origin.commit(f"release {version}", sample_app_files(self.tmp, version, **kwargs))

    def push(self, sha: str, before: str | None = None, forced: bool = False) -> str:
        """Send GitHub's push webhook for `sha` on main; returns the deployment's id."""
        hook = github_request(github_push(repo="acme/web", after=sha, before=before, forced=forced), SECRET)
        resp = self.client.open("/hooks/github", **hook.client_kwargs())
        assert resp.status_code == 202, resp.json
        return str(resp.json["deployments"][0]["id"])

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A long-running `hooksvc worker`, its output in `worker-N.log` beside the config."""
        with (self.tmp / f"worker-{len(self.workers)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hooksvc.cli", "--config", str(self.config_path), "worker"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.workers.append(proc)
        return proc

    def burst(self) -> subprocess.CompletedProcess[str]:
        """A `hooksvc worker --burst`, to its end."""
        return run_burst(self.config_path, self.env)

    def wait(self, deployment_id: str, timeout: float = DEPLOY_TIMEOUT) -> Deployment:
        assert wait_for(lambda: self.store.get(deployment_id).state.is_final, timeout), (
            f"deployment {deployment_id} did not end: " + "\n".join(self.store.logs.read(deployment_id)[0][-30:])
        )
        return self.store.get(deployment_id)

    def wait_for_log(self, deployment_id: str, text: str, timeout: float = DEPLOY_TIMEOUT) -> None:
        assert wait_for(lambda: any(text in line for line in self.store.logs.read(deployment_id)[0]), timeout)

    def log(self, deployment_id: str) -> list[str]:
        return self.store.logs.read(deployment_id)[0]

    def statuses(self, sha: str) -> list[str]:
        return self.host.statuses("github", sha, "hooksvc/web")

    def stop(self) -> None:
        stop_process_groups(self.workers, grace=15)


def github_app_host(fake: FakeGitHost, private_key: Path) -> str:
    """The stand-in GitHub as a GitHub App (`app_id`, `private_key_file`): no personal token."""
    return f'kind = "github"\napi_url = "{fake.url}/github"\napp_id = {APP_ID}\nprivate_key_file = "{private_key}"\n'
