"""GitLab webhooks: the secret token, push and tag push hooks, deletions."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from hooksvc.errors import BadRequest
from hooksvc.providers import ZERO_SHA, WebhookRequest, gitlab
from tests.helpers.payloads import HookRequest, commit_sha, gitlab_push, gitlab_request, load, load_bytes, single_change

TOKEN = "wiki-webhook-secret"

tokens = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=64)
bodies = st.binary(max_size=300)


def with_token(body: bytes, token: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json", "x-gitlab-event": "Push Hook"}
    if token is not None:
        headers["x-gitlab-token"] = token
    return WebhookRequest(headers=headers, body=body, query={})


class TestGitlabToken:
    def test_right_token_verifies(self) -> None:
        """The configured secret sent verbatim in `X-Gitlab-Token` verifies."""
        assert gitlab.verify(gitlab_request(gitlab_push(), TOKEN).to_request(), TOKEN)

    @given(body=bodies, token=tokens)
    def test_round_trip(self, body: bytes, token: str) -> None:
        """Any body with the right token verifies: GitLab signs nothing, so the body is not checked."""
        assert gitlab.verify(with_token(body, token), token)

    @given(body=bodies, token=tokens, other=tokens)
    @example(body=b"", token="?", other="\u0100")  # an unencodable token once became "?" and matched
    def test_changed_token_is_rejected(self, body: bytes, token: str, other: str) -> None:
        """A token that differs from the secret in any way is rejected."""
        assume(token != other)
        assert not gitlab.verify(with_token(body, other), token)

    @given(token=tokens, data=st.data())
    def test_one_character_changed_is_rejected(self, token: str, data: st.DataObject) -> None:
        """Changing, dropping or adding one character of the token makes it fail."""
        i = data.draw(st.integers(0, len(token) - 1))
        char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != token[i]))
        for wrong in (token[:i] + char + token[i + 1:], token[:i] + token[i + 1:], token + char):
            assert not gitlab.verify(with_token(b"{}", wrong), token)

    @pytest.mark.parametrize("header", [None, "", " ", "\udcff", TOKEN.upper(), TOKEN + " "])
    def test_missing_or_wrong_token_is_false_not_an_error(self, header: str | None) -> None:
        """A missing, empty, differently cased, padded or unencodable token just fails."""
        assert gitlab.verify(with_token(b"{}", header), TOKEN) is False

    def test_empty_secret_never_verifies(self) -> None:
        """An app without a secret is not matched by an empty or absent token."""
        assert not gitlab.verify(with_token(b"{}", ""), "")

    def test_non_ascii_token_as_a_wsgi_server_decodes_it(self) -> None:
        """A UTF-8 token that the WSGI server decoded as Latin-1 still verifies."""
        secret = "gehéim-tökén"
        wire = secret.encode("utf-8").decode("latin-1")
        assert gitlab.verify(with_token(b"{}", wire), secret)
        assert gitlab.verify(with_token(b"{}", secret), secret)

    def test_signed_bytes_are_the_raw_body(self) -> None:
        """With nothing signed, the raw body is what identifies a replay."""
        hook = gitlab_request(gitlab_push(), TOKEN)
        assert gitlab.signed_bytes(hook.to_request()) == hook.body


class TestGitlabParse:
    def test_documented_push(self) -> None:
        """GitLab's documented push gives event, repo from `project`, ref and shas."""
        hook = gitlab_request(load("gitlab_push"), TOKEN, delivery_id="idem-1")
        delivery = gitlab.parse(hook.to_request())
        assert delivery.provider == "gitlab"
        assert delivery.event == "push"
        assert delivery.delivery_id == "idem-1"
        assert delivery.repo == "mike/diaspora"
        push = single_change(delivery)
        assert push.ref == "refs/heads/master"
        assert push.before == "95790bf891e76fee5e1747ab589903a6a1f80f22"
        assert push.after == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
        assert (push.deleted, push.forced) == (False, False)

    def test_documented_tag_push(self) -> None:
        """A `Tag Push Hook` is a push of a tag ref."""
        delivery = gitlab.parse(gitlab_request(load("gitlab_tag_push"), TOKEN).to_request())
        assert delivery.event == "push"
        assert delivery.repo == "jsmith/example"
        assert single_change(delivery).ref == "refs/tags/v1.0.0"
        assert single_change(delivery).after == "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"
        assert single_change(delivery).before == ZERO_SHA

    def test_branch_deletion(self) -> None:
        """A push with zero `after` and null `checkout_sha` is a deletion."""
        delivery = gitlab.parse(gitlab_request(load("gitlab_push_delete"), TOKEN).to_request())
        assert single_change(delivery).deleted and single_change(delivery).ref == "refs/heads/feature"

    def test_null_checkout_sha_is_a_deletion(self) -> None:
        """A null `checkout_sha` means there is nothing to check out, even with a non-zero `after`."""
        payload = gitlab_push()
        payload["checkout_sha"] = None
        delivery = gitlab.parse(gitlab_request(payload, TOKEN).to_request())
        assert single_change(delivery).deleted

    def test_annotated_tag_reports_the_checkout_sha(self) -> None:
        """For an annotated tag `after` is the tag object; `checkout_sha` is the commit to deploy."""
        payload = gitlab_push(ref="refs/tags/v3.0.0", after=commit_sha(11))
        payload["checkout_sha"] = commit_sha(12)
        delivery = gitlab.parse(gitlab_request(payload, TOKEN).to_request())
        assert single_change(delivery).after == commit_sha(12)

    def test_missing_checkout_sha_falls_back_to_after(self) -> None:
        """Without `checkout_sha` (older payloads) `after` is the commit."""
        payload = gitlab_push(after=commit_sha(13))
        del payload["checkout_sha"]
        delivery = gitlab.parse(gitlab_request(payload, TOKEN).to_request())
        assert single_change(delivery).after == commit_sha(13)

    def test_event_uuid_is_the_delivery_id_without_idempotency_key(self) -> None:
        """GitLab before 17.4 sends no `Idempotency-Key`; the event UUID identifies the delivery."""
        hook = gitlab_request(gitlab_push(), TOKEN, legacy=True)
        delivery = gitlab.parse(hook.to_request())
        assert delivery.delivery_id == hook.header("X-Gitlab-Event-UUID")

    def test_idempotency_key_wins_over_event_uuid(self) -> None:
        """`Idempotency-Key` stays the same across GitLab's resends, so it is preferred."""
        hook = gitlab_request(gitlab_push(), TOKEN, delivery_id="stable-key")
        assert gitlab.parse(hook.to_request()).delivery_id == "stable-key"

    def test_no_delivery_headers_give_an_empty_id(self) -> None:
        """Without either header the id is empty and deduplication relies on the body."""
        hook = gitlab_request(gitlab_push(), TOKEN, legacy=True).with_header("X-Gitlab-Event-UUID", None)
        assert gitlab.parse(hook.to_request()).delivery_id == ""

    def test_other_events_keep_their_name(self) -> None:
        """Other hooks are reported by GitLab's name, lower-cased, with the project if present."""
        payload = {"object_kind": "issue", "project": {"path_with_namespace": "acme/wiki"}}
        delivery = gitlab.parse(gitlab_request(payload, TOKEN, "Issue Hook").to_request())
        assert (delivery.event, delivery.repo, delivery.push) == ("issue hook", "acme/wiki", None)

    def test_other_events_need_no_push_fields(self) -> None:
        """A non-push event without project or ref still parses."""
        delivery = gitlab.parse(gitlab_request({"object_kind": "note"}, TOKEN, "Note Hook").to_request())
        assert (delivery.event, delivery.repo) == ("note hook", "")


