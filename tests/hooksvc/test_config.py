"""Configuration: validated fully, every problem named with file and key, secrets never in the file."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc import defaults
from hooksvc.cli import main
from hooksvc.config import Secret, clone_url_credentials, parse_config, parse_duration
from hooksvc.errors import ConfigError
from tests.helpers.config import TEST_REDIS_URL, make_config

MINIMAL = """
[hosts.gh]
kind = "github"
api_url = "https://api.github.com"

[apps.shop]
host = "gh"
repo = "acme/shop"
clone_url = "https://github.com/acme/shop.git"
secret_env = "SHOP_SECRET"
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/hooksvc.toml", env or {})
    return info.value.problems


class TestValidConfig:
    def test_minimal_config_gets_documented_defaults(self) -> None:
        """A config with one host and one app fills every other key with its default."""
        config = parse_config(MINIMAL, "/etc/hooksvc.toml", {"SHOP_SECRET": "s3"})
        app = config.apps["shop"]
        assert app.branch == "main" and app.project == "shop" and app.strategy == "rolling"
        assert app.status_context == "hooksvc/shop"
        assert app.compose_files == ("docker-compose.yml",)
        assert config.server.max_body_bytes == 5 * 1024 * 1024
        assert config.worker.keep_deployments == 200
        assert app.secret.reveal() == "s3"

    def test_config_is_immutable(self, tmp_path: Path) -> None:
        """The loaded config cannot be changed after validation."""
        config = make_config(tmp_path)
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.server.public_read = True  # type: ignore[misc]

    def test_example_config_is_valid(self, tmp_path: Path) -> None:
        """config.example.toml validates once its secret variables and key file exist."""
        root = Path(__file__).resolve().parents[2]
        key = tmp_path / "deploy_key"
        key.write_text("not a real key")
        text = (root / "config.example.toml").read_text().replace("/run/secrets/shop_deploy_key", str(key))
        env = {
            "HOOKSVC_API_TOKENS": "example-api-token-1", "GITHUB_TOKEN": "g", "GITEA_TOKEN": "g", "GITLAB_TOKEN": "g",
            "SHOP_WEBHOOK_SECRET": "s", "BLOG_WEBHOOK_SECRET": "s", "WIKI_WEBHOOK_SECRET": "s",
            "NOTIFY_SECRET": "n", "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/x",
            "ALICE_TOKEN": "example-alice-token-1",
        }
        config = parse_config(text, "config.example.toml", env)
        assert set(config.apps) == {"shop", "blog", "wiki"}
        assert config.operators["alice"].role.value == "deployer"
        assert config.apps["shop"].compose_files == ("docker-compose.yml", "docker-compose.prod.yml")

    def test_secret_from_file(self, tmp_path: Path) -> None:
        """`*_file` reads a secret from a file, as Docker secrets provide them."""
        secret_file = tmp_path / "shop.secret"
        secret_file.write_text("from-file\n")
        text = MINIMAL.replace('secret_env = "SHOP_SECRET"', f'secret_file = "{secret_file}"')
        assert parse_config(text, "x.toml", {}).apps["shop"].secret.reveal() == "from-file"

    def test_redis_url_env_overrides_file(self) -> None:
        """$REDIS_URL overrides `[redis] url` and marks Redis as explicitly configured."""
        config = parse_config(MINIMAL, "x.toml", {"SHOP_SECRET": "s", "REDIS_URL": "redis://10.0.0.9:6379/2"})
        assert config.redis.url == "redis://10.0.0.9:6379/2" and not config.redis.implicit

    def test_ref_matching_with_globs(self, tmp_path: Path) -> None:
        """Branch and tag patterns are globs over the short name, and a branch never matches a tag."""
        config = make_config(tmp_path)
        assert config.apps["wiki"].matches_ref("refs/heads/release/1.2")
        assert not config.apps["wiki"].matches_ref("refs/heads/main")
        assert config.apps["blog"].matches_ref("refs/tags/v1.0")
        assert not config.apps["blog"].matches_ref("refs/heads/v1.0")

    @pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("1.5m", 90), ("2h", 7200), ("250ms", 0.25), (12, 12)])
    def test_durations(self, text: str | int, seconds: float) -> None:
        """Durations accept s, m, h, ms and bare numbers of seconds."""
        assert parse_duration(text) == seconds


