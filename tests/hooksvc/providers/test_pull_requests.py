"""Pull-request events of GitHub, Gitea/Forgejo and GitLab read into `PullRequestEvent` (SPEC §13)."""

from __future__ import annotations

import pytest

from hooksvc.errors import BadRequest
from hooksvc.providers import HOST_KINDS, PreviewAction, WebhookDelivery, gitea, github, gitlab
from tests.helpers.payloads import (
    commit_sha,
    gitea_pull_request,
    gitea_request,
    github_pull_request,
    github_request,
    gitlab_merge_request,
    gitlab_request,
    load,
)

SECRET = "preview-webhook-secret"


def github_parsed(payload: dict[str, object]) -> WebhookDelivery:
    return github.parse(github_request(payload, SECRET, event="pull_request").to_request())


def gitea_parsed(payload: dict[str, object], *, forgejo: bool = False) -> WebhookDelivery:
    hook = gitea_request(payload, SECRET, event="pull_request", forgejo=forgejo)
    return gitea.parse(hook.to_request())


def gitlab_parsed(payload: dict[str, object]) -> WebhookDelivery:
    return gitlab.parse(gitlab_request(payload, SECRET).to_request())


class TestGithub:
    def test_documented_example_is_read(self) -> None:
        """GitHub's own synchronize example: PR 2 of Codertocat/Hello-World, its head, not a fork."""
        delivery = github_parsed(load("github_pull_request_synchronize"))
        pull = delivery.pull_request
        assert delivery.event == "pull_request" and delivery.repo == "Codertocat/Hello-World"
        assert pull is not None and delivery.push is None
        assert (pull.number, pull.action, pull.host_action) == (2, PreviewAction.DEPLOY, "synchronize")
        assert (pull.head_sha, pull.fork, pull.head_branch) == (
            "ec26c3e57ca3a959ca5aad62de7213c562f8c821", False, "changes")

    @pytest.mark.parametrize(("action", "expected"), [
        ("opened", PreviewAction.DEPLOY), ("reopened", PreviewAction.DEPLOY), ("synchronize", PreviewAction.DEPLOY),
        ("closed", PreviewAction.CLOSE), ("labeled", PreviewAction.NONE), ("edited", PreviewAction.NONE),
        ("ready_for_review", PreviewAction.NONE),
    ])
    def test_actions(self, action: str, expected: PreviewAction) -> None:
        """opened, reopened and synchronize deploy; closed (merged or not) tears down; the rest do nothing."""
        pull = github_parsed(github_pull_request(action, 7)).pull_request
        assert pull is not None and (pull.number, pull.action) == (7, expected)

    def test_merged_pull_request_closes(self) -> None:
        """A merge arrives as `closed` with `merged: true`: the preview goes all the same."""
        pull = github_parsed(github_pull_request("closed", 7, merged=True)).pull_request
        assert pull is not None and pull.action is PreviewAction.CLOSE

    def test_fork_is_recognised(self) -> None:
        """A head in another repository than the base, or in a deleted one, is a fork's."""
        assert github_parsed(github_pull_request(fork="mallory/shop")).pull_request.fork  # type: ignore[union-attr]
        gone = github_pull_request()
        gone["pull_request"]["head"]["repo"] = None
        assert github_parsed(gone).pull_request.fork  # type: ignore[union-attr]

    def test_bad_head_sha_names_the_key(self) -> None:
        """A head sha that is no sha is a 400 naming where it was looked for."""
        with pytest.raises(BadRequest, match="pull_request.head.*'sha' must be"):
            github_parsed(github_pull_request(head_sha="not-a-sha"))


