"""Bitbucket Cloud webhooks: `X-Hub-Signature` over the raw body, `repo:push` with several ref changes.

The payload is the `repo:push` example of Bitbucket Cloud's "Event payloads" page
(support.atlassian.com/bitbucket-cloud/docs/event-payloads), trimmed, in
tests/helpers/payloads/bitbucket_push.json.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.errors import BadRequest
from hooksvc.providers import PROVIDERS, ZERO_SHA, RefChange, WebhookRequest, bitbucket
from tests.helpers.payloads import (
    bitbucket_change,
    bitbucket_push,
    bitbucket_request,
    commit_sha,
    github_signature,
    load,
    load_bytes,
    single_change,
)

SECRET = "api-webhook-secret"

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(["branch", "tag", "a" * 40]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["new", "old", "type", "name", "target", "hash", "closed", "forced", "changes"]), inner,
        max_size=4),
    max_leaves=12,
)


class TestBitbucketSignature:
    @given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=64))
    def test_sign_verify_round_trip(self, body: bytes, secret: str) -> None:
        """A body signed `sha256=<hex>` with the secret verifies; the same under another secret does not."""
        req = WebhookRequest(headers={"x-hub-signature": github_signature(body, secret)}, body=body, query={})
        assert bitbucket.verify(req, secret)
        assert not bitbucket.verify(req, secret + "x")

    def test_a_changed_body_does_not_verify(self) -> None:
        """Changing one byte of a signed delivery breaks its signature."""
        hook = bitbucket_request(bitbucket_push(), SECRET)
        assert bitbucket.verify(hook.to_request(), SECRET)
        assert not bitbucket.verify(hook.with_body(hook.body.replace(b"acme", b"acmf")).to_request(), SECRET)

    def test_unsigned_delivery_never_verifies(self) -> None:
        """A hook without a secret sends no signature header: nothing verifies it, not even an empty secret."""
        req = bitbucket_request(bitbucket_push(), None).to_request()
        assert not bitbucket.verify(req, SECRET) and not bitbucket.verify(req, "")

    def test_githubs_header_is_not_bitbucket_signature(self) -> None:
        """GitHub's `X-Hub-Signature-256` header with a valid MAC is not what Bitbucket verifies."""
        hook = bitbucket_request(bitbucket_push(), None)
        hook = hook.with_header("X-Hub-Signature-256", github_signature(hook.body, SECRET))
        assert not bitbucket.verify(hook.to_request(), SECRET)

    def test_bare_hex_without_the_prefix_is_refused(self) -> None:
        """The header must carry the `sha256=` prefix Bitbucket sends."""
        hook = bitbucket_request(bitbucket_push(), SECRET)
        bare = hook.with_header("X-Hub-Signature", github_signature(hook.body, SECRET).removeprefix("sha256="))
        assert not bitbucket.verify(bare.to_request(), SECRET)


