"""The job's side of cancelling a running deployment: the token, the killed command tree, the watcher.

Real processes and a real Redis; the deployments themselves (builds, the health gate, too late) are
in tests/workers/test_cancel.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import docker
import pytest

from hooksvc.connection import connect
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.errors import DeploymentCancelled
from hooksvc.store import DeploymentStore
from tests.helpers.docker import wait_for, write_sample_app
from tests.helpers.redis_server import RedisServer
from tests.workers.test_rollout import Deployer, make_app, service_ids
from workers import process
from workers.cancellation import NOT_CANCELLABLE, Cancellation, CancelWatch, active, descendants
from workers.strategies import compose_rollout

LIVE = "1" * 40


def queued(store: DeploymentStore) -> str:
    return store.intake.submit([NewDeployment("shop", "2" * 40, "refs/heads/main", Trigger.PUSH)]).deployments[0].id


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class TestToken:
    def test_a_request_stops_the_next_safe_point_with_who_where_and_what_is_live(self) -> None:
        """Before a request `at` passes; after it the next safe point raises, naming the operator, the stage and
        the live sha."""
        lines: list[str] = []
        cancel = Cancellation(lines.append, LIVE)
        cancel.at("fetching")
        cancel.request("alice")
        with pytest.raises(DeploymentCancelled) as info:
            cancel.at("building")
        assert str(info.value) == f"cancelled by alice while building; {LIVE[:12]} is still live"
        assert cancel.acted and lines == ["cancelling for alice while fetching"]

    def test_past_the_point_of_no_return_a_request_is_logged_too_late(self) -> None:
        """After `past_return` a request raises nowhere and is logged once as too late, with why."""
        lines: list[str] = []
        cancel = Cancellation(lines.append, "")
        cancel.past_return("the new containers replaced the old ones")
        cancel.request("alice")
        cancel.check()
        cancel.ended()
        assert not cancel.acted
        assert lines == ["cancel requested by alice came too late: the new containers replaced the old ones"]

    def test_a_request_before_the_point_of_no_return_stops_there(self) -> None:
        """`past_return` is the last safe point: a request that came before it raises there."""
        cancel = Cancellation(lambda line: None, "")
        cancel.request("alice")
        with pytest.raises(DeploymentCancelled, match="nothing was live before it"):
            cancel.past_return("switched")

    def test_outside_a_job_nothing_is_cancellable(self) -> None:
        """Without a deployment's job the process's cancellation is the one that never acts."""
        assert active() is NOT_CANCELLABLE
        cancel = Cancellation(lambda line: None, "")
        with cancel.installed():
            assert active() is cancel
        assert active() is NOT_CANCELLABLE


class TestKilledCommand:
    def test_a_cancellable_command_is_killed_with_every_process_it_started(self) -> None:
        """A request kills a running cancellable command and its children within a second, then raises."""
        cancel = Cancellation(lambda line: None, "")
        started: list[str] = []

        def ask_once_running() -> None:
            assert wait_for(lambda: bool(started), 10, 0.02)
            cancel.request("alice")

        asker = threading.Thread(target=ask_once_running)
        asker.start()
        begin = time.monotonic()
        with cancel.installed(), pytest.raises(DeploymentCancelled, match="cancelled by alice"):
            # The shell prints its child's pid, then waits for it: killing the shell alone leaves the sleep.
            process.run(["sh", "-c", "sleep 300 & echo $!; wait"], log=started.append, cancellable=True)
        asker.join()
        assert time.monotonic() - begin < 5
        assert wait_for(lambda: not alive(int(started[0])), 5, 0.05), "the shell's child survived"

    def test_a_command_not_marked_cancellable_runs_to_its_end(self) -> None:
        """Commands that are not cancellable (clean-ups, `compose up`) finish although a request came."""
        cancel = Cancellation(lambda line: None, "")
        cancel.request("alice")
        with cancel.installed():
            assert process.run(["sh", "-c", "sleep 0.2; echo done"], capture=True).output == "done"
            with pytest.raises(DeploymentCancelled):
                process.run(["true"], cancellable=True)

    def test_descendants_are_found_through_proc(self) -> None:
        """`descendants` finds a grandchild."""
        result: list[str] = []
        runner = threading.Thread(target=lambda: process.run(
            ["sh", "-c", "sh -c 'sleep 2' & echo $$; wait"], log=result.append))
        runner.start()
        assert wait_for(lambda: bool(result), 10, 0.02)
        shell = int(result[0])
        assert wait_for(lambda: len(descendants(shell)) == 2, 5, 0.02), descendants(shell)
        runner.join()


class TestWatch:
    def test_the_watcher_notices_a_request_within_a_second(self, store: DeploymentStore) -> None:
        """`store.cancel` of a running deployment reaches the job's cancellation within a second."""
        dep_id = queued(store)
        store.start(dep_id, "")
        cancel = Cancellation(lambda line: None, "")
        with CancelWatch(store, dep_id, cancel):
            time.sleep(0.3)
            asked = time.monotonic()
            store.cancel(dep_id, "alice")
            assert wait_for(lambda: cancel.requested_by == "alice", 1.0, 0.02)
            assert time.monotonic() - asked < 1.0

    def test_the_watcher_survives_a_redis_restart(self, own_redis: RedisServer) -> None:
        """With Redis stopped the watcher keeps looking; a request made once it is back is noticed."""
        store = DeploymentStore(connect(own_redis.url))
        dep_id = queued(store)
        store.start(dep_id, "")
        cancel = Cancellation(lambda line: None, "")
        with CancelWatch(store, dep_id, cancel, poll_seconds=0.05):
            own_redis.stop()
            time.sleep(0.5)
            own_redis.start()
            assert wait_for(lambda: _cancelled(store, dep_id), 10, 0.2)
            assert wait_for(lambda: cancel.requested_by == "alice", 2.0, 0.02)
        assert store.get(dep_id).state is DeploymentState.RUNNING

    def test_a_request_after_the_steps_is_answered_too_late(self, store: DeploymentStore) -> None:
        """A request the job never acted on is logged as too late when the watch ends."""
        dep_id = queued(store)
        store.start(dep_id, "")
        lines: list[str] = []
        cancel = Cancellation(lines.append, "")
        with CancelWatch(store, dep_id, cancel, poll_seconds=30):
            store.cancel(dep_id, "alice")
        assert lines == ["cancel requested by alice came too late: the deployment had finished its steps"]


