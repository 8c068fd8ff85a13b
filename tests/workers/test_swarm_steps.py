"""Release steps of strategy swarm on a real single-node Swarm, through the deploy job: a `pre_deploy`
migration in a one-off task of the new web image reaches the stack's database service by its name and
keeps its data across releases; a failing `pre_deploy` leaves the stack as it was; a `post_deploy`
that outlives `health_timeout` is killed and leaves the release live.

The database is the stand-in of tests/test_seed_app.py (busybox httpd on MySQL's port keeping rows in
a file on a named volume), with `endpoint_mode: dnsrr`: this kernel has no IPVS, so a service's
virtual IP does not route, while DNS round robin answers its name with the task's address.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import pytest
import redis as redis_lib

from hooksvc.config import Config
from hooksvc.deployments import DeploymentState
from hooksvc.release_steps import steps_from_log
from hooksvc.store import DeploymentStore
from tests.fixtures.swarm import stack_name_for
from tests.helpers.config import make_config
from tests.helpers.docker import BASE_IMAGE, get_text, wait_for
from tests.helpers.git import GitOrigin
from tests.helpers.redis_server import free_port
from tests.helpers.swarm import STACK_LABEL, remove_stack
from tests.test_seed_app import MANAGE_SH, build_db_image
from tests.workers.test_swarm import APP, deploy, log_of, service_image
from workers.swarm_steps import STEP_LABEL

pytestmark = pytest.mark.docker

#: make_config's SHOP_SECRET, the app's webhook secret: a step printing it must not leak it to the log.
SECRET = "shop-webhook-secret"
MIGRATE = '["sh", "/code/manage.sh"]'


def stack_app_files(release: str, web_port: int, db_image: str, cache: bool = False) -> dict[str, str | None]:
    """web (built, publishes `web_port` in host mode) depends on db (a named volume, DNS round robin);
    `cache` adds a service of the base image that web depends on too."""
    cache_service = (f'  cache:\n    image: {BASE_IMAGE}\n    init: true\n    command: ["sleep", "1000000"]\n'
                     if cache else "")
    compose = textwrap.dedent(f"""\
        services:
          db:
            image: {db_image}
            init: true
            volumes:
              - db_data:/var/lib/mysql
            healthcheck:
              test: ["CMD", "timeout", "3", "wget", "-q", "-O-", "http://127.0.0.1:3306/cgi-bin/rows"]
              interval: 1s
              retries: 10
            deploy:
              endpoint_mode: dnsrr
          web:
            build: .
            init: true
            stop_grace_period: 1s
            environment:
              - RELEASE={release}
            ports:
              - {{target: 8000, published: {web_port}, mode: host}}
            healthcheck:
              test: ["CMD", "timeout", "3", "wget", "-q", "-O-", "http://127.0.0.1:8000/version.txt"]
              interval: 1s
              retries: 2
            depends_on:
              - db
            deploy:
              update_config:
                order: stop-first
                monitor: 1s
        volumes:
          db_data:
        """)
    if cache:
        compose = compose.replace("      - db\n", "      - db\n      - cache\n").replace(
            "services:\n", f"services:\n{cache_service}", 1)
    return {
        "docker-compose.yml": compose,
        "Dockerfile": f'FROM {BASE_IMAGE}\nCOPY . /code/\nCMD ["httpd", "-f", "-p", "8000", "-h", "/code/www"]\n',
        "manage.sh": MANAGE_SH,
        "www/version.txt": f"{release}\n",
    }


@dataclass
class SteppedStack:
    """A stack app with a database, deployed by the tests of a class one release after the other."""

    root: Path
    origin: GitOrigin
    stack: str
    web_port: int
    db_image: str
    releases: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/version.txt"

    def config(self, pre_deploy: str = "", post_deploy: str = "", health_timeout: str = "60s",
               service: str = "web") -> Config:
        steps = "".join(f'{phase} = [{{ service = "{service}", command = {command} }}]\n'
                        for phase, command in (("pre_deploy", pre_deploy), ("post_deploy", post_deploy)) if command)
        return make_config(self.root, extra=f"""
            [apps.{APP}]
            host = "github"
            repo = "acme/{APP}"
            clone_url = "{self.origin.path}"
            secret_env = "SHOP_SECRET"
            project = "{self.stack}"
            strategy = "swarm"
            health_timeout = "{health_timeout}"
        """ + textwrap.indent(steps, " " * 12))

    def commit(self, release: str, cache: bool = False) -> str:
        sha = self.origin.commit(release, stack_app_files(release, self.web_port, self.db_image, cache))
        self.releases[release] = sha
        return sha

    def serves(self, release: str) -> bool:
        return wait_for(lambda: get_text(self.url) == (200, release), 20)


def step_services(client: docker.DockerClient, stack: str) -> list[str]:
    return [s.name for s in client.services.list(filters={"label": [f"{STACK_LABEL}={stack}", STEP_LABEL]})]


def stack_versions(client: docker.DockerClient, stack: str) -> dict[str, int]:
    return {s.name: s.version for s in client.services.list(filters={"label": f"{STACK_LABEL}={stack}"})}


@pytest.fixture(scope="class")
def stepped(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, swarm: int,
            base_image: str) -> Iterator[SteppedStack]:
    """The class's stack app; its services, networks, images (the database's too) and volume go after."""
    root = tmp_path_factory.mktemp("swarm-steps")
    stack = stack_name_for("steps")
    db_image = f"{stack}-db:latest"  # named after the stack: remove_stack removes it
    build_db_image(docker_client, db_image)
    try:
        yield SteppedStack(root, GitOrigin(root / "origin.git"), stack, free_port(), db_image)
    finally:
        remove_stack(docker_client, stack)
        for volume in docker_client.volumes.list(filters={"label": f"{STACK_LABEL}={stack}"}):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)


class TestSwarmReleaseSteps:
    def test_a_migration_reaches_the_database_by_its_service_name_and_keeps_its_data(
        self, stepped: SteppedStack, redis: redis_lib.Redis, docker_client: docker.DockerClient,
    ) -> None:
        """Two releases with a `pre_deploy` migration: on the first, the database the web service depends on
        is deployed before the step (the stack is new); each migration runs in its release's web image with
        its environment, before the stack deploy; the second sees the first's row. Step output is redacted,
        the deployment lists the steps, and no step service is left."""
        config = stepped.config(pre_deploy=MIGRATE, post_deploy=f'["echo", "done with {SECRET}"]')
        first = deploy(config, redis, stepped.commit("v1"))
        log = log_of(redis, first)
        print(f"\n---- the first deployment's log ----\n{log}")
        assert first.state is DeploymentState.SUCCEEDED, log
        assert "deploying db for the release steps of web: not in the stack yet" in log
        assert "  migration of v1 sees rows: [ ]" in log
        assert "  done with ***" in log and SECRET not in log
        assert stepped.serves("v1"), get_text(stepped.url)

        second = deploy(config, redis, stepped.commit("v2"))
        lines = DeploymentStore(redis).logs.read(second.id)[0]
        assert second.state is DeploymentState.SUCCEEDED, "\n".join(lines)
        assert "  migration of v2 sees rows: [ v1 ]" in lines
        assert not [line for line in lines if line.startswith("deploying db")]
        migrated = next(i for i, line in enumerate(lines) if "release step pre_deploy 1/1 on web: succeeded" in line)
        assert migrated < next(i for i, line in enumerate(lines) if line.startswith("$ docker stack deploy --prune"))
        assert [(s.phase, s.service, s.outcome) for s in steps_from_log(lines)] == [
            ("pre_deploy", "web", "succeeded"), ("post_deploy", "web", "succeeded")]
        assert stepped.serves("v2"), get_text(stepped.url)
        assert step_services(docker_client, stepped.stack) == []

    def test_a_failing_pre_deploy_leaves_the_stack_as_it_was(
        self, stepped: SteppedStack, redis: redis_lib.Redis, docker_client: docker.DockerClient,
    ) -> None:
        """The step runs in the new image (its argv untouched: `$` reaches the shell); its exit code ends
        the deployment `failed` naming the step, before the stack deploy: same services, versions and
        images, the live release serving, no step service left. The service the release adds that the
        step's service depends on was deployed for the step, and is removed again."""
        if not stepped.releases:
            assert deploy(stepped.config(), redis, stepped.commit("v1")).state is DeploymentState.SUCCEEDED
        live = service_image(docker_client, stepped.stack)
        versions = stack_versions(docker_client, stepped.stack)
        failing = '["sh", "-c", "echo \\"migrating to $RELEASE\\"; exit 3"]'
        dep = deploy(stepped.config(pre_deploy=failing), redis, stepped.commit("v3", cache=True))
        log = log_of(redis, dep)
        assert dep.state is DeploymentState.FAILED, log
        assert "deploying cache for the release steps of web: not in the stack yet" in log
        assert "cache: removing the service deployed for the release steps (nothing was rolled out)" in log
        assert 'pre_deploy step 1 of 1 (web: sh -c \'echo "migrating to $RELEASE"; exit 3\') failed (exit 3)' \
            in dep.error
        assert "nothing was rolled out" in dep.error
        assert "  migrating to v3" in log
        assert "docker stack deploy --prune" not in log
        assert stack_versions(docker_client, stepped.stack) == versions
        assert service_image(docker_client, stepped.stack) == live
        assert step_services(docker_client, stepped.stack) == []
        assert get_text(stepped.url)[0] == 200 and get_text(stepped.url)[1] != "v3"

    def test_a_post_deploy_that_times_out_is_killed_and_the_release_stays_live(
        self, stepped: SteppedStack, redis: redis_lib.Redis, docker_client: docker.DockerClient, base_image: str,
    ) -> None:
        """A step service a dead worker left is removed first; the release rolls out, the `post_deploy` still
        running at `health_timeout` is killed with its service, and the deployment ends `failed` saying the
        new release is live, which the store records."""
        if not stepped.releases:
            assert deploy(stepped.config(), redis, stepped.commit("v1")).state is DeploymentState.SUCCEEDED
        leftover = docker_client.services.create(
            base_image, ["sleep", "600"], name=f"{stepped.stack}_web-pre-deploy-1-deadbeef",
            labels={STACK_LABEL: stepped.stack, STEP_LABEL: "pre_deploy"})
        sha = stepped.commit("v4")
        # The bound also covers the update's convergence: 6 s was too short for a swarm update on a busy CI
        # machine ("did not converge within 7s").
        dep = deploy(stepped.config(post_deploy='["sleep", "600"]', health_timeout="12s"), redis, sha)
        log = log_of(redis, dep)
        assert dep.state is DeploymentState.FAILED, log
        assert "post_deploy step 1 of 1 (web: sleep 600) failed (timed out after 12s; its task was killed)" \
            in dep.error
        assert dep.error.endswith("the new release is live")
        assert DeploymentStore(redis).live(APP).sha == sha  # type: ignore[union-attr]
        assert f"removing {leftover.name}, a release step service left by an interrupted deployment" in log
        assert step_services(docker_client, stepped.stack) == []
        assert stepped.serves("v4"), get_text(stepped.url)

    def test_a_step_naming_an_unknown_service_is_refused_before_anything_changes(
        self, stepped: SteppedStack, redis: redis_lib.Redis, docker_client: docker.DockerClient,
    ) -> None:
        """Checked against the release's compose model, before the build and before the stack is touched."""
        versions = stack_versions(docker_client, stepped.stack)
        dep = deploy(stepped.config(post_deploy='["true"]', service="wbe"), redis, stepped.commit("v5"))
        assert dep.state is DeploymentState.FAILED, log_of(redis, dep)
        assert "post_deploy[0].service: no service 'wbe' in the compose files (services: db, web)" in dep.error
        assert "building images" not in log_of(redis, dep)
        assert stack_versions(docker_client, stepped.stack) == versions
