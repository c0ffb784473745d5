"""The tap's settings: the JSON schema users configure, and the validated view the code reads."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import typing as t
import urllib.parse
from dataclasses import dataclass

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_linkedin_crm.columns import COLUMN_TYPE_NAMES, DEFAULT_COLUMN_TYPES, ColumnType

DEFAULT_API_URL = "https://api.linkedin.com/v2"
DEFAULT_TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"  # noqa: S105 - a URL
MAX_LOOKBACK = dt.timedelta(days=30)

#: `urn:li:crmInstance:(KEY,VALUE)`. LinkedIn documents DYNAMICS; SFDC is the Salesforce key.
CRM_INSTANCE_URN = re.compile(r"^urn:li:crmInstance:\((?P<key>[A-Z_]+),(?P<value>[^,()\s]+)\)$")
KNOWN_CRM_KEYS = ("DYNAMICS", "SFDC")
#: Record fields the tap sets itself; `column_types` may not declare them.
RESERVED_FIELDS = frozenset(
    {
        "crmInstanceId",
        "jobId",
        "exportStartAt",
        "exportEndAt",
        "fileIndex",
        "rowNumber",
        "extraColumns",
        "invalidValues",
    }
)

CONFIG_SCHEMA: dict[str, t.Any] = th.PropertiesList(
    th.Property(
        "crm_instance_ids",
        th.ArrayType(th.StringType),
        required=True,
        title="CRM instance URNs",
        description=(
            "CRM instances to export, as URNs: `urn:li:crmInstance:(DYNAMICS,<org guid>)` or "
            "`urn:li:crmInstance:(SFDC,<org id>)`. Each one gets its own export job and bookmark."
        ),
    ),
    th.Property(
        "client_id",
        th.StringType,
        title="Client ID",
        description="LinkedIn app client ID, for the client-credentials (2-legged OAuth) flow.",
    ),
    th.Property(
        "client_secret",
        th.StringType,
        secret=True,
        title="Client secret",
        description="LinkedIn app client secret. Tokens are fetched from `token_url` and renewed.",
    ),
    th.Property(
        "access_token",
        th.StringType,
        secret=True,
        title="Access token",
        description="A pre-issued access token, used when no client credentials are given.",
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description=(
            "`exportStartAt` of the first export of an instance without a bookmark. "
            "Default: 30 days before now (LinkedIn looks back at most 30 days)."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        title="API base URL",
        description="Base URL of the LinkedIn REST API (the sandbox's URL in tests).",
    ),
    th.Property(
        "token_url",
        th.StringType,
        default=DEFAULT_TOKEN_URL,
        title="Token URL",
        description="OAuth 2.0 token endpoint for the client-credentials flow.",
    ),
    th.Property(
        "linkedin_version",
        th.StringType,
        title="LinkedIn-Version header",
        description=(
            "Optional `LinkedIn-Version: YYYYMM` header, for the versioned `/rest` API. "
            "Unset by default: the Sales Navigator exports are documented under `/v2`."
        ),
    ),
    th.Property(
        "poll_interval",
        th.NumberType(exclusive_minimum=0),
        default=30,
        title="Poll interval (s)",
        description="First wait between job status polls; it grows, with jitter, up to the cap.",
    ),
    th.Property(
        "poll_max_interval",
        th.NumberType(exclusive_minimum=0),
        default=300,
        title="Poll interval cap (s)",
        description="Longest wait between two status polls of a job.",
    ),
    th.Property(
        "job_timeout",
        th.NumberType(exclusive_minimum=0),
        default=10800,
        title="Job timeout (s)",
        description=(
            "A job still unfinished after this many seconds fails its instance; "
            "the bookmark is left untouched and the job is resumed by the next run."
        ),
    ),
    th.Property(
        "job_max_attempts",
        th.IntegerType(minimum=1),
        default=3,
        title="Job attempts",
        description="How many jobs to try per instance when LinkedIn reports `FAILED_*`.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0),
        default=300,
        title="Request timeout (s)",
        description="Timeout of each HTTP request (connect and each read).",
    ),
    th.Property(
        "request_max_retries",
        th.IntegerType(minimum=0),
        default=5,
        title="Request retries",
        description=(
            "Retries of one HTTP request on 5xx, connection errors and 429 (honouring "
            "`Retry-After`). The daily-quota 429 is retried at most twice, then the sync stops."
        ),
    ),
    th.Property(
        "request_retry_delay",
        th.NumberType(exclusive_minimum=0),
        default=1,
        title="First retry delay (s)",
        description=(
            "Wait before the first retry of a failed request or download; each further retry "
            "waits about twice as long (with jitter), up to 60 s. `Retry-After` overrides it."
        ),
    ),
    th.Property(
        "column_types",
        th.ObjectType(additional_properties=th.StringType(allowed_values=list(COLUMN_TYPE_NAMES))),
        default={},
        title="Column types",
        description=(
            "Types of CSV columns, `{column: type}` with type one of string, integer, number, "
            "boolean, timestamp; added to "
            "(or overriding) the built-in typed columns. Undeclared columns are kept as strings "
            "in `extraColumns`."
        ),
    ),
).to_dict()


@dataclass(frozen=True, slots=True)
class CrmInstance:
    """A parsed CRM instance URN."""

    urn: str
    crm_key: str
    value: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings, with defaults applied and units converted."""

    instances: tuple[CrmInstance, ...]
    client_id: str | None
    client_secret: str | None
    access_token: str | None
    start_date: dt.datetime | None
    api_url: str
    token_url: str
    linkedin_version: str | None
    poll_interval: float
    poll_max_interval: float
    job_timeout: float
    job_max_attempts: int
    request_timeout: float
    request_max_retries: int
    request_retry_delay: float
    column_types: dict[str, ColumnType]

    @property
    def uses_client_credentials(self) -> bool:
        """Whether tokens are obtained from the token endpoint (rather than given)."""
        return bool(self.client_id and self.client_secret)


