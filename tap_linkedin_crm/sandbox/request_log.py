"""The log of requests a sandbox answered, for tests to inspect; it never holds a secret."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

LOGGER = logging.getLogger("tap_linkedin_crm.sandbox")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the sandbox saw it; never holds tokens or query strings.

    Attributes:
        method: HTTP method.
        path: URL path without the query string.
        status: Status sent; 0 when the connection was closed without a response.
        authorized: Whether an ``Authorization`` header was sent.
        endpoint: The endpoint kind (``token``, ``authorize``, ``create``, ``get``, ``contracts``,
            ``analytics_create``, ``analytics_get``, ``download``, or ``token_redirected`` for
            the target of a ``redirect`` fault), or ``None`` for other paths.
        instance: CRM instance URN the request was about, if known.
        job_id: Export job the request was about, if known.
        fault: Kind of the scripted fault that fired, if any (comma-separated if several did).
        bytes_sent: Body bytes written.
        duration_ms: Time spent answering.
        contract: Analytics contract URN the request was about, if known.
        export_type: Analytics export type the request was about, if known.
        client_secret_sent: For token requests, whether a client secret arrived (in the form or
            Basic auth); ``None`` for other requests. Never the secret itself.
    """

    method: str
    path: str
    status: int
    authorized: bool
    endpoint: str | None = None
    instance: str | None = None
    job_id: int | None = None
    fault: str | None = None
    bytes_sent: int = 0
    duration_ms: float = 0.0
    contract: str | None = None
    export_type: str | None = None
    client_secret_sent: bool | None = None


class RequestLog:
    """Records of answered requests, oldest first, and a count of requests being answered."""

    def __init__(self) -> None:
        """Start empty."""
        self._records: list[RequestRecord] = []
        self._inflight = 0
        self._idle = threading.Condition()

    def begin(self) -> None:
        """Note that a request is being answered."""
        with self._idle:
            self._inflight += 1

    def record(self, record: RequestRecord) -> None:
        """Log a request once its response is written (or the connection broke).

        The log line is written first, so a reader woken by :meth:`snapshot` sees it too.
        """
        LOGGER.info(
            "%s %s %s auth=%s%s",
            record.method,
            record.path,
            record.status or "dropped",
            "yes" if record.authorized else "no",
            f" fault={record.fault}" if record.fault else "",
        )
        with self._idle:
            self._records.append(record)
            self._inflight -= 1
            self._idle.notify_all()

    def snapshot(self, wait: float) -> list[RequestRecord]:
        """The records, after waiting up to ``wait`` seconds until no request is in flight."""
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, timeout=wait)
            return list(self._records)

    def clear(self) -> None:
        """Forget every record."""
        with self._idle:
            self._records.clear()
