"""Routing: which verified apps deploy which commit for a parsed delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooksvc.config import AppConfig, Config
from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.providers import ZERO_SHA, PushEvent, RefChange, WebhookDelivery, gitea, github, gitlab
from hooksvc.routing import RoutingDecision, plan_deployments, select_apps
from tests.helpers.config import make_config
from tests.helpers.payloads import (
    commit_sha,
    gitea_push,
    gitea_request,
    github_push,
    github_request,
    gitlab_push,
    gitlab_request,
)

#: Two more apps on the shop repository, spelled in another case, on other branches.
MORE_SHOP_APPS = """
    [apps.shop-staging]
    host = "github"
    repo = "ACME/Shop"
    clone_url = "/srv/shop.git"
    branch = "staging"
    secret_env = "SHOP_SECRET"

    [apps.shop-canary]
    host = "github"
    repo = "acme/shop"
    clone_url = "/srv/shop.git"
    branch = "main"
    secret_env = "SHOP_SECRET"
"""


def push(repo: str, ref: str, after: str | None = None, before: str | None = None, *,
         forced: bool = False, deleted: bool = False, delivery_id: str = "d-1") -> WebhookDelivery:
    after = ZERO_SHA if deleted else after or commit_sha(1)
    return WebhookDelivery(
        provider="github", event="push", delivery_id=delivery_id, repo=repo,
        push=PushEvent((RefChange(ref=ref, before=before or commit_sha(0), after=after, deleted=deleted,
                                  forced=forced),)),
    )


def multi_push(repo: str, *changes: tuple[str, str]) -> WebhookDelivery:
    """A delivery moving several refs at once, as Bitbucket sends them: (ref, after) pairs; a zero
    `after` deletes the ref."""
    return WebhookDelivery(
        provider="bitbucket", event="push", delivery_id="bb-1", repo=repo,
        push=PushEvent(tuple(RefChange(ref=ref, before=commit_sha(0), after=after, deleted=after == ZERO_SHA,
                                       forced=False) for ref, after in changes)),
    )


def apps(config: Config, *names: str) -> list[AppConfig]:
    return [config.apps[name] for name in names]


@pytest.fixture
def wide_config(tmp_path: Path) -> Config:
    return make_config(tmp_path, MORE_SHOP_APPS)


class TestSelectApps:
    def test_repo_matches_case_insensitively(self, config: Config) -> None:
        """A payload naming `Acme/SHOP` selects the app configured for `acme/shop`."""
        chosen = select_apps(push("Acme/SHOP", "refs/heads/main"), list(config.apps.values()))
        assert [a.name for a in chosen] == ["shop"]

    def test_other_repositories_are_left_out(self, config: Config) -> None:
        """Apps of other repositories are not selected, even if they verified."""
        assert select_apps(push("acme/unknown", "refs/heads/main"), list(config.apps.values())) == []

    def test_delivery_without_repository_selects_nothing(self, config: Config) -> None:
        """An event that names no repository (e.g. an org-level ping) selects no app."""
        assert select_apps(push("", "refs/heads/main"), list(config.apps.values())) == []

    def test_several_apps_on_one_repository(self, wide_config: Config) -> None:
        """Every app of the repository is selected, in configuration order."""
        chosen = select_apps(push("acme/shop", "refs/heads/main"), list(wide_config.apps.values()))
        assert [a.name for a in chosen] == ["shop", "shop-staging", "shop-canary"]


class TestPlanDeployments:
    def test_push_to_the_configured_branch_deploys(self, config: Config) -> None:
        """A push to `main` of acme/shop makes one deployment carrying the push's facts."""
        delivery = push("acme/shop", "refs/heads/main", commit_sha(5), commit_sha(4), delivery_id="gh-42")
        decision = plan_deployments(delivery, apps(config, "shop"))
        assert decision == RoutingDecision(
            deployments=(
                NewDeployment(app="shop", sha=commit_sha(5), ref="refs/heads/main", trigger=Trigger.PUSH,
                              delivery_id="gh-42", forced=False, before=commit_sha(4)),
            ),
            ignored=None,
        )

    def test_forced_push_is_marked_forced(self, config: Config) -> None:
        """The forced flag reaches the deployment, so the worker may move backwards."""
        decision = plan_deployments(push("acme/shop", "refs/heads/main", forced=True), apps(config, "shop"))
        assert decision.deployments[0].forced

    def test_new_branch_has_no_before(self, config: Config) -> None:
        """A zero `before` (a new ref) becomes "" in the deployment."""
        decision = plan_deployments(push("acme/shop", "refs/heads/main", before=ZERO_SHA), apps(config, "shop"))
        assert decision.deployments[0].before == ""

    @pytest.mark.parametrize("tag", ["refs/tags/v1", "refs/tags/v2.3.4", "refs/tags/v"])
    def test_tag_matching_the_glob_deploys(self, config: Config, tag: str) -> None:
        """An app with `tags = "v*"` deploys every tag the glob matches."""
        decision = plan_deployments(push("acme/blog", tag), apps(config, "blog"))
        assert [(d.app, d.ref) for d in decision.deployments] == [("blog", tag)]

    @pytest.mark.parametrize(
        ("ref", "reason"),
        [
            ("refs/tags/release-1", "ref refs/tags/release-1 matches no app's tag pattern"),
            ("refs/heads/v1", "ref refs/heads/v1 matches no app's branch"),
        ],
    )
    def test_tag_app_ignores_other_refs(self, config: Config, ref: str, reason: str) -> None:
        """A tag app ignores non-matching tags and every branch, saying so."""
        assert plan_deployments(push("acme/blog", ref), apps(config, "blog")) == RoutingDecision(ignored=reason)

    def test_branch_glob_deploys(self, config: Config) -> None:
        """An app with `branch = "release/*"` deploys `release/2024.1`."""
        decision = plan_deployments(push("acme/wiki", "refs/heads/release/2024.1"), apps(config, "wiki"))
        assert [d.app for d in decision.deployments] == ["wiki"]

    def test_other_branch_is_ignored(self, config: Config) -> None:
        """A push to another branch deploys nothing and says which ref matched nothing."""
        decision = plan_deployments(push("acme/shop", "refs/heads/dev"), apps(config, "shop"))
        assert decision == RoutingDecision(ignored="ref refs/heads/dev matches no app's branch")

    def test_branch_app_ignores_tags(self, config: Config) -> None:
        """A tag named like the branch does not deploy a branch app."""
        decision = plan_deployments(push("acme/shop", "refs/tags/main"), apps(config, "shop"))
        assert decision.ignored == "ref refs/tags/main matches no app's tag pattern"

    def test_deleted_ref_is_ignored(self, config: Config) -> None:
        """Deleting the deployed branch deploys nothing."""
        decision = plan_deployments(push("acme/shop", "refs/heads/main", deleted=True), apps(config, "shop"))
        assert decision == RoutingDecision(ignored="ref refs/heads/main was deleted")

    @pytest.mark.parametrize("event", ["issues", "ping", "merge request hook"])
    def test_non_push_events_are_ignored(self, config: Config, event: str) -> None:
        """Events other than push deploy nothing."""
        delivery = WebhookDelivery(provider="github", event=event, delivery_id="d", repo="acme/shop")
        assert plan_deployments(delivery, apps(config, "shop")) == RoutingDecision(
            ignored=f"event {event!r} is not a push"
        )

    def test_repo_is_case_insensitive(self, config: Config) -> None:
        """The payload's repository spelling does not have to match the config's case."""
        decision = plan_deployments(push("ACME/shop", "refs/heads/main"), apps(config, "shop"))
        assert [d.app for d in decision.deployments] == ["shop"]

    def test_several_apps_on_one_repository(self, wide_config: Config) -> None:
        """Each app of the repository whose branch matches gets its own deployment of the same sha."""
        all_apps = list(wide_config.apps.values())
        decision = plan_deployments(push("acme/shop", "refs/heads/main", commit_sha(9)), all_apps)
        assert [(d.app, d.sha) for d in decision.deployments] == [("shop", commit_sha(9)),
                                                                   ("shop-canary", commit_sha(9))]
        staging = plan_deployments(push("acme/shop", "refs/heads/staging"), all_apps)
        assert [d.app for d in staging.deployments] == ["shop-staging"]

    def test_apps_of_another_repository_never_deploy(self, config: Config) -> None:
        """Even if handed apps of other repositories, only the delivery's repository deploys."""
        decision = plan_deployments(push("acme/shop", "refs/heads/main"), list(config.apps.values()))
        assert [d.app for d in decision.deployments] == ["shop"]
        other = plan_deployments(push("acme/other", "refs/heads/main"), list(config.apps.values()))
        assert other == RoutingDecision(ignored="no app is configured for repository 'acme/other'")


