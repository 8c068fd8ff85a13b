"""`hooksvc serve`: the production HTTP server.

The server model: gunicorn's arbiter forks `processes` workers that share one listening socket and
restarts any that dies; each worker runs waitress. Waitress's event loop (the worker's main
thread) reads every request whole, headers and body, without blocking, and only then hands it to
one of `threads` application threads. A client that sends slowly or not at all therefore costs a
socket and a buffer, never a thread, and the event loop closes its connection once its request
has not arrived whole within the read timeout (`defaults.WEB_READ_TIMEOUT_SECONDS`).

A body bigger than waitress's in-memory buffer waits in a temporary file until it is whole: those
files are bounded per process, in bytes and per client address (`_SpoolBudget`), so half-sent bodies
cannot fill the disk; a body beyond the bound gets a 503 with Retry-After as soon as its headers are in.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.base import Worker
from waitress import wasyncore  # type: ignore[import-untyped]  # waitress ships no type hints
from waitress.adjustments import Adjustments  # type: ignore[import-untyped]
from waitress.channel import HTTPChannel  # type: ignore[import-untyped]
from waitress.parser import HTTPRequestParser  # type: ignore[import-untyped]
from waitress.server import TcpWSGIServer  # type: ignore[import-untyped]
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask  # type: ignore[import-untyped]
from waitress.utilities import Error, RequestEntityTooLarge  # type: ignore[import-untyped]

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.runtime.base import Runtime, leave

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
            self.cfg.set("graceful_timeout", defaults.WEB_STOP_GRACE_SECONDS)
            # gunicorn's control socket is one path per user (~/.gunicorn): two servers on a
            # machine would share it, and hooksvc has no use for it.
            self.cfg.set("control_socket_disable", True)
            # Threads do not survive gunicorn's fork: each web process starts its own.
            self.cfg.set("post_worker_init", lambda worker: Runtime(config).start())

        def load(self) -> Any:
            return create_app(config, threads=threads)

    try:
        Server().run()  # the arbiter, and in its forks each web process, end with sys.exit
    except SystemExit as done:
        leave(done.code if isinstance(done.code, int) else 0 if done.code is None else 1)
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
            # Bodies over this wait in a temporary file; `_SpoolBudget` bounds those files.
            inbuf_overflow=defaults.WEB_BODY_MEMORY_BYTES,
            cleanup_interval=1,
            # Keep reading a connection while its request runs, so a followed log notices (through
            # `waitress.client_disconnected`) that its reader left, and gives its thread back.
            channel_request_lookahead=1,
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
        _SignalWake(self.PIPE[0], socket_map)  # a stop signal ends the loop's wait at once
        # Room for two bodies of the largest size at least, whatever max_body_bytes is.
        spool_bytes = max(defaults.WEB_SPOOL_BYTES, 2 * adj.max_request_body_size)
        spool_budget = _SpoolBudget(spool_bytes, defaults.WEB_SPOOLING_PER_CLIENT)
        servers = [
            _Server(app, map=socket_map, _sock=listener.sock, dispatcher=dispatcher, adj=adj, bind_socket=False,
                    sockinfo=(listener.sock.family, listener.sock.type, listener.sock.proto,
                              listener.sock.getsockname()),
                    read_timeout=self.read_timeout_seconds, spool_budget=spool_budget)
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


class _SignalWake(wasyncore.file_dispatcher):  # type: ignore[misc]
    """gunicorn writes a byte into its worker's pipe on every signal (`signal.set_wakeup_fd`):
    watched by the event loop, it wakes the loop at once to see that the worker must stop."""

    def handle_read(self) -> None:
        with contextlib.suppress(OSError):
            self.recv(64)

    def writable(self) -> bool:
        return False


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


class _SpoolBudget:
    """Bytes of request bodies a web process lets wait in temporary files, in total and per client.

    A body is counted at its declared length (the most it can spool; a chunked one at the body
    limit) from the moment its headers are in until it is whole or its connection closes.
    """

    def __init__(self, total_bytes: int, per_client: int) -> None:
        self.total_bytes = total_bytes
        self.per_client = per_client
        self._lock = threading.Lock()
        self.reserved = 0
        self._by_client: dict[str, int] = {}

    def reserve(self, client: str, size: int) -> bool:
        with self._lock:
            if self._by_client.get(client, 0) >= self.per_client or self.reserved + size > self.total_bytes:
                return False
            self.reserved += size
            self._by_client[client] = self._by_client.get(client, 0) + 1
            return True

    def release(self, client: str, size: int) -> None:
        with self._lock:
            self.reserved -= size
            left = self._by_client.get(client, 0) - 1
            if left > 0:
                self._by_client[client] = left
            else:
                self._by_client.pop(client, None)


class _SpoolFull(Error):  # type: ignore[misc]
    """The answer to a body that would spool beyond the budget: JSON 503 with Retry-After."""

    code = 503
    reason = "Service Unavailable"

    def to_response(self, ident: Any = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body = json.dumps({"error": self.body}).encode()
        headers = [("Content-Type", "application/json"), ("Retry-After", str(defaults.WEB_SPOOL_RETRY_AFTER_SECONDS))]
        return f"{self.code} {self.reason}", headers, body


class _Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's request parser, which asks the spool budget before a big body's first byte is read."""

    def __init__(self, adj: Any, *, budget: _SpoolBudget, client: str) -> None:
        super().__init__(adj)
        self.budget = budget
        self.client = client
        #: Bytes this request holds in the budget (0: none, or already given back).
        self.spool_reserved = 0

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.body_rcv is None:
            return
        size = self.content_length if not self.chunked else self.adj.max_request_body_size
        if size <= self.adj.inbuf_overflow or size >= self.adj.max_request_body_size and not self.chunked:
            return  # kept in memory, or refused as too large before it is read
        if self.budget.reserve(self.client, size):
            self.spool_reserved = size
            return
        self.error = _SpoolFull(
            "too many large request bodies are arriving at once (from this address, or in all): retry later")
        self.completed = True

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.completed:
            self.release_spool()  # whole (or refused): what waits now is a request, not a half-sent body
        return consumed

    def release_spool(self) -> None:
        if self.spool_reserved:
            self.budget.release(self.client, self.spool_reserved)
            self.spool_reserved = 0


class _Channel(HTTPChannel):  # type: ignore[misc]
    """One client connection; remembers since when it has been waiting for the client."""

    error_task_class = staticmethod(_error_task)

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        #: When the connection opened or last answered: its next request must be whole by `read_timeout` later.
        self.waiting_since = time.monotonic()
        client = addr[0] if isinstance(addr, tuple) else str(addr)
        self.parser_class = functools.partial(_Parser, budget=server.spool_budget, client=client)

    def del_channel(self, map: Any = None) -> None:
        if self.request is not None:
            self.request.release_spool()  # closed while its body was still arriving
        super().del_channel(map)

    def service(self) -> None:
        super().service()
        self.waiting_since = time.monotonic()


class _Server(TcpWSGIServer):  # type: ignore[misc]
    """waitress's server, with a deadline for reading a whole request instead of an idle timeout."""

    channel_class = _Channel

    def __init__(self, *args: Any, read_timeout: float, spool_budget: _SpoolBudget, **kwargs: Any) -> None:
        self.read_timeout = read_timeout
        self.spool_budget = spool_budget
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
