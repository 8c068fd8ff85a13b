"""GitHub webhooks: signature over the raw body, JSON and form bodies, push/ping/other events."""

from __future__ import annotations

import contextlib
import json
from urllib.parse import urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hooksvc.errors import BadRequest
from hooksvc.providers import ZERO_SHA, WebhookRequest, github
from tests.helpers.payloads import (
    FORM,
    JSON,
    HookRequest,
    commit_sha,
    gitea_signature,
    github_push,
    github_request,
    github_signature,
    load,
    load_bytes,
)

SECRET = "shop-webhook-secret"
#: GitHub's published test vector (docs: validating-webhook-deliveries).
VECTOR_SECRET = "It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

secrets = st.text(min_size=1, max_size=64)
bodies = st.binary(max_size=512)


def raw_request(body: bytes, signature: str | None, content_type: str = JSON) -> WebhookRequest:
    headers = {"content-type": content_type, "x-github-event": "push"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return WebhookRequest(headers=headers, body=body, query={})


class TestGithubSignature:
    def test_published_test_vector_verifies(self) -> None:
        """GitHub's documented secret/payload/signature triple verifies."""
        req = raw_request(VECTOR_BODY, VECTOR_SIGNATURE)
        assert github.verify(req, VECTOR_SECRET)

    def test_helper_reproduces_published_test_vector(self) -> None:
        """The test helper signs exactly as GitHub documents, so the other tests sign correctly."""
        assert github_signature(VECTOR_BODY, VECTOR_SECRET) == VECTOR_SIGNATURE

    def test_published_vector_with_another_secret_is_rejected(self) -> None:
        """The same body and signature do not verify under a different secret."""
        assert not github.verify(raw_request(VECTOR_BODY, VECTOR_SIGNATURE), "It's a secret to everybody")

    @given(body=bodies, secret=secrets)
    def test_sign_verify_round_trip(self, body: bytes, secret: str) -> None:
        """Any body signed with the secret verifies with that secret."""
        assert github.verify(raw_request(body, github_signature(body, secret)), secret)

    @given(body=bodies, other=bodies, secret=secrets)
    def test_changed_body_is_rejected(self, body: bytes, other: bytes, secret: str) -> None:
        """A signature made for one body does not verify another body."""
        assume(body != other)
        assert not github.verify(raw_request(other, github_signature(body, secret)), secret)

    @given(body=bodies, secret=secrets, other=secrets)
    def test_changed_secret_is_rejected(self, body: bytes, secret: str, other: str) -> None:
        """A body signed with one secret does not verify under another."""
        assume(secret != other)
        assert not github.verify(raw_request(body, github_signature(body, secret)), other)

    @given(body=bodies, secret=secrets, data=st.data())
    def test_changed_signature_is_rejected(self, body: bytes, secret: str, data: st.DataObject) -> None:
        """Changing any one character of the signature header makes it fail."""
        signature = github_signature(body, secret)
        i = data.draw(st.integers(0, len(signature) - 1))
        char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != signature[i]))
        tampered = signature[:i] + char + signature[i + 1:]
        assert not github.verify(raw_request(body, tampered), secret)

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            "sha256=",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",  # no prefix (Gitea style)
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",  # legacy header format
            "sha256=zz",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",  # one char short
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\u00e9",
            "\udcff",
        ],
    )
    def test_missing_or_malformed_header_is_false_not_an_error(self, header: str | None) -> None:
        """A missing, empty, wrongly prefixed, truncated or non-ASCII signature header just fails."""
        assert github.verify(raw_request(VECTOR_BODY, header), VECTOR_SECRET) is False

    def test_only_the_sha256_header_counts(self) -> None:
        """A valid legacy SHA-1 `X-Hub-Signature` alone does not authenticate a delivery."""
        hook = github_request(VECTOR_BODY, VECTOR_SECRET).with_header("X-Hub-Signature-256", None)
        assert hook.header("X-Hub-Signature") is not None
        assert not github.verify(hook.to_request(), VECTOR_SECRET)

    def test_empty_secret_never_verifies(self) -> None:
        """An app without a secret cannot be matched by signing with the empty key."""
        assert not github.verify(raw_request(VECTOR_BODY, github_signature(VECTOR_BODY, "")), "")

    def test_form_body_verifies_over_the_raw_urlencoded_body(self) -> None:
        """For form deliveries GitHub signs the urlencoded body as sent, and so do we verify."""
        hook = github_request(github_push(), SECRET, form=True)
        assert hook.content_type == FORM
        assert hook.header("X-Hub-Signature-256") == github_signature(hook.body, SECRET)
        assert github.verify(hook.to_request(), SECRET)

    def test_form_body_signed_over_the_payload_text_is_rejected(self) -> None:
        """A form delivery signed over the inner JSON (Gitea's scheme) does not verify as GitHub."""
        text = json.dumps(github_push()).encode()
        body = urlencode({"payload": text.decode()}).encode()
        req = raw_request(body, "sha256=" + gitea_signature(text, SECRET), FORM)
        assert not github.verify(req, SECRET)

    def test_verify_does_not_parse_the_body(self) -> None:
        """A correctly signed body that is not JSON still verifies: parsing is a separate step."""
        body = b"\xff not json"
        assert github.verify(raw_request(body, github_signature(body, SECRET)), SECRET)

    def test_signed_bytes_are_the_raw_body(self) -> None:
        """The bytes GitHub signs are the request body unchanged, also for form bodies."""
        hook = github_request(github_push(), SECRET, form=True)
        assert github.signed_bytes(hook.to_request()) == hook.body


