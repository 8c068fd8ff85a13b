"""`[apps.NAME.previews]` (SPEC §13): read into `PreviewsConfig`, every problem naming its key."""

from __future__ import annotations

import pytest

from hooksvc import defaults
from hooksvc.config import parse_config
from hooksvc.deployments import Deployment, NewDeployment, Trigger
from hooksvc.errors import ConfigError
from hooksvc.previews import PreviewsConfig, preview_environment, preview_labels, preview_project, preview_url
from tests.hooksvc.test_config import MINIMAL

ENV = {"SHOP_SECRET": "s3"}
PORTS = '\n[apps.shop.previews]\nurl = "http://127.0.0.1:{port}/"\nports = "9100-9199"\n'


def previews_of(text: str) -> PreviewsConfig | None:
    return parse_config(MINIMAL + text, "/etc/hooksvc.toml", ENV).apps["shop"].previews


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + text, "/etc/hooksvc.toml", ENV)
    return info.value.problems


class TestReading:
    def test_an_app_without_the_table_has_no_previews(self) -> None:
        """Previews are off unless the app has a previews table."""
        assert previews_of("") is None

    def test_ports_mode_gets_documented_defaults(self) -> None:
        """With only url and ports, every other key takes its default."""
        previews = previews_of(PORTS)
        assert previews == PreviewsConfig(url="http://127.0.0.1:{port}/", ports=(9100, 9199))
        assert previews is not None and previews.enabled and not previews.allow_forks
        assert (previews.max, previews.on_max, previews.ttl) == (
            defaults.PREVIEWS_MAX, "refuse", defaults.PREVIEW_TTL_SECONDS)
        assert previews.service is None and previews.services == () and previews.labels is None

    def test_every_key_is_read(self) -> None:
        """Labels mode with every key set is read as written."""
        previews = previews_of("""
[apps.shop.previews]
enabled = false
url = "https://pr-{number}.shop.example.com"
labels = { "traefik.http.routers.pr{number}.rule" = "Host(`pr-{number}.shop.example.com`)" }
service = "web"
services = ["web", "db"]
max = 2
on_max = "evict-oldest"
ttl = "36h"
allow_forks = true
environment = { BASE_URL = "{url}", PR = "{number}" }
""")
        assert previews == PreviewsConfig(
            url="https://pr-{number}.shop.example.com", enabled=False, service="web", ports=None,
            labels={"traefik.http.routers.pr{number}.rule": "Host(`pr-{number}.shop.example.com`)"},
            max=2, on_max="evict-oldest", ttl=36 * 3600.0, services=("web", "db"),
            environment={"BASE_URL": "{url}", "PR": "{number}"}, allow_forks=True)


