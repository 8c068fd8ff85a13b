"""Commands the worker runs see an allow-list of its environment, never its secrets.

The worker's environment holds every app's webhook secret, the API tokens, git host tokens,
REDIS_URL and HOOKSVC_CONFIG; compose would substitute any of them into an app's compose file
through `${VAR}`. These tests set such variables and check what commands actually receive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import docker
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.config import AppConfig, Secret
from tests.helpers.docker import BASE_IMAGE
from workers.compose import ComposeCommand, ComposeProject
from workers.process import (
    BASE_ENV,
    DOCKER_ENV,
    GIT_ENV,
    PROXY_ENV,
    command_env,
    holds_secret,
    run,
    scrub_environ,
)
from workers.strategies import compose_rollout

#: What a worker's environment typically holds besides what commands need, name -> value.
WORKER_SECRETS = {
    "OTHER_APP_SECRET": "other-app-webhook-secret-value",
    "HOOKSVC_API_TOKENS": "operator-token-one,operator-token-two",
    "GITHUB_TOKEN": "ghp_gitHostTokenOfTheWorker000000000000",
    "REDIS_URL": "redis://:redis-password-value@127.0.0.1:6392/0",
    "HOOKSVC_CONFIG": "/etc/hooksvc/private-config.toml",
    "DOCKER_PASSWORD": "registry-password-value",
    "GIT_CONFIG_VALUE_0": "Authorization: Bearer worker-wide-git-token",
}


def set_worker_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)


class TestCommandEnv:
    def test_only_the_allow_list_passes(self) -> None:
        """From a worker environment full of secrets, a command gets PATH, HOME, locale and the like only."""
        environ = {**WORKER_SECRETS, "PATH": "/usr/bin", "HOME": "/home/hooksvc", "LANG": "C.UTF-8",
                   "LC_TIME": "de_DE.UTF-8", "TZ": "UTC", "SSH_AUTH_SOCK": "/run/agent.sock",
                   "DOCKER_HOST": "unix:///run/docker.sock", "https_proxy": "http://proxy:3128"}
        assert command_env(environ=environ) == {
            "PATH": "/usr/bin", "HOME": "/home/hooksvc", "LANG": "C.UTF-8", "LC_TIME": "de_DE.UTF-8",
            "TZ": "UTC", "SSH_AUTH_SOCK": "/run/agent.sock",
        }

    def test_inherit_adds_named_variables_and_env_sets_values(self) -> None:
        """`inherit` names further variables to copy (compose: Docker's), `env` sets the command's own on top."""
        environ = {**WORKER_SECRETS, "PATH": "/usr/bin", "DOCKER_HOST": "unix:///a.sock", "DOCKER_CONFIG": "/d"}
        env = command_env(DOCKER_ENV, {"DOCKER_HOST": "ssh://deploy@app1"}, environ=environ)
        assert env == {"PATH": "/usr/bin", "DOCKER_HOST": "ssh://deploy@app1", "DOCKER_CONFIG": "/d"}

    def test_no_allow_listed_name_is_a_secret_the_worker_holds(self) -> None:
        """None of the names a command may inherit is one hooksvc reads a secret or its Redis from."""
        allowed = BASE_ENV | DOCKER_ENV | GIT_ENV | PROXY_ENV
        assert not allowed & {"HOOKSVC_API_TOKENS", "REDIS_URL", "HOOKSVC_CONFIG", "GIT_CONFIG_COUNT"}
        assert not any(n.startswith(("GIT_CONFIG_KEY", "GIT_CONFIG_VALUE")) for n in allowed)

    @given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True), st.text(max_size=5)))
    def test_nothing_outside_the_allow_list_ever_passes(self, environ: dict[str, str]) -> None:
        """Whatever the worker's environment, a command gets a subset of it restricted to allowed names."""
        env = command_env(DOCKER_ENV, environ=environ)
        assert env.items() <= environ.items()
        assert all(k in BASE_ENV or k in DOCKER_ENV or k.startswith("LC_") for k in env)

    def test_a_real_command_sees_no_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`env` run through `workers.process.run` prints the allow-listed variables and none of the secrets."""
        set_worker_secrets(monkeypatch)
        monkeypatch.setenv("LC_ALL", "C.UTF-8")
        result = run(["env"], env={"ONLY_THIS_COMMAND": "1"}, capture=True, timeout=10)
        seen = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
        assert seen["LC_ALL"] == "C.UTF-8" and seen["ONLY_THIS_COMMAND"] == "1" and "PATH" in seen
        assert not set(seen) & set(WORKER_SECRETS)
        assert not any(value in result.output for value in WORKER_SECRETS.values())

    def test_compose_gets_the_apps_engine_over_the_workers(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A compose command runs with the app's DOCKER_HOST, the worker's DOCKER_CONFIG and no secret
        (a fake `docker` prints its environment)."""
        set_worker_secrets(monkeypatch)
        monkeypatch.setenv("DOCKER_HOST", "unix:///worker.sock")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        fake = bin_dir / "docker"
        fake.write_text("#!/bin/sh\nenv\n")
        fake.chmod(0o755)
        compose = ComposeProject(ComposeCommand("v2", (str(fake), "compose"), "2.40.3"), "p", tmp_path,
                                 ("docker-compose.yml",), docker_host="ssh://deploy@app1")
        result = compose.run(compose.argv("ps"), log=None, timeout=10, capture=True)
        seen = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
        assert seen["DOCKER_HOST"] == "ssh://deploy@app1"
        assert seen["DOCKER_CONFIG"] == str(tmp_path / "docker-config")
        assert not set(seen) & set(WORKER_SECRETS)


#: A compose file whose one service asks, through `${VAR}`, for every secret of the worker, and
#: for HOME, which must still be substituted (so the test sees substitution work at all).
PROBE_COMPOSE = textwrap.dedent("""\
    services:
      probe:
        image: {image}
        init: true
        command: ["sleep", "1000000"]
        stop_grace_period: 1s
        environment:
    {variables}
          SEEN_HOME: "${{HOME}}"
    """)


@pytest.mark.docker
class TestComposeSubstitution:
    def test_a_compose_file_cannot_read_the_workers_secrets(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        compose_variant: str,
        base_image: str,
        compose_project: str,
        docker_client: docker.DockerClient,
    ) -> None:
        """Deployed with the worker's secrets in its environment, a container whose compose file reads
        each of them via `${VAR}` sees every one empty (compose v1 and v2), while `${HOME}` still works."""
        set_worker_secrets(monkeypatch)
        release = tmp_path / "release"
        release.mkdir()
        variables = "\n".join(f'      {name}: "${{{name}}}"' for name in WORKER_SECRETS)
        (release / "docker-compose.yml").write_text(PROBE_COMPOSE.format(image=BASE_IMAGE, variables=variables))
        app = AppConfig(name=compose_project, host="github", host_kind="github", repo=f"acme/{compose_project}",
                        clone_url="/nonexistent", secret=Secret("unused"), project=compose_project,
                        health_timeout=40.0, start_grace=1.0)
        lines: list[str] = []
        compose_rollout(app, release, log=lines.append, state_dir=tmp_path / "state")
        containers = docker_client.containers.list(filters={"label": f"com.docker.compose.project={compose_project}"})
        assert len(containers) == 1, "\n".join(lines)
        env = dict(entry.split("=", 1) for entry in containers[0].attrs["Config"]["Env"])
        assert {name: env.get(name) for name in WORKER_SECRETS} == dict.fromkeys(WORKER_SECRETS, "")
        assert env["SEEN_HOME"]
        log_text = "\n".join(lines)
        assert not any(value in log_text for value in WORKER_SECRETS.values())


class TestScrubEnviron:
    def test_variables_holding_a_secret_go_and_the_rest_stays(self) -> None:
        """A variable whose value is a secret, lists one or carries a long one goes; PATH and the like stay."""
        environ = {**WORKER_SECRETS, "PATH": "/usr/bin", "HOME": "/home/hooksvc", "SHORT": "abc"}
        secrets = ["other-app-webhook-secret-value", "operator-token-two", "worker-wide-git-token", "abc",
                   "redis-password-value"]
        removed = scrub_environ(secrets, environ)
        assert removed == ["GIT_CONFIG_VALUE_0", "HOOKSVC_API_TOKENS", "OTHER_APP_SECRET", "REDIS_URL", "SHORT"]
        assert environ == {"PATH": "/usr/bin", "HOME": "/home/hooksvc", "GITHUB_TOKEN": WORKER_SECRETS["GITHUB_TOKEN"],
                           "HOOKSVC_CONFIG": WORKER_SECRETS["HOOKSVC_CONFIG"],
                           "DOCKER_PASSWORD": WORKER_SECRETS["DOCKER_PASSWORD"]}

    def test_a_short_secret_inside_a_longer_value_does_not_take_the_variable(self) -> None:
        """A short secret only counts as a whole value or list item: PATH never goes for holding `bin`."""
        assert not holds_secret("/usr/local/bin:/usr/bin", ["bin"])
        assert holds_secret("a, bin ,c", ["bin"])

    def test_the_process_shows_no_secret_in_proc_environ(self) -> None:
        """A real process that scrubbed itself shows neither the secret nor its variable's value in
        /proc/<pid>/environ (the block the kernel passed at exec), and its children do not get it."""
        secret = "scrubbed-secret-value-5c1e"
        code = textwrap.dedent(f"""
            import sys
            from workers.process import run, scrub_environ
            scrub_environ([{secret!r}])
            child = run(["cat", "/proc/self/environ"], capture=True, timeout=10, inherit=["KEEP_ME"])
            print("child:", {secret!r} in child.output, flush=True)
            sys.stdin.read()
        """)
        env = {"PATH": os.environ["PATH"], "APP_SECRET": secret, "KEEP_ME": "kept", "LIST": f"x,{secret}"}
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().decode().strip() == "child: False"
            block = Path(f"/proc/{proc.pid}/environ").read_bytes()
            assert secret.encode() not in block
            assert b"KEEP_ME=kept" in block and b"PATH=" in block
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
