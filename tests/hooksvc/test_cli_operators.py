"""The command line's operator: the local admin by default, `--as NAME` proven by a token, within
its role; what it does is audited, and `hooksvc audit` reads the trail (SPEC §11)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import audit
from hooksvc.cli import main
from hooksvc.store import DeploymentStore
from tests.helpers.config import DAN_TOKEN, OPERATOR_ENV, OPERATORS, TEST_REDIS_URL, VERA_TOKEN, write_config

VERA, DAN = VERA_TOKEN, DAN_TOKEN
SHA = "c" * 40


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis: redis_lib.Redis) -> str:
    for name, value in {"SHOP_SECRET": "s", **OPERATOR_ENV}.items():
        monkeypatch.setenv(name, value)
    for name in ("HOOKSVC_OPERATOR", "HOOKSVC_TOKEN", "REDIS_URL", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    return str(write_config(tmp_path, redis_url=TEST_REDIS_URL, extra=OPERATORS))


class TestCommandOperator:
    def test_without_as_the_local_admin_deploys_and_is_audited(
        self, config: str, redis: redis_lib.Redis, capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A plain `hooksvc deploy` is the login user's, as admin: the deployment and the trail say so."""
        assert main(["--config", config, "deploy", "shop", "--sha", SHA]) == 0
        who = f"local:{getpass.getuser()}"
        [dep] = DeploymentStore(redis).recent()
        assert dep.operator == who
        [entry] = audit.recent(redis)
        assert (entry.operator, entry.action, entry.app, entry.sha, entry.deployment, entry.result, entry.address) == (
            who, audit.DEPLOY, "shop", SHA, dep.id, audit.OK, "local")

    def test_as_an_operator_with_its_token_acts_as_it(
        self, config: str, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """`--as dan` with dan's token in $HOOKSVC_TOKEN deploys as dan."""
        monkeypatch.setenv("HOOKSVC_TOKEN", DAN)
        assert main(["--config", config, "deploy", "shop", "--sha", SHA, "--as", "dan"]) == 0
        assert DeploymentStore(redis).recent()[0].operator == "dan"

    def test_a_viewer_is_refused_and_the_refusal_audited(
        self, config: str, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    ) -> None:
        """$HOOKSVC_OPERATOR=vera (a viewer) may not roll back: exit 1 naming the role, nothing queued."""
        monkeypatch.setenv("HOOKSVC_OPERATOR", "vera")
        monkeypatch.setenv("HOOKSVC_TOKEN", VERA)
        assert main(["--config", config, "rollback", "shop", "--to", SHA]) == 1
        assert "rolling back shop needs the deployer role (vera is a viewer)" in capsys.readouterr().err
        assert DeploymentStore(redis).recent() == []
        [entry] = audit.recent(redis)
        assert (entry.operator, entry.action, entry.result) == ("vera", audit.ROLLBACK, audit.REFUSED)
        assert main(["--config", config, "audit"]) == 1

    @pytest.mark.parametrize("token", [None, VERA, "nobodys-token-00000"])
    def test_as_without_the_operators_own_token_is_refused(
        self, config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str | None,
    ) -> None:
        """`--as dan` needs dan's token: none, another operator's or an unknown one is refused, unechoed."""
        if token:
            monkeypatch.setenv("HOOKSVC_TOKEN", token)
        assert main(["--config", config, "status", "--as", "dan"]) == 1
        err = capsys.readouterr().err
        assert "HOOKSVC_TOKEN" in err and "'dan'" in err
        assert VERA not in err and "nobodys" not in err


class TestAuditCommand:
    def test_lists_filters_and_prints_json(
        self, config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`hooksvc audit` shows the trail newest first; --operator filters; --json prints the API's shape."""
        main(["--config", config, "deploy", "shop", "--sha", SHA])
        monkeypatch.setenv("HOOKSVC_TOKEN", DAN)
        main(["--config", config, "--as", "dan", "deploy", "shop", "--sha", "d" * 40])
        capsys.readouterr()
        assert main(["--config", config, "audit"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["WHEN", "OPERATOR", "ACTION", "APP", "SHA", "DEPLOYMENT", "RESULT", "FROM",
                                    "REASON"]
        assert [line.split()[2] for line in lines[1:]] == ["dan", f"local:{getpass.getuser()}"]
        assert main(["--config", config, "audit", "--operator", "dan", "--json"]) == 0
        [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert (entry["operator"], entry["sha"], entry["user_agent"]) == ("dan", "d" * 40, "hooksvc command line")
        assert main(["--config", config, "audit", "--app", "nope"]) == 1
        assert main(["--config", config, "audit", "--app", "shop", "--operator", "vera"]) == 0
        assert "no audit entries for this filter" in capsys.readouterr().out