class TestSwarmConfig:
    def test_swarm_with_a_registry_is_accepted(self) -> None:
        """`strategy = "swarm"` with `registry = "HOST:PORT"` (a name or an address) is a valid app."""
        for registry in ("registry.example.com:5000", "127.0.0.1:5000"):
            text = MINIMAL + f'strategy = "swarm"\nregistry = "{registry}"\n'
            app = parse_config(text, "/etc/hooksvc.toml", {"SHOP_SECRET": "s"}).apps["shop"]
            assert (app.strategy, app.registry) == ("swarm", registry)


class TestInvalidConfig:
    def test_keep_deployments_must_keep_at_least_one(self) -> None:
        """`[worker] keep_deployments` below 1 would delete every record: refused with the key named."""
        problems = problems_of("[worker]\nkeep_deployments = 0\n" + MINIMAL, {"SHOP_SECRET": "s"})
        assert "/etc/hooksvc.toml: worker.keep_deployments: expected at least 1, got 0" in problems

    def test_every_problem_is_reported_at_once_with_file_and_key(self) -> None:
        """Several mistakes are all listed, each naming the file and the key."""
        text = MINIMAL + '\nstrategy = "blue-green"\nhealth_timeout = "soon"\n[server]\nlisten = "nowhere"\n'
        problems = problems_of(text)
        joined = "\n".join(problems)
        assert ("/etc/hooksvc.toml: apps.shop.strategy: expected one of rolling, recreate, swarm, "
                "got 'blue-green'") in joined
        assert "apps.shop.health_timeout" in joined
        assert "server.listen: expected HOST:PORT" in joined
        assert "apps.shop.secret_env: environment variable SHOP_SECRET is not set" in joined
        assert all(p.startswith("/etc/hooksvc.toml: ") for p in problems)

    @pytest.mark.parametrize("registry", ["http://registry:5000", "registry", "registry:5000/team", "registry:99999",
                                          "user:pw@registry:5000", "-registry:5000"])
    def test_a_registry_that_is_not_host_and_port_is_refused(self, registry: str) -> None:
        """`registry` is HOST:PORT only: a scheme, path, credentials or a bad port are named with the key."""
        problems = problems_of(MINIMAL + f'strategy = "swarm"\nregistry = "{registry}"\n', {"SHOP_SECRET": "s"})
        assert problems == [f"/etc/hooksvc.toml: apps.shop.registry: expected HOST:PORT of a registry, such as "
                            f"'registry.example.com:5000' (no scheme, path or credentials), got {registry!r}"]

    def test_a_registry_without_the_swarm_strategy_is_refused(self) -> None:
        """Only swarm pushes images: a registry on a rolling app would be silently unused, so it is refused."""
        problems = problems_of(MINIMAL + 'registry = "127.0.0.1:5000"\n', {"SHOP_SECRET": "s"})
        assert problems == ["/etc/hooksvc.toml: apps.shop.registry: only strategy 'swarm' pushes images to a "
                            "registry; remove it or set strategy = 'swarm' (got strategy 'rolling')"]

    def test_secret_written_in_the_file_is_refused(self) -> None:
        """A secret value in the file itself is an error that points at *_env and *_file."""
        text = MINIMAL.replace('secret_env = "SHOP_SECRET"', 'secret = "hunter2"')
        problems = problems_of(text)
        assert any("apps.shop.secret: secrets may not be written in the config file" in p for p in problems)
        assert not any("hunter2" in p for p in problems)

    def test_compose_files_may_not_escape_the_repository(self) -> None:
        """Compose file paths outside the repository root are refused."""
        text = MINIMAL + 'compose_files = ["../evil.yml", "/etc/compose.yml", "ok/../../x.yml", "deploy/ok.yml"]\n'
        problems = problems_of(text, {"SHOP_SECRET": "s"})
        assert sum("compose_files[" in p for p in problems) == 3
        assert not any("compose_files[3]" in p for p in problems)

    def test_unknown_keys_and_hosts_are_named(self) -> None:
        """A misspelt key and a reference to a missing host are both reported."""
        text = MINIMAL.replace('host = "gh"', 'host = "gitea"') + 'brnach = "main"\n'
        problems = problems_of(text, {"SHOP_SECRET": "s"})
        assert any("apps.shop.brnach: unknown key" in p for p in problems)
        assert any("apps.shop.host: no [hosts.gitea] table" in p for p in problems)

    def test_branch_and_tags_together_are_refused(self) -> None:
        """An app deploys either a branch or tags, not both."""
        problems = problems_of(MINIMAL + 'branch = "main"\ntags = "v*"\n', {"SHOP_SECRET": "s"})
        assert any("apps.shop.tags: give either branch or tags" in p for p in problems)

    def test_two_apps_on_one_compose_project_are_refused(self) -> None:
        """Two apps may not share one compose project on the same Docker engine."""
        text = MINIMAL + '\n[apps.shop2]\nhost = "gh"\nrepo = "acme/shop2"\nclone_url = "x"\n' \
            'secret_env = "SHOP_SECRET"\nproject = "shop"\n'
        problems = problems_of(text, {"SHOP_SECRET": "s"})
        assert any("apps.shop2.project: compose project 'shop' is already used by app 'shop'" in p for p in problems)

    def test_names_ending_in_a_line_feed_are_refused(self) -> None:
        """An app name or a compose project ending in a line feed is refused (Python's `$` let it pass)."""
        text = MINIMAL.replace("[apps.shop]", '[apps."shop\\n"]') + 'project = "shop\\n"\n'
        problems = problems_of(text, {"SHOP_SECRET": "s"})
        assert any("apps.shop\n: app names use letters" in p for p in problems), problems
        assert any(".project: " in p for p in problems), problems

    def test_invalid_toml_names_the_file(self) -> None:
        """A syntax error names the file."""
        problems = problems_of("[server\n")
        assert problems[0].startswith("/etc/hooksvc.toml: not valid TOML")


