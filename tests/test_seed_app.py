"""End to end with an app shaped like a typical Django + MySQL project and a `pre_deploy` migration.

Signed webhook → Redis → `hooksvc worker --burst` → git → compose build → migration in a one-off
container of the new web image → rollout, twice. The database is a stand-in built locally from
the busybox base: busybox httpd on MySQL's port 3306 whose CGI script keeps rows in a file on the
named volume, so a migration reaches it over the compose network by its service name, as Django
reaches MySQL.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.config import load_config
from hooksvc.deployments import DeploymentState
from hooksvc.release_steps import steps_from_log
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.docker import BASE_IMAGE, get_text, wait_for
from tests.helpers.git import GitOrigin
from tests.helpers.payloads import github_push, github_request
from tests.helpers.redis_server import free_port
from workers.docker_engine import DockerEngine

pytestmark = pytest.mark.docker

SECRET = "seed-webhook-secret"
#: A burst worker runs one deployment: fetch, build, migration, rollout. Generous for a loaded machine.
DEPLOY_TIMEOUT_SECONDS = 240

#: The database stand-in's "SQL": GET /cgi-bin/rows lists the rows, ?add=ROW appends one.
ROWS_CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo
case "$QUERY_STRING" in
  add=*) echo "${QUERY_STRING#add=}" >> /var/lib/mysql/rows ;;
esac
cat /var/lib/mysql/rows 2>/dev/null
"""

#: `manage.py migrate` of the stand-in: shows what the database holds, then adds this release's row.
#: Like a real app's entrypoint it waits for the database first: right after a container starts, the
#: engine's DNS can fail to resolve a service name for a moment (seen here under load as "bad address").
MANAGE_SH = """#!/bin/sh
set -e
tries=0
until timeout 10 wget -q -O /dev/null http://db:3306/cgi-bin/rows; do
  tries=$((tries + 1)); [ "$tries" -lt 20 ] || exit 1; sleep 0.5
done
rows=$(timeout 10 wget -q -O- http://db:3306/cgi-bin/rows | tr '\\n' ' ')
echo "migration of $RELEASE sees rows: [ $rows]"
timeout 10 wget -q -O- "http://db:3306/cgi-bin/rows?add=$RELEASE" > /dev/null
echo "migration of $RELEASE applied"
"""


def build_db_image(client: docker.DockerClient, tag: str) -> None:
    """The database stand-in: httpd with the rows CGI, data on /var/lib/mysql (no RUN: no network needed)."""
    dockerfile = (f"FROM {BASE_IMAGE}\nCOPY rows /srv/cgi-bin/rows\n"
                  'CMD ["httpd", "-f", "-p", "3306", "-h", "/srv"]\n')
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text, mode in (("Dockerfile", dockerfile, 0o644), ("rows", ROWS_CGI, 0o755)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True)


def seed_files(release: str, web_port: int, db_port: int, db_image: str) -> dict[str, str | bytes | None]:
    """A Django-shaped repository: Dockerfile-built web on 8000, depends_on db, db on a named volume."""
    compose = textwrap.dedent(f"""\
        services:
          db:
            image: {db_image}
            init: true
            environment:
              - MYSQL_DATABASE=seed
            volumes:
              - db_data:/var/lib/mysql
            ports:
              - "127.0.0.1:{db_port}:3306"
            healthcheck:
              test: ["CMD", "timeout", "3", "wget", "-q", "-O-", "http://127.0.0.1:3306/cgi-bin/rows"]
              interval: 1s
              retries: 10
          web:
            build: .
            init: true
            command: ["httpd", "-f", "-p", "8000", "-h", "/code/www"]
            environment:
              - RELEASE={release}
              - DATABASE_HOST=db
            volumes:
              - .:/code
            ports:
              - "127.0.0.1:{web_port}:8000"
            depends_on:
              - db
        volumes:
          db_data:
        """)
    return {
        "docker-compose.yml": compose,
        "Dockerfile": (f"FROM {BASE_IMAGE}\nWORKDIR /code\nCOPY . /code/\n"
                       'CMD ["httpd", "-f", "-p", "8000", "-h", "/code/www"]\n'),
        "manage.sh": MANAGE_SH,
        "www/version.txt": f"{release}\n",
    }


def assert_serves(port: int, release: str) -> None:
    url = f"http://127.0.0.1:{port}/version.txt"
    assert wait_for(lambda: get_text(url) == (200, release), 20), f"{url} answers {get_text(url)}, not {release}"


