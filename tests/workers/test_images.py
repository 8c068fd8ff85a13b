"""Image pruning through the deploy job: a project's images follow its release checkouts to `keep_releases`."""

from __future__ import annotations

import argparse
import io
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.cli import cmd_status
from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.store import open_store
from tests.helpers.config import make_config
from tests.helpers.docker import BASE_IMAGE, write_sample_app
from tests.helpers.git import GitOrigin
from workers.docker_engine import PROJECT_LABEL, DockerEngine
from workers.images import releases_repository
from workers.jobs import execute

pytestmark = pytest.mark.docker


def project_image_ids(engine: DockerEngine, project: str) -> set[str]:
    """Every image of the project: its compose tags, its release tags, and what compose labelled with it."""
    found = engine.images(reference=f"{project}-*") + engine.images(reference=f"{project}_*")
    found += engine.images(reference=releases_repository(project)) + engine.images(label=f"{PROJECT_LABEL}={project}")
    return {str(s["Id"]) for s in found}


def test_images_of_pruned_releases_go_but_never_one_in_use_or_another_projects(
    tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis, compose_project: str,
    base_image: str, docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str],
) -> None:
    """After five releases with keep_releases = 2, the project keeps the images of the two kept releases and
    of the first one, which a container still uses; a dangling image the project built earlier is gone;
    another project's release tag stays; pruning comes after the deployment is recorded succeeded;
    `hooksvc status` shows the app's disk use."""
    origin = make_git_origin("pruned")
    config = make_config(tmp_path, extra=f"""
        [apps.pruned]
        host = "github"
        repo = "acme/pruned"
        clone_url = "{origin.path}"
        secret_env = "SHOP_SECRET"
        project = "{compose_project}"
        strategy = "recreate"
        health_timeout = "60s"
    """)
    config = replace(config, worker=replace(config.worker, keep_releases=2))
    store = open_store(config, redis)
    engine = DockerEngine(docker_client)
    repository = releases_repository(compose_project)

    def deploy(version: str) -> str:
        files = write_sample_app(tmp_path / "src" / version, version)
        sha = origin.commit(version, {str(p.relative_to(files)): p.read_bytes() for p in files.rglob("*")
                                      if p.is_file()})
        dep = store.intake.submit([NewDeployment("pruned", sha, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        assert execute(config, store, redis, dep.id) == "succeeded", store.get(dep.id).error
        return sha

    # An image the project built before (compose v2 labels it with the project), left dangling.
    dangling, _ = docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nLABEL {PROJECT_LABEL}={compose_project} n={uuid.uuid4()}\n".encode()),
        tag=f"{compose_project}-old:gone", rm=True)
    docker_client.api.remove_image(f"{compose_project}-old:gone", noprune=True)
    other_project = f"{compose_project}x.hooksvc-releases:web-first"
    first = deploy("v1")
    docker_client.api.tag(base_image, other_project.split(":")[0], "web-first")
    user = docker_client.containers.create(f"{repository}:web-{first}", ["true"],
                                           labels={PROJECT_LABEL: f"{compose_project}user"})
    try:
        shas = [first] + [deploy(v) for v in ("v2", "v3", "v4", "v5")]
        tags = sorted(t for s in engine.images(reference=repository) for t in s["RepoTags"])
        assert tags == sorted(f"{repository}:web-{sha}" for sha in (shas[0], shas[3], shas[4]))
        assert len(project_image_ids(engine, compose_project)) == 3
        assert engine.image_id(dangling.id) is None
        assert engine.image_id(other_project) is not None
        log = "\n".join(store.logs.read(str(int(store.live("pruned").deployment_id)))[0])  # type: ignore[union-attr]
        assert "keeping image" in log and "a container was created from it" in log
        # Pruning does not decide the outcome: it runs once the deployment is recorded succeeded.
        lines = log.splitlines()
        pruned_at = next(i for i, line in enumerate(lines) if line.startswith("pruned old releases"))
        assert lines.index("finished: succeeded") < pruned_at

        cmd_status(config, argparse.Namespace(app=None))
        out = capsys.readouterr().out
        (line,) = [row for row in out.splitlines() if row.startswith("pruned ") and "MiB" in row]
        print(out)
        assert "never deployed" in out  # the config's other apps
    finally:
        user.remove(force=True)
        docker_client.api.remove_image(other_project)
