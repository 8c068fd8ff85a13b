"""What every view needs, kept on the app (never global): the config and the store."""

from __future__ import annotations

from flask import current_app

from hooksvc.config import AppConfig, Config
from hooksvc.store import DeploymentStore

#: Key under `app.extensions` holding the app's `WebContext`.
EXTENSION = "hooksvc"


class WebContext:
    """What every view needs: the config and the store. One per app, never global."""

    def __init__(self, config: Config, store: DeploymentStore) -> None:
        self.config = config
        self.store = store
        self._apps_for: dict[frozenset[str], list[AppConfig]] = {}

    def apps_for(self, host_kinds: frozenset[str]) -> list[AppConfig]:
        """The apps served by git hosts of these kinds (the config is immutable: computed once)."""
        apps = self._apps_for.get(host_kinds)
        if apps is None:
            apps = self._apps_for[host_kinds] = [a for a in self.config.apps.values() if a.host_kind in host_kinds]
        return apps


def context() -> WebContext:
    ctx: WebContext = current_app.extensions[EXTENSION]
    return ctx
