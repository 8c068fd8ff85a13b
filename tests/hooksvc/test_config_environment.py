"""The deployment environment keys of an app: `environment` and `environment_url`."""

from __future__ import annotations

import pytest

from hooksvc.config import parse_config
from hooksvc.errors import ConfigError
from tests.hooksvc.test_config import MINIMAL

APP = MINIMAL
ENV = {"SHOP_SECRET": "s3"}


class TestEnvironment:
    def test_defaults_to_the_app_name_without_url(self) -> None:
        """Without the keys, deployments go to an environment named like the app, with no URL."""
        app = parse_config(APP, "/etc/hooksvc.toml", ENV).apps["shop"]
        assert (app.environment, app.environment_url) == ("shop", None)

    def test_both_keys_are_read(self) -> None:
        """`environment` and `environment_url` are taken as written; "" turns recording off."""
        text = APP + 'environment = "production"\nenvironment_url = "https://shop.example.com/"\n'
        app = parse_config(text, "/etc/hooksvc.toml", ENV).apps["shop"]
        assert (app.environment, app.environment_url) == ("production", "https://shop.example.com/")
        off = parse_config(APP + 'environment = ""\n', "/etc/hooksvc.toml", ENV).apps["shop"]
        assert off.environment == ""

    @pytest.mark.parametrize(("line", "message"), [
        ('environment_url = "shop.example.com"', "apps.shop.environment_url: expected an http(s) URL"),
        ('environment_url = "https://"', "apps.shop.environment_url: expected an http(s) URL"),
        ('environment = "/production"', "apps.shop.environment: an environment name has at most 255"),
        ('environment = "prod\\nuction"', "apps.shop.environment: an environment name has at most 255"),
        ("environment = 1", "apps.shop.environment: expected str"),
    ])
    def test_bad_values_name_the_key(self, line: str, message: str) -> None:
        """A bad environment or URL is refused at start-up with the file and the key named."""
        with pytest.raises(ConfigError) as info:
            parse_config(APP + line + "\n", "/etc/hooksvc.toml", ENV)
        assert [p for p in info.value.problems if message in p and p.startswith("/etc/hooksvc.toml: ")]
