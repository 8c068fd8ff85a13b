"""Release steps (`pre_deploy`, `post_deploy`): their configuration, and the log lines that record them.

The worker runs the steps (workers/release_step_runner.py) and writes one line when a step starts and one
when it ends; the deployment page reads what ran back from those lines (`steps_from_log`), so the
record of a deployment's steps is its log, which is redacted, kept and trimmed like any log. A
step's own output is indented in the log, so it can never be taken for one of these lines.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PRE_DEPLOY = "pre_deploy"
POST_DEPLOY = "post_deploy"
PHASES = (PRE_DEPLOY, POST_DEPLOY)

#: A compose service name, as compose itself accepts them.
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_STEP_KEYS = frozenset({"service", "command"})


@dataclass(frozen=True)
class ReleaseStep:
    """One command run in a one-off container of `service`'s new image: an argv, never a shell line."""

    service: str
    command: tuple[str, ...]

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)


def read_release_steps(value: object, key: str) -> tuple[tuple[ReleaseStep, ...], list[tuple[str, str]]]:
    """The steps of a config value (`pre_deploy = [{service, command}, ...]`), and problems as (key, message)."""
    if not isinstance(value, list):
        return (), [(key, f"expected a list of {{service = \"...\", command = [\"...\"]}} tables, got {value!r}")]
    steps: list[ReleaseStep] = []
    problems: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        at = f"{key}[{i}]"
        if not isinstance(item, dict):
            problems.append((at, f"expected a table {{service = \"...\", command = [\"...\"]}}, got {item!r}"))
            continue
        for unknown in sorted(set(item) - _STEP_KEYS):
            problems.append((f"{at}.{unknown}", "unknown key (known: command, service)"))
        service = item.get("service")
        if not isinstance(service, str) or not _SERVICE.fullmatch(service):
            problems.append((f"{at}.service", f"expected the name of a compose service, got {service!r}"))
        command = item.get("command")
        if (not isinstance(command, list) or not command
                or not all(isinstance(arg, str) and "\0" not in arg for arg in command) or not command[0]):
            problems.append((f"{at}.command",
                             "expected an argv list of strings such as [\"python\", \"manage.py\", \"migrate\"] "
                             f"(no shell), got {command!r}"))
            continue
        if isinstance(service, str) and _SERVICE.fullmatch(service):
            steps.append(ReleaseStep(service, tuple(command)))
    return tuple(steps), problems


def unknown_services(phase: str, steps: Sequence[ReleaseStep], services: Iterable[str]) -> list[str]:
    """Why steps cannot run against a release whose compose files define `services`, one line each."""
    known = sorted(services)
    return [f"{phase}[{i}].service: no service {step.service!r} in the compose files "
            f"(services: {', '.join(known) or 'none'})"
            for i, step in enumerate(steps) if step.service not in known]


# ---- the log lines ----------------------------------------------------------------------------

_LINE = re.compile(r"^release step (pre_deploy|post_deploy) (\d+)/(\d+) on ([A-Za-z0-9][A-Za-z0-9_.-]*): (.*)$")
_OUTCOME = re.compile(r"^(succeeded|failed)\b ?(.*)$")


def started_line(phase: str, number: int, total: int, step: ReleaseStep) -> str:
    return f"release step {phase} {number}/{total} on {step.service}: $ {step.command_line}"


def finished_line(phase: str, number: int, total: int, step: ReleaseStep, ok: bool, detail: str) -> str:
    return f"release step {phase} {number}/{total} on {step.service}: {'succeeded' if ok else 'failed'} {detail}"


@dataclass(frozen=True)
class StepRecord:
    """What a deployment's log says about one step: what ran and how it ended."""

    phase: str
    number: int
    total: int
    service: str
    command: str
    #: running | succeeded | failed (running: started, no end line yet, or the worker died)
    outcome: str = "running"
    detail: str = ""


def steps_from_log(lines: Iterable[str]) -> list[StepRecord]:
    """The release steps a deployment's log records, in the order they ran."""
    records: dict[tuple[str, int], StepRecord] = {}
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        phase, number, total, service, rest = match.groups()
        key = (phase, int(number))
        if rest.startswith("$ "):
            records[key] = StepRecord(phase, int(number), int(total), service, rest[2:])
            continue
        ended = _OUTCOME.match(rest)
        if ended is not None and key in records:
            record = records[key]
            records[key] = StepRecord(record.phase, record.number, record.total, record.service, record.command,
                                      ended.group(1), ended.group(2))
    return list(records.values())