class TestSeveralRefChanges:
    """One push that moves several refs (Bitbucket's `push.changes[]`, Data Center's `changes[]`)."""

    def test_only_the_matching_change_deploys(self, config: Config) -> None:
        """Of a push to `dev` and `main`, only `main` deploys shop, with main's commit."""
        delivery = multi_push("acme/shop", ("refs/heads/dev", commit_sha(3)), ("refs/heads/main", commit_sha(4)))
        decision = plan_deployments(delivery, apps(config, "shop"))
        assert [(d.app, d.ref, d.sha) for d in decision.deployments] == [("shop", "refs/heads/main", commit_sha(4))]

    def test_each_matching_change_is_a_deployment_in_payload_order(self, config: Config) -> None:
        """Two tags that both match blog's pattern make two deployments, in the payload's order: intake's
        coalescing then keeps the last one queued."""
        delivery = multi_push("acme/blog", ("refs/tags/v1.0.1", commit_sha(5)), ("refs/tags/v1.0.2", commit_sha(6)))
        decision = plan_deployments(delivery, apps(config, "blog"))
        assert [(d.ref, d.sha) for d in decision.deployments] == [("refs/tags/v1.0.1", commit_sha(5)),
                                                                  ("refs/tags/v1.0.2", commit_sha(6))]

    def test_a_deleted_ref_beside_a_pushed_one_is_skipped(self, config: Config) -> None:
        """A push that deletes `old` and moves `main` deploys main and nothing for the deletion."""
        delivery = multi_push("acme/shop", ("refs/heads/old", ZERO_SHA), ("refs/heads/main", commit_sha(7)))
        assert [d.sha for d in plan_deployments(delivery, apps(config, "shop")).deployments] == [commit_sha(7)]

    def test_only_deletions_are_ignored_with_every_ref_named(self, config: Config) -> None:
        """A push that only deletes refs names them all in the reason it deploys nothing."""
        delivery = multi_push("acme/shop", ("refs/heads/a", ZERO_SHA), ("refs/heads/main", ZERO_SHA))
        decision = plan_deployments(delivery, apps(config, "shop"))
        assert decision == RoutingDecision(ignored="refs refs/heads/a, refs/heads/main were deleted")

    def test_unmatched_changes_are_ignored_with_every_ref_named(self, config: Config) -> None:
        """When no change matches, the reason names every pushed ref."""
        delivery = multi_push("acme/shop", ("refs/heads/a", commit_sha(1)), ("refs/tags/b", commit_sha(2)))
        decision = plan_deployments(delivery, apps(config, "shop"))
        assert decision.ignored == "refs refs/heads/a, refs/tags/b match no app's branch or tag pattern"

    def test_a_push_of_no_ref_is_ignored(self, config: Config) -> None:
        """An empty change list deploys nothing and says so."""
        assert plan_deployments(multi_push("acme/shop"), apps(config, "shop")).ignored == "the push changes no ref"