class TestProblems:
    @pytest.mark.parametrize(("text", "message"), [
        ('\n[apps.shop.previews]\nports = "9100-9199"\n', "apps.shop.previews.url: required"),
        ('\n[apps.shop.previews]\nurl = "pr-{number}.example.com"\nports = "9100-9199"\n',
         "apps.shop.previews.url: expected an http(s) URL template"),
        ('\n[apps.shop.previews]\nurl = "http://x/{branch}"\nports = "9100-9199"\n',
         "apps.shop.previews.url: unknown placeholder {branch}"),
        ('\n[apps.shop.previews]\nurl = "http://x:{port}/"\nlabels = { a = "b" }\n',
         "apps.shop.previews.url: unknown placeholder {port}"),
        ('\n[apps.shop.previews]\nurl = "http://x/{number"\nports = "9100-9199"\n',
         "apps.shop.previews.url: "),
        ('\n[apps.shop.previews]\nurl = "http://x/"\n', "apps.shop.previews: give exactly one of ports"),
        ('\n[apps.shop.previews]\nurl = "http://x/"\nports = "9100-9199"\nlabels = { a = "b" }\n',
         "apps.shop.previews: give exactly one of ports"),
        ('\n[apps.shop.previews]\nurl = "http://x/"\nports = "9199-9100"\n', "apps.shop.previews.ports: expected"),
        ('\n[apps.shop.previews]\nurl = "http://x/"\nports = 9100\n', "apps.shop.previews.ports: expected"),
        ('\n[apps.shop.previews]\nurl = "http://x/"\nlabels = { a = 1 }\n', "apps.shop.previews.labels.a: expected"),
        ('\n[apps.shop.previews]\nurl = "http://x/"\nlabels = { a = "{sha}" }\n',
         "apps.shop.previews.labels.a: unknown placeholder {sha}"),
        (PORTS + "max = 0\n", "apps.shop.previews.max: expected at least 1"),
        (PORTS + 'on_max = "wait"\n', "apps.shop.previews.on_max: expected one of 'refuse', 'evict-oldest'"),
        (PORTS + 'ttl = "soon"\n', "apps.shop.previews.ttl: expected a duration"),
        (PORTS + 'services = ["web", 3]\n', "apps.shop.previews.services[1]: expected a service name"),
        (PORTS + 'service = "api"\nservices = ["web"]\n', "apps.shop.previews.service: 'api' is not one of"),
        (PORTS + 'environment = { "A-B" = "x" }\n', "apps.shop.previews.environment.A-B: expected a variable name"),
        (PORTS + 'environment = { A = "{port}" }\n', "apps.shop.previews.environment.A: unknown placeholder"),
        (PORTS + 'allow_forks = "yes"\n', "apps.shop.previews.allow_forks: expected bool"),
        (PORTS + 'wait = true\n', "apps.shop.previews.wait: unknown key"),
        ("previews = 3\n", "apps.shop.previews: expected a table"),
        ('strategy = "swarm"\n' + PORTS, "apps.shop.previews: strategy 'swarm' runs no previews"),
    ])
    def test_bad_values_name_the_key(self, text: str, message: str) -> None:
        """check-config refuses a bad previews table with the file and the key at fault."""
        problems = problems_of(text)
        assert [p for p in problems if p.startswith(f"/etc/hooksvc.toml: {message}")], problems


class TestHosts:
    def test_hosts_without_pull_request_events_get_no_previews(self) -> None:
        """An app on a plain git server (or Bitbucket, Gogs) cannot have previews: nothing announces PRs."""
        text = """
[hosts.server]
kind = "git"

[apps.site]
host = "server"
clone_url = "/srv/git/site.git"
secret_env = "SHOP_SECRET"

[apps.site.previews]
url = "http://127.0.0.1:{port}/"
ports = "9100-9199"
"""
        assert [p for p in problems_of(text) if "apps.site.previews: hosts of kind 'git' send no pull-request" in p]


class TestNames:
    def test_project_and_url_fill_the_templates(self) -> None:
        """A preview's compose project is `<project>-pr-<n>`; its URL fills {number} and {port}."""
        previews = PreviewsConfig(url="http://pr-{number}.example.com:{port}/", ports=(9100, 9199))
        assert preview_project("shop", 12) == "shop-pr-12"
        assert preview_url(previews, 12, 9104) == "http://pr-12.example.com:9104/"
        with pytest.raises(ValueError, match="names \\{port\\}"):
            preview_url(previews, 12, None)

    def test_labels_and_environment_fill_the_templates(self) -> None:
        """Label names and values get the number; environment values the number and the URL."""
        previews = PreviewsConfig(url="https://pr-{number}.example.com", labels={"r.pr{number}": "Host(pr-{number})"},
                                  environment={"BASE": "{url}/", "N": "{number}"})
        assert preview_labels(previews, 7) == {"r.pr7": "Host(pr-7)"}
        assert preview_environment(previews, 7, "https://pr-7.example.com") == {
            "BASE": "https://pr-7.example.com/", "N": "7"}


class TestDeploymentRecord:
    def test_preview_number_round_trips_and_is_null_for_the_app(self) -> None:
        """A preview's deployment records its PR number; the app's own says `"preview": null`."""
        preview = Deployment.create("d1", NewDeployment("shop", "a" * 40, "refs/pull/3/head", Trigger.PUSH, preview=3))
        assert Deployment.from_fields(preview.to_fields()).preview == 3
        assert preview.to_json()["preview"] == 3
        own = Deployment.create("d2", NewDeployment("shop", "a" * 40, "refs/heads/main", Trigger.PUSH))
        assert Deployment.from_fields(own.to_fields()).preview is None
        assert own.to_json()["preview"] is None
