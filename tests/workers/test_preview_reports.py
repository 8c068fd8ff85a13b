"""What a pull request shows of its preview (SPEC §13), end to end: real Redis, the real store and
its outbox listener, the real outbox sender, and a stand-in git host that checks every request
(commit statuses, deployments, GitLab environments, pull request comments) against the host's
documented API: fields, types, states and the credential header."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc import keys
from hooksvc.config import Config
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.outbox import write_events
from hooksvc.preview_records import PreviewRecord, PreviewRecords, request_teardown
from hooksvc.previews import PreviewsConfig
from hooksvc.routing import FORK_REFUSED
from hooksvc.store import DeploymentStore
from tests.helpers.docker import get_text
from tests.helpers.fake_git_host import Comment, FakeGitHost, FakeGitHubApp
from tests.helpers.github_app import APP_ID, INSTALLATION_ID, app_key
from tests.helpers.outbox import outbox_backlog, read_counters
from tests.workers import test_host_deployments, test_outbox_sender, test_previews
from tests.workers.test_github_app_reporting import app_config
from tests.workers.test_host_deployments import environments_config
from tests.workers.test_outbox_sender import (
    CLIENT_TIMEOUT,
    PUBLIC_URL,
    SHA1,
    SHA2,
    SHA3,
    TOKENS,
    FakeClock,
    drain,
    queue,
)
from workers import host_auth
from workers.host_auth import HostCredentials
from workers.jobs import execute
from workers.outbox_sender import OutboxSender
from workers.preview_comments import marker

S = DeploymentState
#: The fixtures of the commit-status tests: the real store with the outbox writer, a clock `sleep`
#: moves, and the fake host.
store = test_outbox_sender.store
clock = test_outbox_sender.clock
fake = test_host_deployments.fake
cleanup = test_previews.cleanup
#: A secret of the configuration's (the Gitea token) that a failing preview's error quotes: it must
#: reach no host.
LEAKED = TOKENS["gitea"]


def with_previews(config: Config, *apps: str) -> Config:
    """`config` with previews at `https://pr-{number}.<app>.example.com` for each of `apps`."""
    changed = {name: replace(config.apps[name], previews=PreviewsConfig(
        url=f"https://pr-{{number}}.{name}.example.com", labels={"traefik.enable": "true"})) for name in apps}
    return replace(config, apps={**config.apps, **changed})


def with_port_previews(config: Config, app: str) -> Config:
    """`config` with the app's previews reached on a host port from 9100-9199."""
    previews = PreviewsConfig(url="http://127.0.0.1:{port}/", ports=(9100, 9199))
    return replace(config, apps={**config.apps, app: replace(config.apps[app], previews=previews)})


def previews_config(tmp_path: Path, base: str, redis_url: str) -> Config:
    """shop on GitHub (production environment), wiki on GitLab, blog on Gitea: each with previews."""
    return with_previews(environments_config(tmp_path, base, redis_url), "shop", "wiki", "blog")


@pytest.fixture
def sender(tmp_path: Path, fake: FakeGitHost, redis: redis_lib.Redis, redis_url: str, clock: FakeClock) -> OutboxSender:
    config = previews_config(tmp_path, fake.url, redis_url)
    return OutboxSender(config, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5, http_timeout=CLIENT_TIMEOUT)