class TestNumbers:
    def test_non_finite_negative_and_huge_durations_are_refused_with_the_key(self) -> None:
        """TOML's inf and nan, a negative and an absurdly long duration are each refused, naming the key."""
        text = MINIMAL + "health_timeout = inf\nstart_grace = nan\npoll_interval = -5\n" \
            '[worker]\njob_timeout = "99999999h"\n'
        problems = problems_of(text, {"SHOP_SECRET": "s"})
        assert any("apps.shop.health_timeout: expected a finite duration, got inf" in p for p in problems)
        assert any("apps.shop.start_grace: expected a finite duration, got nan" in p for p in problems)
        assert any("apps.shop.poll_interval: expected a positive duration, got -5" in p for p in problems)
        assert any("worker.job_timeout: expected at most 168h" in p for p in problems)

    def test_negative_infinity_is_refused(self) -> None:
        """`-inf` is neither finite nor positive: refused."""
        with pytest.raises(ValueError, match="finite"):
            parse_duration(-math.inf)

    @given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=30),
                     st.from_regex(r"\d{1,400}(\.\d{1,5})?(ms|s|m|h)?", fullmatch=True)))
    def test_a_duration_is_finite_positive_and_bounded_or_refused(self, value: object) -> None:
        """Whatever the value, parse_duration returns seconds in (0, MAX_DURATION_SECONDS] or raises ValueError."""
        try:
            seconds = parse_duration(value)
        except ValueError:
            return
        assert math.isfinite(seconds) and 0 < seconds <= defaults.MAX_DURATION_SECONDS


