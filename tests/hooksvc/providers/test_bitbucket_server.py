"""Bitbucket Data Center webhooks: `X-Hub-Signature` over the raw body, `repo:refs_changed`, the ping.

The payload is the `repo:refs_changed` example of Bitbucket Data Center's "Event payload" page
(confluence.atlassian.com/bitbucketserver), trimmed, in
tests/helpers/payloads/bitbucket_server_refs_changed.json.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.errors import BadRequest
from hooksvc.providers import PROVIDERS, ZERO_SHA, RefChange, bitbucket_server
from tests.helpers.payloads import (
    bitbucket_server_push,
    bitbucket_server_request,
    commit_sha,
    github_signature,
    load,
    load_bytes,
    single_change,
)

SECRET = "console-webhook-secret"


class TestBitbucketServerSignature:
    def test_signed_delivery_verifies_and_a_changed_one_does_not(self) -> None:
        """`X-Hub-Signature: sha256=<hex>` of the raw body verifies; a changed body does not."""
        hook = bitbucket_server_request(bitbucket_server_push(), SECRET)
        assert hook.header("X-Hub-Signature") == github_signature(hook.body, SECRET)
        assert bitbucket_server.verify(hook.to_request(), SECRET)
        assert not bitbucket_server.verify(hook.to_request(), "other-secret")
        assert not bitbucket_server.verify(hook.with_body(hook.body + b" ").to_request(), SECRET)

    def test_unsigned_delivery_never_verifies(self) -> None:
        """A webhook without a secret sends no signature: it never verifies."""
        assert not bitbucket_server.verify(bitbucket_server_request(bitbucket_server_push(), None).to_request(), "")


class TestBitbucketServerParse:
    def test_documented_refs_changed(self) -> None:
        """The documented push names `PROJECT/slug`, the request id and the branch update."""
        hook = bitbucket_server_request(load_bytes("bitbucket_server_refs_changed"), SECRET, delivery_id="req-1")
        delivery = bitbucket_server.parse(hook.to_request())
        assert (delivery.provider, delivery.event, delivery.delivery_id) == ("bitbucket-server", "push", "req-1")
        assert delivery.repo == "PROJ/repository"
        assert single_change(delivery) == RefChange(
            ref="refs/heads/master", before="ecddabb624f6f5ba43816f5926e580a5f680a932",
            after="178864a7d521b6f5e720b386b2c2b0ef8563e0dc", deleted=False, forced=False,
        )

    def test_add_update_and_delete_in_one_push(self) -> None:
        """ADD has a zero `fromHash`, DELETE a zero `toHash` and is a deletion; the order is kept."""
        added = {"ref": {"id": "refs/tags/v2", "displayId": "v2", "type": "TAG"}, "refId": "refs/tags/v2",
                 "fromHash": ZERO_SHA, "toHash": commit_sha(3), "type": "ADD"}
        deleted = {"ref": {"id": "refs/heads/old", "displayId": "old", "type": "BRANCH"}, "refId": "refs/heads/old",
                   "fromHash": commit_sha(1), "toHash": ZERO_SHA, "type": "DELETE"}
        payload = bitbucket_server_push("OPS/console", "refs/heads/main", commit_sha(2), commit_sha(1), added, deleted)
        delivery = bitbucket_server.parse(bitbucket_server_request(payload, SECRET).to_request())
        assert delivery.push is not None
        assert [(c.ref, c.created, c.deleted) for c in delivery.push.changes] == [
            ("refs/heads/main", False, False), ("refs/tags/v2", True, False), ("refs/heads/old", False, True)]

    def test_diagnostics_ping_is_a_ping(self) -> None:
        """"Test connection" (`diagnostics:ping`) is a ping, with no repository required."""
        hook = bitbucket_server_request(b'{"test": true}', SECRET, event="diagnostics:ping")
        delivery = bitbucket_server.parse(hook.to_request())
        assert (delivery.event, delivery.repo, delivery.push) == ("ping", "", None)

    @pytest.mark.parametrize(
        ("edit", "message"),
        [
            (lambda d: d.update(changes={}), "'changes' must be a list"),
            (lambda d: d["changes"][0].update(type="MOVE"), "'changes\\[0\\].type' must be ADD, UPDATE or DELETE"),
            (lambda d: d["changes"][0].update(toHash="xyz"), "'toHash' must be a 40-character"),
            (lambda d: d["changes"][0]["ref"].update(id="master"), "'changes\\[0\\].ref.id' must be a full git ref"),
            (lambda d: d["repository"]["project"].pop("key"), "'repository.project.key'"),
        ],
        ids=["changes-not-a-list", "unknown-type", "bad-hash", "short-ref", "no-project"],
    )
    def test_malformed_push_is_a_bad_request_naming_the_key(self, edit: object, message: str) -> None:
        """A push that cannot be read is refused with a message naming the key at fault."""
        payload = load("bitbucket_server_refs_changed")
        edit(payload)  # type: ignore[operator]
        with pytest.raises(BadRequest, match=message):
            bitbucket_server.parse(bitbucket_server_request(payload, SECRET).to_request())

    @given(changes=st.lists(st.dictionaries(
        st.sampled_from(["ref", "refId", "fromHash", "toHash", "type"]),
        st.none() | st.text(max_size=12) | st.sampled_from(["ADD", "DELETE", "refs/heads/x", "0" * 40, "b" * 40])
        | st.dictionaries(st.just("id"), st.text(max_size=12) | st.just("refs/tags/t")),
        max_size=5), max_size=3))
    def test_any_signed_push_parses_or_is_a_bad_request(self, changes: list[dict[str, object]]) -> None:
        """Whatever `changes` holds, parse returns ref changes or raises BadRequest, nothing else."""
        payload = {**load("bitbucket_server_refs_changed"), "changes": changes}
        try:
            delivery = bitbucket_server.parse(bitbucket_server_request(payload, SECRET).to_request())
        except BadRequest:
            return
        assert delivery.push is not None and len(delivery.push.changes) == len(changes)

    def test_registered_with_its_route(self) -> None:
        """Data Center serves /hooks/bitbucket-server and reports build statuses."""
        provider = PROVIDERS["bitbucket-server"]
        assert provider is bitbucket_server.PROVIDER
        assert [(k.name, k.statuses) for k in provider.kinds] == [("bitbucket-server", True)]
