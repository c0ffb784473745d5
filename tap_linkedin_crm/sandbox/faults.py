"""Scripted faults: what can go wrong and where, and the book that decides when each one fires."""

from __future__ import annotations

import dataclasses
import threading
import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from collections.abc import Mapping

ENDPOINTS = frozenset({"token", "create", "get", "download"})

# Faults that replace or disturb one HTTP response; allowed on the endpoints listed.
HTTP_FAULT_ENDPOINTS: dict[str, frozenset[str]] = {
    "rate_limit": ENDPOINTS,
    "error": ENDPOINTS,
    "slow": ENDPOINTS,
    "drop": ENDPOINTS,
    "truncate": ENDPOINTS,
    "forbidden": frozenset({"create", "get", "download"}),
    "token_expired": frozenset({"create", "get"}),
    "url_expired": frozenset({"download"}),
    "url_expires_mid_download": frozenset({"download"}),
    "corrupt_gzip": frozenset({"download"}),
}
# Faults decided when a job is created (the create call itself answers 201 as usual).
JOB_FAULTS = frozenset({"job_failed", "job_never_finishes", "header_drift"})
FAULT_KINDS = frozenset(HTTP_FAULT_ENDPOINTS) | JOB_FAULTS
# HTTP faults that cut the connection while the body is being written.
CUT_FAULTS = frozenset({"drop", "truncate", "url_expires_mid_download"})


def check_keys(kind: str, data: Mapping[str, t.Any], allowed: set[str]) -> None:
    """Reject unknown keys of a JSON object, naming the allowed ones.

    Raises:
        ValueError: If ``data`` has a key outside ``allowed``.
    """
    unknown = set(data) - allowed
    if unknown:
        msg = f"unknown {kind} keys: {sorted(unknown)}; allowed: {sorted(allowed)}"
        raise ValueError(msg)


@dataclass(slots=True)
class Fault:
    """One scripted fault.

    A fault matches requests by endpoint kind (``token``, ``create``, ``get``, ``download``;
    ``None`` means every endpoint the kind applies to) and optionally by CRM instance URN. Each
    fault counts the requests it matches: it skips the first ``after`` of them and then fires
    ``times`` times (``None`` = forever). Job faults (``job_failed``, ``job_never_finishes``,
    ``header_drift``) count job creations instead of requests.

    Attributes:
        kind: What goes wrong; one of ``FAULT_KINDS``.
        endpoint: Endpoint kind to match, or ``None`` for all applicable ones.
        instance: CRM instance URN to match, or ``None`` for any.
        times: How many times the fault fires; ``None`` for unlimited.
        after: How many matching requests (or job creations) to let through first.
        status: HTTP status for ``error`` (default 500) and ``forbidden`` (403).
        retry_after: ``Retry-After`` seconds for ``rate_limit``; ``None`` sends no header.
        delay: Seconds to wait before answering, for ``slow``.
        after_bytes: Body bytes sent before ``drop``, ``truncate`` or ``url_expires_mid_download``
            cut the connection.
        message: Replaces the default error message, if given.
    """

    kind: str
    endpoint: str | None = None
    instance: str | None = None
    times: int | None = 1
    after: int = 0
    status: int | None = None
    retry_after: int | None = None
    delay: float = 1.0
    after_bytes: int = 4096
    message: str | None = None

    def __post_init__(self) -> None:
        """Validate the kind and the endpoint.

        Raises:
            ValueError: If the kind is unknown or does not apply to the endpoint.
        """
        if self.kind not in FAULT_KINDS:
            msg = f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}"
            raise ValueError(msg)
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            msg = f"unknown endpoint {self.endpoint!r}; known: {sorted(ENDPOINTS)}"
            raise ValueError(msg)
        if self.kind in JOB_FAULTS:
            if self.endpoint not in {None, "create"}:
                msg = f"fault {self.kind!r} is decided at job creation (endpoint 'create')"
                raise ValueError(msg)
        elif self.endpoint is not None and self.endpoint not in HTTP_FAULT_ENDPOINTS[self.kind]:
            msg = f"fault {self.kind!r} does not apply to endpoint {self.endpoint!r}"
            raise ValueError(msg)

    def applies_to(self, endpoint: str) -> bool:
        """Whether this fault can fire on a request to ``endpoint`` (job faults: never)."""
        if self.kind in JOB_FAULTS:
            return False
        if self.endpoint is not None:
            return self.endpoint == endpoint
        return endpoint in HTTP_FAULT_ENDPOINTS[self.kind]

    def matches(self, instance: str | None) -> bool:
        """Whether the fault's instance filter lets a request about ``instance`` through."""
        return self.instance is None or self.instance == instance

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> Fault:
        """Build a fault from a JSON object with the same keys as the attributes."""
        check_keys("fault", data, {f.name for f in dataclasses.fields(cls)})
        return cls(**data)


@dataclass(slots=True)
class _Counter:
    fault: Fault
    seen: int = 0
    fired: int = 0

    def count(self) -> bool:
        """Count one match; True if the fault is due (past ``after``, ``times`` not spent)."""
        self.seen += 1
        fault = self.fault
        return self.seen > fault.after and (fault.times is None or self.fired < fault.times)


class FaultBook:
    """The scripted faults of a sandbox and their counters; thread-safe.

    Every fault that matches a request counts it, whether or not it fires; of the faults due on
    one request, the first in script order fires and the others wait for the next match.
    """

    def __init__(self, faults: list[Fault]) -> None:
        """Start counting ``faults`` from zero."""
        self._lock = threading.Lock()
        self._counters = [_Counter(f) for f in faults]

    def add(self, fault: Fault) -> None:
        """Add a fault (its counters start at zero)."""
        with self._lock:
            self._counters.append(_Counter(fault))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._counters.clear()

    def take(self, endpoint: str, instance: str | None) -> Fault | None:
        """Count a request to ``endpoint`` and return the HTTP fault that fires on it, if any."""
        chosen: Fault | None = None
        with self._lock:
            for counter in self._counters:
                fault = counter.fault
                if not fault.applies_to(endpoint) or not fault.matches(instance):
                    continue
                if counter.count() and chosen is None:
                    counter.fired += 1
                    chosen = fault
        return chosen

    def take_job_faults(self, instance: str) -> list[Fault]:
        """Count a job creation and return every job fault that fires on it."""
        fired: list[Fault] = []
        with self._lock:
            for counter in self._counters:
                fault = counter.fault
                if fault.kind not in JOB_FAULTS or not fault.matches(instance):
                    continue
                if counter.count():
                    counter.fired += 1
                    fired.append(fault)
        return fired