@dataclass
class Reporting:
    """The store, the sender, the clock its retries wait on, Redis and the fake host, as one."""

    store: DeploymentStore
    sender: OutboxSender
    clock: FakeClock
    redis: redis_lib.Redis
    fake: FakeGitHost

    def preview(self, app: str, number: int, sha: str, final: DeploymentState, error: str = "") -> str:
        """Queue, start and end one deployment of pull request `number`'s preview; its id."""
        new = NewDeployment(app, sha, f"refs/pull/{number}/head", Trigger.PUSH, preview=number)
        dep = self.store.intake.submit([new]).deployments[0]
        self.store.start(dep.id, previous_sha="")
        self.store.finish(dep.id, final, error, live_sha=sha if final is S.SUCCEEDED else None)
        return dep.id

    def production(self, app: str, sha: str) -> str:
        """One successful deployment of the app itself; its id."""
        dep = queue(self.store, app, sha)
        self.store.start(dep.id, previous_sha="")
        self.store.finish(dep.id, S.SUCCEEDED, "", live_sha=sha)
        return dep.id

    def tear_down(self, deployment_id: str, why: str, final: DeploymentState = S.SUCCEEDED, error: str = "") -> str:
        """The teardown of `deployment_id`'s preview, asked for as `why` says (the pull request's
        webhook, an operator, the ttl sweep), run and ended `final`; its id."""
        last = DeploymentStore.load(self.redis, deployment_id)
        assert last is not None and last.preview is not None
        new = NewDeployment(last.app, last.sha, last.ref, Trigger.TEARDOWN, preview=last.preview,
                            delivery_id="delivery-1" if why == "closed" else "",
                            operator="alice" if why == "removed" else "")  # else the ttl sweep or an eviction
        dep = self.store.intake.submit([new]).deployments[0]
        self.store.start(dep.id, previous_sha="")
        self.store.finish(dep.id, final, error)
        return dep.id

    def drain(self) -> None:
        drain(self.sender, self.clock, self.redis)


@pytest.fixture
def r(store: DeploymentStore, sender: OutboxSender, clock: FakeClock, redis: redis_lib.Redis,
      fake: FakeGitHost) -> Reporting:
    return Reporting(store, sender, clock, redis, fake)


def only_comment(fake: FakeGitHost, kind: str, repo: str, number: int) -> Comment:
    comments = fake.comments(kind, repo, number)
    assert len(comments) == 1, [c.body for c in comments]
    return comments[0]


def page(deployment_id: str) -> str:
    return f"{PUBLIC_URL}/deployments/{deployment_id}"


def assert_nothing_left(redis: redis_lib.Redis) -> None:
    """Every event delivered or given up."""
    assert outbox_backlog(redis) == 0
    assert redis.keys(f"{keys.OUTBOX_PREFIX}:lane:*") == []


