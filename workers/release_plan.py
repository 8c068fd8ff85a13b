"""What a deploy of a release would change, per service: the answer of a strategy's `plan`."""

from __future__ import annotations

from dataclasses import dataclass

#: What a service whose image the release would build shows while that image is not built yet.
WOULD_BUILD = "would build"


@dataclass(frozen=True)
class ServiceChange:
    service: str
    action: str
    reason: str
    #: The image id its containers run now (None: no container yet).
    image_old: str | None
    #: The image id the release would run; `WOULD_BUILD` when it is still to be built; None when unknown.
    image_new: str | None


@dataclass(frozen=True)
class ReleasePlan:
    """Each service's change, and the services the release drops (their containers removed)."""

    services: tuple[ServiceChange, ...]
    orphans: tuple[str, ...]
