"""What compose reads on the worker stays inside the release checkout.

The pure checks are tested on files laid out in a temporary directory; then a pusher's compose
files are deployed through the real job, with real git and both compose variants, as an attacker
would push them: each is refused, naming the key and the path, before anything builds, and the
host file's secret reaches no log.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.store import open_store
from tests.helpers.config import make_config
from tests.helpers.docker import BASE_IMAGE
from tests.helpers.git import GitOrigin
from workers.compose_confinement import (
    ReadOutsideRelease,
    check_compose_model,
    check_compose_sources,
    resolved_inside,
)
from workers.jobs import execute


def write(root: Path, files: dict[str, str], symlinks: dict[str, str] | None = None) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for name, target in (symlinks or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target)
    return root


@pytest.fixture
def release(tmp_path: Path) -> Path:
    (tmp_path / "release").mkdir()
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "tokens").write_text("TOKEN=host-secret\n")
    return tmp_path / "release"


class TestResolvedInside:
    def test_a_symlink_out_of_the_root_is_outside(self, release: Path) -> None:
        """A path whose symlink leads out of the checkout is outside, however it is spelled inside."""
        write(release, {}, {"link": "../host/tokens", "dir/up": "../../host"})
        assert not resolved_inside(release / "link", release)
        assert not resolved_inside(release / "dir" / "up" / "tokens", release)
        assert not resolved_inside(release / ".." / "host", release)

    def test_the_root_and_paths_below_it_are_inside(self, release: Path) -> None:
        """The checkout, its files and symlinks that stay in it are inside; a sibling sharing its prefix is not."""
        write(release, {"a/b.txt": "x"}, {"alias": "a/b.txt"})
        assert resolved_inside(release, release) and resolved_inside(release / "alias", release)
        assert not resolved_inside(release.parent / "release-other", release)


class TestComposeSources:
    def test_an_absolute_env_file_is_refused_naming_file_key_and_path(self, release: Path) -> None:
        """`env_file: /abs/path` is refused with the compose file, the key and the path in the message."""
        host = release.parent / "host" / "tokens"
        write(release, {"docker-compose.yml": f"services:\n  web:\n    env_file: [{host}]\n"})
        with pytest.raises(ReadOutsideRelease, match=r"docker-compose.yml: services.web.env_file\[0\]: .*/host/tokens"):
            check_compose_sources(release, ["docker-compose.yml"])

    def test_a_dotenv_symlink_to_a_host_file_is_refused(self, release: Path) -> None:
        """A `.env` that is a symlink to a host file is refused, the message naming where it leads."""
        write(release, {"docker-compose.yml": "services:\n  web:\n    image: x\n"}, {".env": "../host/tokens"})
        with pytest.raises(ReadOutsideRelease, match=r"^\.env: '\.env' \(a symlink to .*/host/tokens\)"):
            check_compose_sources(release, ["docker-compose.yml"])

    def test_extends_and_include_files_are_followed(self, release: Path) -> None:
        """An `extends` file inside the checkout is read in turn, and its own `env_file` outside is refused."""
        write(release, {
            "docker-compose.yml": "services:\n  web:\n    extends: {file: base/common.yml, service: base}\n",
            "base/common.yml": "services:\n  base:\n    env_file: ../../host/tokens\n",
        })
        with pytest.raises(ReadOutsideRelease, match=r"common.yml: services.base.env_file"):
            check_compose_sources(release, ["docker-compose.yml"])
        write(release, {"docker-compose.yml": "include:\n  - path: ../host/other.yml\nservices: {}\n"})
        with pytest.raises(ReadOutsideRelease, match=r"include\[0\].path\[0\]"):
            check_compose_sources(release, ["docker-compose.yml"])

    def test_a_label_file_outside_is_refused(self, release: Path) -> None:
        """`label_file`, which compose reads while resolving the model, is confined like `env_file`."""
        write(release, {"docker-compose.yml": "services:\n  web:\n    label_file: /etc/hooksvc/labels\n"})
        with pytest.raises(ReadOutsideRelease, match=r"services.web.label_file: '/etc/hooksvc/labels'"):
            check_compose_sources(release, ["docker-compose.yml"])

    def test_a_variable_in_a_path_compose_reads_while_resolving_is_refused(self, release: Path) -> None:
        """`env_file: ${HOME}/.ssh/id_rsa` cannot be judged before compose reads it: refused outright."""
        write(release, {"docker-compose.yml": "services:\n  web:\n    env_file: ${HOME}/.ssh/id_rsa\n"})
        with pytest.raises(ReadOutsideRelease, match="uses a variable"):
            check_compose_sources(release, ["docker-compose.yml"])

    def test_a_compose_file_that_is_a_symlink_out_is_refused(self, release: Path) -> None:
        """The configured compose file itself may not be a symlink to a host file (compose would quote it)."""
        write(release, {}, {"docker-compose.yml": "../host/tokens"})
        with pytest.raises(ReadOutsideRelease, match=r"compose_files\[0\]"):
            check_compose_sources(release, ["docker-compose.yml"])

    def test_files_inside_pass(self, release: Path) -> None:
        """env files, `.env`, extends files and a `.env` symlink that stay inside the checkout are accepted."""
        write(release, {
            "docker-compose.yml": "services:\n  web:\n    env_file: [app.env, {path: opt.env, required: false}]\n"
                                  "    extends: {file: base.yml, service: b}\n",
            "base.yml": "services:\n  b:\n    image: x\n", "app.env": "A=1\n", "env/prod": "B=2\n",
        }, {".env": "env/prod"})
        check_compose_sources(release, ["docker-compose.yml"])


def model(release: Path, service: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"services": {"web": service}, **top}


class TestComposeModel:
    @pytest.mark.parametrize(("service", "key"), [
        ({"build": {"context": "/proc/1"}}, "services.web.build.context"),
        ({"build": "/etc"}, "services.web.build.context"),
        ({"build": {"context": ".", "dockerfile": "../host/tokens"}}, "services.web.build.dockerfile"),
        ({"build": {"context": ".", "dockerfile": "/etc/passwd"}}, "services.web.build.dockerfile"),
        ({"build": {"context": ".", "additional_contexts": {"k": "/root"}}}, "build.additional_contexts.k"),
        ({"build": {"context": ".", "ssh": ["id=/root/.ssh/id_ed25519"]}}, r"services.web.build.ssh\[0\]"),
        ({"build": {"context": ".", "ssh": ["default"]}}, r"services.web.build.ssh\[0\].*ssh agent"),
        ({"image": "x", "env_file": ["/etc/hooksvc/env"]}, r"services.web.env_file\[0\]"),
    ])
    def test_build_inputs_outside_are_refused(self, release: Path, service: dict[str, Any], key: str) -> None:
        """Each build input that leaves the checkout is refused, the message naming its key."""
        with pytest.raises(ReadOutsideRelease, match=key):
            check_compose_model(model(release, service), release, confine_binds=False)

    def test_a_context_symlinked_out_is_refused(self, release: Path) -> None:
        """A build context that is a directory symlink in the checkout, leading out, is refused."""
        write(release, {}, {"ctx": "../host"})
        with pytest.raises(ReadOutsideRelease, match="a symlink to"):
            check_compose_model(model(release, {"build": {"context": str(release / "ctx")}}), release,
                                confine_binds=False)

    def test_secret_and_config_files_outside_are_refused(self, release: Path) -> None:
        """Top-level `secrets` and `configs` files (build secrets among them) must lie in the checkout."""
        with pytest.raises(ReadOutsideRelease, match="secrets.s1.file"):
            check_compose_model(model(release, {"image": "x"}, secrets={"s1": {"file": "/run/secrets/hooksvc"}}),
                                release, confine_binds=False)
        with pytest.raises(ReadOutsideRelease, match="configs.c.file"):
            check_compose_model(model(release, {"image": "x"}, configs={"c": {"file": "/etc/shadow"}}),
                                release, confine_binds=False)

    def test_bind_sources_are_confined_only_on_another_engine(self, release: Path) -> None:
        """A bind mount of `/etc` passes on the worker's own engine but not with `docker_host` (v1 and v2 forms)."""
        for volumes in ([{"type": "bind", "source": "/etc", "target": "/x"}], ["/etc:/x:ro"]):
            check_compose_model(model(release, {"image": "x", "volumes": volumes}), release, confine_binds=False)
            with pytest.raises(ReadOutsideRelease, match=r"services.web.volumes\[0\]"):
                check_compose_model(model(release, {"image": "x", "volumes": volumes}), release, confine_binds=True)

    def test_inputs_inside_and_remote_contexts_pass(self, release: Path) -> None:
        """Contexts, Dockerfiles, secrets and binds inside the checkout, git URL contexts and named volumes pass."""
        write(release, {"app/Dockerfile": "FROM x\n", "secret.txt": "s"})
        service = {
            "build": {"context": str(release / "app"), "dockerfile": "Dockerfile",
                      "additional_contexts": {"img": "docker-image://alpine"}, "ssh": ["id=./secret.txt"]},
            "volumes": [{"type": "bind", "source": str(release / "app"), "target": "/a"},
                        {"type": "volume", "source": "data", "target": "/d"}, "data:/e:rw"],
        }
        remote = {"build": {"context": "https://example.com/repo.git#main", "dockerfile": "Dockerfile"}}
        check_compose_model({"services": {"web": service, "remote": remote},
                             "secrets": {"s": {"file": str(release / "secret.txt")}}}, release, confine_binds=True)


