"""Push to deploy from a bare repository: `hooksvc git-hook install` on a real bare repository, a real
`git push` over the file transport, and the hook talking to a real `hooksvc serve` and `hooksvc worker`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import bare_repo_hook
from hooksvc.runtime.post_receive import post_receive
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.docker import wait_for
from tests.helpers.git import git, git_env
from tests.helpers.processes import stop_process_groups
from tests.helpers.redis_server import free_port

SECRET = "site-hook-secret-4f1c9a"



class Server:
    """A bare repository, its working clone, a config for app `site` on it, and hooksvc processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.bare = root / "site.git"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        self.clone = root / "work"
        git("clone", "--quiet", f"file://{self.bare}", str(self.clone))
        (root / "secret").write_text(SECRET + "\n")
        self.config = root / "hooksvc.toml"
        self.config.write_text(textwrap.dedent(f"""
            [server]
            listen = "127.0.0.1:{self.port}"
            [redis]
            url = "{TEST_REDIS_URL}"
            [worker]
            state_dir = "{root / 'state'}"
            [hosts.server]
            kind = "git"
            [apps.site]
            host = "server"
            clone_url = "{self.bare}"
            secret_file = "{root / 'secret'}"
        """))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "hooksvc.cli", "--config", str(self.config), name, *args],
            stdout=log, stderr=log, start_new_session=True, env={**os.environ, "REDIS_URL": TEST_REDIS_URL},
        )

    def start_serve(self) -> None:
        self.start("serve", "--processes", "1", "--threads", "4")
        assert wait_for(self.answers, 60), (self.root / "serve.log").read_text()[-2000:]

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def stop(self, *names: str) -> None:
        stop_process_groups([self.procs.pop(n) for n in names or list(self.procs)], grace=10)

    def commit(self, text: str) -> str:
        (self.clone / "version.txt").write_text(text)
        git("add", "version.txt", cwd=self.clone)
        git("commit", "--quiet", "-m", text, cwd=self.clone)
        return git("rev-parse", "HEAD", cwd=self.clone)

    def push(self) -> str:
        """`git push` as a developer runs it; its whole output, the hook's `remote:` lines included."""
        result = subprocess.run(["git", "push", "origin", "main"], cwd=self.clone, env=git_env(),
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr
        return result.stderr


@pytest.fixture
def server(tmp_path: Path, redis: redis_lib.Redis) -> Iterator[Server]:
    srv = Server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def test_install_writes_an_executable_hook_that_keeps_the_secret_out_of_its_text(server: Server) -> None:
    """The hook runs this installation's interpreter; the secret sits in a 0600 file, not in the hook;
    a hook hooksvc did not write is not replaced."""
    result = subprocess.run(
        [sys.executable, "-m", "hooksvc.cli", "--config", str(server.config), "git-hook", "install",
         str(server.bare), "--app", "site", "--wait"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    hook = server.bare / "hooks" / "post-receive"
    text = hook.read_text()
    assert os.access(hook, os.X_OK) and sys.executable in text and SECRET not in text
    secret_file = server.bare / "hooksvc" / "secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600 and secret_file.read_text().strip() == SECRET
    assert stat.S_IMODE((server.bare / "hooksvc" / "settings.json").stat().st_mode) == 0o600

    hook.write_text("#!/bin/sh\necho someone else's hook\n")
    again = subprocess.run(
        [sys.executable, "-m", "hooksvc.cli", "--config", str(server.config), "git-hook", "install",
         str(server.bare), "--app", "site"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "was not written by hooksvc" in again.stderr
    assert "someone else" in hook.read_text()


def test_the_hook_sends_before_it_loads_redis_or_the_command_line() -> None:
    """Every push waits for the hook to start: its module loads no Redis client, RQ, config reader or
    command line (Redis's client is loaded only to follow a deployment, once the push is sent)."""
    heavy = ("redis", "rq", "hooksvc.config", "hooksvc.connection", "hooksvc.store", "hooksvc.cli")
    probe = ("import sys, hooksvc.runtime.post_receive; "
             f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.split() == []


def test_a_push_shows_its_deployment_and_a_push_made_while_hooksvc_is_down_is_sent_later(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pusher sees the deployment queued, its log and its outcome; a push hooksvc cannot be told about
    is kept, the pusher told so, and the next push delivers it."""
    server.start_serve()
    server.start("worker")
    subprocess.run([sys.executable, "-m", "hooksvc.cli", "--config", str(server.config), "git-hook", "install",
                    str(server.bare), "--app", "site", "--wait"], check=True, capture_output=True, timeout=60)

    # The release has no docker-compose.yml: its deployment fails fast, and the push must say so.
    first = server.commit("v1")
    output = server.push()
    assert "remote: hooksvc: deployment 1 of site queued (" + first[:12] + ")" in output, output
    assert f"==> fetching {server.bare}" in output
    assert "remote: deployment 1: failed" in output

    server.stop("serve")
    second = server.commit("v2")
    hook = server.bare / "hooks" / "post-receive"
    hook.rename(hook.with_name("off"))  # this push's hook is run by hand below, with short retries
    git("push", "--quiet", "origin", "main", cwd=server.clone)
    hook.with_name("off").rename(hook)
    monkeypatch.setattr(bare_repo_hook, "SEND_RETRY_SECONDS", (0.2,))
    said: list[str] = []
    outcome = post_receive(server.bare / "hooksvc", f"{'0' * 40} {second} refs/heads/main\n", said.append)
    assert outcome.failed and outcome.queued == []
    assert any("is NOT deployed yet" in line and "sent with the next push" in line for line in said), said
    assert len(list((server.bare / "hooksvc" / "pending").iterdir())) == 1

    server.start_serve()
    server.commit("v3")
    output = server.push()
    assert "sending a push kept while hooksvc was unreachable" in output, output
    assert f"of site queued ({second[:12]})" in output
    assert list((server.bare / "hooksvc" / "pending").iterdir()) == []


#: A user id that is neither root nor the test's: the owner of what an attacker planted.
STRANGER = 4242


def install_into(server: Server, repo: Path) -> subprocess.CompletedProcess[str]:
    """`hooksvc git-hook install REPO --app site`, as the operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "hooksvc.cli", "--config", str(server.config), "git-hook", "install",
         str(repo), "--app", "site"], capture_output=True, text=True, timeout=60)


def plant_link_as_secret(repo: Path, outside: Path) -> Path:
    (repo / "hooksvc").mkdir(mode=0o700)
    (repo / "hooksvc" / "secret").symlink_to(outside)
    return repo / "hooksvc" / "secret"


def plant_link_as_settings_folder(repo: Path, outside: Path) -> Path:
    (repo / "hooksvc").symlink_to(outside.parent)
    return repo / "hooksvc"


def plant_foreign_settings_folder(repo: Path, outside: Path) -> Path:
    (repo / "hooksvc").mkdir(mode=0o777)
    os.chown(repo / "hooksvc", STRANGER, STRANGER)
    return repo / "hooksvc"


def plant_foreign_secret_file(repo: Path, outside: Path) -> Path:
    (repo / "hooksvc").mkdir(mode=0o700)
    (repo / "hooksvc" / "secret").write_text("")
    os.chown(repo / "hooksvc" / "secret", STRANGER, STRANGER)
    return repo / "hooksvc" / "secret"


def plant_link_as_hooks_folder(repo: Path, outside: Path) -> Path:
    for hook in (repo / "hooks").iterdir():
        hook.unlink()
    (repo / "hooks").rmdir()
    (repo / "hooks").symlink_to(outside.parent)
    return repo / "hooks"


def plant_link_as_hook(repo: Path, outside: Path) -> Path:
    outside.write_text(f"{bare_repo_hook.HOOK_MARK}\nprecious\n")
    (repo / "hooks" / "post-receive").symlink_to(outside)
    return repo / "hooks" / "post-receive"


def plant_foreign_repository(repo: Path, outside: Path) -> Path:
    os.chown(repo, STRANGER, STRANGER)
    return repo


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's files takes root")
class TestInstallAgainstPlantedPaths:
    """`git-hook install` run as root on a repository that someone else could write to."""

    @pytest.mark.parametrize(("plant", "why"), [
        (plant_link_as_secret, "is a symbolic link"),
        (plant_link_as_settings_folder, "is a symbolic link"),
        (plant_link_as_hooks_folder, "is a symbolic link"),
        (plant_link_as_hook, "is a symbolic link"),
        (plant_foreign_settings_folder, f"belongs to uid {STRANGER}"),
        (plant_foreign_secret_file, f"belongs to uid {STRANGER}"),
        (plant_foreign_repository, f"belongs to uid {STRANGER}"),
    ])
    def test_a_planted_link_or_foreign_owner_is_refused_and_nothing_outside_changes(
        self, server: Server, tmp_path: Path, plant: Callable[[Path, Path], Path], why: str
    ) -> None:
        """Install refuses, naming the planted path and why; the file and folder outside the repository
        keep their content, mode and owner, and the secret is written nowhere."""
        outside_dir = tmp_path / "elsewhere"
        outside_dir.mkdir(mode=0o750)
        outside = outside_dir / "shadow"
        outside.write_text("root:precious\n")
        outside.chmod(0o600)
        repo = tmp_path / "planted.git"
        git("init", "--quiet", "--bare", str(repo))
        planted = plant(repo, outside)
        before = outside.read_text(), outside.stat(), outside_dir.stat()

        result = install_into(server, repo)

        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{planted} {why}" in result.stderr and "Traceback" not in result.stderr, result.stderr
        if plant is plant_foreign_repository:
            assert "Run it as the repository's owner" in result.stderr
            assert f"sudo -u #{STRANGER} hooksvc git-hook install" in result.stderr
        after = outside.read_text(), outside.stat(), outside_dir.stat()
        assert after[0] == before[0]
        assert [(s.st_mode, s.st_uid) for s in after[1:]] == [(s.st_mode, s.st_uid) for s in before[1:]]
        assert sorted(p.name for p in outside_dir.iterdir()) == ["shadow"]
        assert not (repo / "hooks" / "post-receive").exists() or plant is plant_link_as_hook
        written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()
                   and p != server.root / "secret" and SECRET in p.read_text(errors="replace")]
        assert written == []

    def test_a_planted_temporary_hook_file_is_left_alone(self, server: Server, tmp_path: Path) -> None:
        """The hook is written through a new file of its own: a link planted at the old temporary name
        does not make install overwrite or chmod the file it points to."""
        outside = tmp_path / "shadow"
        outside.write_text("root:precious\n")
        outside.chmod(0o600)
        repo = tmp_path / "planted.git"
        git("init", "--quiet", "--bare", str(repo))
        (repo / "hooks" / ".post-receive.tmp").symlink_to(outside)

        result = install_into(server, repo)

        assert result.returncode == 0, result.stderr
        assert outside.read_text() == "root:precious\n" and stat.S_IMODE(outside.stat().st_mode) == 0o600
        hook = repo / "hooks" / "post-receive"
        assert not hook.is_symlink() and bare_repo_hook.HOOK_MARK in hook.read_text()
        assert stat.S_IMODE((repo / "hooksvc").stat().st_mode) == 0o700
        assert (repo / "hooksvc" / "secret").read_text().strip() == SECRET
