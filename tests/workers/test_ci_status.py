"""Reading a commit's checks from the stand-in hosts' APIs (`workers.ci_status`), with the host's credential."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hooksvc.ci_checks import CheckReport, CheckState
from hooksvc.config import GitHubAppConfig, HostConfig, Secret
from tests.helpers.fake_git_host import FakeGitHost, FakeGitHubApp
from tests.helpers.github_app import APP_ID, INSTALLATION_ID, app_key, write_app_key
from workers import host_auth
from workers.ci_status import CheckReadError, authorization, read_checks
from workers.host_auth import HostCredentials

TOKEN = "checks-read-token-01"
SHA = "a" * 40


@pytest.fixture
def fake() -> Iterator[FakeGitHost]:
    with FakeGitHost(tokens={"github": TOKEN, "gitea": TOKEN, "gitlab": TOKEN}) as host:
        yield host


def host(fake: FakeGitHost, kind: str, token: str | None = TOKEN) -> HostConfig:
    route = "gitea" if kind == "forgejo" else kind
    return HostConfig(name=f"my-{kind}", kind=kind, api_url=f"{fake.url}/{route}",
                      token=Secret(token) if token else None)


def test_authorization_per_host_kind() -> None:
    """Each host gets its own credential header; GitHub's comes from host_auth (where App tokens plug in)."""
    def of(kind: str) -> tuple[str, str]:
        return authorization(HostConfig("h", kind, "https://x", Secret(TOKEN)), "acme/shop")

    assert of("github") == ("Authorization", f"Bearer {TOKEN}")
    assert of("gitea") == of("forgejo") == ("Authorization", f"token {TOKEN}")
    assert of("gitlab") == ("PRIVATE-TOKEN", TOKEN)


def test_github_check_runs_and_statuses(fake: FakeGitHost) -> None:
    """GitHub: check runs by name and the combined status's contexts, each with its state and link."""
    fake.set_check_runs("acme/shop", SHA, [{"name": "ci/test", "status": "completed", "conclusion": "neutral"},
                                           {"name": "e2e", "status": "queued"}])
    fake.set_commit_statuses("github", "acme/shop", SHA, [
        {"context": "lint", "state": "error", "target_url": "https://ci.example/lint"},
        {"context": "lint", "state": "success", "target_url": "https://ci.example/old"}])
    reports = read_checks(host(fake, "github"), "acme/shop", SHA)
    assert reports == [CheckReport("ci/test", CheckState.SUCCESS, "https://github.com/acme/shop/runs/4000"),
                       CheckReport("e2e", CheckState.PENDING, "https://github.com/acme/shop/runs/4001"),
                       CheckReport("lint", CheckState.FAILURE, "https://ci.example/lint")]
    assert fake.violations == []


@pytest.mark.parametrize("kind", ["gitea", "forgejo"])
def test_gitea_combined_status(fake: FakeGitHost, kind: str) -> None:
    """Gitea and Forgejo: the combined status's newest status per context (Gitea calls its state `status`)."""
    fake.set_commit_statuses("gitea", "acme/blog", SHA, [{"context": "ci", "state": "pending"}])
    assert read_checks(host(fake, kind), "acme/blog", SHA) == [CheckReport("ci", CheckState.PENDING, "")]
    assert fake.violations == []


def test_gitlab_newest_pipeline_per_name(fake: FakeGitHost) -> None:
    """GitLab: a re-run pipeline replaces the older one of the same name."""
    fake.set_pipelines("group/sub/wiki", SHA, [{"id": 8, "status": "failed"}, {"id": 9, "status": "running"},
                                               {"id": 5, "status": "success", "name": "nightly"}])
    reports = read_checks(host(fake, "gitlab"), "group/sub/wiki", SHA)
    assert {r.name: r.state for r in reports} == {"pipeline": CheckState.PENDING, "nightly": CheckState.SUCCESS}
    assert fake.violations == []


def test_errors_name_the_host_never_the_token(fake: FakeGitHost) -> None:
    """A refused read names the host kind and status; a host without a token says what to set."""
    with pytest.raises(CheckReadError) as refused:
        read_checks(host(fake, "github", token="wrong-token-000000"), "acme/shop", SHA)
    assert "github check API" in str(refused.value) and "401" in str(refused.value)
    assert "wrong-token" not in str(refused.value)
    with pytest.raises(CheckReadError, match="host 'my-gitlab' has no credentials: reading acme/wiki's checks needs"):
        read_checks(host(fake, "gitlab", token=None), "acme/wiki", SHA)


class TestAsGitHubApp:
    """Reading checks as a GitHub App: with an installation token from the stand-in, which verifies the JWT."""

    @pytest.fixture
    def app_host(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGitHost, HostConfig]]:
        monkeypatch.setattr(host_auth, "CREDENTIALS", HostCredentials())  # a new process's empty cache
        app = FakeGitHubApp(APP_ID, app_key().public_key(), INSTALLATION_ID, frozenset({"acme/shop"}))
        with FakeGitHost({}, github_app=app) as fake:
            key = write_app_key(tmp_path)
            yield fake, HostConfig(name="gh-app", kind="github", api_url=f"{fake.url}/github",
                                   app=GitHubAppConfig(APP_ID, Secret(key.read_text()), key))

    def test_a_token_that_lapsed_between_two_reads_is_renewed_and_the_read_retried_once(
        self, app_host: tuple[FakeGitHost, HostConfig],
    ) -> None:
        """The second read gets a 401, renews the installation token and reads again: no error, one refusal."""
        fake, app = app_host
        fake.set_check_runs("acme/shop", SHA, [{"name": "ci/test", "status": "in_progress"}])
        assert read_checks(app, "acme/shop", SHA) == [
            CheckReport("ci/test", CheckState.PENDING, "https://github.com/acme/shop/runs/4000")]
        fake.expire_app_tokens()
        fake.set_check_runs("acme/shop", SHA, [{"name": "ci/test", "status": "completed", "conclusion": "success"}])
        fake.set_commit_statuses("github", "acme/shop", SHA, [{"context": "lint", "state": "success"}])
        assert {r.name: r.state for r in read_checks(app, "acme/shop", SHA)} == {
            "ci/test": CheckState.SUCCESS, "lint": CheckState.SUCCESS}
        assert fake.refused_tokens == 1 and len(fake.issued_tokens) == 2
        assert fake.check_reads("github") == 4
        assert [v.split(": ")[-1] for v in fake.violations] == ["Bad credentials"]  # the lapsed token's one refusal

    def test_a_refusal_of_the_renewed_token_is_an_error(self, app_host: tuple[FakeGitHost, HostConfig]) -> None:
        """Retried once only: a 401 to the renewed token too ends the read with the host's answer."""
        fake, app = app_host
        assert fake.github_app is not None
        fake.github_app = replace(fake.github_app, token_seconds=0)  # every token lapses as it is handed out
        with pytest.raises(CheckReadError, match="github check API .* answered 401"):
            read_checks(app, "acme/shop", SHA)
        assert fake.refused_tokens == 2  # the first try and its one retry