class TestGitlabParseErrors:
    @pytest.mark.parametrize(
        ("hook", "reason"),
        [
            (gitlab_request(gitlab_push(), TOKEN).with_header("Content-Type", "application/x-www-form-urlencoded"),
             "unsupported content type 'application/x-www-form-urlencoded': expected application/json"),
            (gitlab_request(b"{", TOKEN), "payload is not valid JSON"),
            (gitlab_request(b"1", TOKEN), "payload must be a JSON object, got a number"),
            (gitlab_request(gitlab_push(), TOKEN).with_header("X-Gitlab-Event", None), "missing X-Gitlab-Event header"),
            (gitlab_request({**gitlab_push(), "object_kind": "tag_push"}, TOKEN, "Push Hook"),
             "X-Gitlab-Event 'push hook' needs object_kind 'push' in the payload, got 'tag_push'"),
            (gitlab_request({**gitlab_push(), "object_kind": None}, TOKEN, "Push Hook"), "needs object_kind 'push'"),
            (gitlab_request({**gitlab_push(), "ref": "master"}, TOKEN), "'ref' must be a full git ref"),
            (gitlab_request({**gitlab_push(), "after": None}, TOKEN), "'after' must be a 40-character hex commit sha"),
            (gitlab_request({**gitlab_push(), "checkout_sha": "abc"}, TOKEN),
             "'checkout_sha' must be a 40-character hex commit sha"),
            (gitlab_request({**gitlab_push(), "project": {}}, TOKEN),
             "'project.path_with_namespace' must name the repository"),
        ],
        ids=lambda v: v if isinstance(v, str) else "",
    )
    def test_bad_request_names_the_problem(self, hook: HookRequest, reason: str) -> None:
        """Each malformed delivery raises BadRequest whose message says what is wrong."""
        with pytest.raises(BadRequest) as exc:
            gitlab.parse(hook.to_request())
        assert reason in str(exc.value)


class TestGitlabSecrecy:
    @given(body=bodies, event=st.sampled_from(["Push Hook", "Tag Push Hook", "Note Hook", ""]))
    def test_no_error_reveals_the_token(self, body: bytes, event: str) -> None:
        """The token header is the secret itself; no exception from parse ever contains it."""
        req = WebhookRequest(
            headers={"content-type": "application/json", "x-gitlab-event": event, "x-gitlab-token": TOKEN},
            body=body, query={},
        )
        assert gitlab.verify(req, TOKEN)
        try:
            gitlab.parse(req)
        except BadRequest as exc:
            assert TOKEN not in str(exc) and TOKEN not in repr(exc)

    @pytest.mark.parametrize("name", ["gitlab_push", "gitlab_tag_push", "gitlab_push_delete"])
    def test_malformed_documented_payloads_do_not_echo_the_token(self, name: str) -> None:
        """Breaking each documented payload yields an error without the token."""
        payload = json.loads(load_bytes(name))
        payload["after"] = "not-a-sha"
        with pytest.raises(BadRequest) as exc:
            gitlab.parse(gitlab_request(payload, TOKEN).to_request())
        assert "'after'" in str(exc.value)
        assert TOKEN not in str(exc.value) and TOKEN not in repr(exc.value)
