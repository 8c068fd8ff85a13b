"""The README's first minute, as a newcomer lives it: a fresh clone, the README's run command with no
configuration, then clone → edit → push of the example app while a load loop hits it, then a restart.

Real Docker, git and redis-server throughout. There is no registry, so the local test base image is
tagged `busybox:1.36` for the example's `FROM` (unless an image of that name exists: it is used as it
is, never replaced). The clone runs from this checkout's virtualenv (HOOKSVC_VENV, see scripts/setup):
building a fresh one would cost minutes of package installs and test nothing of hooksvc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from hooksvc.quickstart_state import Quickstart
from tests.helpers.docker import BASE_IMAGE, LoadLoop, get_text, remove_project, wait_for
from tests.helpers.git import git, git_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_IMAGE = ("busybox", "1.36")
#: The first start builds the example and deploys it; a loaded 2-core machine may take a while.
START_SECONDS = 180.0
LINE_KEYS = ("repo", "app", "dashboard", "token")
#: A push of the example's page, from `git push` to the push reporting its deployment succeeded, and
#: to the proxy serving the new page: bounds that catch a stall on a loaded 2-core machine. The targets
#: (done in under 5 s, served in under 2.5 s on a quiet machine) are measured, not asserted here: see
#: docs/benchmarks.md.
PUSH_DONE_SECONDS = 30.0
PUSH_SERVED_SECONDS = 30.0

pytestmark = pytest.mark.docker


def readme_run_command() -> str:
    """The first command of the README's first section (its first ```sh block)."""
    readme = (ROOT / "README.md").read_text()
    first_section = readme.split("\n## ", 2)[1]
    block = re.search(r"```sh\n(.*?)```", first_section, re.S)
    assert block is not None, "the README's first section has no ```sh block"
    commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    return commands[0]


class ServedAfter:
    """Polls `url` every 20 ms from a thread until its body holds `text`: how long after `since` it did."""

    def __init__(self, url: str, text: str, since: float) -> None:
        self.url, self.text, self.since = url, text, since
        self.after: float | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = self.since + 60
        while time.monotonic() < deadline:
            if self.text in get_text(self.url)[1]:
                self.after = time.monotonic() - self.since
                return
            time.sleep(0.02)

    def wait(self) -> float:
        """Seconds from `since` to the first answer holding the text (fails when it never came)."""
        self._thread.join(timeout=65)
        assert self.after is not None, f"{self.url} never served {self.text!r}"
        return self.after


@pytest.fixture
def example_base_image(docker_client: docker.DockerClient, base_image: str) -> Iterator[None]:
    """`busybox:1.36` for the example's FROM: the test base image under that name, untagged afterwards."""
    name = ":".join(EXAMPLE_IMAGE)
    try:
        docker_client.images.get(name)
        yield  # a real one: leave it alone
        return
    except docker.errors.ImageNotFound:
        pass
    docker_client.images.get(BASE_IMAGE).tag(*EXAMPLE_IMAGE)
    try:
        yield
    finally:
        docker_client.api.remove_image(name, noprune=True)


class Quickstarted:
    """`scripts/run` as the README gives it, run in a fresh clone; its output read line by line."""

    def __init__(self, clone: Path, command: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("HOOKSVC_CONFIG", "REDIS_URL")}
        env["HOOKSVC_VENV"] = str(Path(sys.executable).parent.parent)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.output: list[str] = []
        self.app_line_after: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("app:") and self.app_line_after is None:
                self.app_line_after = time.monotonic() - self.started
            self.output.append(line.rstrip("\n"))

    def lines(self) -> dict[str, str]:
        """The four lines, once all are printed (fails with the output otherwise)."""
        done = wait_for(lambda: any(line.startswith("token:") for line in self.output) or self.proc.poll() is not None,
                        START_SECONDS)
        found = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in self.output
                 if line.split(":", 1)[0] in LINE_KEYS}
        assert done and set(found) == set(LINE_KEYS), "\n".join(self.output)
        assert [line.split(":", 1)[0] for line in self.output if line.split(":", 1)[0] in LINE_KEYS] == list(LINE_KEYS)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def fresh_clone(docker_client: docker.DockerClient, example_base_image: None) -> Iterator[Path]:
    """A `git clone` of this repository in a short temporary path (the private Redis's socket lives
    there); the example's containers and images go afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="hq-"))
    clone = tmp / "hooksvc"
    git("clone", "--quiet", str(ROOT), str(clone))
    started = int(time.time())
    try:
        yield clone
    finally:
        project = Quickstart((clone / ".hooksvc-quickstart").resolve(), 0, 0, "").project
        remove_project(docker_client, project, images_since=started)
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_readme_quickstart_deploys_a_push_without_a_failed_request_and_restarts_the_same(
    fresh_clone: Path,
) -> None:
    """No config: the README's command prints repo/app/dashboard/token; a push shows its deployment
    succeed, the app serves the new version with zero failed requests under load; a restart prints the same."""
    command = readme_run_command()
    assert command.startswith("scripts/run"), command
    run = Quickstarted(fresh_clone, command)
    try:
        lines = run.lines()
        print("\nquickstart output:\n" + "\n".join(run.output) + f"\n'app:' after {run.app_line_after:.1f}s")
        assert Path(lines["repo"]) == fresh_clone / ".hooksvc-quickstart" / "demo.git"
        assert get_text(lines["app"])[0] == 200 and "version 1" in get_text(lines["app"])[1]
        assert get_text(lines["dashboard"] + "healthz")[0] == 200

        work = fresh_clone.parent / "demo"
        git("clone", "--quiet", lines["repo"], str(work))
        page = work / "www" / "index.html"
        page.write_text(page.read_text().replace("version 1", "version 2"))
        git("commit", "--quiet", "-am", "Version 2", cwd=work)
        with LoadLoop(lines["app"], rate=20, max_seconds=120) as load:
            pushed = time.monotonic()
            served = ServedAfter(lines["app"], "version 2", pushed)
            push = subprocess.run(["git", "push"], cwd=work, env=git_env(), capture_output=True, text=True,
                                  timeout=180)
            done_after = time.monotonic() - pushed
            served_after = served.wait()
            print(f"push: done after {done_after:.2f}s, version 2 served after {served_after:.2f}s")
            assert done_after < PUSH_DONE_SECONDS, push.stderr
            assert served_after < PUSH_SERVED_SECONDS, push.stderr
            assert re.search(r"remote: hooksvc: deployment (\d+) of demo queued", push.stderr), push.stderr
            assert re.search(r"remote: deployment \d+: succeeded", push.stderr), push.stderr
            assert "version 2" in get_text(lines["app"])[1]
            time.sleep(1)
        report = load.stop()
        assert report.failed == 0, report.failures[:5]
        served = "".join(report.versions)
        assert "version 1" in served and "version 2" in served
    finally:
        run.stop()

    again = Quickstarted(fresh_clone, command)
    try:
        assert again.lines() == lines
        assert "version 2" in get_text(lines["app"])[1]
    finally:
        again.stop()
