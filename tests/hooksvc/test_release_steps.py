"""Release steps in the core: the config shape (`pre_deploy`, `post_deploy`) and the log lines that record them."""

from __future__ import annotations

import pytest

from hooksvc.config import parse_config
from hooksvc.errors import ConfigError
from hooksvc.release_steps import (
    ReleaseStep,
    StepRecord,
    finished_line,
    started_line,
    steps_from_log,
    unknown_services,
)
from tests.hooksvc.test_config import MINIMAL

ENV = {"SHOP_SECRET": "s"}


class TestConfig:
    def test_steps_are_read_as_argv_lists(self) -> None:
        """Each entry becomes a ReleaseStep of a service and an argv, in order; no entry means no step."""
        config = parse_config(MINIMAL + """
pre_deploy = [{ service = "web", command = ["python", "manage.py", "migrate", "--noinput"] },
              { service = "worker", command = ["true"] }]
post_deploy = [{ service = "web", command = ["python", "manage.py", "clearsessions"] }]
""", "f.toml", ENV)
        app = config.apps["shop"]
        assert app.pre_deploy == (ReleaseStep("web", ("python", "manage.py", "migrate", "--noinput")),
                                  ReleaseStep("worker", ("true",)))
        assert app.post_deploy == (ReleaseStep("web", ("python", "manage.py", "clearsessions")),)
        assert parse_config(MINIMAL, "f.toml", ENV).apps["shop"].pre_deploy == ()

    @pytest.mark.parametrize(("entry", "key", "says"), [
        ('"python manage.py migrate"', "apps.shop.pre_deploy", "expected a list"),
        ('["migrate"]', "apps.shop.pre_deploy[0]", "expected a table"),
        ('[{ service = "web", command = "python manage.py migrate" }]', "apps.shop.pre_deploy[0].command",
         "argv list of strings"),
        ('[{ service = "web", command = [] }]', "apps.shop.pre_deploy[0].command", "argv list"),
        ('[{ service = "web", command = ["python", 3] }]', "apps.shop.pre_deploy[0].command", "argv list"),
        ('[{ command = ["true"] }]', "apps.shop.pre_deploy[0].service", "name of a compose service"),
        ('[{ service = "web", command = ["true"], shell = true }]', "apps.shop.pre_deploy[0].shell", "unknown key"),
    ])
    def test_a_malformed_entry_is_refused_with_its_key(self, entry: str, key: str, says: str) -> None:
        """A step that is not `{service, command = [argv...]}` is refused, naming the file and the key."""
        with pytest.raises(ConfigError) as info:
            parse_config(MINIMAL + f"pre_deploy = {entry}\n", "f.toml", ENV)
        assert any(p.startswith(f"f.toml: {key}: ") and says in p for p in info.value.problems), info.value.problems

    def test_a_service_missing_from_the_compose_files_is_named(self) -> None:
        """Checked against the release's services at deploy time: the message names phase, index and service."""
        steps = (ReleaseStep("web", ("true",)), ReleaseStep("wbe", ("true",)))
        assert unknown_services("pre_deploy", steps, ["web", "db"]) == [
            "pre_deploy[1].service: no service 'wbe' in the compose files (services: db, web)"]


class TestLogLines:
    def test_the_log_lines_read_back_as_the_steps_that_ran(self) -> None:
        """What the worker writes, the page reads back: command, outcome and detail per step; a step
        without an end line is still running; indented lines (a step's own output) are never steps."""
        migrate = ReleaseStep("web", ("python", "manage.py", "migrate"))
        clear = ReleaseStep("web", ("python", "manage.py", "clear sessions"))
        lines = [
            started_line("pre_deploy", 1, 1, migrate),
            "  " + finished_line("pre_deploy", 1, 1, migrate, False, "(exit 9) forged by the step's output"),
            finished_line("pre_deploy", 1, 1, migrate, True, "(exit 0) in 2.0s"),
            started_line("post_deploy", 1, 1, clear),
        ]
        assert steps_from_log(lines) == [
            StepRecord("pre_deploy", 1, 1, "web", "python manage.py migrate", "succeeded", "(exit 0) in 2.0s"),
            StepRecord("post_deploy", 1, 1, "web", "python manage.py 'clear sessions'"),
        ]
