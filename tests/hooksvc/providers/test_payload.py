"""The field checks every provider shares (`hooksvc.providers.payload`): one definition of a valid ref,
and sha, anchored at the very end of the value."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from hooksvc.errors import BadRequest
from hooksvc.providers import payload
from tests.helpers.payloads import (
    HookRequest,
    commit_sha,
    gitea_push,
    gitea_request,
    github_push,
    github_request,
    gitlab_push,
    gitlab_request,
)

GOOD_REF, GOOD_SHA = "refs/heads/main", commit_sha(7)


class TestTrailingNewline:
    """Python's `$` also matches before a final line feed: a value with one must still be refused."""

    @pytest.mark.parametrize("value", [GOOD_SHA + "\n", GOOD_SHA + "\r\n", "\n" + GOOD_SHA])
    def test_a_sha_with_a_line_break_is_refused(self, value: str) -> None:
        """`read_sha` refuses a sha with a line break before or after it, naming the key."""
        with pytest.raises(BadRequest, match="'after' must be a 40-character hex commit sha"):
            payload.read_sha({"after": value}, "after")

    def test_a_ref_with_a_trailing_line_feed_is_refused(self) -> None:
        """`read_ref` refuses `refs/heads/main\\n`, naming the key."""
        with pytest.raises(BadRequest, match="'ref' must be a full git ref"):
            payload.read_ref({"ref": GOOD_REF + "\n"})

    def test_valid_values_still_pass(self) -> None:
        """The anchoring refuses nothing that was valid."""
        assert payload.read_sha({"after": GOOD_SHA.upper()}, "after") == GOOD_SHA
        assert payload.read_ref({"ref": GOOD_REF}) == GOOD_REF


SIGNED: dict[str, tuple[str, Callable[[str, str], HookRequest]]] = {
    "github": ("/hooks/github", lambda ref, after: github_request(github_push(ref=ref, after=after),
                                                                  "shop-webhook-secret")),
    "gitea": ("/hooks/gitea", lambda ref, after: gitea_request(gitea_push(ref=ref, after=after),
                                                               "blog-webhook-secret")),
    "gitlab": ("/hooks/gitlab", lambda ref, after: gitlab_request(gitlab_push(ref=ref, after=after),
                                                                  "wiki-webhook-secret")),
}


@pytest.mark.parametrize("host", sorted(SIGNED))
@pytest.mark.parametrize(("ref", "after", "key"), [
    (None, GOOD_SHA + "\n", "'after'"),
    ("\n", GOOD_SHA, "'ref'"),
])
def test_a_signed_push_with_a_trailing_line_feed_is_400(client: FlaskClient, host: str, ref: str | None,
                                                        after: str, key: str) -> None:
    """Through the web app: a correctly signed push whose ref or sha ends in a line feed deploys nothing,
    and the answer names the field."""
    path, make = SIGNED[host]
    default_ref = {"github": "refs/heads/main", "gitea": "refs/tags/v1.0.0", "gitlab": "refs/heads/release/1.0"}
    hook = make(default_ref[host] + ref if ref else default_ref[host], after)
    resp = client.open(path, **hook.client_kwargs())
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert key in resp.json["error"]