class TestGithub:
    """A deployment in environment pr-<n>, a status of the preview's own, and one comment."""

    def test_a_preview_is_reported_beside_production(self, r: Reporting) -> None:
        """Production and PR 7's preview of the same commit keep separate statuses and environments."""
        r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.drain()
        r.production("shop", SHA1)
        r.drain()
        assert r.fake.violations == []
        assert r.fake.statuses("github", SHA1, "hooksvc/shop/preview") == ["pending", "pending", "success"]
        assert r.fake.statuses("github", SHA1, "hooksvc/shop") == ["pending", "pending", "success"]
        [live] = [a for a in r.fake.accepted if a.context == "hooksvc/shop/preview" and a.state == "success"]
        assert live.description == "Preview of PR #7 is live"
        assert live.target_url == "https://pr-7.shop.example.com"  # "Details" opens the preview
        pr, prod = r.fake.deployments("github")
        assert (pr.environment, pr.sha, prod.environment) == ("pr-7", SHA1, "production")
        assert pr.created["transient_environment"] is True and pr.created["production_environment"] is False
        assert pr.created["payload"]["hooksvc"]["pull_request"] == 7
        assert [u["environment_url"] for u in pr.updates] == ["https://pr-7.shop.example.com"] * 3
        assert "transient_environment" not in prod.created
        assert pr.statuses == ["queued", "in_progress", "success"]
        assert prod.statuses == ["queued", "in_progress", "success"]
        assert_nothing_left(r.redis)

    def test_one_comment_created_then_edited_in_place(self, r: Reporting) -> None:
        """The first push creates the comment (after looking for one); the next push edits it."""
        first = r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.drain()
        comment = only_comment(r.fake, "github", "acme/shop", 7)
        assert comment.body.startswith(marker("shop"))
        assert "**live**" in comment.body and "https://pr-7.shop.example.com" in comment.body
        assert f"`{SHA1[:12]}`" in comment.body and f"[{first}]({page(first)})" in comment.body
        # Queued and running had a newer state behind them: the comment was written once, with the last.
        assert comment.edits == []
        second = r.preview("shop", 7, SHA2, S.SUCCEEDED)
        r.drain()
        edited = only_comment(r.fake, "github", "acme/shop", 7)
        assert edited.id == comment.id and edited.edits == [comment.body]
        assert f"`{SHA2[:12]}`" in edited.body and f"[{second}]({page(second)})" in edited.body
        paths = [f"{m} {p.split('/github', 1)[1]}" for m, p in r.fake.comment_requests]
        assert paths == ["GET /repos/acme/shop/issues/7/comments", "POST /repos/acme/shop/issues/7/comments",
                         f"PATCH /repos/acme/shop/issues/comments/{comment.id}"]
        assert r.fake.violations == []
        assert read_counters(r.redis)[keys.PREVIEW_COMMENT_SENT] == {"github": 3}

    def test_the_previous_preview_deployment_becomes_inactive(self, r: Reporting) -> None:
        """GitHub spares transient deployments from auto_inactive: the replaced one is marked by hooksvc."""
        r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.preview("shop", 7, SHA2, S.SUCCEEDED)
        r.drain()
        old, new = r.fake.deployments("github")
        assert old.statuses == ["queued", "in_progress", "success", "inactive"]
        assert new.statuses == ["queued", "in_progress", "success"]
        assert r.fake.violations == []

    @pytest.mark.parametrize("why, said", [("closed", "the pull request was closed or merged"),
                                           ("limits", "no push came within its time to live, or a newer "
                                                      "preview needed its place (the app's max)"),
                                           ("removed", "an operator removed it")])
    def test_teardown_marks_the_environment_inactive_and_says_so(self, r: Reporting, why: str, said: str) -> None:
        """Closed, expired or removed: every deployment of pr-7 ends inactive, the comment says why."""
        r.preview("shop", 7, SHA1, S.SUCCEEDED)
        last = r.preview("shop", 7, SHA2, S.FAILED, "health check failed")
        r.drain()
        r.tear_down(last, why)
        r.drain()
        assert r.fake.violations == []
        live, failed = r.fake.deployments("github")
        assert live.statuses[-1] == "inactive" and failed.statuses[-1] == "inactive"
        assert live.updates[-1]["description"] == f"Preview removed: {said}"
        comment = only_comment(r.fake, "github", "acme/shop", 7)
        assert f"**removed**: {said}" in comment.body
        assert "https://pr-7.shop.example.com" not in comment.body
        assert len(comment.edits) == 1 and "**failed**: health check failed" in comment.edits[0]
        assert r.redis.exists(keys.host_deployment_active("shop", 7)) == 0
        assert_nothing_left(r.redis)

    def test_teardown_leaves_production_alone(self, r: Reporting) -> None:
        """Production's deployment stays active when a preview of the same commit goes."""
        production = r.production("shop", SHA1)
        last = r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.drain()
        r.tear_down(last, "closed")
        r.drain()
        prod, pr = r.fake.deployments("github")
        assert prod.statuses == ["queued", "in_progress", "success"]
        assert pr.statuses[-1] == "inactive"
        assert r.redis.hget(keys.host_deployment_active("shop"), "deployment_id") == production.encode()

    def test_a_marked_comment_on_a_later_page_is_found(self, r: Reporting) -> None:
        """Pages are read until the marked comment turns up; a reviewer quoting it is never taken for it."""
        r.fake.add_comment("github", "acme/shop", 7, f"> {marker('shop')}\n> what a preview")
        for i in range(120):
            r.fake.add_comment("github", "acme/shop", 7, f"review comment {i}")
        ours = r.fake.add_comment("github", "acme/shop", 7, marker("shop") + "\nold text", author="hooksvc")
        r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.drain()
        assert r.fake.violations == []
        [edited] = [c for c in r.fake.comments("github", "acme/shop", 7) if c.id == ours]
        assert edited.edits == [marker("shop") + "\nold text"] and "**live**" in edited.body
        assert len(r.fake.comments("github", "acme/shop", 7)) == 122  # none added
        assert [m for m, _ in r.fake.comment_requests] == ["GET", "GET", "PATCH"]

    def test_a_deleted_comment_is_made_anew(self, r: Reporting) -> None:
        """Someone deleted the comment: the edit's 404 leads to a new comment with the same news."""
        r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.drain()
        r.fake.delete_comment(only_comment(r.fake, "github", "acme/shop", 7).id)
        r.preview("shop", 7, SHA2, S.SUCCEEDED)
        r.drain()
        comment = only_comment(r.fake, "github", "acme/shop", 7)
        assert f"`{SHA2[:12]}`" in comment.body and comment.edits == []
        assert [m for m, _ in r.fake.comment_requests] == ["GET", "POST", "PATCH", "POST"]


    def test_closing_a_pull_request_without_a_preview_comments_nothing(self, r: Reporting) -> None:
        """A teardown of a pull request that never had a preview looks for the comment, and makes none."""
        new = NewDeployment("shop", SHA1, "refs/pull/8/head", Trigger.TEARDOWN, preview=8, delivery_id="d-8")
        dep = r.store.intake.submit([new]).deployments[0]
        r.store.start(dep.id, previous_sha="")
        r.store.finish(dep.id, S.SUCCEEDED, "nothing of the preview was left to remove")
        r.drain()
        assert r.fake.violations == []
        assert r.fake.comments("github", "acme/shop", 8) == [] and r.fake.deployments("github") == []
        assert [m for m, _ in r.fake.comment_requests] == ["GET"]
        assert r.fake.accepted == []  # a teardown posts no commit status
        assert_nothing_left(r.redis)

    def test_a_failed_teardown_leaves_the_environment_and_says_so(self, r: Reporting) -> None:
        """A teardown that failed removed nothing: the deployment stays active, the comment says so."""
        last = r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.drain()
        r.tear_down(last, "limits", S.FAILED, "docker compose down: exit 1")
        r.drain()
        [deployment] = r.fake.deployments("github")
        assert deployment.statuses[-1] == "success"
        comment = only_comment(r.fake, "github", "acme/shop", 7)
        assert "**removal failed**: docker compose down: exit 1" in comment.body
        assert "https://pr-7.shop.example.com" in comment.body
        assert r.fake.statuses("github", SHA1, "hooksvc/shop/preview") == ["pending", "pending", "success"]

    def test_a_refused_fork_gets_a_status_and_a_comment_but_no_environment(self, r: Reporting) -> None:
        """A fork's pull request, ended failed before it ran, reads as refused, not as broken code."""
        new = NewDeployment("shop", SHA1, "refs/pull/9/head", Trigger.PUSH, preview=9, fork=True)
        dep = r.store.intake.submit([new]).deployments[0]
        r.store.finish(dep.id, S.FAILED, FORK_REFUSED)
        r.drain()
        assert r.fake.violations == []
        assert r.fake.statuses("github", SHA1, "hooksvc/shop/preview") == ["pending", "failure"]
        refusal = [a for a in r.fake.accepted if a.context == "hooksvc/shop/preview"][-1]
        assert refusal.description.startswith("PR #9: previews are not built for pull requests from forks")
        assert len(refusal.description) <= 140
        assert r.fake.deployments("github") == []
        comment = only_comment(r.fake, "github", "acme/shop", 9)
        assert "**not built**: previews are not built for pull requests from forks" in comment.body
        assert "https://pr-9" not in comment.body

    def test_the_url_the_worker_recorded_is_shown(self, r: Reporting) -> None:
        """In ports mode the address is the one the worker recorded for the preview (its port filled in)."""
        r.sender.config = with_port_previews(r.sender.config, "shop")
        PreviewRecords(r.redis).put(PreviewRecord(app="shop", number=7, sha=SHA1, url="http://127.0.0.1:9107/",
                                                  state="live", updated_at=0.0, port=9107))
        r.preview("shop", 7, SHA1, S.SUCCEEDED)
        r.drain()
        assert "| URL | http://127.0.0.1:9107/ |" in only_comment(r.fake, "github", "acme/shop", 7).body
        assert [u["environment_url"] for u in r.fake.deployments("github")[0].updates] == ["http://127.0.0.1:9107/"] * 3


