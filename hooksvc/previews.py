"""Pull-request previews (SPEC §13): an app's settings for them and the names and addresses a preview gets.

Pure: no Redis, no Docker. A preview is the head of pull request N deployed as compose project
`<project>-pr-<N>`, reached at `url` with `{number}` (and `{port}`, the host port it was given) filled in.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from hooksvc import defaults

#: What a new preview does when `max` previews of the app are live already.
OnMax = Literal["refuse", "evict-oldest"]
ON_MAX_CHOICES: tuple[OnMax, ...] = ("refuse", "evict-oldest")
#: The placeholders each template may use.
URL_FIELDS = frozenset({"number", "port"})
LABEL_FIELDS = frozenset({"number"})
ENVIRONMENT_FIELDS = frozenset({"number", "url"})


@dataclass(frozen=True)
class PreviewsConfig:
    """`[apps.NAME.previews]`: how an app's pull requests run as previews."""

    #: Where a preview is reached, a template with `{number}` and, with `ports`, `{port}`.
    url: str
    enabled: bool = True
    #: The service reached at `url`; None: the first service with a healthcheck (the worker decides).
    service: str | None = None
    #: The host ports a preview's service publishes on, first and last (inclusive); None with `labels`.
    ports: tuple[int, int] | None = None
    #: Labels added to `service`: name template -> value template (with `{number}`); None with `ports`.
    labels: Mapping[str, str] | None = None
    #: How many previews of the app may be live at once.
    max: int = defaults.PREVIEWS_MAX
    on_max: OnMax = "refuse"
    #: Seconds after its last push when a preview is torn down.
    ttl: float = defaults.PREVIEW_TTL_SECONDS
    #: The services a preview runs (empty: all of the PR's compose files' services).
    services: tuple[str, ...] = ()
    #: Environment variables set in every service of a preview (templates with `{number}`, `{url}`).
    environment: Mapping[str, str] = field(default_factory=dict)
    #: Whether pull requests from forks get previews (then with none of the app's secrets).
    allow_forks: bool = False


def preview_project(project: str, number: int) -> str:
    """The compose project of pull request `number`'s preview of the app whose project is `project`."""
    return f"{project}-pr-{number}"


def preview_url(previews: PreviewsConfig, number: int, port: int | None) -> str:
    """The address of pull request `number`'s preview; `port` is the host port it publishes on, if any.

    Raises ValueError when the template wants a port and none was given."""
    if port is None and "port" in template_fields(previews.url):
        raise ValueError(f"the preview url {previews.url!r} names {{port}}, but preview {number} has no port")
    return previews.url.format(number=number, port="" if port is None else port)


def preview_labels(previews: PreviewsConfig, number: int) -> dict[str, str]:
    """The labels added to the preview's service (none in `ports` mode), templates filled in."""
    return {k.format(number=number): v.format(number=number) for k, v in (previews.labels or {}).items()}


def preview_environment(previews: PreviewsConfig, number: int, url: str) -> dict[str, str]:
    """The environment overrides of pull request `number`'s preview, templates filled in."""
    return {name: value.format(number=number, url=url) for name, value in previews.environment.items()}


def template_fields(template: str) -> set[str]:
    """The `{name}` placeholders of a template; ValueError for a malformed one (a lone `{`, `{0}`, `{a.b}`)."""
    names: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholders are written {{name}}, got {{{name}}} in {template!r}")
        names.add(name)
    return names


def check_template(template: str, allowed: frozenset[str]) -> str | None:
    """What is wrong with a template allowed the placeholders `allowed` (None when nothing is)."""
    try:
        names = template_fields(template)
    except ValueError as exc:
        return str(exc)
    unknown = sorted(names - allowed)
    if unknown:
        return (f"unknown placeholder {{{unknown[0]}}} in {template!r} (known here: "
                f"{', '.join('{' + a + '}' for a in sorted(allowed))})")
    return None


def parse_port_range(value: object) -> tuple[int, int]:
    """`"9100-9199"` as (9100, 9199); ValueError naming what is wrong otherwise."""
    text = value if isinstance(value, str) else None
    first, sep, last = (text or "").partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ValueError(f"expected a range of host ports such as \"9100-9199\", got {value!r}")
    low, high = int(first), int(last)
    if not 0 < low <= high < 65536:
        raise ValueError(f"expected FIRST-LAST with 1 <= FIRST <= LAST <= 65535, got {value!r}")
    return low, high