class TestCloneUrl:
    @pytest.mark.parametrize("url", [
        "https://deploy:hunter2-password@github.com/acme/shop.git",
        "http://oauth2:hunter2-password@gitlab.example.com/acme/shop.git",
        "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/acme/shop.git",
        "https://github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz@github.com/acme/shop.git",
        "https://glpat-hunter2hunter2hunter@gitlab.com/acme/shop.git",
        "https://0123456789abcdef0123456789abcdef01234567@gitea.example.com/acme/shop.git",
        "https://deploy%3Ahunter2-password@github.com/acme/shop.git",
        "ssh://git:hunter2-password@github.com/acme/shop.git",
        "deploy:hunter2-password@github.com:acme/shop.git",
    ])
    def test_credentials_in_the_url_are_refused_without_quoting_them(self, url: str) -> None:
        """A password or token in clone_url is refused, pointing to token_env/token_file/ssh_key_file;
        the problem never quotes the URL (it would quote the credential)."""
        text = MINIMAL.replace("https://github.com/acme/shop.git", url)
        problems = problems_of(text, {"SHOP_SECRET": "s"})
        [problem] = [p for p in problems if "apps.shop.clone_url" in p]
        assert "token_env" in problem and "token_file" in problem and "ssh_key_file" in problem
        assert "hunter2" not in problem and "0123456789" not in problem and url not in problem

    @pytest.mark.parametrize("url", [
        "https://github.com/acme/shop.git",
        "ssh://git@github.com/acme/shop.git",
        "git@github.com:acme/shop.git",
        "https://x-access-token@github.com/acme/shop.git",
        "https://gitlab+deploy-token-1@gitlab.example.com/acme/shop.git",
        "/srv/git/shop.git",
        "file:///srv/git/shop.git",
    ])
    def test_urls_with_at_most_a_user_name_are_accepted(self, url: str) -> None:
        """A URL without credentials, or with a plain user name (SSH's `git@`), stays valid."""
        text = MINIMAL.replace("https://github.com/acme/shop.git", url)
        assert parse_config(text, "x.toml", {"SHOP_SECRET": "s"}).apps["shop"].clone_url == url

    @given(st.from_regex(r"[a-z][a-z0-9._+-]{0,15}", fullmatch=True),
           st.text(st.characters(blacklist_characters="/?#@", blacklist_categories=("Cs", "Cc")), min_size=1,
                   max_size=20),
           st.sampled_from(["https", "http", "ssh"]))
    def test_any_user_with_a_password_is_refused(self, user: str, password: str, scheme: str) -> None:
        """`scheme://user:password@host/...` carries a password, whatever the user and password."""
        assert clone_url_credentials(f"{scheme}://{user}:{password}@git.example.com/acme/shop.git") == "a password"


class TestSecret:
    def test_secret_never_shows_in_repr(self, tmp_path: Path) -> None:
        """Secrets print as *** in reprs of the whole config."""
        config = make_config(tmp_path)
        text = repr(config)
        for value in config.secrets():
            assert value not in text
        assert repr(Secret("x")) == "Secret('***')"


class TestSecretLengths:
    @pytest.mark.parametrize("source", ["env", "file"])
    def test_a_short_api_token_is_refused_by_position_never_by_value(self, tmp_path: Path, source: str) -> None:
        """An API token under 16 characters is a config problem naming the key, which token and its length,
        and not one of its characters."""
        tokens = "a-long-enough-token-1,x9,Sh0rtTok3n"
        path = tmp_path / "tokens"
        path.write_text(tokens)
        table = ('[server]\napi_tokens_env = "TOKENS"\n' if source == "env"
                 else f'[server]\napi_tokens_file = "{path}"\n')
        problems = problems_of(table + MINIMAL, {"SHOP_SECRET": "s" * 16, "TOKENS": tokens})
        assert [p.split(": ", 2)[1:] for p in problems] == [
            [f"server.api_tokens_{source}", "API token 2 of 3 has 2 characters: a bearer token needs at least 16 "
                                            "(make one with `openssl rand -hex 16`)"],
            [f"server.api_tokens_{source}", "API token 3 of 3 has 10 characters: a bearer token needs at least 16 "
                                            "(make one with `openssl rand -hex 16`)"],
        ]
        assert not any("x9" in p or "Sh0rtTok3n" in p for p in problems)

    def test_sixteen_characters_are_enough(self) -> None:
        """A token of exactly the minimum length is accepted."""
        config = parse_config(MINIMAL, "/etc/hooksvc.toml", {"SHOP_SECRET": "s", "HOOKSVC_API_TOKENS": "k" * 16})
        assert [t.reveal() for t in config.server.api_tokens] == ["k" * 16]

    def test_short_webhook_and_notification_secrets_are_warned_about_not_refused(self) -> None:
        """Git hosts let users choose short webhook secrets: the config loads, and `weak_secrets` names the app
        and the length, never the secret."""
        text = MINIMAL + 'notify_url = "https://notify.test/hook"\nnotify_secret_env = "NOTIFY"\n'
        config = parse_config(text, "/etc/hooksvc.toml", {"SHOP_SECRET": "hunter2", "NOTIFY": "n" * 16})
        assert config.weak_secrets() == [
            "apps.shop: its webhook secret has 7 characters: whoever guesses it can deploy shop; use 16 or more "
            "(`openssl rand -hex 32`) here and on the other side"]
        assert "hunter2" not in " ".join(config.weak_secrets())