class TestGitlab:
    """A review app: environment review/mr-<iid> with the preview's URL, stopped on teardown; one note."""

    def test_environment_created_once_deployed_to_and_stopped(self, r: Reporting) -> None:
        """The environment is created before the first deployment, reused by the next, stopped at the end."""
        r.preview("wiki", 5, SHA1, S.SUCCEEDED)
        r.drain()
        last = r.preview("wiki", 5, SHA2, S.SUCCEEDED)
        r.drain()
        [environment] = r.fake.environments()
        assert (environment.repo, environment.name) == ("acme/docs/wiki", "review/mr-5")
        assert environment.tier == "development"
        assert environment.external_url == "https://pr-5.wiki.example.com" and environment.state == "available"
        first, second = r.fake.deployments("gitlab")
        assert (first.environment, second.environment) == ("review/mr-5", "review/mr-5")
        assert second.statuses == ["running", "success"]
        note = only_comment(r.fake, "gitlab", "acme/docs/wiki", 5)
        assert note.body.startswith(marker("wiki")) and f"`{SHA2[:12]}`" in note.body and len(note.edits) == 1
        r.tear_down(last, "closed")
        r.drain()
        assert r.fake.violations == []
        assert [e.state for e in r.fake.environments()] == ["stopped"]
        note = only_comment(r.fake, "gitlab", "acme/docs/wiki", 5)
        assert "**removed**: the pull request was closed or merged" in note.body
        assert [f"{m} {p.split('/api/v4', 1)[1]}" for m, p in r.fake.comment_requests if "environments" in p] == [
            "GET /projects/acme%2Fdocs%2Fwiki/environments",
            "POST /projects/acme%2Fdocs%2Fwiki/environments",
            f"POST /projects/acme%2Fdocs%2Fwiki/environments/{environment.id}/stop",
        ]
        assert_nothing_left(r.redis)

    def test_a_reopened_merge_request_finds_its_environment(self, r: Reporting) -> None:
        """After a teardown the environment is looked up by name, never created twice (GitLab would refuse),
        and pointed at the reopened preview's address when that changed."""
        last = r.preview("wiki", 5, SHA1, S.SUCCEEDED)
        r.drain()
        r.tear_down(last, "closed")
        r.drain()
        PreviewRecords(r.redis).put(PreviewRecord(app="wiki", number=5, sha=SHA2, url="http://127.0.0.1:9105/",
                                                  state="deploying", updated_at=0.0, port=9105))
        r.preview("wiki", 5, SHA2, S.SUCCEEDED)
        r.drain()
        assert r.fake.violations == []
        [environment] = r.fake.environments()
        assert environment.external_url == "http://127.0.0.1:9105/"
        assert [m for m, p in r.fake.comment_requests if "environments" in p] == ["GET", "POST", "POST", "GET", "PUT"]
        assert [d.environment for d in r.fake.deployments("gitlab")] == ["review/mr-5", "review/mr-5"]
        note = only_comment(r.fake, "gitlab", "acme/docs/wiki", 5)
        assert "**live**" in note.body and f"`{SHA2[:12]}`" in note.body