def test_a_seed_shaped_app_deploys_twice_and_its_migration_keeps_the_database(
    tmp_path: Path, git_origin: GitOrigin, compose_project: str, compose_variant: str, base_image: str,
    docker_client: docker.DockerClient, redis: redis_lib.Redis,
) -> None:
    """Two pushes of a Django+MySQL-shaped app through webhook and worker: each release's `pre_deploy`
    migration runs in its new web image against the running database, the second sees the first's row,
    the database container is never recreated when only the web image changed, and both pages list the step."""
    db_image = f"{compose_project}-seeddb:latest"  # named after the project: its teardown removes it
    build_db_image(docker_client, db_image)
    web_port, db_port = free_port(), free_port()
    env = {**os.environ, "SEED_SECRET": SECRET, "HOOKSVC_API_TOKENS": "operator-token-1"}
    config_path = tmp_path / "hooksvc.toml"
    config_path.write_text(textwrap.dedent(f"""
        [redis]
        url = "{TEST_REDIS_URL}"
        [worker]
        state_dir = "{tmp_path / 'state'}"
        [hosts.github]
        kind = "github"
        api_url = "http://127.0.0.1:9/github"
        [apps.seed]
        host = "github"
        repo = "acme/seed"
        clone_url = "{git_origin.path}"
        secret_env = "SEED_SECRET"
        project = "{compose_project}"
        health_timeout = "60s"
        start_grace = "1s"
        pre_deploy = [{{ service = "web", command = ["sh", "manage.sh", "migrate", "--noinput"] }}]
    """))
    config = load_config(str(config_path), env)
    client = create_app(config, connection=redis).test_client()
    store = DeploymentStore(redis)
    engine = DockerEngine(docker_client)

    def deploy(release: str) -> list[str]:
        sha = git_origin.commit(f"release {release}", seed_files(release, web_port, db_port, db_image))
        hook = github_request(github_push(repo="acme/seed", after=sha), SECRET)
        answer = client.open("/hooks/github", **hook.client_kwargs())
        assert answer.status_code == 202, answer.json
        deployment_id = str(answer.json["deployments"][0]["id"])
        worker = subprocess.run([sys.executable, "-m", "hooksvc.cli", "--config", str(config_path), "worker",
                                 "--burst"], env=env, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_SECONDS)
        lines = store.logs.read(deployment_id)[0]
        print(f"\n---- compose {compose_variant}, release {release}: deployment {deployment_id} log ----", *lines,
              sep="\n")
        done = store.get(deployment_id)
        assert done.state is DeploymentState.SUCCEEDED, (done.error, worker.stderr[-3000:])
        assert store.live("seed").sha == sha  # type: ignore[union-attr]
        page = client.get(f"/deployments/{deployment_id}", headers={"Authorization": "Bearer operator-token-1"})
        assert b'id="release-steps"' in page.data and b"sh manage.sh migrate --noinput" in page.data
        return lines

    first = deploy("r1")
    (db_first,) = [c.id for c in engine.containers(compose_project, "db")]
    assert "  migration of r1 sees rows: [ ]" in first
    assert_serves(web_port, "r1")

    second = deploy("r2")
    (db_second,) = [c.id for c in engine.containers(compose_project, "db")]
    assert "  migration of r2 sees rows: [ r1 ]" in second
    assert db_second == db_first, "the database container was recreated"
    assert any(line.startswith("  db: unchanged") for line in second)
    assert_serves(web_port, "r2")
    # The migration ran before any container was replaced: its end precedes the web rollout.
    ended = next(i for i, line in enumerate(second) if "release step pre_deploy 1/1 on web: succeeded" in line)
    assert ended < next(i for i, line in enumerate(second) if line.startswith("web: recreating"))
    assert [(s.phase, s.service, s.outcome) for s in steps_from_log(second)] == [("pre_deploy", "web", "succeeded")]
    status, rows = get_text(f"http://127.0.0.1:{db_port}/cgi-bin/rows")
    print(f"\n---- the database's rows after both releases: {rows.split()}")
    assert (status, rows.split()) == (200, ["r1", "r2"])
    # What `hooksvc status seed` and the dashboard show: each service's containers since release r2.
    (web_second,) = [c.id for c in engine.containers(compose_project, "web")]
    overview = client.get("/api/apps", headers={"Authorization": "Bearer operator-token-1"}).json["apps"][0]["services"]
    assert {s["name"]: s["runs"] for s in overview["services"]} == {
        "db": f"1 container(s): {db_first[:12]}", "web": f"1 container(s): {web_second[:12]}"}
    assert overview["deployment_id"] == str(int(overview["deployment_id"]))
