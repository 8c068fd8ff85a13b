"""`hooksvc serve`: the production HTTP server."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from hooksvc.config import Config
from hooksvc.runtime.base import Runtime
from hooksvc.web import create_app


def serve(config: Config, *, bind: str | None, processes: int, threads: int, access_log: bool) -> int:
    """gunicorn's threaded workers, each with the web app and a `Runtime` of its own."""
    address = bind or config.server.listen

    class Server(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
        def load_config(self) -> None:
            self.cfg.set("bind", [address])
            self.cfg.set("workers", processes)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", "-" if access_log else None)
            # Threads do not survive gunicorn's fork: each web process starts its own.
            self.cfg.set("post_worker_init", lambda worker: Runtime(config).start())

        def load(self) -> Any:
            return create_app(config)

    Server().run()
    return 0
