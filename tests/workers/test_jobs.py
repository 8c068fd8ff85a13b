"""The deploy job's decisions before any container is touched, run in-process with real git and Redis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import keys
from hooksvc.config import Config
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.outbox import OutboxEvent
from hooksvc.store import DeploymentStore, open_store
from tests.helpers.config import make_config
from tests.helpers.docker import BASE_IMAGE
from tests.helpers.git import GitOrigin
from workers import jobs
from workers.jobs import execute
from workers.notify import build_webhook_request


def mono_config(tmp_path: Path, origin: GitOrigin) -> Config:
    return make_config(tmp_path, extra=f"""
        [apps.mono]
        host = "github"
        repo = "acme/mono"
        clone_url = "{origin.path}"
        branch = "main"
        secret_env = "SHOP_SECRET"
        paths = ["services/shop/**"]
    """)


def make_live(redis: redis_lib.Redis, app: str, sha: str) -> None:
    redis.hset(f"hooksvc:app:{app}:live", mapping={"sha": sha, "deployment_id": "0", "since": "0"})


class TestSkips:
    def test_push_outside_the_apps_paths_is_skipped(
        self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis
    ) -> None:
        """A monorepo push that changes nothing under `paths` ends skipped, computed with git."""
        origin = make_git_origin("mono")
        live = origin.commit("shop", {"services/shop/app.txt": "1"})
        docs = origin.commit("docs only", {"docs/readme.md": "x"})
        config = mono_config(tmp_path, origin)
        store = DeploymentStore(redis)
        make_live(redis, "mono", live)
        push = NewDeployment("mono", docs, "refs/heads/main", Trigger.PUSH, before=live)
        dep = store.intake.submit([push]).deployments[0]
        assert execute(config, store, redis, dep.id) == "skipped"
        done = store.get(dep.id)
        assert done.state is DeploymentState.SKIPPED and "no change under services/shop/**" in done.error
        assert redis.get(keys.app_lock("mono")) is None

    def test_push_of_the_live_sha_is_skipped(
        self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis
    ) -> None:
        """A redelivered push of what is already live changes nothing."""
        origin = make_git_origin("mono")
        live = origin.commit("shop", {"services/shop/app.txt": "1"})
        config = mono_config(tmp_path, origin)
        store = DeploymentStore(redis)
        make_live(redis, "mono", live)
        dep = store.intake.submit([NewDeployment("mono", live, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        assert execute(config, store, redis, dep.id) == "skipped"
        assert "already live" in store.get(dep.id).error


class TestForcedPushes:
    """`forced` lets a push go backwards past the live sha: only while it is the branch head."""

    @pytest.fixture
    def history(self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin],
                redis: redis_lib.Redis) -> tuple[GitOrigin, Config, str, str]:
        """An origin with an older and a live commit on `main`; the live one recorded as live."""
        origin = make_git_origin("mono")
        old = origin.commit("old", {"services/shop/app.txt": "1"})
        live = origin.commit("live", {"services/shop/app.txt": "2"})
        make_live(redis, "mono", live)
        return origin, mono_config(tmp_path, origin), old, live

    def test_a_replayed_forced_push_does_not_roll_the_app_back(
        self, history: tuple[GitOrigin, Config, str, str], redis: redis_lib.Redis
    ) -> None:
        """A captured forced push of an older sha, replayed after the branch moved on, is skipped as stale
        instead of rolling the live release back."""
        _, config, old, live = history
        store = DeploymentStore(redis)
        replay = NewDeployment("mono", old, "refs/heads/main", Trigger.PUSH, before="c" * 40, forced=True)
        dep = store.intake.submit([replay]).deployments[0]
        assert execute(config, store, redis, dep.id) == "skipped"
        assert store.get(dep.id).error == (f"stale forced push: {old[:12]} is no longer the head of refs/heads/main "
                                           f"({live[:12]} is)")

    def test_a_forced_push_that_is_the_branch_head_goes_backwards(
        self, history: tuple[GitOrigin, Config, str, str], redis: redis_lib.Redis
    ) -> None:
        """A real force-push back to an older commit (still the head when fetched) is deployed, not skipped."""
        origin, config, old, live = history
        origin.reset("main", old)
        store = DeploymentStore(redis)
        forced = NewDeployment("mono", old, "refs/heads/main", Trigger.PUSH, before=live, forced=True)
        dep = store.intake.submit([forced]).deployments[0]
        execute(config, store, redis, dep.id)  # no compose file in this repo: the rollout fails after the checks
        done = store.get(dep.id)
        assert done.state is not DeploymentState.SKIPPED, done.error
        assert any(f"checking out {old}" in line for line in store.logs.read(dep.id)[0])


class TestResolution:
    def test_manual_deploy_resolves_the_branch_head(
        self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis
    ) -> None:
        """A manual deploy without sha records the branch head the worker resolved (then goes on)."""
        origin = make_git_origin("mono")
        origin.commit("one", {"services/shop/app.txt": "1"})
        head = origin.commit("two", {"services/shop/app.txt": "2"})
        config = mono_config(tmp_path, origin)
        store = DeploymentStore(redis)
        manual = NewDeployment("mono", "", "refs/heads/main", Trigger.MANUAL, forced=True)
        dep = store.intake.submit([manual]).deployments[0]
        execute(config, store, redis, dep.id)  # no compose file in this repo: the rollout fails after resolving
        done = store.get(dep.id)
        assert done.sha == head
        assert any(f"refs/heads/main resolves to {head}" in line for line in store.logs.read(dep.id)[0])
        assert done.state in (DeploymentState.FAILED, DeploymentState.ERROR)

    def test_deployment_of_a_removed_app_ends_error(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """A queued deployment whose app left the config ends error instead of staying queued."""
        config = make_config(tmp_path)
        store = DeploymentStore(redis)
        dep = store.intake.submit([NewDeployment("gone", "a" * 40, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        assert execute(config, store, redis, dep.id) == "error"
        assert "no longer configured" in store.get(dep.id).error


class TestProcessConfig:
    def test_a_job_runs_under_its_workers_config_not_a_file_named_by_the_environment(
        self, tmp_path: Path, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Jobs use the config their worker process bound at start (`use_config`): the worker's outbox sender
        and its jobs never disagree on which apps exist."""
        config = make_config(tmp_path)
        monkeypatch.setenv("HOOKSVC_CONFIG", str(tmp_path / "not-this-one.toml"))  # would fail to load
        monkeypatch.setattr(jobs, "_process_config", None)
        jobs.use_config(config)
        store = DeploymentStore(redis)
        manual = NewDeployment("shop", "", "refs/heads/main", Trigger.MANUAL, forced=True)
        dep = store.intake.submit([manual]).deployments[0]
        # shop's origin does not exist: the job fails at its fetch, under the bound config.
        assert jobs.run_deployment(dep.id) == "failed"
        assert "origin-shop.git" in store.get(dep.id).error


