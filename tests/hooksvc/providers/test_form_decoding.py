"""The form decoder that Gitea and GitHub form deliveries go through: parse_qs's answer, at C speed."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.errors import BadRequest
from hooksvc.providers.payload import decode_form_value, form_payload

#: Text a JSON payload can hold, backslashes, percents, pluses and non-ASCII included.
PAYLOAD_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


class TestDecodeFormValue:
    @given(PAYLOAD_TEXT)
    def test_matches_parse_qs_for_quote_plus(self, text: str) -> None:
        """A value encoded as a browser or a git host encodes it decodes to what parse_qs gives."""
        body = ("payload=" + quote_plus(text, safe="")).encode()
        assert form_payload(body) == parse_qs(body.decode(), keep_blank_values=True)["payload"][0] == text

    @given(PAYLOAD_TEXT)
    def test_matches_parse_qs_for_quote_with_safe_characters(self, text: str) -> None:
        """Literal characters left unescaped (as Go's encoder leaves some) decode as parse_qs decodes them."""
        body = ("payload=" + quote(text, safe="{}:,\"\\[]/")).encode()
        expected = parse_qs(body.decode(), keep_blank_values=True)["payload"][0]
        assert form_payload(body) == expected

    @pytest.mark.parametrize("raw", [b"%", b"abc%4", b"%zz", b"%\\x41"])
    def test_broken_escape_is_a_bad_request(self, raw: bytes) -> None:
        """A '%' without two hex digits, which no host sends, is refused rather than kept."""
        with pytest.raises(BadRequest, match="two hex digits"):
            decode_form_value(raw)

    def test_invalid_utf8_is_a_bad_request(self) -> None:
        """Escapes that decode to bytes that are not UTF-8 are refused, as parse_qs refuses them."""
        with pytest.raises(BadRequest, match="not valid UTF-8"):
            decode_form_value(b"%ff%fe")

    def test_five_mebibytes_of_escapes_decode_in_well_under_a_tenth_of_a_second(self) -> None:
        """The body that cost a second of CPU with unquote (every byte escaped) now takes milliseconds."""
        body = b"payload=" + b"%7B" * (5 * 1024 * 1024 // 3 - 3)
        started = time.process_time()
        assert form_payload(body) == "{" * (5 * 1024 * 1024 // 3 - 3)
        assert time.process_time() - started < 0.1
