"""The end-of-session check that the suite leaves the machine as it found it (tests/fixtures/machine.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import docker
import docker.errors

from tests.fixtures.machine import KEEP_SHARED_ENV, SETTLE_ENV, SKIP_ENV, MachineState, differences

ROOT = Path(__file__).resolve().parent.parent


class TestDifferences:
    def test_same_state_differs_in_nothing(self) -> None:
        """Two equal snapshots give no difference."""
        state = MachineState(swarm=("active", "n1"), containers={"c1": "container a"}, processes={1: "init"})
        assert differences(state, state) == []

    def test_each_kind_left_behind_is_named(self) -> None:
        """A container, network, volume, image, link, namespace or process that is new is reported by name."""
        before = MachineState(swarm=("inactive", ""))
        after = MachineState(
            swarm=("active", "n1"), containers={"c": "container web-1"}, networks={"n": "network app_default"},
            volumes={"v": "volume app_data"}, images={"i": "image app-web:latest"}, links={"br-1": "br-1"},
            namespaces={"hsd-1": "hsd-1"}, processes={42: "redis-server *:6399"})
        report = "\n".join(differences(before, after))
        for expected in ("swarm state was ('inactive', '')", "container web-1", "network app_default",
                         "volume app_data", "image app-web:latest", "left: br-1", "left: hsd-1",
                         "process 42 still runs: redis-server"):
            assert expected in report, report

    def test_something_removed_that_was_there_before_is_reported(self) -> None:
        """A test that removed the user's own container or the main bridge is caught too."""
        before = MachineState(containers={"c": "container users-db"}, links={"docker0": "docker0"})
        report = differences(before, MachineState())
        assert report == ["gone: container users-db, which was there before", "gone: docker0, which was there before"]


def test_a_session_that_leaves_a_network_fails(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    """A pytest session whose test creates a Docker network and keeps it exits 1 and names the network."""
    name = f"hooksvc-leak-{uuid.uuid4().hex[:10]}"
    (tmp_path / "test_leak.py").write_text(textwrap.dedent(f"""
        import docker

        def test_leaves_a_network():
            docker.from_env().networks.create("{name}")
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != SKIP_ENV}
    # KEEP_SHARED_ENV: the base image this session's other processes use must outlive the inner session.
    env.update({"PYTHONPATH": str(ROOT), SETTLE_ENV: "1", KEEP_SHARED_ENV: "1"})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.fixtures.machine",
             "-p", "no:xdist", str(tmp_path / "test_leak.py")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        for network in docker_client.networks.list(names=[name]):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
    assert f"left: network {name}" in done.stdout, done.stdout