#: Configured secrets a failing build prints: the git host token and an operator's API token.
LEAKED_HOST_TOKEN = "ghp_hostTokenPrintedByABuild0000000000"
LEAKED_API_TOKEN = "operator-token-2"


@pytest.mark.docker
class TestRedaction:
    def test_a_secret_in_failing_compose_output_reaches_no_record_log_or_notification(
        self,
        tmp_path: Path,
        make_git_origin: Callable[[str], GitOrigin],
        redis: redis_lib.Redis,
        base_image: str,
        compose_project: str,
    ) -> None:
        """A build that fails printing configured secrets ends `failed` with an error, a `finished:` log
        line, outbox events (commit status and notifications) and a notification body free of them."""
        origin = make_git_origin("leaky")
        origin.commit("leaky build", {
            "Dockerfile": f'FROM {BASE_IMAGE}\nRUN echo "token {LEAKED_HOST_TOKEN} api {LEAKED_API_TOKEN}" && false\n',
            "docker-compose.yml": "services:\n  web:\n    build: .\n",
        })
        config = make_config(tmp_path, env={"GH_TOKEN": LEAKED_HOST_TOKEN, "NOTIFY_SECRET": "notify-key"}, extra=f"""
            [apps.leaky]
            host = "github"
            repo = "acme/leaky"
            clone_url = "{origin.path}"
            secret_env = "SHOP_SECRET"
            project = "{compose_project}"
            notify_url = "http://127.0.0.1:9/notify"
            notify_secret_env = "NOTIFY_SECRET"
        """)
        store = open_store(config, redis)
        manual = NewDeployment("leaky", "", "refs/heads/main", Trigger.MANUAL, forced=True)
        dep = store.intake.submit([manual]).deployments[0]
        assert execute(config, store, redis, dep.id) == "failed"

        done = store.get(dep.id)
        assert "compose build failed" in done.error and "***" in done.error
        lines = store.logs.read(dep.id)[0]
        assert any(line.startswith("finished: failed: compose build failed") for line in lines)
        events = [
            OutboxEvent.from_json(raw)
            for lane in redis.zrange(keys.OUTBOX_DUE, 0, -1)
            for raw in redis.lrange(keys.outbox_lane(lane.decode()), 0, -1)
        ]
        final = [e for e in events if e.state is DeploymentState.FAILED]
        assert final and all("compose build failed" in e.error for e in final)
        notification = build_webhook_request(config.apps["leaky"].notify, final[-1], "http://deploy.test/d/1")
        texts = [done.error, *lines, *(e.to_json() for e in events), notification.body().decode()]
        for secret in (LEAKED_HOST_TOKEN, LEAKED_API_TOKEN):
            assert not [t for t in texts if secret in t], f"{secret} leaked"