class TestEndToEndWithProviders:
    """The helpers' default payloads route to the conftest apps, as the Flask tests rely on."""

    def test_github_push_deploys_shop(self, config: Config) -> None:
        """A signed default GitHub push parses and routes to shop."""
        req = github_request(github_push(), "shop-webhook-secret").to_request()
        assert github.verify(req, config.apps["shop"].secret.reveal())
        decision = plan_deployments(github.parse(req), list(config.apps.values()))
        assert [d.app for d in decision.deployments] == ["shop"]

    def test_gitea_tag_push_deploys_blog(self, config: Config) -> None:
        """A signed default Gitea tag push parses and routes to blog."""
        req = gitea_request(gitea_push(), "blog-webhook-secret", form=True).to_request()
        assert gitea.verify(req, config.apps["blog"].secret.reveal())
        decision = plan_deployments(gitea.parse(req), list(config.apps.values()))
        assert [(d.app, d.before) for d in decision.deployments] == [("blog", "")]

    def test_gitlab_push_deploys_wiki(self, config: Config) -> None:
        """A default GitLab push with the token parses and routes to wiki."""
        req = gitlab_request(gitlab_push(), "wiki-webhook-secret").to_request()
        assert gitlab.verify(req, config.apps["wiki"].secret.reveal())
        decision = plan_deployments(gitlab.parse(req), list(config.apps.values()))
        assert [d.app for d in decision.deployments] == ["wiki"]
