"""The preview comment's text and its search (pure): what a reviewer reads, and how hooksvc finds
its own comment again among a pull request's comments."""

from __future__ import annotations

import json

import pytest

from hooksvc.deployments import DeploymentState
from workers.http import HttpResponse
from workers.preview_comments import COMMENT_APIS, CommentView, comment_body, marked_comment, marker
from workers.statuses import describe_preview_state

S = DeploymentState
SHA = "0123456789abcdef0123456789abcdef01234567"


def view(state: DeploymentState = S.SUCCEEDED, reason: str = "", removed: str = "") -> CommentView:
    return CommentView(app="shop", number=7, url="https://pr-7.shop.example.com", sha=SHA, state=state,
                       reason=reason, removed=removed, page_url="https://deploy.example.com/deployments/42",
                       deployment_id="42")


def listing(*comments: object) -> HttpResponse:
    return HttpResponse(200, json.dumps(list(comments)).encode())


class TestBody:
    def test_a_live_preview(self) -> None:
        """Marker first, then state, URL, short commit and a link to the deployment."""
        body = comment_body(view())
        assert body.splitlines()[0] == marker("shop") == "<!-- hooksvc-preview:shop -->"
        assert "| State | **live** |" in body and "| URL | https://pr-7.shop.example.com |" in body
        assert "| Commit | `0123456789ab` |" in body
        assert "| Deployment | [42](https://deploy.example.com/deployments/42) |" in body

    def test_a_reason_stays_in_its_cell(self) -> None:
        """A reason's pipes, markup and later lines cannot break the table or hide text."""
        body = comment_body(view(S.FAILED, "exit 1 | <script>x</script>\nsecond line"))
        assert "| State | **failed**: exit 1 \\| &lt;script&gt;x&lt;/script&gt; |" in body
        assert "second line" not in body

    def test_a_removed_preview_shows_no_url(self) -> None:
        """After teardown the comment says why, and no longer offers the address."""
        body = comment_body(view(removed="closed"))
        assert "**removed**: the pull request was closed or merged" in body and "https://pr-7" not in body

    def test_an_unknown_removal_reason_is_quoted(self) -> None:
        """A reason without words of its own is shown as given."""
        assert "**removed**: disk full on the worker" in comment_body(view(removed="disk full on the worker"))


class TestSearch:
    def test_only_a_body_starting_with_the_marker_counts(self) -> None:
        """A quote of the comment (`> <!-- ...`) is a reviewer's, not hooksvc's."""
        answer = listing({"id": 1, "body": f"> {marker('shop')}"}, {"id": 2, "body": marker("blog")},
                         {"id": 3, "body": marker("shop") + "\n..."})
        assert marked_comment(answer, marker("shop")) == ("3", 3)

    def test_nothing_found_counts_the_page(self) -> None:
        """The page's length tells whether another page may follow."""
        assert marked_comment(listing({"id": 1, "body": "hi"}, {"id": 2, "body": None}), marker("shop")) == (None, 2)

    @pytest.mark.parametrize("raw", [b"not json", b'{"message": "Not Found"}'])
    def test_an_answer_that_is_no_list_is_refused(self, raw: bytes) -> None:
        """A body that is no comment list is an error, never an empty search."""
        with pytest.raises(ValueError, match="comment list"):
            marked_comment(HttpResponse(200, raw), marker("shop"))

    def test_every_host_with_pull_requests_has_a_comments_api(self) -> None:
        """GitHub, Gitea, Forgejo and GitLab comment; Bitbucket and Gogs have no previews to show."""
        assert sorted(COMMENT_APIS) == ["forgejo", "gitea", "github", "gitlab"]


class TestStatusSentence:
    @pytest.mark.parametrize("state, error, expected", [
        (S.QUEUED, "", "Preview of PR #7 queued"),
        (S.RUNNING, "", "Preview of PR #7 deploying"),
        (S.SUCCEEDED, "", "Preview of PR #7 is live"),
        (S.FAILED, "health check failed\ntrace", "Preview of PR #7 failed: health check failed"),
        (S.SKIPPED, "previews are not built for forks", "Preview of PR #7 not built: previews are not built for forks"),
        (S.SUPERSEDED, "", "Preview of PR #7 not deployed: superseded by a newer push"),
    ])
    def test_the_pull_request_comes_first(self, state: DeploymentState, error: str, expected: str) -> None:
        """A preview's status names its pull request, so it never reads as production's."""
        assert describe_preview_state(7, state, error) == expected
