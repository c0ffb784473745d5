"""What a sandbox run serves: the scenario, its CRM instances and contracts, loadable from JSON."""

from __future__ import annotations

import dataclasses
import json
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from tap_linkedin_crm.sandbox.analytics_data import EXPORT_TYPES, default_columns
from tap_linkedin_crm.sandbox.data import DEFAULT_COLUMNS
from tap_linkedin_crm.sandbox.faults import ANALYTICS_API_ENDPOINTS, Fault, check_keys

if t.TYPE_CHECKING:
    from collections.abc import Mapping

DYNAMICS_INSTANCE = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
SFDC_INSTANCE = "urn:li:crmInstance:(SFDC,00D5e000000AbCdEAF)"
#: The member the authorization page signs in as, and who holds the default contracts.
SANDBOX_MEMBER = "urn:li:person:sbxMember01"
EMEA_CONTRACT = "urn:li:contract:100001"
AMERICAS_CONTRACT = "urn:li:contract:100002"
#: Listed for the member, but without reporting access: every export for it answers 403.
NO_REPORTING_CONTRACT = "urn:li:contract:100003"
SIXTY_DAYS = 60 * 86_400


@dataclass(slots=True)
class InstanceSpec:
    """What one CRM instance exports.

    Attributes:
        rows: Data rows in every export job of this instance, spread over ``files`` files.
        files: Files (download URLs) per job; at least one, even with zero rows.
        gzip: Serve ``.csv.gz`` files (``application/gzip``) instead of plain CSV.
        columns: Column names; ``None`` uses the scenario's columns (default ``DEFAULT_COLUMNS``).
        permitted: ``False`` makes every call for this instance answer 403 (missing permission).
        header_drift: Vary the header between files: an added column, a missing one, reordered.
        file_columns: Explicit per-file column lists, used cyclically; overrides the two above.
    """

    rows: int = 250
    files: int = 3
    gzip: bool = False
    columns: list[str] | None = None
    permitted: bool = True
    header_drift: bool = False
    file_columns: list[list[str]] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> InstanceSpec:
        """Build an instance spec from a JSON object with the same keys as the attributes."""
        check_keys("instance", data, {f.name for f in dataclasses.fields(cls)})
        return cls(**data)


def _default_instances() -> dict[str, InstanceSpec]:
    return {
        DYNAMICS_INSTANCE: InstanceSpec(rows=250, files=3),
        SFDC_INSTANCE: InstanceSpec(rows=120, files=2, gzip=True),
    }


@dataclass(slots=True)
class ContractSpec:
    """One Sales Navigator contract: how ``salesContracts`` lists it and what it exports.

    Attributes:
        name: Listed name.
        description: Listed description.
        has_reporting_access: ``False`` lists the contract but answers 403 to its exports.
        members: Person URNs of the members who hold a reporting role on it; only they see it.
        seats: Seats of the contract (their ids are generated).
        activities_per_day: Mean activity rows per day; each day's count varies by up to ±50 %.
        gzip: Serve the export files as ``.csv.gz``.
    """

    name: str = "Sales Navigator contract"
    description: str = ""
    has_reporting_access: bool = True
    members: list[str] = field(default_factory=lambda: [SANDBOX_MEMBER])
    seats: int = 5
    activities_per_day: float = 40.0
    gzip: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> ContractSpec:
        """Build a contract spec from a JSON object with the same keys as the attributes."""
        check_keys("contract", data, {f.name for f in dataclasses.fields(cls)})
        return cls(**data)


def _default_contracts() -> dict[str, ContractSpec]:
    return {
        EMEA_CONTRACT: ContractSpec(
            name="Contoso EMEA", description="Advanced Plus, EMEA field sales", seats=8
        ),
        AMERICAS_CONTRACT: ContractSpec(
            name="Contoso Americas",
            description="Advanced, inside sales",
            seats=4,
            activities_per_day=25.0,
            gzip=True,
        ),
        NO_REPORTING_CONTRACT: ContractSpec(
            name="Contoso Trial",
            description="Core seats without a reporting role",
            has_reporting_access=False,
            seats=2,
        ),
    }