def parse_crm_instance(urn: str) -> CrmInstance:
    """Parse and check one CRM instance URN.

    Raises:
        ConfigValidationError: The URN is malformed or names an unknown CRM.
    """
    match = CRM_INSTANCE_URN.match(urn.strip())
    if match is None:
        msg = (
            f"Invalid CRM instance URN {urn!r} in crm_instance_ids: expected "
            "'urn:li:crmInstance:(DYNAMICS,<org guid>)' or 'urn:li:crmInstance:(SFDC,<org id>)'."
        )
        raise ConfigValidationError(msg)
    key = match.group("key")
    if key not in KNOWN_CRM_KEYS:
        msg = (
            f"Unknown CRM key {key!r} in CRM instance URN {urn!r}: CRM Data Validation "
            f"supports {', '.join(KNOWN_CRM_KEYS)}."
        )
        raise ConfigValidationError(msg)
    return CrmInstance(urn=urn.strip(), crm_key=key, value=match.group("value"))


def check_url(name: str, url: str) -> str:
    """Refuse URLs that would send credentials in clear text to another machine.

    Raises:
        ConfigValidationError: Not http(s), or plain http to a non-loopback host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        msg = f"Setting {name} must be an http(s) URL, got {parts.scheme or 'no'} scheme."
        raise ConfigValidationError(msg)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        msg = (
            f"Setting {name} uses plain http:// to {parts.hostname}; credentials would travel "
            "unencrypted. Use https:// (plain http is allowed only for loopback addresses)."
        )
        raise ConfigValidationError(msg)
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(config: t.Mapping[str, t.Any]) -> Settings:
    """Check the config beyond what JSON schema can say, and build `Settings`.

    Raises:
        ConfigValidationError: With every problem found, each naming the setting to fix.
    """
    problems: list[str] = []
    instances: list[CrmInstance] = []
    urns = config.get("crm_instance_ids") or []
    if not urns:
        problems.append("crm_instance_ids is empty: list at least one CRM instance URN.")
    for urn in urns:
        try:
            instances.append(parse_crm_instance(str(urn)))
        except ConfigValidationError as exc:
            problems.append(str(exc))
    seen = [i.urn for i in instances]
    problems.extend(
        f"CRM instance {u!r} is listed twice in crm_instance_ids."
        for u in sorted({u for u in seen if seen.count(u) > 1})
    )
    has_client = bool(config.get("client_id")) or bool(config.get("client_secret"))
    if has_client and not (config.get("client_id") and config.get("client_secret")):
        problems.append("Set both client_id and client_secret (only one of them is set).")
    if not has_client and not config.get("access_token"):
        problems.append(
            "No credentials: set client_id and client_secret (client-credentials flow), "
            "or access_token."
        )
    urls: dict[str, str] = {}
    for name, default in (("api_url", DEFAULT_API_URL), ("token_url", DEFAULT_TOKEN_URL)):
        try:
            urls[name] = check_url(name, str(config.get(name) or default))
        except ConfigValidationError as exc:
            problems.append(str(exc))
    poll_interval = float(config.get("poll_interval", 30))
    poll_max_interval = float(config.get("poll_max_interval", 300))
    if poll_max_interval < poll_interval:
        problems.append(
            f"poll_max_interval ({poll_max_interval:g}) is smaller than "
            f"poll_interval ({poll_interval:g})."
        )
    column_types = _column_types(config.get("column_types") or {}, problems)
    start_date = _parse_start_date(config.get("start_date"), problems)
    if problems:
        raise ConfigValidationError(
            "Invalid tap-linkedin-crm configuration: " + " ".join(problems),
            errors=problems,
        )
    return Settings(
        instances=tuple(instances),
        client_id=config.get("client_id") or None,
        client_secret=config.get("client_secret") or None,
        access_token=config.get("access_token") or None,
        start_date=start_date,
        api_url=urls["api_url"],
        token_url=urls["token_url"],
        linkedin_version=config.get("linkedin_version") or None,
        poll_interval=poll_interval,
        poll_max_interval=poll_max_interval,
        job_timeout=float(config.get("job_timeout", 10800)),
        job_max_attempts=int(config.get("job_max_attempts", 3)),
        request_timeout=float(config.get("request_timeout", 300)),
        request_max_retries=int(config.get("request_max_retries", 5)),
        request_retry_delay=float(config.get("request_retry_delay", 1)),
        column_types=column_types,
    )


def _column_types(declared: t.Mapping[str, t.Any], problems: list[str]) -> dict[str, ColumnType]:
    column_types: dict[str, ColumnType] = dict(DEFAULT_COLUMN_TYPES)
    for column, type_name in declared.items():
        if column in RESERVED_FIELDS:
            problems.append(
                f"column_types[{column!r}]: {column!r} is a field the tap sets itself; a CSV "
                "column of that name is kept in extraColumns."
            )
        elif type_name not in COLUMN_TYPE_NAMES:
            problems.append(
                f"column_types[{column!r}] is {type_name!r}; use one of "
                f"{', '.join(COLUMN_TYPE_NAMES)}."
            )
        else:
            column_types[str(column)] = t.cast("ColumnType", type_name)
    return column_types


def _parse_start_date(value: object, problems: list[str]) -> dt.datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        problems.append(f"start_date {value!r} is not an ISO 8601 date-time.")
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
