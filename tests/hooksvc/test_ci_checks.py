"""Whether a push waiting for its CI checks deploys, is skipped, or waits (`hooksvc.ci_checks.decide`),
and how `require_checks` and `checks_timeout` are read from the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooksvc.ci_checks import CheckReport, CheckRequirement, CheckState, VerdictKind, decide, link
from hooksvc.errors import ConfigError
from tests.helpers.config import make_config

OWN = "hooksvc/shop"
NAMED = CheckRequirement(names=("ci/test", "lint"))
EVERY = CheckRequirement(every=True)


def reports(**states: str) -> dict[str, CheckReport]:
    out = {}
    for name, state in states.items():
        name = name.replace("__", "/")
        out[name] = CheckReport(name, CheckState(state), f"https://ci.example/{name}")
    return out


class TestNamedChecks:
    def test_waits_for_every_name_not_yet_passed(self) -> None:
        """A push waits for each named check that has not succeeded, in the order the config names them."""
        v = decide(NAMED, reports(ci__test="pending"), own_context=OWN, waited=5, timeout=3600, grace=60,
                   complete=False)
        assert v.kind is VerdictKind.WAIT
        assert v.waiting_for == ("ci/test", "lint")
        assert v.reason == "waiting for checks: ci/test, lint"

    def test_deploys_when_every_named_check_succeeded(self) -> None:
        """Every named check succeeded: the push deploys, even before the host's API was read."""
        v = decide(NAMED, reports(ci__test="success", lint="success", other="failure"), own_context=OWN,
                   waited=5, timeout=3600, grace=60, complete=False)
        assert v.kind is VerdictKind.DEPLOY

    def test_a_failed_named_check_skips_with_its_name_and_link(self) -> None:
        """One named check failed: skipped, naming the check and linking to it."""
        v = decide(NAMED, reports(ci__test="failure", lint="pending"), own_context=OWN, waited=5, timeout=3600,
                   grace=60, complete=False)
        assert v.kind is VerdictKind.SKIP
        assert v.reason == "not deployed: ci/test failed (https://ci.example/ci/test)"
        assert v.failed is not None and v.failed.name == "ci/test"

    def test_timeout_skips_naming_what_it_still_waited_for(self) -> None:
        """Past `checks_timeout` (from the push's arrival) a waiting push is skipped with the reason."""
        v = decide(NAMED, reports(ci__test="success"), own_context=OWN, waited=3600, timeout=3600, grace=60,
                   complete=True)
        assert v.kind is VerdictKind.SKIP
        assert v.reason == "not deployed: checks did not finish within 1h (still waiting for lint)"

    def test_hooksvc_own_status_never_counts(self) -> None:
        """A requirement naming hooksvc's own context is never met by hooksvc's own status."""
        v = decide(CheckRequirement(names=(OWN,)), reports(hooksvc__shop="success"), own_context=OWN, waited=5,
                   timeout=3600, grace=60, complete=True)
        assert v.kind is VerdictKind.WAIT


class TestAllChecks:
    def test_all_passes_only_on_a_complete_picture(self) -> None:
        """"all": every known check succeeded deploys only once the host's list was read."""
        known = reports(ci__test="success", lint="success")
        assert decide(EVERY, known, own_context=OWN, waited=5, timeout=3600, grace=60,
                      complete=False).kind is VerdictKind.WAIT
        v = decide(EVERY, known, own_context=OWN, waited=5, timeout=3600, grace=60, complete=True)
        assert v.kind is VerdictKind.DEPLOY
        assert v.reason == "every check succeeded: ci/test, lint"

    def test_all_ignores_hooksvc_own_status(self) -> None:
        """"all" counts every check but hooksvc's own (pending while it waits) status."""
        v = decide(EVERY, reports(ci__test="success", hooksvc__shop="pending"), own_context=OWN, waited=5,
                   timeout=3600, grace=60, complete=True)
        assert v.kind is VerdictKind.DEPLOY

    def test_all_waits_for_pending_and_skips_on_a_failure(self) -> None:
        """"all" waits for each pending check and skips on the first failed one (by name)."""
        pending = decide(EVERY, reports(lint="pending", ci__test="success"), own_context=OWN, waited=5,
                         timeout=3600, grace=60, complete=True)
        assert pending.waiting_for == ("lint",)
        failed = decide(EVERY, reports(lint="failure", build="failure"), own_context=OWN, waited=5,
                        timeout=3600, grace=60, complete=True)
        assert failed.kind is VerdictKind.SKIP and failed.reason.startswith("not deployed: build failed")

    def test_a_commit_with_no_checks_deploys_after_the_grace_and_says_so(self) -> None:
        """"all" on a commit with no check at all waits out the grace, then deploys and says why."""
        early = decide(EVERY, {}, own_context=OWN, waited=30, timeout=3600, grace=60, complete=True)
        assert early.kind is VerdictKind.WAIT and early.reason == "waiting for checks: all"
        late = decide(EVERY, {}, own_context=OWN, waited=60, timeout=3600, grace=60, complete=True)
        assert late.kind is VerdictKind.DEPLOY
        assert late.reason == "no check reported on this commit within 1m: deploying without CI"

    def test_the_grace_counts_from_the_push_and_the_timeout_from_the_wait(self) -> None:
        """A push held an hour before it waited 5 s for its checks: CI had its grace (no check: deploy),
        and the timeout has not run out for a check still pending."""
        none = decide(EVERY, {}, own_context=OWN, waited=5, age=3605, timeout=30, grace=60, complete=True)
        assert none.kind is VerdictKind.DEPLOY
        pending = decide(EVERY, reports(lint="pending"), own_context=OWN, waited=5, age=3605, timeout=30, grace=60,
                         complete=True)
        assert pending.kind is VerdictKind.WAIT and pending.waiting_for == ("lint",)


