"""Gogs webhooks: `X-Gogs-Signature`, bare hex over the JSON payload text, JSON or form bodies.

The payload is the push example of Gogs' webhook documentation (gogs/gogs docs/advancing/webhooks.mdx),
trimmed, in tests/helpers/payloads/gogs_push.json.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.errors import BadRequest
from hooksvc.providers import PROVIDERS, RefChange, gogs
from tests.helpers.payloads import (
    FORM,
    gitea_signature,
    gogs_push,
    gogs_request,
    load_bytes,
    single_change,
)

SECRET = "docs-webhook-secret"


class TestGogsSignature:
    @given(text=st.text(max_size=300), secret=st.text(min_size=1, max_size=64), form=st.booleans())
    def test_sign_verify_round_trip(self, text: str, secret: str, form: bool) -> None:
        """The payload text signed with the secret verifies, sent as JSON or as a form's `payload`."""
        req = gogs_request(text, secret, form=form).to_request()
        assert gogs.verify(req, secret)
        assert not gogs.verify(req, secret + "x")

    def test_form_delivery_is_signed_over_the_json_not_the_body(self) -> None:
        """For a form body the signature is over the `payload` value, as Gogs computes it."""
        hook = gogs_request(gogs_push(), SECRET, form=True)
        assert hook.content_type == FORM
        assert gogs.verify(hook.to_request(), SECRET)
        assert not gogs.verify(hook.with_header("X-Gogs-Signature", gitea_signature(hook.body, SECRET)).to_request(),
                               SECRET)

    def test_missing_or_empty_signature_never_verifies(self) -> None:
        """Without `X-Gogs-Signature`, or with an empty secret, nothing verifies."""
        assert not gogs.verify(gogs_request(gogs_push(), None).to_request(), SECRET)
        text = load_bytes("gogs_push")
        assert not gogs.verify(gogs_request(text, "").to_request(), "")

    def test_unreadable_form_is_false_not_an_error(self) -> None:
        """A form body without a payload field verifies as False instead of raising."""
        hook = gogs_request(gogs_push(), SECRET, form=True).with_body(b"nothing=here")
        assert gogs.verify(hook.to_request(), SECRET) is False


class TestGogsParse:
    def test_documented_push(self) -> None:
        """The documented push gives the event, repository, delivery id and the branch update."""
        hook = gogs_request(load_bytes("gogs_push"), SECRET, delivery_id="f6266f16-1bf3-46a5-9ea4-602e06ead473")
        delivery = gogs.parse(hook.to_request())
        assert (delivery.provider, delivery.event, delivery.repo) == ("gogs", "push", "alice/moonlanding")
        assert delivery.delivery_id == "f6266f16-1bf3-46a5-9ea4-602e06ead473"
        assert single_change(delivery) == RefChange(
            ref="refs/heads/main", before="28e1879d029cb852e4844d9c718537df08844e03",
            after="bffeb74224043ba2feb48d137756c8a9331c449a", deleted=False, forced=False,
        )

    def test_create_event_is_not_a_push(self) -> None:
        """Gogs announces a tag as `create`, which carries no push and deploys nothing."""
        payload = {"ref": "v1.0", "ref_type": "tag", "repository": {"full_name": "acme/docs"}}
        delivery = gogs.parse(gogs_request(payload, SECRET, event="create").to_request())
        assert (delivery.event, delivery.repo, delivery.push) == ("create", "acme/docs", None)

    def test_missing_event_header_is_a_bad_request(self) -> None:
        """Without `X-Gogs-Event` the delivery is refused, naming the header."""
        with pytest.raises(BadRequest, match="X-Gogs-Event"):
            gogs.parse(gogs_request(gogs_push(), SECRET).with_header("X-Gogs-Event", None).to_request())

    def test_registered_without_a_status_api(self) -> None:
        """Gogs serves /hooks/gogs, POST only, and declares no status API (it has none)."""
        provider = PROVIDERS["gogs"]
        assert provider is gogs.PROVIDER and provider.methods == frozenset({"POST"})
        assert [(k.name, k.statuses) for k in provider.kinds] == [("gogs", False)]
