"""`hooksvc serve`: the production HTTP server.

The server model: gunicorn's arbiter forks `processes` workers that share one listening socket and
restarts any that dies; each worker runs waitress. Waitress's event loop (the worker's main
thread) reads every request whole, headers and body, without blocking, and only then hands it to
one of `threads` application threads. A client that sends slowly or not at all therefore costs a
socket and a buffer, never a thread, and the event loop closes its connection once its request
has not arrived whole within the read timeout (`defaults.WEB_READ_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.base import Worker
from waitress import wasyncore  # type: ignore[import-untyped]  # waitress ships no type hints
from waitress.adjustments import Adjustments  # type: ignore[import-untyped]
from waitress.channel import HTTPChannel  # type: ignore[import-untyped]
from waitress.server import TcpWSGIServer  # type: ignore[import-untyped]
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask  # type: ignore[import-untyped]
from waitress.utilities import RequestEntityTooLarge  # type: ignore[import-untyped]

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.runtime.base import Runtime

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: The event loop wakes at least this often: to beat the arbiter's heartbeat, see a stop signal,
#: and run the read-timeout sweep.
LOOP_SECONDS = 1.0
#: File descriptors a worker needs besides its client connections (Redis pool, pipes, logs).
SPARE_FILES = 64


def serve(config: Config, *, bind: str | None, processes: int, threads: int, access_log: bool,
          read_timeout: float = defaults.WEB_READ_TIMEOUT_SECONDS) -> int:
    """gunicorn's arbiter with waitress in each worker process, each with the web app and a `Runtime`."""
    from hooksvc.web import create_app

    address = bind or config.server.listen

    class HooksvcWorker(WaitressWorker):
        read_timeout_seconds = read_timeout
        max_body_bytes = config.server.max_body_bytes

    class Server(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
        def load_config(self) -> None:
            self.cfg.set("bind", [address])
            self.cfg.set("workers", processes)
            self.cfg.set("worker_class", HooksvcWorker)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_connections", defaults.WEB_CONNECTIONS)
            self.cfg.set("accesslog", "-" if access_log else None)
            # Threads do not survive gunicorn's fork: each web process starts its own.
            self.cfg.set("post_worker_init", lambda worker: Runtime(config).start())

        def load(self) -> Any:
            return create_app(config, threads=threads)

    Server().run()
    return 0


class WaitressWorker(Worker):  # type: ignore[misc]  # gunicorn ships no type hints
    """A gunicorn worker that serves with waitress: requests are read by an event loop, run by threads.

    gunicorn's `threads` is the number of application threads, `worker_connections` the open
    connections one worker keeps (more wait in the listen backlog). Usable on gunicorn's command
    line too: `gunicorn -k hooksvc.runtime.web.WaitressWorker` (bench/bench_webhooks.py does).
    """

    #: A request must arrive whole within this long of its connection opening or of the previous answer.
    read_timeout_seconds: float = defaults.WEB_READ_TIMEOUT_SECONDS
    #: A body over this is handed to the application without being read (see `_RefusedBodyTask`).
    max_body_bytes: int = defaults.MAX_BODY_BYTES

    def run(self) -> None:
        connections = self._open_files_for(self.cfg.worker_connections)
        adj = Adjustments(
            threads=self.cfg.threads,
            connection_limit=connections,
            max_request_header_size=defaults.WEB_MAX_HEADER_BYTES,
            # One byte over the limit: waitress refuses a body of *at least* max_request_body_size.
            max_request_body_size=self.max_body_bytes + 1,
            inbuf_overflow=defaults.WEB_BODY_MEMORY_BYTES,
            cleanup_interval=1,
            asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
            asyncore_loop_timeout=LOOP_SECONDS,
            clear_untrusted_proxy_headers=False,  # hooksvc reads no X-Forwarded-* header
            ident="",  # no Server header: nothing to tell a scanner
            log_socket_errors=False,  # a client that hangs up is no server error (gunicorn: debug)
        )
        # "Task queue depth is N" on every request that waits for a thread: normal under load here.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        app: WSGIApp = _AccessLog(self.wsgi) if self.cfg.accesslog else self.wsgi
        socket_map: dict[int, Any] = {}
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        servers = [
            _Server(app, map=socket_map, _sock=listener.sock, dispatcher=dispatcher, adj=adj, bind_socket=False,
                    sockinfo=(listener.sock.family, listener.sock.type, listener.sock.proto,
                              listener.sock.getsockname()),
                    read_timeout=self.read_timeout_seconds)
            for listener in self.sockets
        ]
        try:
            while self.alive and self.ppid == os.getppid():
                self.notify()
                wasyncore.loop(timeout=LOOP_SECONDS, map=socket_map, use_poll=True, count=1)
            self._finish(servers, socket_map)
        finally:
            dispatcher.shutdown(cancel_pending=True, timeout=1)
            wasyncore.close_all(socket_map)

    def _finish(self, servers: list[_Server], socket_map: dict[int, Any]) -> None:
        """Stop accepting; let the requests in progress answer within gunicorn's graceful timeout."""
        for server in servers:
            server.accepting = False
            server.del_channel()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline:
            busy = False
            for server in servers:
                for channel in list(server.active_channels.values()):
                    if channel.requests or channel.total_outbufs_len:
                        busy = True
                    else:
                        channel.will_close = True
            if not busy:
                return
            self.notify()
            wasyncore.loop(timeout=LOOP_SECONDS / 4, map=socket_map, use_poll=True, count=1)

    def _open_files_for(self, connections: int) -> int:
        """Raise this process's open-file limit to fit `connections`; the connections that fit."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = connections + SPARE_FILES
        if soft != resource.RLIM_INFINITY and soft < wanted:
            soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        if soft != resource.RLIM_INFINITY and soft < wanted:
            self.log.warning("open-file limit %d allows only %d connections per worker, not %d",
                             soft, soft - SPARE_FILES, connections)
            return max(1, soft - SPARE_FILES)
        return connections


class _RefusedBodyTask(WSGITask):  # type: ignore[misc]
    """Hands a request whose body is over the limit to the application without its body.

    The application answers it (webhooks: a JSON 413, counted in /metrics) from the size alone,
    which `_Channel` puts in CONTENT_LENGTH; the connection closes after the answer, since the
    rest of the body is still on its way.
    """

    def __init__(self, channel: Any, request: Any) -> None:
        request.headers["CONTENT_LENGTH"] = str(max(request.content_length, request.body_bytes_received))
        request.body_rcv = None  # the application reads an empty body
        super().__init__(channel, request)
        self.set_close_on_finish()


def _error_task(channel: Any, request: Any) -> Any:
    if isinstance(request.error, RequestEntityTooLarge):
        return _RefusedBodyTask(channel, request)
    return ErrorTask(channel, request)


class _Channel(HTTPChannel):  # type: ignore[misc]
    """One client connection; remembers since when it has been waiting for the client."""

    error_task_class = staticmethod(_error_task)

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        #: When the connection opened or last answered: its next request must be whole by `read_timeout` later.
        self.waiting_since = time.monotonic()

    def service(self) -> None:
        super().service()
        self.waiting_since = time.monotonic()


class _Server(TcpWSGIServer):  # type: ignore[misc]
    """waitress's server, with a deadline for reading a whole request instead of an idle timeout."""

    channel_class = _Channel

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        self.read_timeout = read_timeout
        super().__init__(*args, **kwargs)

    def maintenance(self, now: float) -> None:
        """Close every connection that the application does not hold and that waited too long.

        That is a connection still sending (or never sending) its request, however slowly it
        trickles, and one that has not read its answer, or sent no next request, in time.
        """
        del now  # waitress passes wall-clock time; deadlines here are monotonic
        cutoff = time.monotonic() - self.read_timeout
        for channel in self.active_channels.values():
            if not channel.requests and channel.waiting_since < cutoff:
                channel.will_close = True


class _AccessLog:
    """`--access-log`: one line per request on gunicorn's access log (stdout)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("gunicorn.access")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()

        def logged_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self.log.info('%s "%s %s %s" %s %.1fms', environ.get("REMOTE_ADDR", "-"), environ["REQUEST_METHOD"],
                          environ.get("REQUEST_URI", environ["PATH_INFO"]), environ["SERVER_PROTOCOL"],
                          status.split(" ", 1)[0], (time.monotonic() - started) * 1000)
            return start_response(status, headers, exc_info)

        return self.app(environ, logged_start)