class TestRecreate:
    @pytest.mark.docker
    def test_recreate_stops_before_compose_up_and_is_too_late_after(
        self, tmp_path: Path, compose_project: str, base_image: str, docker_client: docker.DockerClient,
    ) -> None:
        """Strategy `recreate`: a request once the images are built stops the rollout with the live container
        untouched; one once `compose up` starts replacing containers comes too late and the rollout ends."""
        deployer = Deployer(make_app(compose_project, strategy="recreate"), tmp_path)
        deployer.deploy(write_sample_app(deployer.release("v1"), "v1"))
        live = service_ids(docker_client, compose_project, "web")
        v2 = write_sample_app(deployer.release("v2"), "v2")

        def deploy_asking_when(trigger: str) -> Cancellation:
            """Deploy v2, asking to cancel (as the job's watcher would) once a log line holds `trigger`."""
            cancel = Cancellation(deployer.lines.append, "")

            def watching(line: str) -> None:
                deployer.lines.append(line)
                if trigger in line:
                    cancel.request("alice")

            with cancel.installed():
                compose_rollout(deployer.app, v2, log=watching, state_dir=tmp_path / "state")
            return cancel

        with pytest.raises(DeploymentCancelled, match="cancelled by alice while running pre_deploy"):
            deploy_asking_when("images built")
        assert service_ids(docker_client, compose_project, "web") == live

        late = deploy_asking_when("--remove-orphans")
        assert late.too_late == "strategy recreate had started replacing the containers" and not late.acted
        assert "cancel requested by alice came too late: strategy recreate had started replacing the containers" \
            in deployer.lines
        assert service_ids(docker_client, compose_project, "web") != live


def _cancelled(store: DeploymentStore, dep_id: str) -> bool:
    """Ask to cancel once Redis answers; whether it was recorded."""
    try:
        return store.cancel(dep_id, "alice").cancel_requested_by == "alice"
    except Exception:  # noqa: BLE001 - Redis still loading its file: try again
        return False