class TestGitea:
    """Gitea/Forgejo: the commit status of the preview's own and one comment; no deployments API."""

    def test_comment_created_edited_and_marked_removed(self, r: Reporting) -> None:
        """Created once, edited on the next push, edited again to say the preview was removed."""
        r.preview("blog", 3, SHA1, S.SUCCEEDED)
        r.drain()
        last = r.preview("blog", 3, SHA2, S.FAILED, "pre_deploy failed: exit 1")
        r.drain()
        r.tear_down(last, "closed")
        r.drain()
        assert r.fake.violations == []
        comment = only_comment(r.fake, "gitea", "acme/blog", 3)
        assert len(comment.edits) == 2 and "**failed**: pre_deploy failed: exit 1" in comment.edits[1]
        assert "**removed**: the pull request was closed or merged" in comment.body
        assert r.fake.statuses("gitea", SHA2, "hooksvc/blog/preview") == ["pending", "pending", "failure"]
        assert r.fake.statuses("gitea", SHA2, "hooksvc/blog") == []
        [failed] = [a for a in r.fake.accepted if a.sha == SHA2 and a.state == "failure"]
        assert failed.description == "Preview of PR #3 failed: pre_deploy failed: exit 1"
        assert r.fake.deployments("gitea") == []
        assert_nothing_left(r.redis)


