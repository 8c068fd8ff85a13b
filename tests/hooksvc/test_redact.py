"""What reaches a log: secrets masked in every form, untrusted values cut and escaped, and no record able
to start a forged line."""

from __future__ import annotations

import base64
import io
import logging
import re
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hooksvc import defaults
from hooksvc.redact import (
    MASK,
    EscapeControlCharacters,
    escape_controls,
    log_handler,
    loggable,
    redact,
    terminal_safe,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class TestTerminalSafe:
    @given(st.text())
    def test_no_control_character_but_tab_reaches_the_terminal(self, text: str) -> None:
        """Whatever build output holds, what `hooksvc logs` prints has no control character a terminal acts on,
        and text without one is printed as it is."""
        shown = terminal_safe(text)
        assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\t"]
        if not [c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\t"]:
            assert shown == text

    def test_escape_sequences_are_written_out(self) -> None:
        """An OSC window title, a carriage return and a C1 CSI show as escapes; a tab stays a tab."""
        assert terminal_safe("a\x1b]0;t\x07\rb\x9b2J\tc") == "a\\x1b]0;t\\x07\\x0db\\x9b2J\tc"


SECRET = "ghp_hostTokenOfTheWorker000000000000"
#: The URL-credential rule as a regular expression: the reference the one-pass scan must agree with.
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s]+)@")


class TestRedact:
    def test_a_secret_and_url_credentials_are_masked(self) -> None:
        """The plain secret and the user:password of any URL become `***`."""
        line = f"token {SECRET} from https://x-access-token:{SECRET}@github.com/a.git"
        assert redact(line, [SECRET]) == f"token {MASK} from https://{MASK}@github.com/a.git"

    @given(st.binary(max_size=5), st.binary(max_size=5), st.booleans())
    def test_base64_of_a_secret_inside_other_bytes_is_masked(self, before: bytes, after: bytes, url: bool) -> None:
        """Whatever bytes surround the secret, its base64 (standard or URL-safe) is masked: all of it but the
        two characters at each end that it shares with its neighbours."""
        encode = base64.urlsafe_b64encode if url else base64.b64encode
        text = encode(before + SECRET.encode() + after).decode()
        shown = redact(text, [SECRET])
        assert shown.count(MASK) == 1
        assert len(text) - len(shown.replace(MASK, "")) >= len(SECRET) * 4 // 3 - 2

    def test_hex_forms_are_masked(self) -> None:
        """Lower- and upper-case hex of a secret are masked like the secret."""
        raw = SECRET.encode().hex()
        assert redact(f"x={raw} X={raw.upper()}", [SECRET]) == f"x={MASK} X={MASK}"

    def test_short_secrets_mask_no_encoded_fragment(self) -> None:
        """A secret of a few characters masks itself only: its base64 or hex fragment would match ordinary text."""
        assert redact("the quick brown fox 616263", ["abc"]) == "the quick brown fox 616263"

    @given(st.text(st.sampled_from("ab1:/@ .+-h"), max_size=40))
    def test_url_credentials_match_the_regular_expression(self, text: str) -> None:
        """The one-pass URL scan masks exactly what the regular expression `scheme://cred@` would."""
        expected = URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)
        assert redact(text, []) == expected

    def test_redaction_is_linear_on_long_runs(self) -> None:
        """A 200,000-character run of letters (with and without `://` at its end) is redacted in well under a
        second here (the bound leaves room for a loaded machine); the regular expression took time quadratic in
        the run (about 50 s here)."""
        for line in ("a" * 200_000, "a" * 200_000 + "://" + "b" * 200_000, "1" * 200_000):
            started = time.perf_counter()
            redact(line, [SECRET, "op-token-1", "another-secret-value"])
            assert time.perf_counter() - started < 5.0


class TestLoggable:
    @given(st.text())
    def test_any_text_becomes_one_bounded_line(self, text: str) -> None:
        """Whatever the value, the result has no control character or line separator, and at most the limit
        plus a short note."""
        shown = loggable(text)
        assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
        assert len(shown) <= defaults.LOG_VALUE_LIMIT + len(f"...[{len(text)} characters]")

    @given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=defaults.LOG_VALUE_LIMIT))
    def test_short_printable_text_is_unchanged(self, text: str) -> None:
        """An ordinary value (a repository name, a path) is logged as it is."""
        assert loggable(text) == text

    def test_long_value_is_cut_and_says_how_long_it_was(self) -> None:
        """A 500 kB value is cut to the limit, with its real length noted."""
        shown = loggable("x" * 500_000)
        assert shown == "x" * defaults.LOG_VALUE_LIMIT + "...[500000 characters]"

    def test_line_breaks_are_escaped_visibly(self) -> None:
        """CR, LF and the Unicode separators show as escapes, so the log says what was sent."""
        assert loggable("a\r\nFORGED\u2028b\x00") == "a\\x0d\\x0aFORGED\\u2028b\\x00"

    def test_non_strings_are_shown_as_text(self) -> None:
        """Any object is logged through str()."""
        assert loggable(None) == "None" and loggable(42) == "42"


class TestEscapeFilter:
    def record_lines(self, *args: object, msg: str = "refused %s: %s") -> list[str]:
        """The lines a handler with the filter writes for one record."""
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.addFilter(EscapeControlCharacters())
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger = logging.getLogger("tests.redact")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.warning(msg, *args)
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
        return out.getvalue().splitlines()

    def test_a_record_is_one_line_whatever_its_arguments(self) -> None:
        """A line break in a logged argument cannot start a new line: the filter escapes the formatted message."""
        lines = self.record_lines("/hooks/x\nFORGED", "missing\r\nFORGED too")
        assert lines == ["WARNING refused /hooks/x\\x0aFORGED: missing\\x0d\\x0aFORGED too"]

    def test_a_record_without_control_characters_is_left_alone(self) -> None:
        """An ordinary message passes unchanged, its arguments still separate for other handlers."""
        assert self.record_lines("/hooks/github", "bad token") == ["WARNING refused /hooks/github: bad token"]

    @given(st.text())
    def test_escape_controls_leaves_no_line_break(self, text: str) -> None:
        """No text comes out of the escaping with a character that splits a line."""
        assert len(escape_controls(text).splitlines()) <= 1

    def test_log_handler_carries_the_filter(self) -> None:
        """The handler the command line installs escapes records."""
        handler = log_handler()
        assert any(isinstance(f, EscapeControlCharacters) for f in handler.filters)

    def test_the_command_line_installs_the_filter(self, tmp_path: Path) -> None:
        """After `hooksvc` has set up logging, a record with a line break in it is still one line on stderr."""
        script = (
            "import logging, sys\n"
            "from hooksvc import cli\n"
            f"cli.main(['--config', {str(tmp_path / 'missing.toml')!r}, 'status'])\n"
            "logging.getLogger('hooksvc.web').warning('401 for GET %s', '/api/x\\nFORGED: all is well')\n"
        )
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=60, check=False)
        assert "401 for GET /api/x\\x0aFORGED" in done.stderr, done.stderr
        assert not [line for line in done.stderr.splitlines() if line.startswith("FORGED")]
