"""What every view needs, kept on the app (never global): the config, the store and the guards."""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app, g, request

from hooksvc import defaults
from hooksvc.config import AppConfig, Config
from hooksvc.errors import NotFound
from hooksvc.login_throttle import LoginThrottle
from hooksvc.operators import Operator
from hooksvc.sessions import SessionStore, credential_fingerprint
from hooksvc.store import DeploymentStore
from hooksvc.web.oidc_provider import OidcProvider, oidc_credential
from hooksvc.web.stream_slots import StreamSlots

#: Key under `app.extensions` holding the app's `WebContext`.
EXTENSION = "hooksvc"


class WebContext:
    """What every view needs: the config, the store, sessions, the login throttle and the stream slots.

    One per app (so one per web process), never global.
    """

    def __init__(self, config: Config, store: DeploymentStore, stream_slots: StreamSlots) -> None:
        self.config = config
        self.store = store
        self.sessions = SessionStore(store.redis, defaults.SESSION_LIFETIME_SECONDS)
        self.login_throttle = LoginThrottle(store.redis)
        self.stream_slots = stream_slots
        #: Every operator that logs in with a token, and its token (`Config.credentials`).
        self.tokens = config.credentials()
        #: The operator of each configured token's fingerprint: a session opened with any other token is over.
        self.credentials: dict[str, Operator] = {credential_fingerprint(t): o for o, t in self.tokens}
        #: The single sign-on provider, and the credential its sessions record ("" without one).
        self.oidc = OidcProvider(config.server.oidc) if config.server.oidc else None
        self.oidc_credential = oidc_credential(config.server.oidc) if config.server.oidc else ""
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


def app_or_404(name: str) -> AppConfig:
    """The configured app called `name`, else NotFound naming it."""
    app = context().config.app(name)
    if app is None:
        raise NotFound(f"no app {name!r}")
    return app


def client_address() -> str:
    """The peer's address as the server sees it (hooksvc reads no X-Forwarded-* header)."""
    return request.remote_addr or "unknown"


def claim_stream_slot(ctx: WebContext) -> Callable[[], None]:
    """A slot for this long request (see `StreamSlots.acquire`), and what gives it back.

    Requests the blueprint's authentication found to carry an operator's credentials (`g.operator`)
    count only against the process's total; anonymous readers against their address's share too.
    """
    return ctx.stream_slots.acquire(client_address(), limit_client=g.get("operator") is None)


def user_agent() -> str:
    """The client's User-Agent header, for the audit trail (which cuts it short)."""
    return request.headers.get("User-Agent", "")


def client_gone() -> Callable[[], bool]:
    """What tells whether this request's client has closed its connection (waitress notices it while
    the request runs: see hooksvc.runtime.web); other servers cannot tell, and it says False there."""
    check: Callable[[], bool] = request.environ.get("waitress.client_disconnected", lambda: False)
    return check
