"""The host registry: the one list of webhook routes and host kinds that config, routing and the
workers read."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooksvc import providers
from hooksvc.config import parse_config
from hooksvc.errors import ConfigError
from hooksvc.providers import HOST_KINDS, PROVIDERS, Provider, host_kind
from tests.helpers.config import MORE_HOSTS_APPS, MORE_HOSTS_ENV, make_config

#: Every host hooksvc speaks to, by route, with the kinds each route serves (SPEC §14 and before).
EXPECTED = {
    "github": ["github"],
    "gitea": ["gitea", "forgejo"],
    "gitlab": ["gitlab"],
    "git": ["git"],
    "bitbucket": ["bitbucket"],
    "bitbucket-server": ["bitbucket-server"],
    "gogs": ["gogs"],
}


class TestRegistry:
    def test_every_host_is_registered_by_its_module(self) -> None:
        """Each provider module's `PROVIDER` is found, under its route, with the kinds it serves."""
        assert {route: [k.name for k in p.kinds] for route, p in PROVIDERS.items()} == EXPECTED

    def test_host_kinds_are_the_providers_kinds(self) -> None:
        """`HOST_KINDS` is derived from the providers: every kind once, pointing at its provider's record."""
        assert sorted(HOST_KINDS) == sorted(k for kinds in EXPECTED.values() for k in kinds)
        for provider in PROVIDERS.values():
            for kind in provider.kinds:
                assert HOST_KINDS[kind.name] is kind

    def test_only_hosts_without_an_api_declare_no_statuses(self) -> None:
        """A plain git server and Gogs have no commit-status API; every other kind has one."""
        assert sorted(name for name, kind in HOST_KINDS.items() if not kind.statuses) == ["git", "gogs"]

    def test_unknown_kind_names_the_known_ones(self) -> None:
        """Looking up a kind that no provider declares fails with the list of known kinds."""
        with pytest.raises(KeyError, match="unknown host kind 'svn'.*bitbucket.*gogs"):
            host_kind("svn")

    def test_two_providers_may_not_share_a_route_or_kind(self) -> None:
        """A second provider claiming a route or a kind is refused, naming it."""
        github = PROVIDERS["github"]
        clash = Provider(route="github", kinds=(), signed_bytes=github.signed_bytes, verify=github.verify,
                         parse=github.parse)
        with pytest.raises(ValueError, match="/hooks/github"):
            providers._by_route((github, clash))
        same_kind = Provider(route="mirror", kinds=github.kinds, signed_bytes=github.signed_bytes,
                             verify=github.verify, parse=github.parse)
        with pytest.raises(ValueError, match="'github' is declared by two providers"):
            providers._by_kind((github, same_kind))


class TestConfigReadsTheRegistry:
    def test_new_hosts_are_valid_kinds(self, tmp_path: Path) -> None:
        """Bitbucket Cloud, Bitbucket Data Center and Gogs hosts and their apps load."""
        config = make_config(tmp_path, MORE_HOSTS_APPS, env=MORE_HOSTS_ENV)
        assert {config.apps[a].host_kind for a in ("api", "console", "docs")} == {
            "bitbucket", "bitbucket-server", "gogs"}

    def test_unknown_kind_lists_every_registered_kind(self, tmp_path: Path) -> None:
        """A kind no provider declares is refused with the registry's list of kinds."""
        text = '[hosts.x]\nkind = "sourcehut"\napi_url = "https://x"\n'
        with pytest.raises(ConfigError) as info:
            parse_config(text, str(tmp_path / "hooksvc.toml"), {})
        message = str(info.value)
        assert "hosts.x.kind" in message and "sourcehut" in message
        assert all(kind in message for kind in HOST_KINDS)

    def test_bitbucket_with_a_token_needs_public_url(self, tmp_path: Path) -> None:
        """Bitbucket refuses statuses without a link: a token but no public_url is refused, naming both."""
        text = '[hosts.bb]\nkind = "bitbucket-server"\napi_url = "https://bb"\ntoken_env = "T"\n'
        with pytest.raises(ConfigError, match=r"hosts\.bb\.token.*\[server\] public_url"):
            parse_config(text, str(tmp_path / "hooksvc.toml"), {"T": "token"})
        config = parse_config('[server]\npublic_url = "https://deploy.example.com"\n' + text,
                              str(tmp_path / "hooksvc.toml"), {"T": "token"})
        assert config.hosts["bb"].token is not None

    def test_a_host_with_statuses_needs_api_url(self, tmp_path: Path) -> None:
        """Bitbucket without `api_url` is refused naming the key; Gogs, which has no status API, is not."""
        text = '[hosts.bb]\nkind = "bitbucket"\n[hosts.gogs]\nkind = "gogs"\n'
        with pytest.raises(ConfigError) as info:
            parse_config(text, str(tmp_path / "hooksvc.toml"), {})
        assert "hosts.bb.api_url" in str(info.value) and "hosts.gogs" not in str(info.value)
