"""End to end for each host the registry added: a signed push to the real web app → Redis → a real
`hooksvc worker --burst` process → git → compose → live, and the commit status at the git host.

Everything is real (Redis, the Docker engine, git, the worker process) except the git host's status
API, which is the checking stand-in of fake_git_host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from hooksvc.config import load_config
from hooksvc.deployments import DeploymentState
from hooksvc.providers import ZERO_SHA
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.fleet import sample_app_files
from tests.helpers.git import GitOrigin
from tests.helpers.payloads import (
    HookRequest,
    bitbucket_change,
    bitbucket_push,
    bitbucket_request,
    bitbucket_server_push,
    bitbucket_server_request,
    gogs_push,
    gogs_request,
)
from tests.helpers.worker_harness import HOST_TOKEN, SECRET, environment, run_burst, token_host, write_config

pytestmark = pytest.mark.docker


@dataclass(frozen=True)
class Host:
    """One host kind as the test drives it: its config, its signed push of `sha`, and the statuses it should get."""

    kind: str
    repo: str
    route: str
    push: Callable[[str, str], HookRequest]
    #: The status states the stand-in should have accepted for the commit, in order; [] for no status API.
    statuses: list[str]


HOSTS = [
    Host("bitbucket", "acme/web", "bitbucket",
         lambda repo, sha: bitbucket_request(bitbucket_push(repo, bitbucket_change("refs/heads/main", sha, None)),
                                             SECRET),
         ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]),
    Host("bitbucket-server", "OPS/web", "bitbucket-server",
         lambda repo, sha: bitbucket_server_request(bitbucket_server_push(repo, "refs/heads/main", sha, ZERO_SHA),
                                                    SECRET),
         ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]),
    Host("gogs", "acme/web", "gogs",
         lambda repo, sha: gogs_request(gogs_push(repo, "refs/heads/main", sha, ZERO_SHA), SECRET),
         []),
]


@pytest.mark.parametrize("host", HOSTS, ids=[h.kind for h in HOSTS])
def test_a_push_deploys_and_its_status_reaches_the_host(
    host: Host, tmp_path: Path, make_git_origin: Any, compose_project: str, base_image: str,
    redis: redis_lib.Redis,
) -> None:
    """A signed push of main is accepted, a burst worker deploys it, and the host gets the commit's
    statuses (Gogs, which has no status API, gets no request at all)."""
    origin: GitOrigin = make_git_origin("web")
    sha = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
    with FakeGitHost(tokens={host.kind: HOST_TOKEN}) as fake:
        # Gogs has no status API: no api_url, and nothing should reach the stand-in.
        api_url = f"{fake.url}/{host.kind}" if host.statuses else ""
        path = write_config(tmp_path, token_host(host.kind, api_url), origin, compose_project, repo=host.repo)
        client = create_app(load_config(str(path), environment()), connection=redis).test_client()
        resp = client.open(f"/hooks/{host.route}", **host.push(host.repo, sha).client_kwargs())
        assert resp.status_code == 202, resp.json
        [queued] = resp.json["deployments"]

        run_burst(path)
        store = DeploymentStore(redis)
        done = store.get(queued["id"])
        assert done.state is DeploymentState.SUCCEEDED, "\n".join(store.logs.read(done.id)[0][-30:])
        assert done.sha == sha
        assert fake.statuses(host.kind, sha, "hooksvc/web") == host.statuses
        assert fake.violations == []
        if host.statuses:
            assert fake.accepted[-1].target_url == f"http://deploy.test/deployments/{done.id}"
        else:
            assert fake.accepted == []