@dataclass(slots=True)
class Scenario:
    """Everything that shapes one sandbox run.

    Attributes:
        clients: Client id to client secret, for every grant.
        token_ttl_seconds: Application (client-credentials) token lifetime, sent as
            ``expires_in`` (a string, as documented).
        instances: CRM instance URN to what it exports.
        job_processing_polls: GETs answered ``PROCESSING`` before a CRM job completes.
        processing_seconds: If set, a CRM job completes this many sandbox-clock seconds after
            creation instead (``job_processing_polls`` is then ignored).
        url_ttl_seconds: Download URLs expire this long after they are issued (``expireAt``).
        next_export_start: ``"end"`` (``nextExportStartAt = exportEndAt``) or ``"start"`` (equal to
            ``exportStartAt``, as in the documentation sample).
        lookback_days: ``exportStartAt`` is clamped to at most this many days before creation.
        job_retention_days: GET on a job (of either API) older than this answers 404.
        crm_keys: CRM keys accepted in ``urn:li:crmInstance:(KEY,VALUE)``.
        unknown_instance_status: Status (404 or 403) for a valid URN not in ``instances``.
        require_restli_header: Answer 400 to ``/v2`` calls without ``X-Restli-Protocol-Version``.
        columns: Default column names for instances that set none.
        bom: Start every file with a UTF-8 byte-order mark.
        nul_bytes: Put a NUL character into an occasional value.
        long_field_chars: Length of the occasional very long value (0 disables them).
        stream_threshold_rows: Files with more rows are streamed with chunked transfer encoding;
            smaller ones are sent with ``Content-Length``.
        faults: Scripted faults, see :class:`Fault`.
        seed: Seed of the deterministic row generator.
        member: Person URN the authorization page signs in as (it approves at once).
        redirect_uris: Registered redirect URIs, matched exactly; ``None`` accepts any loopback
            ``http`` URL (``127.0.0.1``, ``localhost``, ``[::1]``, any port and path).
        authorization_code_ttl_seconds: Authorization codes expire this long after issue.
        member_token_ttl_seconds: Member access-token lifetime, ``expires_in`` (an integer);
            LinkedIn documents 60 days.
        refresh_token_ttl_seconds: Refresh-token lifetime at issue; documented 365 days, and not
            renewed by refreshing (``refresh_token_expires_in`` counts down).
        rotate_refresh_tokens: Each refresh returns a new refresh token (same expiry) and revokes
            the old one. LinkedIn does not document rotation; off by default.
        issue_refresh_tokens: Send refresh tokens at all (LinkedIn sends them only to apps
            approved for programmatic refresh tokens).
        contracts: Contract URN to contract, for the analytics API.
        contracts_paging_total: Include ``total`` in the ``paging`` of ``salesContracts``.
        analytics_enqueued_polls: GETs of an analytics job answered ``ENQUEUED``.
        analytics_processing_polls: Further GETs answered ``PROCESSING`` before the job ends.
        analytics_processing_seconds: If set, an analytics job ends this many sandbox-clock
            seconds after creation instead (``analytics_processing_polls`` is then ignored).
        analytics_columns: Export type to column names (``DEFAULT_ANALYTICS_COLUMNS``).
        analytics_history_days: No activity exists earlier than this many days before the
            sandbox was created (UTC day boundary).
        analytics_max_window_days: Exports whose window is longer fail with
            ``FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR``; ``None`` means no limit (a third-party
            client claims 90 days).
        analytics_data_lag_seconds: Data is available until this long before the job's
            creation; exports whose window ends later fail with ``FAILED_DUE_TO_DATA_DELAY``.
        analytics_data_available_until: The same as an absolute instant (epoch ms); if both are
            set, the earlier bound applies.
        member_daily_quota: Endpoint (``contracts``, ``analytics_create``, ``analytics_get``) to
            the calls each member may make per UTC day of the sandbox clock; more answer 429.
    """

    clients: dict[str, str] = field(default_factory=lambda: {"sandbox-client": "sandbox-secret"})
    token_ttl_seconds: int = 1800
    instances: dict[str, InstanceSpec] = field(default_factory=_default_instances)
    job_processing_polls: int = 2
    processing_seconds: float | None = None
    url_ttl_seconds: int = 86400
    next_export_start: str = "end"
    lookback_days: int = 30
    job_retention_days: int = 7
    crm_keys: list[str] = field(default_factory=lambda: ["DYNAMICS", "SFDC"])
    unknown_instance_status: int = 404
    require_restli_header: bool = True
    columns: list[str] = field(default_factory=lambda: list(DEFAULT_COLUMNS))
    bom: bool = True
    nul_bytes: bool = True
    long_field_chars: int = 10_000
    stream_threshold_rows: int = 20_000
    faults: list[Fault] = field(default_factory=list)
    seed: int = 7
    member: str = SANDBOX_MEMBER
    redirect_uris: list[str] | None = None
    authorization_code_ttl_seconds: int = 600
    member_token_ttl_seconds: int = SIXTY_DAYS
    refresh_token_ttl_seconds: int = 365 * 86_400
    rotate_refresh_tokens: bool = False
    issue_refresh_tokens: bool = True
    contracts: dict[str, ContractSpec] = field(default_factory=_default_contracts)
    contracts_paging_total: bool = True
    analytics_enqueued_polls: int = 1
    analytics_processing_polls: int = 1
    analytics_processing_seconds: float | None = None
    analytics_columns: dict[str, list[str]] = field(default_factory=default_columns)
    analytics_history_days: int = 400
    analytics_max_window_days: float | None = None
    analytics_data_lag_seconds: float | None = None
    analytics_data_available_until: int | None = None
    member_daily_quota: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate the settings that have a fixed set of values.

        Raises:
            ValueError: If a setting is out of range.
        """
        if self.next_export_start not in {"end", "start"}:
            msg = "next_export_start must be 'end' or 'start'"
            raise ValueError(msg)
        if not self.clients:
            msg = "a scenario needs at least one client"
            raise ValueError(msg)
        unknown_types = set(self.analytics_columns) - EXPORT_TYPES
        if unknown_types:
            msg = f"unknown export types in analytics_columns: {sorted(unknown_types)}"
            raise ValueError(msg)
        unknown_endpoints = set(self.member_daily_quota) - ANALYTICS_API_ENDPOINTS
        if unknown_endpoints:
            msg = (
                f"member_daily_quota applies to {sorted(ANALYTICS_API_ENDPOINTS)}, "
                f"not {sorted(unknown_endpoints)}"
            )
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> Scenario:
        """Build a scenario from a JSON object; nested instances, contracts and faults too.

        Raises:
            ValueError: If a key is unknown or a value is invalid.
        """
        check_keys("scenario", data, {f.name for f in dataclasses.fields(cls)})
        kwargs = dict(data)
        if "instances" in kwargs:
            kwargs["instances"] = {
                urn: spec if isinstance(spec, InstanceSpec) else InstanceSpec.from_dict(spec)
                for urn, spec in kwargs["instances"].items()
            }
        if "contracts" in kwargs:
            kwargs["contracts"] = {
                urn: spec if isinstance(spec, ContractSpec) else ContractSpec.from_dict(spec)
                for urn, spec in kwargs["contracts"].items()
            }
        if "faults" in kwargs:
            kwargs["faults"] = [
                f if isinstance(f, Fault) else Fault.from_dict(f) for f in kwargs["faults"]
            ]
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        """Load a scenario from a JSON file (keys as in :meth:`from_dict`)."""
        with Path(path).open(encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def to_dict(self) -> dict[str, t.Any]:
        """Return the scenario as a JSON-ready dict (the inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)
