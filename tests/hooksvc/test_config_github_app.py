"""`[hosts.*] app_id`, `private_key_file`, `installation_id`: GitHub App credentials, validated
without ever showing the key, and never together with a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooksvc.cli import main
from hooksvc.config import parse_config
from hooksvc.errors import ConfigError
from tests.helpers.github_app import write_app_key, write_ec_key

APP = """
[hosts.gh]
kind = "{kind}"
api_url = "https://api.github.com"
{host_keys}

[apps.shop]
host = "gh"
repo = "acme/shop"
clone_url = "https://github.com/acme/shop.git"
secret_env = "SHOP_SECRET"
"""
ENV = {"SHOP_SECRET": "shop-webhook-secret", "GH_TOKEN": "gh-personal-token-123"}


def config_text(host_keys: str, kind: str = "github") -> str:
    return APP.format(kind=kind, host_keys=host_keys)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/hooksvc.toml", ENV)
    return info.value.problems


class TestValidApp:
    def test_app_credentials_are_read(self, tmp_path: Path) -> None:
        """app_id, the key's PEM text and installation_id land in `host.app`; the host has no token."""
        key = write_app_key(tmp_path)
        config = parse_config(config_text(f'app_id = 4242\nprivate_key_file = "{key}"\ninstallation_id = 77'),
                              "c.toml", ENV)
        host = config.hosts["gh"]
        assert host.token is None and host.app is not None and host.has_credentials
        assert (host.app.app_id, host.app.installation_id, host.app.private_key_file) == (4242, 77, key)
        assert host.app.private_key.reveal() == key.read_text()
        assert "PRIVATE KEY" not in repr(host)
        assert key.read_text() in config.secrets()

    def test_installation_id_is_optional(self, tmp_path: Path) -> None:
        """Without installation_id the installation is found per repository later."""
        key = write_app_key(tmp_path)
        host = parse_config(config_text(f'app_id = 4242\nprivate_key_file = "{key}"'), "c.toml", ENV).hosts["gh"]
        assert host.app is not None and host.app.installation_id is None


class TestInvalidApp:
    def test_token_and_app_together_is_an_error(self, tmp_path: Path) -> None:
        """A host with both a token and App credentials is refused, naming the key."""
        key = write_app_key(tmp_path)
        problems = problems_of(config_text(f'token_env = "GH_TOKEN"\napp_id = 4242\nprivate_key_file = "{key}"'))
        assert any("hosts.gh.app_id: give either a token" in p for p in problems), problems

    def test_app_id_and_key_need_each_other(self, tmp_path: Path) -> None:
        """app_id without private_key_file (and the reverse) names the missing key."""
        assert any("hosts.gh.private_key_file: required" in p for p in problems_of(config_text("app_id = 4242")))
        key = write_app_key(tmp_path)
        assert any("hosts.gh.app_id: required" in p
                   for p in problems_of(config_text(f'private_key_file = "{key}"')))

    @pytest.mark.parametrize("value", ["0", "-3", '"4242"', "true"])
    def test_app_id_must_be_a_positive_number(self, tmp_path: Path, value: str) -> None:
        """A non-numeric or non-positive app_id is named with its value."""
        key = write_app_key(tmp_path)
        problems = problems_of(config_text(f'app_id = {value}\nprivate_key_file = "{key}"'))
        assert any(p.startswith("/etc/hooksvc.toml: hosts.gh.app_id:") for p in problems), problems

    def test_a_missing_key_file_is_named(self, tmp_path: Path) -> None:
        """A key file that does not exist is named with the OS's reason."""
        problems = problems_of(config_text(f'app_id = 4242\nprivate_key_file = "{tmp_path}/nope.pem"'))
        assert any("hosts.gh.private_key_file: cannot read" in p and "No such file" in p for p in problems)

    def test_an_unreadable_key_file_is_named(self, tmp_path: Path) -> None:
        """A key path that cannot be read (here a directory: the tests may run as root) is named with the reason."""
        problems = problems_of(config_text(f'app_id = 4242\nprivate_key_file = "{tmp_path}"'))
        assert any("hosts.gh.private_key_file: cannot read" in p and "Is a directory" in p for p in problems)

    def test_a_file_that_is_no_key_is_refused_without_quoting_it(self, tmp_path: Path) -> None:
        """Garbage in the key file is refused; the message quotes none of the file."""
        bad = tmp_path / "bad.pem"
        bad.write_text("-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END RSA PRIVATE KEY-----\n")
        problems = problems_of(config_text(f'app_id = 4242\nprivate_key_file = "{bad}"'))
        assert any("is not an unencrypted PEM private key" in p for p in problems), problems
        assert not any("c2VjcmV0" in p for p in problems)

    def test_a_key_that_is_not_rsa_is_refused(self, tmp_path: Path) -> None:
        """An EC key parses but cannot sign RS256: refused as not RSA."""
        problems = problems_of(config_text(f'app_id = 4242\nprivate_key_file = "{write_ec_key(tmp_path)}"'))
        assert any("not an RSA private key" in p for p in problems), problems

    def test_app_keys_on_another_host_kind(self, tmp_path: Path) -> None:
        """GitHub App credentials on a Gitea host are refused."""
        key = write_app_key(tmp_path)
        problems = problems_of(config_text(f'app_id = 4242\nprivate_key_file = "{key}"', kind="gitea"))
        assert any('are for kind = "github" hosts' in p for p in problems), problems


class TestCheckConfig:
    def test_check_config_reports_token_and_app(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """`hooksvc check-config` fails on a host with both a token and an App, and shows no key."""
        key = write_app_key(tmp_path)
        path = tmp_path / "hooksvc.toml"
        path.write_text(config_text(f'token_env = "GH_TOKEN"\napp_id = 4242\nprivate_key_file = "{key}"'))
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        code = main(["check-config", "--config", str(path)])
        out = capsys.readouterr()
        assert code != 0
        assert "give either a token" in out.err + out.out
        assert "PRIVATE KEY" not in out.err + out.out