class TestGithubParse:
    def test_push_of_a_new_branch(self) -> None:
        """The documented new-branch push gives the event, repo, ref and both shas."""
        hook = github_request(load_bytes("github_push_new_branch"), SECRET, delivery_id="72d3162e-cc78")
        delivery = github.parse(hook.to_request())
        assert delivery.provider == "github"
        assert delivery.event == "push"
        assert delivery.delivery_id == "72d3162e-cc78"
        assert delivery.repo == "Codertocat/Hello-World"
        push = delivery.push
        assert push is not None
        assert push.ref == "refs/heads/master"
        assert push.before == ZERO_SHA
        assert push.after == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
        assert (push.deleted, push.forced) == (False, False)

    def test_tag_deletion(self) -> None:
        """The documented tag-delete push is a deletion with a zero `after`."""
        delivery = github.parse(github_request(load_bytes("github_push_tag_delete"), SECRET).to_request())
        assert delivery.push is not None
        assert delivery.push.ref == "refs/tags/simple-tag"
        assert delivery.push.deleted
        assert delivery.push.after == ZERO_SHA

    def test_zero_after_is_a_deletion_even_without_the_flag(self) -> None:
        """A zero `after` means the ref is gone, whatever the `deleted` flag says."""
        payload = github_push()
        payload.update(after=ZERO_SHA, deleted=False)
        delivery = github.parse(github_request(payload, SECRET).to_request())
        assert delivery.push is not None and delivery.push.deleted

    def test_deleted_flag_alone_is_a_deletion(self) -> None:
        """The `deleted` flag marks a deletion even if `after` were not zero."""
        payload = github_push()
        payload["deleted"] = True
        delivery = github.parse(github_request(payload, SECRET).to_request())
        assert delivery.push is not None and delivery.push.deleted

    def test_forced_flag_is_carried(self) -> None:
        """A force-push is reported as forced, so the worker may move the app backwards."""
        delivery = github.parse(github_request(github_push(forced=True), SECRET).to_request())
        assert delivery.push is not None and delivery.push.forced

    def test_annotated_tag_reports_the_tagged_commit(self) -> None:
        """For an annotated tag `after` is the tag object; the commit to deploy is `head_commit.id`."""
        tag_object, commit = commit_sha(7), commit_sha(8)
        payload = github_push(ref="refs/tags/v1.2.0", after=tag_object, before=ZERO_SHA)
        payload["head_commit"]["id"] = commit
        delivery = github.parse(github_request(payload, SECRET).to_request())
        assert delivery.push is not None and delivery.push.after == commit

    def test_branch_push_keeps_after(self) -> None:
        """On a branch `after` is the new tip and is reported as is."""
        payload = github_push(after=commit_sha(5))
        payload["head_commit"]["id"] = commit_sha(6)
        delivery = github.parse(github_request(payload, SECRET).to_request())
        assert delivery.push is not None and delivery.push.after == commit_sha(5)

    def test_uppercase_shas_are_normalised(self) -> None:
        """Shas are reported in lower case so they compare equal to git's output."""
        payload = github_push(after=commit_sha(2).upper())
        delivery = github.parse(github_request(payload, SECRET).to_request())
        assert delivery.push is not None and delivery.push.after == commit_sha(2)

    def test_form_body_parses_like_json(self) -> None:
        """A form-encoded delivery yields the same delivery as the JSON one."""
        payload = github_push()
        as_json = github.parse(github_request(payload, SECRET, delivery_id="d1").to_request())
        as_form = github.parse(github_request(payload, SECRET, form=True, delivery_id="d1").to_request())
        assert as_form == as_json

    def test_content_type_parameters_are_ignored(self) -> None:
        """`application/json; charset=utf-8` is JSON."""
        hook = github_request(github_push(), SECRET).with_header("Content-Type", "application/json; charset=utf-8")
        assert github.parse(hook.to_request()).event == "push"

    def test_ping(self) -> None:
        """The ping sent on hook creation is event "ping" with its repository and no push."""
        delivery = github.parse(github_request(load_bytes("github_ping"), SECRET, "ping").to_request())
        assert delivery.event == "ping"
        assert delivery.repo == "Octocoders/Hello-World"
        assert delivery.push is None

    def test_ping_without_repository(self) -> None:
        """An organisation hook's ping has no repository: repo is empty, not an error."""
        payload = load("github_ping")
        del payload["repository"]
        delivery = github.parse(github_request(payload, SECRET, "ping").to_request())
        assert (delivery.event, delivery.repo) == ("ping", "")

    def test_other_events_keep_their_name(self) -> None:
        """Any other event is reported by GitHub's name, lower-cased, without push facts."""
        payload = {"action": "opened", "repository": {"full_name": "acme/shop"}}
        delivery = github.parse(github_request(payload, SECRET, "Issues").to_request())
        assert (delivery.event, delivery.repo, delivery.push) == ("issues", "acme/shop", None)

    def test_other_events_need_no_push_fields(self) -> None:
        """A non-push event with none of the push fields still parses."""
        delivery = github.parse(github_request({}, SECRET, "workflow_run").to_request())
        assert (delivery.event, delivery.repo) == ("workflow_run", "")

    def test_missing_delivery_id_is_empty(self) -> None:
        """Without `X-GitHub-Delivery` the id is empty and deduplication relies on the body."""
        hook = github_request(github_push(), SECRET).with_header("X-GitHub-Delivery", None)
        assert github.parse(hook.to_request()).delivery_id == ""


