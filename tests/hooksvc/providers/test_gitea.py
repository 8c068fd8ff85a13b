"""Gitea and Forgejo webhooks: signature over the JSON payload text, JSON/form/GET deliveries."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hooksvc import defaults
from hooksvc.errors import BadRequest
from hooksvc.providers import ZERO_SHA, WebhookRequest, gitea
from hooksvc.providers import payload as payload_readers
from tests.helpers.payloads import (
    FORM,
    HookRequest,
    commit_sha,
    gitea_push,
    gitea_request,
    gitea_signature,
    github_signature,
    load,
    load_bytes,
    payload_text,
)

SECRET = "blog-webhook-secret"

secrets = st.text(min_size=1, max_size=64)
#: Payload texts: any JSON string, which is what Gitea signs (and what fits in a form field or query).
payload_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
).map(lambda value: json.dumps({"value": value}, ensure_ascii=False))
deliveries = st.sampled_from(["json", "form", "get"])


def signed(text: str, secret: str, how: str, *, forgejo: bool = False) -> HookRequest:
    return gitea_request(text, secret, form=how == "form", get=how == "get", forgejo=forgejo)


class TestGiteaSignature:
    @given(text=payload_texts, secret=secrets, how=deliveries)
    def test_sign_verify_round_trip(self, text: str, secret: str, how: str) -> None:
        """A payload signed with the secret verifies, whether sent as JSON, form body or GET query."""
        assert gitea.verify(signed(text, secret, how).to_request(), secret)

    @given(text=payload_texts, other=payload_texts, secret=secrets, how=deliveries)
    def test_changed_payload_is_rejected(self, text: str, other: str, secret: str, how: str) -> None:
        """A signature made for one payload does not verify another."""
        assume(text != other)
        hook = signed(text, secret, how)
        forged = signed(other, secret, how)
        tampered = HookRequest(headers=hook.headers, body=forged.body, content_type=forged.content_type,
                               query=forged.query, method=forged.method)
        assert not gitea.verify(tampered.to_request(), secret)

    @given(text=payload_texts, secret=secrets, other=secrets, how=deliveries)
    def test_changed_secret_is_rejected(self, text: str, secret: str, other: str, how: str) -> None:
        """A payload signed with one secret does not verify under another."""
        assume(secret != other)
        assert not gitea.verify(signed(text, secret, how).to_request(), other)

    @given(text=payload_texts, secret=secrets, data=st.data())
    def test_changed_signature_is_rejected(self, text: str, secret: str, data: st.DataObject) -> None:
        """Changing any one character of the signature makes it fail."""
        signature = gitea_signature(text.encode(), secret)
        i = data.draw(st.integers(0, len(signature) - 1))
        char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != signature[i]))
        hook = gitea_request(text, secret).with_header("X-Gitea-Signature", signature[:i] + char + signature[i + 1:])
        assert not gitea.verify(hook.to_request(), secret)

    def test_form_body_verifies_against_the_payload_text(self) -> None:
        """For a form delivery Gitea signs the JSON in the `payload` field, and that verifies."""
        payload = gitea_push()
        hook = gitea_request(payload, SECRET, form=True)
        text = payload_text(payload)
        assert hook.body != text
        assert hook.header("X-Gitea-Signature") == gitea_signature(text, SECRET)
        assert gitea.verify(hook.to_request(), SECRET)

    def test_form_body_signed_over_the_urlencoded_body_is_rejected(self) -> None:
        """A signature over the urlencoded body (GitHub's scheme) does not verify as Gitea."""
        text = json.dumps(gitea_push())
        body = urlencode({"payload": text}).encode()
        req = WebhookRequest(
            headers={"content-type": FORM, "x-gitea-event": "push",
                     "x-gitea-signature": gitea_signature(body, SECRET)},
            body=body, query={},
        )
        assert not gitea.verify(req, SECRET)

    def test_get_delivery_verifies_against_the_query_payload(self) -> None:
        """A GET delivery carries and signs the JSON in `?payload=`."""
        hook = gitea_request(gitea_push(), SECRET, get=True)
        assert hook.method == "GET" and hook.body == b""
        assert gitea.verify(hook.to_request(), SECRET)

    def test_signed_bytes_are_the_payload_text(self) -> None:
        """The bytes checked are the JSON text for every delivery style, never the form body."""
        text = load_bytes("gitea_push")
        for hook in (gitea_request(text, SECRET), gitea_request(text, SECRET, form=True),
                     gitea_request(text, SECRET, get=True)):
            assert gitea.signed_bytes(hook.to_request()) == text

    def test_empty_signature_header_means_unsigned(self) -> None:
        """Gitea sends empty signature headers for a hook without secret: that never verifies."""
        hook = gitea_request(gitea_push(), None)
        assert hook.header("X-Gitea-Signature") == ""
        assert not gitea.verify(hook.to_request(), SECRET)

    def test_missing_signature_headers_do_not_verify(self) -> None:
        """Without any signature header the delivery is unsigned."""
        hook = gitea_request(gitea_push(), SECRET)
        for name in ("X-Gitea-Signature", "X-Gogs-Signature", "X-Forgejo-Signature"):
            hook = hook.with_header(name, None)
        assert not gitea.verify(hook.to_request(), SECRET)

    def test_forgejo_signature_header_verifies(self) -> None:
        """Forgejo's own `X-Forgejo-Signature` is enough on its own."""
        hook = gitea_request(gitea_push(), SECRET, forgejo=True).with_header("X-Gitea-Signature", None)
        assert gitea.verify(hook.to_request(), SECRET)

    def test_every_signature_header_sent_must_match(self) -> None:
        """When Gitea's and Forgejo's headers disagree the delivery is rejected."""
        hook = gitea_request(gitea_push(), SECRET, forgejo=True).with_header("X-Forgejo-Signature", "0" * 64)
        assert not gitea.verify(hook.to_request(), SECRET)

    def test_github_style_header_alone_does_not_count(self) -> None:
        """Only the Gitea/Forgejo signature headers are checked, not the `X-Hub-Signature-256` copy."""
        text = load_bytes("gitea_push")
        hook = (gitea_request(text, None)
                .with_header("X-Hub-Signature-256", github_signature(text, SECRET)))
        assert not gitea.verify(hook.to_request(), SECRET)

    def test_uppercase_hex_is_rejected(self) -> None:
        """The signature must be exactly Gitea's lower-case hex digest."""
        hook = gitea_request(gitea_push(), SECRET)
        signature = hook.header("X-Gitea-Signature") or ""
        assert not gitea.verify(hook.with_header("X-Gitea-Signature", signature.upper()).to_request(), SECRET)

    @pytest.mark.parametrize(
        "req",
        [
            WebhookRequest(headers={"content-type": FORM, "x-gitea-signature": "ab"}, body=b"data=1", query={}),
            WebhookRequest(headers={"content-type": "text/plain", "x-gitea-signature": "ab"}, body=b"{}", query={}),
            WebhookRequest(headers={"x-gitea-signature": "ab"}, body=b"", query={}, method="GET"),
            WebhookRequest(headers={"content-type": FORM, "x-gitea-signature": "ab"}, body=b"payload=%FF", query={}),
        ],
        ids=["form-without-payload", "wrong-content-type", "get-without-payload", "form-not-utf8"],
    )
    def test_unextractable_payload_is_false_not_an_error(self, req: WebhookRequest) -> None:
        """When the payload text cannot be found, verify says False instead of raising."""
        assert gitea.verify(req, SECRET) is False

    def test_verify_and_parse_use_the_signed_bytes_they_are_given(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Given the signed bytes, verify and parse do not extract the payload from the body again."""
        req = gitea_request(gitea_push(), SECRET, form=True).to_request()
        signed_text = gitea.signed_bytes(req)
        monkeypatch.setattr(gitea, "form_payload", lambda body: pytest.fail("the form body was parsed again"))
        assert gitea.verify(req, SECRET, signed_text) and not gitea.verify(req, "other", signed_text)
        assert gitea.parse(req, signed_text).repo == "acme/blog"

    def test_non_ascii_signature_header_is_false(self) -> None:
        """A signature header with non-ASCII characters is rejected without an exception."""
        hook = gitea_request(gitea_push(), SECRET).with_header("X-Gitea-Signature", "\u00e9" * 64)
        assert gitea.verify(hook.to_request(), SECRET) is False

    def test_empty_secret_never_verifies(self) -> None:
        """An app without a secret is not matched by signing with the empty key."""
        text = load_bytes("gitea_push")
        hook = gitea_request(text, None).with_header("X-Gitea-Signature", gitea_signature(text, ""))
        assert not gitea.verify(hook.to_request(), "")


class TestGiteaParse:
    def test_documented_push(self) -> None:
        """Gitea's documented push gives event, delivery id, repo, ref and shas; never forced."""
        hook = gitea_request(load_bytes("gitea_push"), SECRET, delivery_id="f6266f16-1bf3-46a5-9ea4-602e06ead473")
        delivery = gitea.parse(hook.to_request())
        assert delivery.provider == "gitea"
        assert delivery.event == "push"
        assert delivery.delivery_id == "f6266f16-1bf3-46a5-9ea4-602e06ead473"
        assert delivery.repo == "gitea/webhooks"
        push = delivery.push
        assert push is not None
        assert push.ref == "refs/heads/develop"
        assert push.before == "28e1879d029cb852e4844d9c718537df08844e03"
        assert push.after == "bffeb74224043ba2feb48d137756c8a9331c449a"
        assert (push.deleted, push.forced) == (False, False)

    def test_tag_deletion(self) -> None:
        """A tag deletion arrives as a push with a zero `after`."""
        delivery = gitea.parse(gitea_request(load_bytes("gitea_push_tag_delete"), SECRET).to_request())
        assert delivery.push is not None
        assert delivery.push.deleted and delivery.push.after == ZERO_SHA
        assert delivery.push.ref == "refs/tags/v1.0.0"

    def test_annotated_tag_reports_the_tagged_commit(self) -> None:
        """For an annotated tag Gitea's `after` is the tag object; `head_commit.id` is the commit."""
        payload = gitea_push(ref="refs/tags/v2.0.0", after=commit_sha(3))
        payload["head_commit"]["id"] = commit_sha(4)
        delivery = gitea.parse(gitea_request(payload, SECRET).to_request())
        assert delivery.push is not None and delivery.push.after == commit_sha(4)

    def test_forced_field_is_ignored(self) -> None:
        """Gitea has no `forced` flag; a stray one does not make the push forced."""
        payload = gitea_push()
        payload["forced"] = True
        delivery = gitea.parse(gitea_request(payload, SECRET).to_request())
        assert delivery.push is not None and not delivery.push.forced

    @pytest.mark.parametrize("how", ["json", "form", "get"])
    def test_every_delivery_style_parses_alike(self, how: str) -> None:
        """JSON body, form body and GET query give the same delivery."""
        text = json.dumps(gitea_push())
        hook = gitea_request(text, SECRET, form=how == "form", get=how == "get", delivery_id="d-1")
        expected = gitea.parse(gitea_request(text, SECRET, delivery_id="d-1").to_request())
        assert gitea.parse(hook.to_request()) == expected

    def test_forgejo_headers(self) -> None:
        """Forgejo's event and delivery headers are read when Gitea's are absent."""
        hook = gitea_request(gitea_push(), SECRET, forgejo=True, delivery_id="fj-1")
        for family in ("Gitea", "Gogs"):
            hook = hook.with_header(f"X-{family}-Event", None).with_header(f"X-{family}-Delivery", None)
        delivery = gitea.parse(hook.to_request())
        assert (delivery.event, delivery.delivery_id) == ("push", "fj-1")

    def test_other_events_keep_their_name(self) -> None:
        """Events other than push (create, delete, issues…) are reported by name without push facts."""
        payload = {"ref": "main", "ref_type": "branch", "repository": load("gitea_push")["repository"]}
        delivery = gitea.parse(gitea_request(payload, SECRET, "Delete").to_request())
        assert (delivery.event, delivery.repo, delivery.push) == ("delete", "gitea/webhooks", None)


class TestGiteaParseErrors:
    @pytest.mark.parametrize(
        ("hook", "reason"),
        [
            (gitea_request(gitea_push(), SECRET).with_header("Content-Type", "text/xml"),
             "unsupported content type 'text/xml'"),
            (gitea_request(b"{", SECRET), "payload is not valid JSON"),
            (gitea_request(b"\"text\"", SECRET), "payload must be a JSON object, got a string"),
            (gitea_request(gitea_push(), SECRET).with_header("X-Gitea-Event", None).with_header("X-Gogs-Event", None),
             "missing X-Forgejo-Event or X-Gitea-Event header"),
            (gitea_request({**gitea_push(), "ref": "v1.0.0"}, SECRET), "'ref' must be a full git ref"),
            (gitea_request({**gitea_push(), "after": "1234"}, SECRET), "'after' must be a 40-character hex commit sha"),
            (gitea_request({**gitea_push(), "repository": None}, SECRET),
             "'repository.full_name' must name the repository"),
            (gitea_request({**gitea_push(), "head_commit": {"id": "x"}}, SECRET),
             "head_commit: 'id' must be a 40-character hex commit sha"),
        ],
        ids=lambda v: v if isinstance(v, str) else "",
    )
    def test_bad_request_names_the_problem(self, hook: HookRequest, reason: str) -> None:
        """Each malformed delivery raises BadRequest whose message says what is wrong."""
        with pytest.raises(BadRequest) as exc:
            gitea.parse(hook.to_request())
        assert reason in str(exc.value)

    def test_get_without_payload(self) -> None:
        """A GET delivery must carry `?payload=`."""
        req = WebhookRequest(headers={"x-gitea-event": "push"}, body=b"", query={}, method="GET")
        with pytest.raises(BadRequest, match="without a 'payload' query parameter"):
            gitea.parse(req)

    def test_form_body_of_many_fields_is_refused_before_it_is_parsed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A form body of more fields than any host sends is refused, unparsed (parsing them costs seconds)."""
        parsed: list[str] = []
        monkeypatch.setattr(payload_readers, "parse_qs", lambda *args, **kwargs: parsed.append("parse_qs") or {})
        body = b"a=&" * 100_000 + urlencode({"payload": json.dumps(gitea_push())}).encode()
        req = WebhookRequest(headers={"x-gitea-event": "push", "content-type": FORM}, body=body, query={})
        with pytest.raises(BadRequest, match=f"more than {defaults.WEBHOOK_FORM_MAX_FIELDS} fields"):
            gitea.parse(req)
        assert parsed == []

    def test_form_body_with_a_few_extra_fields_parses(self) -> None:
        """A handful of fields beside `payload` stay within the limit."""
        fields = {"a": "1", "b": "2", "payload": json.dumps(gitea_push())}
        req = WebhookRequest(headers={"x-gitea-event": "push", "content-type": FORM},
                             body=urlencode(fields).encode(), query={})
        assert gitea.parse(req).repo == "acme/blog"

    def test_form_without_payload(self) -> None:
        """A form body must carry the JSON in a `payload` field."""
        req = WebhookRequest(headers={"x-gitea-event": "push", "content-type": FORM}, body=b"x=1", query={})
        with pytest.raises(BadRequest, match="no 'payload' field"):
            gitea.parse(req)


class TestGiteaSecrecy:
    @given(text=st.text(max_size=200), given_sig=st.text(max_size=80), how=deliveries)
    def test_no_error_reveals_the_expected_mac_or_secret(self, text: str, given_sig: str, how: str) -> None:
        """Neither verify nor parse ever puts the expected MAC or the secret in an exception."""
        secret = "s3cret-never-shown"
        expected = gitea_signature(text.encode(), secret)
        hook = signed(text, "other", how).with_header("X-Gitea-Signature", given_sig)
        req = hook.to_request()
        assert gitea.verify(req, secret) is (given_sig == expected)
        try:
            gitea.parse(req)
        except BadRequest as exc:
            for shown in (str(exc), repr(exc)):
                assert secret not in shown and expected not in shown

    def test_signed_bad_payload_error_does_not_echo_the_signature(self) -> None:
        """A correctly signed but malformed push's error shows neither the MAC nor the secret."""
        text = json.dumps({**gitea_push(), "after": "nope"})
        mac = gitea_signature(text.encode(), SECRET)
        with pytest.raises(BadRequest) as exc:
            gitea.parse(gitea_request(text, SECRET).to_request())
        assert mac not in repr(exc.value) and SECRET not in repr(exc.value)

