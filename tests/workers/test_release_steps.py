"""Release steps against the real Docker engine: a failing `pre_deploy` rolls nothing out (compose v1 and
v2), a `post_deploy` that outlives `health_timeout` is killed and leaves the new release live, and a
step naming an unknown service is refused before anything is built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.errors import DeployError, ReleaseStepFailed
from hooksvc.release_steps import ReleaseStep
from hooksvc.store import open_store
from tests.helpers.config import make_config
from tests.helpers.docker import write_sample_app
from tests.helpers.git import GitOrigin
from tests.workers.test_rollout import Deployer, make_app, service_ids
from workers.docker_engine import ONEOFF_LABEL, DockerEngine
from workers.jobs import execute

pytestmark = pytest.mark.docker

#: The webhook secret of make_config's `shop` app: a step that prints it must not leak it to the log.
SHOP_SECRET = "shop-webhook-secret"


def oneoff_containers(client: docker.DockerClient, project: str) -> list[str]:
    filters = {"label": [f"com.docker.compose.project={project}", f"{ONEOFF_LABEL}=True"]}
    return [c["Id"] for c in client.api.containers(all=True, filters=filters)]


def test_a_failing_pre_deploy_rolls_nothing_out(
    tmp_path: Path, compose_project: str, compose_variant: str, base_image: str, docker_client: docker.DockerClient,
) -> None:
    """The step runs in the new release's image with its argv as given (dashed arguments too); its exit code
    ends the rollout before any container is replaced, the image tag goes back to the live image, and the
    one-off container is gone."""
    deployer = Deployer(make_app(compose_project), tmp_path)
    deployer.deploy(write_sample_app(deployer.release("v1"), "v1"))
    before = service_ids(docker_client, compose_project, "web")
    engine = DockerEngine(docker_client)
    live_image = engine.image_id(f"{compose_project}{'-' if compose_variant == 'v2' else '_'}web")

    deployer.app = make_app(compose_project, pre_deploy=(
        ReleaseStep("web", ("sh", "-c", 'echo "release $(cat /www/version.txt) args: $*"; exit 3', "sh", "--noinput")),
    ))
    with pytest.raises(ReleaseStepFailed) as info:
        deployer.deploy(write_sample_app(deployer.release("v2"), "v2"))

    assert "pre_deploy step 1 of 1 (web: sh -c" in str(info.value)
    assert "(exit 3)" in str(info.value) and "nothing was rolled out" in str(info.value)
    log = deployer.log_text()
    assert "  release v2 args: --noinput" in log  # the new image, the argv untouched by compose
    assert "release step pre_deploy 1/1 on web: failed (exit 3)" in log
    assert service_ids(docker_client, compose_project, "web") == before
    assert engine.image_id(f"{compose_project}{'-' if compose_variant == 'v2' else '_'}web") == live_image
    assert oneoff_containers(docker_client, compose_project) == []


def test_a_step_naming_an_unknown_service_is_refused_before_the_build(
    tmp_path: Path, compose_project: str, base_image: str, docker_client: docker.DockerClient,
) -> None:
    """Checked against `compose config` of the release: the message names the key and the services, and no
    image was built."""
    app = make_app(compose_project, post_deploy=(ReleaseStep("wbe", ("true",)),))
    deployer = Deployer(app, tmp_path)
    with pytest.raises(DeployError, match=r"post_deploy\[0\]\.service: no service 'wbe' in the compose files "
                                          r"\(services: web\)"):
        deployer.deploy(write_sample_app(deployer.release("v1"), "v1"))
    assert "building images" not in deployer.log_text()
    assert not docker_client.images.list(name=f"{compose_project}-web") + docker_client.images.list(
        name=f"{compose_project}_web")


def test_a_post_deploy_that_times_out_is_killed_and_the_release_stays_live(
    tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis, compose_project: str,
    base_image: str, docker_client: docker.DockerClient,
) -> None:
    """Through the job with strategy `recreate`: a step container left by a dead worker is removed, the
    `pre_deploy` output is logged (redacted), the rollout
    happens, the `post_deploy` still running at `health_timeout` is killed with its container, and the
    deployment ends `failed` saying the new release is live, which the store records as live."""
    origin = make_git_origin("stepped")
    files = write_sample_app(tmp_path / "src", "v1")
    sha = origin.commit("v1", {str(p.relative_to(files)): p.read_bytes() for p in files.rglob("*") if p.is_file()})
    config = make_config(tmp_path, extra=f"""
        [apps.stepped]
        host = "github"
        repo = "acme/stepped"
        clone_url = "{origin.path}"
        secret_env = "SHOP_SECRET"
        project = "{compose_project}"
        strategy = "recreate"
        health_timeout = "8s"
        pre_deploy = [{{ service = "web", command = ["echo", "checked with {SHOP_SECRET}"] }}]
        post_deploy = [{{ service = "web", command = ["sleep", "600"] }}]
    """)
    # What a worker killed in the middle of a step leaves: its one-off container, still running.
    leftover = docker_client.containers.run(base_image, ["sleep", "600"], detach=True, network_mode="none",
                                            name=f"{compose_project}-pre-deploy-1-deadbeef",
                                            labels={"com.docker.compose.project": compose_project,
                                                    ONEOFF_LABEL: "True"})
    store = open_store(config, redis)
    dep = store.intake.submit([NewDeployment("stepped", sha, "refs/heads/main", Trigger.PUSH)]).deployments[0]

    assert execute(config, store, redis, dep.id) == "failed"

    done = store.get(dep.id)
    assert "post_deploy step 1 of 1 (web: sleep 600) failed (timed out after 8s" in done.error
    assert done.error.endswith("the new release is live")
    assert store.live("stepped").sha == sha  # type: ignore[union-attr]
    assert oneoff_containers(docker_client, compose_project) == []
    assert service_ids(docker_client, compose_project, "web")
    lines = store.logs.read(dep.id)[0]
    assert "  checked with ***" in lines
    assert f"removing {leftover.name}, a release step container left by an interrupted deployment" in lines
    assert not [line for line in lines if SHOP_SECRET in line]
    assert done.state is DeploymentState.FAILED