class TestGithubParseErrors:
    @pytest.mark.parametrize(
        ("hook", "reason"),
        [
            (github_request(github_push(), SECRET).with_header("Content-Type", "text/plain"),
             "unsupported content type 'text/plain'"),
            (github_request(github_push(), SECRET).with_header("Content-Type", None),
             "unsupported content type ''"),
            (github_request(b"{not json", SECRET), "payload is not valid JSON"),
            (github_request(b"\xff\xfe\x00", SECRET), "payload is not valid JSON"),
            (github_request(b"[1, 2]", SECRET), "payload must be a JSON object, got an array"),
            (github_request(b"null", SECRET), "payload must be a JSON object, got null"),
            (github_request(github_push(), SECRET).with_header("X-GitHub-Event", None),
             "missing X-GitHub-Event header"),
            (github_request(github_push(), SECRET, event="push\nx"), "X-GitHub-Event header is not an event name"),
        ],
        ids=["text/plain", "no-content-type", "broken-json", "not-utf8", "array", "null", "no-event", "bad-event"],
    )
    def test_bad_request_names_the_problem(self, hook: HookRequest, reason: str) -> None:
        """Each malformed delivery raises BadRequest whose message says what is wrong."""
        with pytest.raises(BadRequest) as exc:
            github.parse(hook.to_request())
        assert reason in str(exc.value)

    @pytest.mark.parametrize(
        ("field", "value", "reason"),
        [
            ("ref", KeyError, "'ref' must be a full git ref like 'refs/heads/main', got None"),
            ("ref", "main", "'ref' must be a full git ref like 'refs/heads/main', got 'main'"),
            ("ref", "refs/heads/a b", "'ref' must be a full git ref"),
            ("ref", "refs/heads/../x", "'ref' must be a full git ref"),
            ("ref", 7, "'ref' must be a full git ref"),
            ("after", KeyError, "'after' must be a 40-character hex commit sha, got None"),
            ("after", "abc123", "'after' must be a 40-character hex commit sha, got 'abc123'"),
            ("after", "g" * 40, "'after' must be a 40-character hex commit sha"),
            ("before", "nope", "'before' must be a 40-character hex commit sha, got 'nope'"),
            ("repository", KeyError, "'repository.full_name' must name the repository, got None"),
            ("repository", {"full_name": 3}, "'repository.full_name' must name the repository, got 3"),
            ("repository", {"full_name": " "}, "'repository.full_name' must name the repository"),
            ("deleted", "yes", "'deleted' must be true or false, got 'yes'"),
            ("forced", 1, "'forced' must be true or false, got 1"),
        ],
    )
    def test_bad_push_field_names_the_field(self, field: str, value: object, reason: str) -> None:
        """A push with a missing or invalid field raises BadRequest naming the field and the value."""
        payload = github_push()
        if value is KeyError:
            del payload[field]
        else:
            payload[field] = value
        with pytest.raises(BadRequest) as exc:
            github.parse(github_request(payload, SECRET).to_request())
        assert reason in str(exc.value)

    def test_deeply_nested_json_is_a_bad_request(self) -> None:
        """JSON nested deeper than the parser's stack is refused as a bad request, not a crash."""
        with pytest.raises(BadRequest, match="depth limit exceeded"):
            github.parse(github_request(b"[" * 200_000, SECRET).to_request())

    @pytest.mark.parametrize("body", [b'{"ref": "\xff"}', b'{"ref": "\\ud800"}'], ids=["bytes", "surrogate"])
    def test_text_that_is_not_unicode_is_a_bad_request(self, body: bytes) -> None:
        """Invalid UTF-8 and a lone surrogate escape are refused: neither is text a git host sends."""
        with pytest.raises(BadRequest, match="payload is not valid JSON"):
            github.parse(github_request(body, SECRET).to_request())

    def test_form_body_without_payload_field(self) -> None:
        """A form body must carry the JSON in a `payload` field."""
        req = raw_request(b"data=%7B%7D", None, FORM)
        with pytest.raises(BadRequest, match="form body has no 'payload' field"):
            github.parse(req)

    def test_form_body_with_two_payload_fields(self) -> None:
        """Two `payload` fields are refused rather than guessing which one counts."""
        req = raw_request(b"payload=%7B%7D&payload=%5B%5D", None, FORM)
        with pytest.raises(BadRequest, match="2 'payload' fields"):
            github.parse(req)

    def test_form_body_not_utf8(self) -> None:
        """Percent-encoded bytes that are not UTF-8 are a bad request, not a crash."""
        req = raw_request(b"payload=%FF%FE", None, FORM)
        with pytest.raises(BadRequest, match="not valid UTF-8"):
            github.parse(req)

    def test_long_values_are_cut_in_messages(self) -> None:
        """A huge bad value is quoted only in part, so the answer stays short."""
        hook = github_request({**github_push(), "ref": "x" * 10_000}, SECRET)
        with pytest.raises(BadRequest) as exc:
            github.parse(hook.to_request())
        assert len(str(exc.value)) < 200

    @given(body=st.binary(max_size=300), content_type=st.sampled_from([JSON, FORM, "text/plain", ""]),
           event=st.sampled_from(["push", "ping", "issues", "", "p\u00e9"]))
    def test_parse_raises_only_bad_request(self, body: bytes, content_type: str, event: str) -> None:
        """Whatever the body, parse returns a Delivery or raises BadRequest, never anything else."""
        req = WebhookRequest(headers={"content-type": content_type, "x-github-event": event}, body=body, query={})
        with contextlib.suppress(BadRequest):
            github.parse(req)


