"""Reaching a Docker engine: which client `docker_host` gets, and telling an engine that is gone apart."""

from __future__ import annotations

from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from workers.docker_engine import DockerEngine, client_for, is_connection_failure


class TestClientFor:
    def test_tcp_host_uses_tls_from_the_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With DOCKER_TLS_VERIFY and DOCKER_CERT_PATH set, as for the docker CLI, a tcp:// docker_host speaks TLS."""
        for name in ("ca.pem", "cert.pem", "key.pem"):
            (tmp_path / name).write_text("not a real certificate\n")
        monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        with pytest.raises(docker.errors.DockerException) as caught:
            client_for("tcp://127.0.0.1:1", timeout=2)
        assert "HTTPSConnectionPool" in str(caught.value)

    def test_tcp_host_without_tls_settings_speaks_plain_http(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without them a tcp:// docker_host is plain HTTP, as `docker -H tcp://...` is."""
        monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
        monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
        with pytest.raises(docker.errors.DockerException) as caught:
            client_for("tcp://127.0.0.1:1", timeout=2)
        assert "HTTPConnectionPool" in str(caught.value)

    def test_ssh_host_goes_through_the_ssh_binary(self, capfd: pytest.CaptureFixture[str]) -> None:
        """An ssh:// docker_host runs the ssh binary (its config, keys and agent), as the docker CLI does."""
        with pytest.raises(docker.errors.DockerException) as caught:
            client_for("ssh://nobody@127.0.0.1:1", timeout=5)
        assert "paramiko" not in str(caught.value)
        assert "ssh: connect to host 127.0.0.1 port 1" in capfd.readouterr().err


class TestEngineGone:
    def test_connection_failures_are_told_apart_from_answers(self) -> None:
        """Refused or reset connections mean the engine is gone; an error the engine answered does not."""
        assert is_connection_failure(requests.exceptions.ConnectionError("refused"))
        assert is_connection_failure(requests.exceptions.ReadTimeout("slow"))
        assert is_connection_failure(docker.errors.DockerException("Error while fetching server API version"))
        assert not is_connection_failure(docker.errors.NotFound("no such container"))
        assert not is_connection_failure(docker.errors.APIError("conflict"))
        assert not is_connection_failure(ValueError("a bug"))

    def test_answers_only_when_the_engine_takes_a_new_connection(self, tmp_path: Path) -> None:
        """`answers` is false for a socket nobody listens on, and `wait_until_answers` gives up in time."""
        gone = DockerEngine(client=None, docker_host=f"unix://{tmp_path / 'docker.sock'}")  # type: ignore[arg-type]
        assert not gone.answers(timeout=1)
        assert not gone.wait_until_answers(0.3)

    @pytest.mark.docker
    def test_the_running_engine_answers(self, docker_client: docker.DockerClient) -> None:
        """The engine the tests use answers a ping on a new connection."""
        engine = DockerEngine.connect()
        try:
            assert engine.answers()
        finally:
            engine.close()
