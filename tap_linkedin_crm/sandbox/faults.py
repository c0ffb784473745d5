"""Scripted faults: what can go wrong and where, and the book that decides when each one fires."""

from __future__ import annotations

import dataclasses
import threading
import typing as t
from dataclasses import dataclass

from tap_linkedin_crm.sandbox.analytics_data import EXPORT_TYPES

if t.TYPE_CHECKING:
    from collections.abc import Mapping

CRM_API_ENDPOINTS = frozenset({"create", "get"})
ANALYTICS_API_ENDPOINTS = frozenset({"contracts", "analytics_create", "analytics_get"})
API_ENDPOINTS = CRM_API_ENDPOINTS | ANALYTICS_API_ENDPOINTS
JOB_CREATE_ENDPOINTS = frozenset({"create", "analytics_create"})
ENDPOINTS = API_ENDPOINTS | {"token", "authorize", "download"}

# Faults that replace or disturb one HTTP response; allowed on the endpoints listed.
HTTP_FAULT_ENDPOINTS: dict[str, frozenset[str]] = {
    "rate_limit": ENDPOINTS,
    "error": ENDPOINTS,
    "slow": ENDPOINTS,
    "drop": ENDPOINTS,
    "truncate": ENDPOINTS,
    "forbidden": API_ENDPOINTS | {"download"},
    "token_expired": API_ENDPOINTS,
    "url_expired": frozenset({"download"}),
    "url_expires_mid_download": frozenset({"download"}),
    "corrupt_gzip": frozenset({"download"}),
    "empty_body": frozenset({"download"}),
    "cr_line_endings": frozenset({"download"}),
    "unclosed_quote": frozenset({"download"}),
    "stall": ENDPOINTS,
    "redirect": frozenset({"token"}),
    "authorization_denied": frozenset({"authorize"}),
}
# Faults that alter a job-status answer without changing the job; allowed on the endpoints listed.
RESPONSE_FAULT_ENDPOINTS: dict[str, frozenset[str]] = {
    "download_urls_missing": frozenset({"get", "analytics_get"}),
    "null_export_window": frozenset({"get"}),
    "lowercase_status": frozenset({"get", "analytics_get"}),
    "non_object_body": frozenset({"get", "analytics_get"}),
    "row_count_mismatch": frozenset({"analytics_get"}),
}
RESPONSE_FAULTS = frozenset(RESPONSE_FAULT_ENDPOINTS)
#: Response faults that only act on (and only count) answers reporting a COMPLETED job.
COMPLETED_ONLY_FAULTS = frozenset(
    {"download_urls_missing", "null_export_window", "row_count_mismatch"}
)
# Faults decided when a job is created (the create call itself answers as usual).
JOB_FAULT_ENDPOINTS: dict[str, frozenset[str]] = {
    "job_failed": JOB_CREATE_ENDPOINTS,
    "job_never_finishes": JOB_CREATE_ENDPOINTS,
    "header_drift": frozenset({"create"}),
}
JOB_FAULTS = frozenset(JOB_FAULT_ENDPOINTS)
FAULT_KINDS = frozenset(HTTP_FAULT_ENDPOINTS) | frozenset(RESPONSE_FAULT_ENDPOINTS) | JOB_FAULTS
HTTP_FAULTS = frozenset(HTTP_FAULT_ENDPOINTS)
# HTTP faults that cut the connection while the body is being written.
CUT_FAULTS = frozenset({"drop", "truncate", "url_expires_mid_download"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: The failed statuses of an export job. Only FAILED_DUE_TO_INTERNAL_ERROR is named for the CRM
#: API; the analytics list comes from a third-party copy of the schema (linkedin-api.md 3.2).
FAILED_STATUSES = (
    "FAILED_DUE_TO_INTERNAL_ERROR",
    "FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR",
    "FAILED_DUE_TO_TIMED_OUT",
    "FAILED_DUE_TO_DATA_DELAY",
)
#: LinkedIn's ``error`` values when a member does not approve (the sandbox otherwise auto-approves).
DENIAL_ERRORS = ("user_cancelled_authorize", "user_cancelled_login")
VARIANTS: dict[str, tuple[str, ...]] = {
    "job_failed": FAILED_STATUSES,
    "authorization_denied": DENIAL_ERRORS,
    "download_urls_missing": ("null", "absent", "empty"),
    "non_object_body": ("array", "string", "null", "number"),
    "stall": ("before_response", "mid_body"),
}


#: What the fired-fault log calls the scenario rules and quotas that act like faults.
RULE_KINDS = frozenset({"max_window", "data_delay", "member_daily_quota"})


@dataclass(frozen=True, slots=True)
class FaultScope:
    """What a request or job is about, for the fault filters: CRM instance, or contract and type."""

    instance: str | None = None
    contract: str | None = None
    export_type: str | None = None


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

    A fault matches requests by endpoint kind (``token``, ``authorize``, ``create``, ``get``,
    ``contracts``, ``analytics_create``, ``analytics_get``, ``download``; ``None`` means every
    endpoint the kind applies to) and optionally by CRM instance URN, analytics contract URN and
    analytics export type. Each fault counts the requests it matches: it skips the first ``after``
    of them and then fires ``times`` times (``None`` = forever). Job faults (``job_failed``,
    ``job_never_finishes``, ``header_drift``) count job creations instead of requests; response
    faults (``RESPONSE_FAULT_ENDPOINTS``) count the job-status answers they can alter, and those
    in ``COMPLETED_ONLY_FAULTS`` only answers that report a completed job (so ``times=2`` spoils
    the first two completed answers).

    The kinds, by where they act:

    - the whole response: ``rate_limit`` (429, LinkedIn's DAY-limit body), ``error`` (5xx
      envelope), ``forbidden`` (403 envelope), ``token_expired`` (401, and the token stays
      expired), ``authorization_denied`` (the page redirects with ``error=variant``),
      ``redirect`` (the token endpoint answers ``status``, default 307, pointing at another
      sandbox path, which answers as the token endpoint and logs whether a secret arrived);
    - timing and the wire: ``slow`` (wait ``delay`` before handling), ``stall`` (handle at once,
      then send nothing for ``delay`` seconds: before the response, or after ``after_bytes`` of
      the body with ``variant="mid_body"``), ``drop``, ``truncate``;
    - downloads: ``url_expired``, ``url_expires_mid_download``, ``corrupt_gzip``, ``empty_body``
      (200 with 0 bytes), ``cr_line_endings`` (records end in CR only), ``unclosed_quote`` (a
      quote opens the first data record and never closes); all stream, whatever the size;
    - job-status bodies: ``download_urls_missing`` (``downloadUrls``/``downloadUrl`` null,
      absent or empty), ``null_export_window`` (``exportEndAt`` and ``nextExportStartAt``
      null), ``lowercase_status``, ``non_object_body`` (a JSON array, string, null or number),
      ``row_count_mismatch`` (``rowCount`` off by ``delta``);
    - jobs: ``job_failed`` (ends in the ``variant`` status), ``job_never_finishes``,
      ``header_drift``.

    Attributes:
        kind: What goes wrong; one of ``FAULT_KINDS``.
        endpoint: Endpoint kind to match, or ``None`` for all applicable ones.
        instance: CRM instance URN to match, or ``None`` for any.
        contract: Analytics contract URN to match, or ``None`` for any.
        export_type: Analytics export type to match (``activity``, ``activity_outcome``,
            ``seat``), or ``None`` for any.
        times: How many times the fault fires; ``None`` for unlimited.
        after: How many matching requests (or job creations) to let through first.
        status: HTTP status for ``error`` (default 500), ``forbidden`` (403) and ``redirect``
            (307).
        retry_after: ``Retry-After`` seconds for ``rate_limit``; ``None`` sends no header.
        delay: Seconds to wait, for ``slow`` and ``stall``.
        after_bytes: Body bytes sent before ``drop``, ``truncate`` or ``url_expires_mid_download``
            cut the connection, or a ``mid_body`` stall pauses.
        message: Replaces the default error message, if given.
        variant: Which form the fault takes, for kinds that have several (``VARIANTS``): the
            failed status of ``job_failed`` (default ``FAILED_DUE_TO_INTERNAL_ERROR``), the
            ``error`` of ``authorization_denied`` (default ``user_cancelled_authorize``), what
            ``download_urls_missing`` sends (``null``, ``absent``, ``empty``), what
            ``non_object_body`` sends (``array``, ``string``, ``null``, ``number``), where
            ``stall`` pauses (``before_response``, ``mid_body``).
        delta: How far ``row_count_mismatch`` moves the reported ``rowCount``.
    """

    kind: str
    endpoint: str | None = None
    instance: str | None = None
    contract: str | None = None
    export_type: str | None = None
    times: int | None = 1
    after: int = 0
    status: int | None = None
    retry_after: int | None = None
    delay: float = 1.0
    after_bytes: int = 4096
    message: str | None = None
    variant: str | None = None
    delta: int = 1

    def __post_init__(self) -> None:
        """Validate the kind, the endpoint, the export type and the variant.

        Raises:
            ValueError: If the kind is unknown, or a setting does not apply to it.
        """
        if self.kind not in FAULT_KINDS:
            msg = f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}"
            raise ValueError(msg)
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            msg = f"unknown endpoint {self.endpoint!r}; known: {sorted(ENDPOINTS)}"
            raise ValueError(msg)
        allowed = self.endpoints
        if self.endpoint is not None and self.endpoint not in allowed:
            if self.kind in JOB_FAULTS:
                msg = f"fault {self.kind!r} is decided at job creation (endpoint {sorted(allowed)})"
            else:
                msg = f"fault {self.kind!r} does not apply to endpoint {self.endpoint!r}"
            raise ValueError(msg)
        if self.export_type is not None and self.export_type not in EXPORT_TYPES:
            msg = f"unknown export type {self.export_type!r}; known: {sorted(EXPORT_TYPES)}"
            raise ValueError(msg)
        if self.kind == "redirect" and self.status not in {None, *REDIRECT_STATUSES}:
            msg = f"a redirect fault's status must be one of {sorted(REDIRECT_STATUSES)}"
            raise ValueError(msg)
        variants = VARIANTS.get(self.kind, ())
        if self.variant is not None and self.variant not in variants:
            msg = f"fault {self.kind!r} has no variant {self.variant!r}; known: {list(variants)}"
            raise ValueError(msg)

    @property
    def endpoints(self) -> frozenset[str]:
        """Every endpoint this kind of fault can act on."""
        for table in (HTTP_FAULT_ENDPOINTS, RESPONSE_FAULT_ENDPOINTS, JOB_FAULT_ENDPOINTS):
            if self.kind in table:
                return table[self.kind]
        return frozenset()

    @property
    def effective_variant(self) -> str | None:
        """The variant in effect: the one set, else the kind's default (``None`` if it has none)."""
        if self.kind == "redirect":
            return str(self.status or 307)
        if self.variant is not None:
            return self.variant
        variants = VARIANTS.get(self.kind)
        return variants[0] if variants else None

    def applies_to(self, endpoint: str) -> bool:
        """Whether this fault can act on ``endpoint`` (job faults: on job creations there)."""
        if self.endpoint is not None:
            return self.endpoint == endpoint
        return endpoint in self.endpoints

    def matches(self, scope: FaultScope) -> bool:
        """Whether the fault's instance, contract and export-type filters let ``scope`` through."""
        return (
            (self.instance is None or self.instance == scope.instance)
            and (self.contract is None or self.contract == scope.contract)
            and (self.export_type is None or self.export_type == scope.export_type)
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> Fault:
        """Build a fault from a JSON object with the same keys as the attributes."""
        check_keys("fault", data, {f.name for f in dataclasses.fields(cls)})
        return cls(**data)


@dataclass(frozen=True, slots=True)
class FiredFault:
    """A fault that took effect, as the fired-fault log records it.

    HTTP and response faults are logged on the request they act on; job faults when the job
    shows them (``job_failed`` when the failed status is first reported, ``job_never_finishes``
    when the job would have ended, ``header_drift`` when the job's files are first offered). The
    scenario rules log under ``RULE_KINDS``: ``max_window`` and ``data_delay`` like a
    ``job_failed``, ``member_daily_quota`` on each refused call.

    Attributes:
        kind: A fault kind (``FAULT_KINDS``) or a rule (``RULE_KINDS``).
        endpoint: The endpoint of the request it acted on.
        instance: CRM instance URN, if the request or job has one.
        contract: Analytics contract URN, if the request or job has one.
        export_type: Analytics export type, if the request or job has one.
        job_id: The export job, if the request or fault concerns one.
        variant: The form it took (``Fault.effective_variant``; the failed status for job
            failures, the status code for redirects), or ``None``.
        at_ms: When, in epoch milliseconds of the sandbox clock.
    """

    kind: str
    endpoint: str
    instance: str | None
    contract: str | None
    export_type: str | None
    job_id: int | None
    variant: str | None
    at_ms: int


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
        """Start counting ``faults`` from zero, with an empty fired-fault log."""
        self._lock = threading.Lock()
        self._counters = [_Counter(f) for f in faults]
        self._fired: list[FiredFault] = []

    def record(self, fired: FiredFault) -> None:
        """Add an entry to the fired-fault log."""
        with self._lock:
            self._fired.append(fired)

    @property
    def fired(self) -> list[FiredFault]:
        """A snapshot of the fired-fault log, oldest first."""
        with self._lock:
            return list(self._fired)

    def clear_fired(self) -> None:
        """Empty the fired-fault log."""
        with self._lock:
            self._fired.clear()

    def add(self, fault: Fault) -> None:
        """Add a fault (its counters start at zero)."""
        with self._lock:
            self._counters.append(_Counter(fault))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._counters.clear()

    def take(self, endpoint: str, scope: FaultScope, kinds: frozenset[str]) -> Fault | None:
        """Count a request and return the fault among ``kinds`` that fires on it, if any.

        Args:
            endpoint: The request's endpoint kind.
            scope: What the request is about.
            kinds: The fault kinds that can act on this request now; only they count it.
        """
        fired = self._count(endpoint, scope, kinds, first_only=True)
        return fired[0] if fired else None

    def take_job_faults(self, endpoint: str, scope: FaultScope) -> list[Fault]:
        """Count a job creation and return every job fault that fires on it."""
        return self._count(endpoint, scope, JOB_FAULTS, first_only=False)

    def _count(
        self, endpoint: str, scope: FaultScope, kinds: frozenset[str], *, first_only: bool
    ) -> list[Fault]:
        """Count the faults of ``kinds`` that match; fire every due one, or only the first."""
        fired: list[Fault] = []
        with self._lock:
            for counter in self._counters:
                fault = counter.fault
                if fault.kind not in kinds:
                    continue
                if not fault.applies_to(endpoint) or not fault.matches(scope):
                    continue
                if counter.count() and not (first_only and fired):
                    counter.fired += 1
                    fired.append(fault)
        return fired