class TestGithubSecrecy:
    @given(body=st.binary(max_size=200), given_sig=st.text(max_size=80))
    def test_no_error_reveals_the_expected_mac_or_secret(self, body: bytes, given_sig: str) -> None:
        """Neither verify nor parse ever puts the expected MAC or the secret in an exception."""
        secret = "s3cret-never-shown"
        expected = github_signature(body, secret)
        req = WebhookRequest(
            headers={"content-type": JSON, "x-github-event": "push", "x-hub-signature-256": given_sig},
            body=body, query={},
        )
        assert github.verify(req, secret) is (given_sig == expected)
        try:
            github.parse(req)
        except BadRequest as exc:
            for text in (str(exc), repr(exc), repr(exc.args)):
                assert secret not in text
                assert expected[len("sha256="):] not in text

    @pytest.mark.parametrize("payload", [b"{", b"[]", json.dumps({**github_push(), "ref": "main"}).encode()])
    def test_errors_on_signed_bad_bodies_do_not_echo_the_signature(self, payload: bytes) -> None:
        """A correctly signed but malformed delivery's error shows neither the MAC nor the secret."""
        hook = github_request(payload, SECRET)
        mac = github_signature(hook.body, SECRET)
        with pytest.raises(BadRequest) as exc:
            github.parse(hook.to_request())
        assert mac[len("sha256="):] not in repr(exc.value) and SECRET not in repr(exc.value)