class TestGitea:
    def test_documented_shape_is_read(self) -> None:
        """Gitea's `PullRequestPayload`: the top-level number, the head's sha and branch, the repository."""
        delivery = gitea_parsed(load("gitea_pull_request_opened"))
        pull = delivery.pull_request
        assert delivery.repo == "test/repo" and pull is not None
        assert (pull.number, pull.action, pull.head_branch, pull.fork) == (12, PreviewAction.DEPLOY, "fix-bug", False)
        assert pull.head_sha == "9f6bd1a2a4c6ce1e6b6a3bc1c4dd7e8a7a0b6e21"

    @pytest.mark.parametrize(("action", "expected"), [
        ("opened", PreviewAction.DEPLOY), ("reopened", PreviewAction.DEPLOY), ("synchronized", PreviewAction.DEPLOY),
        ("closed", PreviewAction.CLOSE), ("edited", PreviewAction.NONE), ("synchronize", PreviewAction.NONE),
    ])
    def test_actions(self, action: str, expected: PreviewAction) -> None:
        """Gitea's own action names: `synchronized` (not GitHub's `synchronize`) deploys new commits."""
        pull = gitea_parsed(gitea_pull_request(action, 4)).pull_request
        assert pull is not None and (pull.number, pull.action) == (4, expected)

    def test_forgejo_headers_and_forks(self) -> None:
        """Forgejo's headers are read the same way, and a head from another repository is a fork."""
        pull = gitea_parsed(gitea_pull_request(fork="mallory/blog"), forgejo=True).pull_request
        assert pull is not None and pull.fork


class TestGitlab:
    def test_documented_example_is_read(self) -> None:
        """GitLab's merge request example: iid, action `open`, the last commit, one project (no fork)."""
        delivery = gitlab_parsed(load("gitlab_merge_request"))
        pull = delivery.pull_request
        assert delivery.event == "merge request hook" and delivery.repo == "gitlabhq/gitlab-test"
        assert pull is not None
        assert (pull.number, pull.action, pull.host_action, pull.fork) == (1, PreviewAction.DEPLOY, "open", False)
        assert (pull.head_sha, pull.head_branch) == ("da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "ms-viewport")

    @pytest.mark.parametrize(("action", "oldrev", "expected"), [
        ("open", None, PreviewAction.DEPLOY), ("reopen", None, PreviewAction.DEPLOY),
        ("update", commit_sha(1), PreviewAction.DEPLOY), ("update", None, PreviewAction.NONE),
        ("close", None, PreviewAction.CLOSE), ("merge", None, PreviewAction.CLOSE),
        ("approved", None, PreviewAction.NONE),
    ])
    def test_actions(self, action: str, oldrev: str | None, expected: PreviewAction) -> None:
        """open and reopen deploy, update only with new commits (`oldrev`), close and merge tear down."""
        pull = gitlab_parsed(gitlab_merge_request(action, 3, oldrev=oldrev)).pull_request
        assert pull is not None and (pull.number, pull.action) == (3, expected)

    def test_fork_is_recognised(self) -> None:
        """A source project other than the target is a fork."""
        assert gitlab_parsed(gitlab_merge_request(fork=True)).pull_request.fork  # type: ignore[union-attr]

    def test_missing_iid_names_the_key(self) -> None:
        """A merge request without its iid is a 400 naming the key."""
        payload = gitlab_merge_request()
        del payload["object_attributes"]["iid"]
        with pytest.raises(BadRequest, match="'iid' must be"):
            gitlab_parsed(payload)


class TestHeadRefs:
    def test_each_host_names_where_it_keeps_pull_heads(self) -> None:
        """GitHub, Gitea and Forgejo keep PR heads in refs/pull/N/head, GitLab in refs/merge-requests/N/head."""
        assert HOST_KINDS["github"].pull_ref(5) == "refs/pull/5/head"
        assert HOST_KINDS["gitea"].pull_ref(5) == HOST_KINDS["forgejo"].pull_ref(5) == "refs/pull/5/head"
        assert HOST_KINDS["gitlab"].pull_ref(5) == "refs/merge-requests/5/head"
        with pytest.raises(ValueError, match="send no pull-request events"):
            HOST_KINDS["gogs"].pull_ref(5)
