"""The branch poller: a safety net that deploys a head whose webhook was lost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import keys
from hooksvc.deployments import DeploymentState, Trigger
from hooksvc.errors import ConfigError
from hooksvc.store import DeploymentStore
from tests.helpers.config import make_config
from tests.helpers.git import GitOrigin
from workers.poller import BranchPoller


def poller_for(tmp_path: Path, origin: GitOrigin, redis: redis_lib.Redis) -> tuple[BranchPoller, DeploymentStore]:
    config = make_config(tmp_path, extra=f"""
        [apps.polled]
        host = "github"
        repo = "acme/polled"
        clone_url = "{origin.path}"
        branch = "main"
        secret_env = "SHOP_SECRET"
        poll_interval = "1m"
    """)
    store = DeploymentStore(redis)
    return BranchPoller(config, store), store


class TestBranchPoller:
    def test_new_head_is_queued_once(self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin],
                                     redis: redis_lib.Redis) -> None:
        """A head that is not live is queued as a push; polling again does not queue it twice."""
        origin = make_git_origin("polled")
        old = origin.commit("one", {"a.txt": "1"})
        head = origin.commit("two", {"a.txt": "2"})
        poller, store = poller_for(tmp_path, origin, redis)
        redis.hset("hooksvc:app:polled:live", mapping={"sha": old, "deployment_id": "0", "since": "0"})
        dep = poller.poll(poller.config.apps["polled"])
        assert dep is not None and dep.sha == head and dep.trigger is Trigger.PUSH and dep.before == old
        store.cancel(dep.id)
        assert poller.poll(poller.config.apps["polled"]) is None
        assert [d.state for d in store.recent(app="polled")] == [DeploymentState.CANCELLED]

    def test_live_head_queues_nothing(self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin],
                                      redis: redis_lib.Redis) -> None:
        """When the head is live there is nothing to do."""
        origin = make_git_origin("polled")
        head = origin.commit("one", {"a.txt": "1"})
        poller, store = poller_for(tmp_path, origin, redis)
        redis.hset("hooksvc:app:polled:live", mapping={"sha": head, "deployment_id": "0", "since": "0"})
        assert poller.poll(poller.config.apps["polled"]) is None
        assert store.recent() == []

    def test_poll_skips_while_a_deployment_holds_the_lock(self, tmp_path: Path,
                                                          make_git_origin: Callable[[str], GitOrigin],
                                                          redis: redis_lib.Redis) -> None:
        """A running deployment owns the mirror: the poller waits for the next round."""
        origin = make_git_origin("polled")
        origin.commit("one", {"a.txt": "1"})
        poller, store = poller_for(tmp_path, origin, redis)
        redis.set(keys.app_lock("polled"), "42")
        assert poller.poll(poller.config.apps["polled"]) is None
        assert store.recent() == []

    def test_polling_a_glob_branch_is_a_config_error(self, tmp_path: Path) -> None:
        """poll_interval on an app deploying a branch glob is refused: it has no single head."""
        with pytest.raises(ConfigError, match="apps.wiki2.poll_interval: polling needs one exact branch"):
            make_config(tmp_path, extra="""
                [apps.wiki2]
                host = "gitlab"
                repo = "acme/wiki2"
                clone_url = "x"
                branch = "release/*"
                secret_env = "WIKI_SECRET"
                poll_interval = "5m"
            """)
