"""What a sandbox run serves: the scenario and its CRM instances, loadable from JSON."""

from __future__ import annotations

import dataclasses
import json
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from tap_linkedin_crm.sandbox.data import DEFAULT_COLUMNS
from tap_linkedin_crm.sandbox.faults import Fault, check_keys

if t.TYPE_CHECKING:
    from collections.abc import Mapping

DYNAMICS_INSTANCE = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
SFDC_INSTANCE = "urn:li:crmInstance:(SFDC,00D5e000000AbCdEAF)"


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
class Scenario:
    """Everything that shapes one sandbox run.

    Attributes:
        clients: Client id to client secret, for the client-credentials grant.
        token_ttl_seconds: Access-token lifetime, sent as ``expires_in`` (a string).
        instances: CRM instance URN to what it exports.
        job_processing_polls: GETs answered ``PROCESSING`` before a job completes.
        processing_seconds: If set, a job completes this many sandbox-clock seconds after creation
            instead (``job_processing_polls`` is then ignored).
        url_ttl_seconds: Download URLs expire this long after they are issued (``expireAt``).
        next_export_start: ``"end"`` (``nextExportStartAt = exportEndAt``) or ``"start"`` (equal to
            ``exportStartAt``, as in the documentation sample).
        lookback_days: ``exportStartAt`` is clamped to at most this many days before creation.
        job_retention_days: GET on a job older than this answers 404.
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

    @classmethod
    def from_dict(cls, data: Mapping[str, t.Any]) -> Scenario:
        """Build a scenario from a JSON object; nested instances and faults are plain objects.

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