def test_link_keeps_only_http_urls() -> None:
    """A check's link is shown only when it is an http(s) URL (never `javascript:`)."""
    assert link("https://ci.example/1") == "https://ci.example/1"
    assert link("javascript:alert(1)") == ""
    assert link(None) == ""


class TestConfig:
    def test_list_and_all_and_timeout(self, tmp_path: Path) -> None:
        """`require_checks` takes a list or "all"; `checks_timeout` a duration, 1 h by default."""
        config = make_config(tmp_path, """
            [apps.shop2]
            host = "github"
            repo = "acme/shop2"
            clone_url = "/srv/shop2.git"
            secret_env = "SHOP_SECRET"
            require_checks = ["ci/test", "lint"]
            checks_timeout = "20m"
            [apps.shop3]
            host = "gitlab"
            repo = "acme/shop3"
            clone_url = "/srv/shop3.git"
            secret_env = "SHOP_SECRET"
            require_checks = "all"
        """)
        assert config.apps["shop2"].require_checks == NAMED
        assert config.apps["shop2"].checks_timeout == 20 * 60
        assert config.apps["shop3"].require_checks == EVERY
        assert config.apps["shop3"].checks_timeout == 3600
        assert config.apps["shop"].require_checks is None

    @pytest.mark.parametrize(("value", "message"), [
        ('"some"', 'apps.shop2.require_checks: expected "all" or a list'),
        ("[]", "apps.shop2.require_checks: expected \"all\" or a non-empty list"),
        ('["lint", ""]', "apps.shop2.require_checks[1]: expected a check name"),
        ('["lint", "lint"]', "apps.shop2.require_checks[1]: 'lint' is listed twice"),
    ])
    def test_bad_require_checks_names_the_key(self, tmp_path: Path, value: str, message: str) -> None:
        """A bad `require_checks` is refused with the key at fault."""
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            make_config(tmp_path, f"""
                [apps.shop2]
                host = "github"
                repo = "acme/shop2"
                clone_url = "/srv/shop2.git"
                secret_env = "SHOP_SECRET"
                require_checks = {value}
            """)

    def test_naming_hooksvc_own_context_is_refused(self, tmp_path: Path) -> None:
        """hooksvc's own status never counts, so requiring it (it would wait out every timeout) is refused."""
        with pytest.raises(ConfigError, match="apps.shop2.require_checks: 'deploy/x' is hooksvc's own status_context"):
            make_config(tmp_path, """
                [apps.shop2]
                host = "github"
                repo = "acme/shop2"
                clone_url = "/srv/shop2.git"
                secret_env = "SHOP_SECRET"
                status_context = "deploy/x"
                require_checks = ["ci/test", "deploy/x"]
            """)

    def test_timeout_without_requirement_and_hosts_without_checks_are_refused(self, tmp_path: Path) -> None:
        """`checks_timeout` alone, or `require_checks` on a host with no check source, is a config error."""
        with pytest.raises(ConfigError) as caught:
            make_config(tmp_path, """
                [hosts.plain]
                kind = "git"
                [apps.shop2]
                host = "github"
                repo = "acme/shop2"
                clone_url = "/srv/shop2.git"
                secret_env = "SHOP_SECRET"
                checks_timeout = "5m"
                [apps.site]
                host = "plain"
                clone_url = "/srv/site.git"
                secret_env = "SHOP_SECRET"
                require_checks = "all"
            """)
        text = str(caught.value)
        assert "apps.shop2.checks_timeout: only applies with require_checks" in text
        assert "apps.site.require_checks: hosts of kind 'git' report no CI checks" in text
