"""Validated settings (declared in `tap.py`), with the checks a JSON schema cannot make."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import typing as t
import urllib.parse
from dataclasses import dataclass

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
