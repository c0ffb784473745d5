"""HTTP plumbing: the threaded loopback server, parsing requests, and writing replies.

Replies are written as HTTP/1.1 with ``Content-Length``, or chunked when streamed, and carry a
``Date`` header from the sandbox clock (a tap may take the create call's ``Date`` as the job's
creation time, so it must move with :meth:`SandboxClock.advance`). Faults that act on the wire
(``drop``, ``truncate``, ``url_expires_mid_download``, ``stall``) act here.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import socket
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tap_linkedin_crm.sandbox.messages import Reply, Request, error_envelope
from tap_linkedin_crm.sandbox.request_log import RequestRecord
from tap_linkedin_crm.sandbox.router import classify

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tap_linkedin_crm.sandbox.context import SandboxContext
    from tap_linkedin_crm.sandbox.request_log import RequestLog
    from tap_linkedin_crm.sandbox.router import Router

LOGGER = logging.getLogger("tap_linkedin_crm.sandbox")
#: How far past the bytes actually sent a ``truncate`` fault's ``Content-Length`` claims to go.
TRUNCATE_CLAIM_EXTRA = 1_000_000


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that hands requests to a :class:`Router` and logs them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        ctx: SandboxContext,
        router: Router,
        request_log: RequestLog,
    ) -> None:
        """Bind ``address``; requests go to ``router`` and are logged in ``request_log``."""
        self.ctx = ctx
        self.router = router
        self.request_log = request_log
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SandboxRequestHandler)

    def track(self, conn: socket.socket) -> None:
        """Remember an open connection, so :meth:`close_connections` can end it."""
        with self._connections_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        """Forget a closed connection."""
        with self._connections_lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        """Shut down every open connection (keep-alive ones would otherwise linger)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:  # noqa: ANN401, ARG002
        """Log a broken connection at debug level instead of printing a traceback."""
        LOGGER.debug("connection from %s ended with an error", client_address, exc_info=True)  # noqa: LOG014


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Parses one request, asks the router for the reply, and writes it."""

    protocol_version = "HTTP/1.1"
    server_version = "LinkedInCRMSandbox/1.0"
    timeout = 60
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body would wait
    # for the client's delayed ACK (about 40 ms per response).
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    def setup(self) -> None:
        """Track the connection."""
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        """Untrack and close the connection."""
        self.server.untrack(self.connection)
        try:
            super().finish()
        except OSError:
            LOGGER.debug("error while closing a connection", exc_info=True)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header: the sandbox clock's time, not the real one."""
        when = self.server.ctx.clock.now() if timestamp is None else timestamp
        return email.utils.formatdate(when, usegmt=True)

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002, ANN401
        """Silence the default access log: it would print query strings (signed tokens)."""

    def log_error(self, format: str, *args: t.Any) -> None:  # noqa: A002, ANN401, ARG002
        """Log protocol errors at debug level without the request line."""
        LOGGER.debug("protocol error %s", args[0] if args else "")

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Answer a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Answer a PUT (always 405 or 404)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Answer a DELETE (always 405 or 404)."""
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=b"",
            endpoint=classify(self.command, split.path),
            authorized=bool(self.headers.get("Authorization")),
        )
        status, sent = 0, 0
        log = self.server.request_log
        log.begin()
        try:
            length = int(self.headers.get("Content-Length") or 0)
            req.body = self.rfile.read(length) if length > 0 else b""
            try:
                reply = self.server.router.handle(req)
            except Exception:
                LOGGER.exception("sandbox failed on %s %s", req.method, req.path)
                reply = error_envelope(500, "Internal Server Error")
            status, sent = self._write(reply, req)
        except (OSError, ValueError):
            self.close_connection = True
            LOGGER.debug("connection broke during %s %s", req.method, req.path)
        finally:
            log.record(
                RequestRecord(
                    method=req.method,
                    path=req.path,
                    status=status,
                    authorized=req.authorized,
                    endpoint=req.endpoint,
                    instance=req.instance,
                    job_id=req.job_id,
                    fault=",".join(req.faults) or None,
                    bytes_sent=sent,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    contract=req.contract,
                    export_type=req.export_type,
                    client_secret_sent=req.client_secret_sent,
                )
            )

    def _write(self, reply: Reply, req: Request) -> tuple[int, int]:
        cut, stall = reply.cut, reply.stall
        pause: tuple[int, float] | None = None  # (body bytes before the pause, seconds)
        if stall is not None and stall.variant == "mid_body":
            pause = (max(0, stall.after_bytes), stall.delay)
        elif stall is not None:
            self.server.ctx.pause(stall.delay)
        if cut is not None and cut.kind == "drop" and req.endpoint != "download":
            self.close_connection = True
            return 0, 0
        limit = max(0, cut.after_bytes) if cut is not None else None
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.stream is None:
            return reply.status, self._write_whole(reply.body, limit, pause)
        if cut is not None and cut.kind == "truncate":
            self.send_header("Content-Length", str((limit or 0) + TRUNCATE_CLAIM_EXTRA))
            self.end_headers()
            return reply.status, self._write_stream(reply.stream, limit, chunked=False)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        return reply.status, self._write_stream(reply.stream, limit, chunked=True, pause=pause)

    def _write_whole(self, body: bytes, limit: int | None, pause: tuple[int, float] | None) -> int:
        """Write a body with ``Content-Length``; a cut sends less than it claims."""
        data = body if limit is None else body[: min(limit, max(len(body) - 1, 0))]
        claimed = len(body) if limit is None else max(len(body), len(data) + 1)
        self.send_header("Content-Length", str(claimed))
        self.end_headers()
        split = len(data) if pause is None else min(pause[0], max(len(data) - 1, 0))
        self.wfile.write(data[:split])
        if pause is not None:
            self.server.ctx.pause(pause[1])
            self.wfile.write(data[split:])
        if limit is not None:
            self.close_connection = True
        return len(data)

    def _write_stream(
        self,
        stream: Iterator[bytes],
        limit: int | None,
        *,
        chunked: bool,
        pause: tuple[int, float] | None = None,
    ) -> int:
        """Write a streamed body; ``pause`` is (bytes before the pause, seconds), if any."""
        sent = 0
        write: Callable[[bytes], t.Any] = self.wfile.write

        def emit(piece: bytes) -> None:
            write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)

        for chunk in stream:
            piece = chunk if limit is None else chunk[: limit - sent]
            if pause is not None and sent + len(piece) > pause[0]:
                head, piece = piece[: pause[0] - sent], piece[pause[0] - sent :]
                if head:
                    emit(head)
                    sent += len(head)
                self.server.ctx.pause(pause[1])
                pause = None
            if piece:
                emit(piece)
                sent += len(piece)
            if limit is not None and sent >= limit:
                break
        if limit is not None:
            self.close_connection = True
        elif chunked:
            write(b"0\r\n\r\n")
        return sent