class TestDelivery:
    """A host that is down loses no report; no secret reaches a host."""

    @pytest.mark.parametrize("app, kind, repo, number", [("shop", "github", "acme/shop", 7),
                                                          ("wiki", "gitlab", "acme/docs/wiki", 5),
                                                          ("blog", "gitea", "acme/blog", 3)])
    def test_a_host_that_is_down_gets_every_report_later(self, r: Reporting, app: str, kind: str, repo: str,
                                                         number: int) -> None:
        """Comments (and environments) answered 503 for a while are retried through the outbox until sent."""
        r.fake.fail_next(f"{kind}-comments", 3, status=503)
        r.fake.fail_next(f"{kind}-deployments", 3, status=503)
        last = r.preview(app, number, SHA1, S.SUCCEEDED)
        r.drain()
        assert "**live**" in only_comment(r.fake, kind, repo, number).body
        r.fake.fail_next(f"{kind}-comments", 2, status=502)
        r.fake.fail_next(f"{kind}-deployments", 2, status=502)
        r.tear_down(last, "closed")
        r.drain()
        assert r.fake.faults_served(f"{kind}-comments") == 5
        assert r.fake.violations == []
        comment = only_comment(r.fake, kind, repo, number)
        assert "**removed**: the pull request was closed or merged" in comment.body
        failures = read_counters(r.redis)[keys.PREVIEW_COMMENT_FAILURES]
        assert failures == {kind: 5}
        if kind == "gitlab":
            assert [e.state for e in r.fake.environments()] == ["stopped"]
        if kind == "github":
            assert r.fake.deployments("github")[0].statuses[-1] == "inactive"
        assert_nothing_left(r.redis)

    def test_no_secret_in_any_body(self, r: Reporting) -> None:
        """An error quoting a secret reaches comments, statuses and deployments redacted."""
        for app, number in (("shop", 7), ("wiki", 5), ("blog", 3)):
            last = r.preview(app, number, SHA3, S.FAILED, f"migration failed: password={LEAKED}")
            r.drain()
            r.tear_down(last, "closed")
        r.drain()
        assert r.fake.violations == []
        bodies = [body for kind, repo, n in (("github", "acme/shop", 7), ("gitlab", "acme/docs/wiki", 5),
                                             ("gitea", "acme/blog", 3))
                  for c in r.fake.comments(kind, repo, n) for body in (c.body, *c.edits)]
        assert len(bodies) == 6 and sum("**failed**: migration failed: password=" in b for b in bodies) == 3
        deployments = r.fake.deployments("github") + r.fake.deployments("gitlab")
        texts = bodies + [a.description for a in r.fake.accepted] + [
            str(u) for d in deployments for u in (d.created, *d.updates)]
        assert not [t for t in texts if LEAKED in t]
        assert any("migration failed" in t for t in texts)
        for kind, repo, n in (("github", "acme/shop", 7), ("gitlab", "acme/docs/wiki", 5), ("gitea", "acme/blog", 3)):
            [comment] = r.fake.comments(kind, repo, n)
            assert all(TOKENS[kind] not in body for body in (comment.body, *comment.edits))


