"""Configs for tests: `make_config` is flaskr's `test_config`, a whole valid config in one call."""

from __future__ import annotations

import os
import textwrap
import urllib.parse
from pathlib import Path

from hooksvc.config import Config, parse_config


def _test_redis_url() -> str:
    """The test database: a developer's data in db 0 is never flushed.

    Tests flush their database, so each pytest-xdist worker takes its own, counting down from the
    given one (gw0: 15, gw1: 14, ...).
    """
    url = os.environ.get("HOOKSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urllib.parse.urlsplit(url)
    database = int(parts.path.strip("/") or 0) - int(worker[2:])
    if database < 0:
        raise RuntimeError(f"{url} leaves no Redis database for pytest-xdist worker {worker}")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


TEST_REDIS_URL = _test_redis_url()


def make_config(tmp_path: Path, extra: str = "", env: dict[str, str] | None = None, **server: str) -> Config:
    """A valid config with a GitHub, a Gitea and a GitLab app, plus whatever `extra` TOML adds."""
    environ = {
        "HOOKSVC_API_TOKENS": "operator-token-1,operator-token-2",
        "SHOP_SECRET": "shop-webhook-secret",
        "BLOG_SECRET": "blog-webhook-secret",
        "WIKI_SECRET": "wiki-webhook-secret",
        "GH_TOKEN": "gh-api-token",
        "REDIS_URL": TEST_REDIS_URL,
        **(env or {}),
    }
    server_lines = "\n".join(f"{k} = {v}" for k, v in server.items())
    text = textwrap.dedent(f"""
        [server]
        public_url = "http://deploy.test"
        {server_lines}

        [worker]
        state_dir = "{tmp_path / 'state'}"

        [hosts.github]
        kind = "github"
        api_url = "http://127.0.0.1:9/github"
        token_env = "GH_TOKEN"

        [hosts.gitea]
        kind = "gitea"
        api_url = "http://127.0.0.1:9/gitea"
        token_env = "GH_TOKEN"

        [hosts.gitlab]
        kind = "gitlab"
        api_url = "http://127.0.0.1:9/gitlab"
        token_env = "GH_TOKEN"

        [apps.shop]
        host = "github"
        repo = "acme/shop"
        clone_url = "{tmp_path / 'origin-shop.git'}"
        branch = "main"
        secret_env = "SHOP_SECRET"

        [apps.blog]
        host = "gitea"
        repo = "acme/blog"
        clone_url = "{tmp_path / 'origin-blog.git'}"
        tags = "v*"
        secret_env = "BLOG_SECRET"

        [apps.wiki]
        host = "gitlab"
        repo = "acme/wiki"
        clone_url = "{tmp_path / 'origin-wiki.git'}"
        branch = "release/*"
        secret_env = "WIKI_SECRET"
    """) + textwrap.dedent(extra)
    return parse_config(text, str(tmp_path / "hooksvc.toml"), environ)


def write_config(tmp_path: Path, redis_url: str | None, port: int = 8080, job_timeout: str = "30m",
                 server: str = "", extra: str = "") -> Path:
    """A config file for hooksvc processes a test starts: one GitHub app `shop` (secret from
    `$SHOP_SECRET`), `state_dir` under `tmp_path`; no `[redis]` table when `redis_url` is None.
    `server` adds lines to `[server]`, `extra` more tables."""
    redis_table = f'[redis]\nurl = "{redis_url}"\n' if redis_url else ""
    path = tmp_path / "hooksvc.toml"
    path.write_text(textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        {server}
        [worker]
        state_dir = "{tmp_path / 'state'}"
        job_timeout = "{job_timeout}"
        [hosts.gh]
        kind = "github"
        api_url = "https://api.github.com"
        [apps.shop]
        host = "gh"
        repo = "acme/shop"
        clone_url = "{tmp_path / 'origin.git'}"
        secret_env = "SHOP_SECRET"
    """) + textwrap.dedent(extra) + redis_table)
    return path


#: `make_config`'s `extra` for an app `site` on a plain git server (a bare repository's hook), its
#: secret from `$SITE_SECRET`.
PLAIN_GIT_APP = """
    [hosts.server]
    kind = "git"

    [apps.site]
    host = "server"
    clone_url = "/srv/git/site.git"
    secret_env = "SITE_SECRET"
"""


#: `make_config`'s `extra` for one app on each of Bitbucket Cloud (`api`, workspace `acme`), Bitbucket
#: Data Center (`console`, project `OPS`) and Gogs (`docs`, no status API, so no `api_url`), each
#: deploying `main`; their secrets are in `MORE_HOSTS_ENV`.
MORE_HOSTS_APPS = """
    [hosts.bitbucket]
    kind = "bitbucket"
    api_url = "http://127.0.0.1:9/bitbucket"
    token_env = "GH_TOKEN"

    [hosts.bitbucket-dc]
    kind = "bitbucket-server"
    api_url = "http://127.0.0.1:9/bitbucket-server"
    token_env = "GH_TOKEN"

    [hosts.gogs]
    kind = "gogs"

    [apps.api]
    host = "bitbucket"
    repo = "acme/api"
    clone_url = "/srv/git/api.git"
    branch = "main"
    secret_env = "API_SECRET"

    [apps.console]
    host = "bitbucket-dc"
    repo = "OPS/console"
    clone_url = "/srv/git/console.git"
    branch = "main"
    secret_env = "CONSOLE_SECRET"

    [apps.docs]
    host = "gogs"
    repo = "acme/docs"
    clone_url = "/srv/git/docs.git"
    branch = "main"
    secret_env = "DOCS_SECRET"
"""
MORE_HOSTS_ENV = {
    "API_SECRET": "api-webhook-secret",
    "CONSOLE_SECRET": "console-webhook-secret",
    "DOCS_SECRET": "docs-webhook-secret",
}


#: `make_config`'s (or `write_config`'s) `extra` for two operators besides the api tokens' admins: vera,
#: a viewer, and dan, a deployer, their tokens from `$VERA_TOKEN` and `$DAN_TOKEN` (`OPERATOR_ENV`).
OPERATORS = """
    [operators.vera]
    token_env = "VERA_TOKEN"
    role = "viewer"

    [operators.dan]
    token_env = "DAN_TOKEN"
    role = "deployer"
"""
VERA_TOKEN = "vera-viewer-token-0001"
DAN_TOKEN = "dan-deployer-token-0002"  # noqa: S105 - a test operator's token
OPERATOR_ENV = {"VERA_TOKEN": VERA_TOKEN, "DAN_TOKEN": DAN_TOKEN}
def frozen_app(tmp_path: Path, windows: str, timezone: str | None = "Europe/Berlin") -> str:
    """`make_config`'s `extra` for a GitHub app `cafe` (secret from `$SHOP_SECRET`) with these `freeze`
    windows (TOML strings, comma-separated) read in `timezone` (None: the key left out)."""
    zone_line = f'timezone = "{timezone}"' if timezone is not None else ""
    return f"""
        [apps.cafe]
        host = "github"
        repo = "acme/cafe"
        clone_url = "{tmp_path / 'origin-cafe.git'}"
        secret_env = "SHOP_SECRET"
        freeze = [{windows}]
        {zone_line}
    """