class TestCheckConfigCommand:
    def test_check_config_warns_about_a_short_webhook_secret(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`hooksvc check-config` prints a warning for a short webhook secret, after the config's verdict."""
        path = tmp_path / "short.toml"
        path.write_text(MINIMAL)
        monkeypatch.setenv("SHOP_SECRET", "s3")
        monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
        assert main(["--config", str(path), "check-config"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].endswith("configuration valid (1 apps, 1 hosts)")
        assert out[1].startswith("  warning: apps.shop: its webhook secret has 2 characters")

    def test_check_config_lists_every_problem_and_exits_non_zero(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`hooksvc check-config` prints every problem (missing secret variables included) and exits 2."""
        path = tmp_path / "bad.toml"
        path.write_text(MINIMAL + 'strategy = "yolo"\n')
        monkeypatch.delenv("SHOP_SECRET", raising=False)
        assert main(["--config", str(path), "check-config"]) == 2
        err = capsys.readouterr().err
        assert f"{path}: apps.shop.strategy" in err
        assert f"{path}: apps.shop.secret_env: environment variable SHOP_SECRET is not set" in err

    def test_missing_config_file_is_a_clear_error(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A config path that does not exist is named in the error."""
        assert main(["--config", str(tmp_path / "nope.toml"), "check-config"]) == 2
        assert "nope.toml: cannot read the configuration" in capsys.readouterr().err


class TestOperators:
    """`[operators.NAME]`: a token of one's own and a role (SPEC §11)."""

    ENV = {"ALICE_TOKEN": "alice-token-0123456789"}

    def test_an_operator_and_the_api_tokens_all_have_names_and_roles(self, tmp_path: Path) -> None:
        """alice is a deployer with her token; each api token is an admin named token-N."""
        alice = '[operators.alice]\ntoken_env = "ALICE_TOKEN"\nrole = "deployer"\n'
        config = make_config(tmp_path, alice, env=self.ENV)
        assert [(o.name, o.role.value, t) for o, t in config.credentials()] == [
            ("alice", "deployer", "alice-token-0123456789"),
            ("token-1", "admin", "operator-token-1"),
            ("token-2", "admin", "operator-token-2"),
        ]
        assert "alice-token-0123456789" in config.secrets()
        assert "alice-token-0123456789" not in repr(config)

    @pytest.mark.parametrize(("table", "env", "problem"), [
        ('role = "root"\ntoken_env = "ALICE_TOKEN"', {}, "alice.role: expected one of viewer, deployer, admin"),
        ('token_env = "ALICE_TOKEN"', {}, "operators.alice.role: required: expected one of"),
        ('role = "admin"', {}, "operators.alice.token_env: required"),
        ('role = "admin"\ntoken = "x"', {}, "secrets may not be written in the config file"),
        ('role = "admin"\ntoken_env = "SHORT"', {"SHORT": "short"}, "needs at least 16"),
        ('role = "admin"\ntoken_env = "SAME"', {"SAME": "operator-token-1"}, "needs a token of their own"),
        ('role = "admin"\ntoken_env = "ALICE_TOKEN"\ngroup = "ops"', {}, "operators.alice.group: unknown key"),
    ])
    def test_bad_operator_tables_name_the_key(
        self, tmp_path: Path, table: str, env: dict[str, str], problem: str,
    ) -> None:
        """Each mistake in an operator table is refused naming the key, never showing a token."""
        with pytest.raises(ConfigError) as caught:
            make_config(tmp_path, f"[operators.alice]\n{table}\n", env={**self.ENV, **env})
        assert problem in str(caught.value)
        assert "operator-token-1" not in str(caught.value)

    def test_an_operator_may_not_take_an_api_token_name(self, tmp_path: Path) -> None:
        """token-1 is the first api token's name: an operator table of that name is refused."""
        with pytest.raises(ConfigError, match="operators.token-1: 'token-1' is the name of a server.api_tokens"):
            make_config(tmp_path, '[operators.token-1]\ntoken_env = "ALICE_TOKEN"\nrole = "admin"\n', env=self.ENV)