class TestGithubApp:
    """The comment goes out with the App's installation token, as statuses and deployments do."""

    @pytest.fixture(autouse=True)
    def fresh_credentials(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(host_auth, "CREDENTIALS", HostCredentials())

    def test_comment_and_deployment_with_the_installation_token(self, r: Reporting, tmp_path: Path,
                                                                redis_url: str) -> None:
        """A host authenticated as an App comments and records the preview with its installation token."""
        app = FakeGitHubApp(APP_ID, app_key().public_key(), INSTALLATION_ID, frozenset({"acme/shop"}))
        with FakeGitHost(TOKENS, github_app=app) as fake:
            config = with_previews(app_config(tmp_path, fake.url, redis_url), "shop")
            sender = OutboxSender(config, r.redis, sleep=r.clock.sleep, clock=r.clock, rng=lambda: 0.5,
                                  http_timeout=CLIENT_TIMEOUT)
            as_app = Reporting(r.store, sender, r.clock, r.redis, fake)
            as_app.preview("shop", 7, SHA1, S.SUCCEEDED)
            as_app.drain()
            assert fake.violations == [] and fake.refused_tokens == 0
            comment = only_comment(fake, "github", "acme/shop", 7)
            assert comment.headers["authorization"].removeprefix("Bearer ") in fake.issued_tokens
            assert [d.environment for d in fake.deployments("github")] == ["pr-7"]


class TestWithTheWorker:
    """A real preview (real git, Docker and compose, the worker's job) reported to the stand-in GitHub."""

    def test_the_pull_request_shows_the_running_preview_then_its_removal(
        self, tmp_path: Path, redis: redis_lib.Redis, clock: FakeClock, compose_project: str,
        docker_client: docker.DockerClient, base_image: str, cleanup: None,
    ) -> None:
        """The comment and the environment carry the address the worker gave the preview, which serves the
        PR's code; a push edits the comment; the operator's teardown marks it all removed."""
        del base_image, cleanup
        first, last = test_previews.free_port_range(2)
        world = test_previews.make_world(tmp_path, redis, compose_project, docker_client,
                                         f'url = "http://127.0.0.1:{{port}}/"\nports = "{first}-{last}"\n')
        world.store = DeploymentStore(redis, listeners=[write_events])
        with FakeGitHost({"github": "gh-api-token"}) as fake:
            github = replace(world.config.hosts["github"], api_url=f"{fake.url}/github")
            config = replace(world.config, hosts={**world.config.hosts, "github": github})
            sender = OutboxSender(config, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5,
                                  http_timeout=CLIENT_TIMEOUT)
            r = Reporting(world.store, sender, clock, redis, fake)
            one = world.deploy_pr(3, world.push_pr(3, "pr3-a"))
            assert one.state is S.SUCCEEDED, one.error
            r.drain()
            record = PreviewRecords(redis).get("web", 3)
            assert record is not None and record.url == f"http://127.0.0.1:{record.port}/"
            assert get_text(f"{record.url}version.txt") == (200, "pr3-a")
            comment = only_comment(fake, "github", "acme/web", 3)
            assert f"| URL | {record.url} |" in comment.body and "**live**" in comment.body
            [deployment] = fake.deployments("github")
            assert deployment.environment == "pr-3" and deployment.updates[-1]["environment_url"] == record.url
            two = world.deploy_pr(3, world.push_pr(3, "pr3-b"))
            assert two.state is S.SUCCEEDED, two.error
            r.drain()
            assert only_comment(fake, "github", "acme/web", 3).id == comment.id
            assert f"`{two.sha[:12]}`" in only_comment(fake, "github", "acme/web", 3).body
            removal = request_teardown(world.store, world.config.apps["web"], 3, operator="dan")
            execute(world.config, world.store, redis, removal.id)
            r.drain()
            assert fake.violations == []
            assert "**removed**: an operator removed it" in only_comment(fake, "github", "acme/web", 3).body
            assert [d.statuses[-1] for d in fake.deployments("github")] == ["inactive", "inactive"]
            assert fake.statuses("github", two.sha, "hooksvc/web/preview") == ["pending", "pending", "success"]
            assert_nothing_left(redis)