class TestBitbucketParse:
    def test_documented_push(self) -> None:
        """The documented `repo:push` gives event push, the repository, the request id and the branch update."""
        hook = bitbucket_request(load_bytes("bitbucket_push"), SECRET, delivery_id="5c0b3d1e-bb")
        delivery = bitbucket.parse(hook.to_request())
        assert (delivery.provider, delivery.event, delivery.delivery_id) == ("bitbucket", "push", "5c0b3d1e-bb")
        assert delivery.repo == "team_name/repo_name"
        assert single_change(delivery) == RefChange(
            ref="refs/heads/name-of-branch", before="1e65c05c1d5171631d92438a13901ca7dae9618c",
            after="709d658dc5b6d6afcd46049c2f332ee3f515a67d", deleted=False, forced=False,
        )

    def test_several_changes_in_one_push_keep_their_order(self) -> None:
        """A push of a branch, a new tag and a deleted branch gives three changes in the payload's order."""
        payload = bitbucket_push(
            "acme/api",
            bitbucket_change("refs/heads/main", commit_sha(2), commit_sha(1), forced=True),
            bitbucket_change("refs/tags/v1.0", commit_sha(2), None),
            bitbucket_change("refs/heads/old", None, commit_sha(0)),
        )
        delivery = bitbucket.parse(bitbucket_request(payload, SECRET).to_request())
        assert delivery.push is not None
        assert list(delivery.push.changes) == [
            RefChange("refs/heads/main", commit_sha(1), commit_sha(2), deleted=False, forced=True),
            RefChange("refs/tags/v1.0", ZERO_SHA, commit_sha(2), deleted=False, forced=False),
            RefChange("refs/heads/old", commit_sha(0), ZERO_SHA, deleted=True, forced=False),
        ]
        assert delivery.push.changes[1].created and not delivery.push.changes[0].created

    def test_other_events_carry_no_push(self) -> None:
        """An event other than `repo:push` keeps its own name and repository, with no push."""
        payload = load("bitbucket_push")
        del payload["push"]
        delivery = bitbucket.parse(bitbucket_request(payload, SECRET, event="repo:updated").to_request())
        assert (delivery.event, delivery.repo, delivery.push) == ("repo:updated", "team_name/repo_name", None)

    @pytest.mark.parametrize(
        ("edit", "message"),
        [
            (lambda d: d["push"].update(changes="x"), "'push.changes' must be a list"),
            (lambda d: d["push"]["changes"][0].update(new=None, old=None), "neither 'new' nor 'old'"),
            (lambda d: d["push"]["changes"][0]["new"].update(type="named_branch"), "'push.changes[0].new.type'"),
            (lambda d: d["push"]["changes"][0]["new"]["target"].update(hash="nope"), "'hash' must be a 40-character"),
            (lambda d: d["push"]["changes"][0]["new"].update(name="a b"), "'push.changes[0].new.name' must be a full"),
            (lambda d: d["repository"].pop("full_name"), "'repository.full_name'"),
        ],
        ids=["changes-not-a-list", "no-sides", "mercurial-type", "bad-hash", "bad-name", "no-repository"],
    )
    def test_malformed_push_is_a_bad_request_naming_the_key(self, edit: object, message: str) -> None:
        """A push whose changes cannot be read is refused with a message naming the key at fault."""
        payload = load("bitbucket_push")
        edit(payload)  # type: ignore[operator]
        with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
            bitbucket.parse(bitbucket_request(payload, SECRET).to_request())

    @given(changes=JSON_VALUES)
    def test_any_signed_push_parses_or_is_a_bad_request(self, changes: object) -> None:
        """Whatever `push.changes` holds, parse returns ref changes or raises BadRequest, nothing else."""
        payload = {**load("bitbucket_push"), "push": {"changes": changes}}
        try:
            delivery = bitbucket.parse(bitbucket_request(payload, SECRET).to_request())
        except BadRequest:
            return
        assert delivery.push is not None and all(c.ref.startswith("refs/") for c in delivery.push.changes)

    def test_form_bodies_are_refused(self) -> None:
        """Bitbucket sends JSON only: another content type is a bad request."""
        hook = bitbucket_request(bitbucket_push(), SECRET).with_header("Content-Type", "text/plain")
        with pytest.raises(BadRequest, match="expected application/json"):
            bitbucket.parse(hook.to_request())

    def test_registered_with_its_route_and_clone_user(self) -> None:
        """Bitbucket Cloud serves /hooks/bitbucket and clones with `x-token-auth`, reporting build statuses."""
        provider = PROVIDERS["bitbucket"]
        assert provider is bitbucket.PROVIDER and provider.methods == frozenset({"POST"})
        [kind] = provider.kinds
        assert (kind.name, kind.clone_user, kind.statuses) == ("bitbucket", "x-token-auth", True)

    def test_errors_do_not_echo_the_signature(self) -> None:
        """A correctly signed but malformed push's error shows neither the MAC nor the secret."""
        text = json.dumps({**bitbucket_push(), "push": {"changes": [{"new": {"type": "branch"}}]}})
        hook = bitbucket_request(text, SECRET)
        with pytest.raises(BadRequest) as exc:
            bitbucket.parse(hook.to_request())
        assert github_signature(hook.body, SECRET)[7:] not in repr(exc.value) and SECRET not in repr(exc.value)