#: A secret of the worker's host: in a file beside the checkout and in the worker's environment.
HOST_SECRET = "host-secret-the-pusher-wants-9d41"


@pytest.mark.docker
class TestPusherCannotReadTheWorkersFiles:
    """A pusher's compose file, deployed by the real job with real git and compose, reads nothing of the worker."""

    @pytest.fixture
    def host_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.setenv("WORKER_HELD_SECRET", HOST_SECRET)
        path = tmp_path / "host-secrets" / "tokens"
        path.parent.mkdir()
        path.write_text(f"TOKEN={HOST_SECRET}\n")
        return path

    def deploy(self, tmp_path: Path, origin: GitOrigin, redis: redis_lib.Redis, project: str,
               docker_host: str | None = None) -> tuple[DeploymentState, str, list[str]]:
        engine = f'docker_host = "{docker_host}"' if docker_host else ""
        config = make_config(tmp_path, env={"WORKER_HELD_SECRET": HOST_SECRET}, extra=f"""
            [apps.pushed]
            host = "github"
            repo = "acme/pushed"
            clone_url = "{origin.path}"
            secret_env = "SHOP_SECRET"
            project = "{project}"
            {engine}
        """)
        store = open_store(config, redis)
        dep = store.intake.submit([NewDeployment("pushed", "", "refs/heads/main", Trigger.MANUAL,
                                                 forced=True)]).deployments[0]
        execute(config, store, redis, dep.id)
        done = store.get(dep.id)
        return done.state, done.error, store.logs.read(dep.id)[0]

    @pytest.mark.parametrize("attack", [
        "proc-context", "env-file", "dotenv-symlink", "dockerfile-symlink", "build-secret", "extends",
        "context-symlink",
    ])
    def test_each_read_outside_is_refused_before_the_build(
        self, attack: str, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis,
        compose_variant: str, compose_project: str, host_file: Path,
    ) -> None:
        """Each way out of the checkout ends the deployment failed, naming key and path, with nothing built
        and the host's secret in no log line or error."""
        dockerfile = f"FROM {BASE_IMAGE}\nRUN cat /run/secrets/s1 || true\n"
        files: dict[str, str] = {"Dockerfile": dockerfile}
        links: dict[str, str] = {}
        web, top, key = "    build: .\n", "", ""
        if attack == "proc-context":
            web, key = f"    build: /proc/{os.getpid()}\n", "services.web.build.context"
        elif attack == "env-file":
            web, key = f"    build: .\n    env_file: {host_file}\n", "services.web.env_file"
        elif attack == "dotenv-symlink":
            links[".env"], key = str(host_file), ".env"
        elif attack == "dockerfile-symlink":
            del files["Dockerfile"]
            links["Dockerfile"], key = str(host_file), "services.web.build.dockerfile"
        elif attack == "build-secret":
            version = 'version: "3.8"\n' if compose_variant == "v1" else ""
            web = "    build: .\n    secrets: [s1]\n"
            top, key = f"{version}secrets:\n  s1:\n    file: {host_file}\n", "secrets.s1.file"
        elif attack == "extends":
            web, key = f"    extends: {{file: {host_file.parent}/base.yml, service: b}}\n", "services.web.extends.file"
            (host_file.parent / "base.yml").write_text(f"services:\n  b:\n    env_file: {host_file}\n")
        elif attack == "context-symlink":
            links["ctx"], web, key = str(host_file.parent), "    build: ./ctx\n", "services.web.build.context"
        files["docker-compose.yml"] = f"{top}services:\n  web:\n{web}"
        origin = make_git_origin("pushed")
        origin.commit(f"attack: {attack}", files, symlinks=links)

        state, error, lines = self.deploy(tmp_path, origin, redis, compose_project)

        assert state is DeploymentState.FAILED, error
        assert key in error and "outside the release checkout" in error
        assert not any(line.startswith("building images") or "rolling out" in line for line in lines)
        assert not [t for t in (error, *lines) if HOST_SECRET in t]

    def test_a_bind_mount_of_a_worker_path_is_refused_on_another_engine(
        self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis,
        compose_variant: str, compose_project: str, host_file: Path,
    ) -> None:
        """With `docker_host` set, a service bind-mounting a worker directory is refused before the build."""
        origin = make_git_origin("pushed")
        origin.commit("bind the worker's secrets", {
            "Dockerfile": f"FROM {BASE_IMAGE}\n",
            "docker-compose.yml": f"services:\n  web:\n    build: .\n    volumes: ['{host_file.parent}:/stolen:ro']\n",
        })
        state, error, _ = self.deploy(tmp_path, origin, redis, compose_project,
                                      docker_host=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        assert state is DeploymentState.FAILED
        assert "services.web.volumes[0]" in error and str(host_file.parent) in error
