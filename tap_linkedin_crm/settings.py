"""Validated settings (declared in `tap.py`), with the checks a JSON schema cannot make.

Defaults live only in the settings schema; the SDK's validator fills them into the config, and
`load_settings` reads them from the schema for any key still missing. Every problem is reported at
once, each naming the setting to fix, before any HTTP request. Values of secret settings are never
quoted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import re
import typing as t
import urllib.parse
from dataclasses import dataclass

import pendulum
from singer_sdk.exceptions import ConfigValidationError

from tap_linkedin_crm.columns import COLUMN_TYPE_NAMES, DEFAULT_COLUMN_TYPES, ColumnType

if t.TYPE_CHECKING:
    from collections.abc import Mapping

LOGGER = logging.getLogger("tap_linkedin_crm.settings")

DEFAULT_API_URL = "https://api.linkedin.com/v2"
DEFAULT_TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"  # noqa: S105 - a URL
#: LinkedIn's CRM Data Validation exports look back at most this far.
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
_TRUTHY = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSY = frozenset({"false", "0", "no", "off", "f", "n", ""})


@dataclass(frozen=True, slots=True)
class CrmInstance:
    """A parsed CRM instance URN."""

    urn: str
    crm_key: str
    value: str


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the tap talks to LinkedIn and waits for jobs (shared by every export kind)."""

    api_url: str
    token_url: str
    linkedin_version: str | None
    poll_interval: float
    poll_max_interval: float
    job_timeout: float
    job_max_attempts: int
    max_jobs_in_flight: int
    request_timeout: float
    request_max_retries: int
    request_retry_delay: float


@dataclass(frozen=True, slots=True)
class CrmSettings:
    """The CRM Data Validation exports: which instances, from when, with which credentials."""

    instances: tuple[CrmInstance, ...]
    client_id: str | None
    client_secret: str | None
    access_token: str | None
    start_date: dt.datetime | None
    column_types: dict[str, ColumnType]

    @property
    def uses_client_credentials(self) -> bool:
        """Whether tokens are obtained from the token endpoint (rather than given)."""
        return bool(self.client_id and self.client_secret)

    def default_start_ms(self, now: dt.datetime) -> int:
        """`start_date`, or 30 days back (LinkedIn looks back at most 30 days anyway)."""
        start = self.start_date or (now - MAX_LOOKBACK)
        return int(start.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Settings:
    """All validated settings; `crm` is None when the CRM exports are not configured."""

    engine: EngineSettings
    crm: CrmSettings | None


def setting_default(schema: Mapping[str, t.Any], name: str) -> t.Any:  # noqa: ANN401
    """The schema's default of a setting (None if it has none)."""
    return schema.get("properties", {}).get(name, {}).get("default")


def secret_settings(schema: Mapping[str, t.Any]) -> frozenset[str]:
    """Names of the settings whose values must never be shown."""
    return frozenset(
        name
        for name, prop in schema.get("properties", {}).items()
        if prop.get("secret") or prop.get("writeOnly")
    )


def parse_crm_instance(urn: str) -> CrmInstance:
    """Parse and check one CRM instance URN (surrounding whitespace is dropped).

    Raises:
        ConfigValidationError: The URN is malformed or names an unknown CRM.
    """
    text = urn.strip()
    match = CRM_INSTANCE_URN.match(text)
    if match is None:
        msg = (
            f"Invalid CRM instance URN {urn!r} in crm_instance_ids: expected "
            "'urn:li:crmInstance:(DYNAMICS,<org guid>)' or 'urn:li:crmInstance:(SFDC,<org id>)'."
        )
        raise ConfigValidationError(msg)
    key = match.group("key")
    if key not in KNOWN_CRM_KEYS:
        msg = (
            f"Unknown CRM key {key!r} in CRM instance URN {text!r}: CRM Data Validation "
            f"supports {', '.join(KNOWN_CRM_KEYS)}."
        )
        raise ConfigValidationError(msg)
    return CrmInstance(urn=text, crm_key=key, value=match.group("value"))


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


def load_settings(
    config: Mapping[str, t.Any],
    schema: Mapping[str, t.Any],
    *,
    now: dt.datetime | None = None,
) -> Settings:
    """Check the config beyond what JSON schema can say, and build `Settings`.

    Raises:
        ConfigValidationError: With every problem found, each naming the setting to fix.
    """
    problems: list[str] = []

    def value(name: str) -> t.Any:  # noqa: ANN401
        found = config.get(name)
        return setting_default(schema, name) if found is None else found

    urls: dict[str, str] = {}
    for name in ("api_url", "token_url"):
        try:
            urls[name] = check_url(name, str(value(name)))
        except ConfigValidationError as exc:
            problems.append(str(exc))
    poll_interval = float(value("poll_interval"))
    poll_max_interval = float(value("poll_max_interval"))
    if poll_max_interval < poll_interval:
        problems.append(
            f"poll_max_interval ({poll_max_interval:g}) is smaller than "
            f"poll_interval ({poll_interval:g})."
        )
    engine = EngineSettings(
        api_url=urls.get("api_url", ""),
        token_url=urls.get("token_url", ""),
        linkedin_version=value("linkedin_version") or None,
        poll_interval=poll_interval,
        poll_max_interval=poll_max_interval,
        job_timeout=float(value("job_timeout")),
        job_max_attempts=int(value("job_max_attempts")),
        max_jobs_in_flight=int(value("max_jobs_in_flight")),
        request_timeout=float(value("request_timeout")),
        request_max_retries=int(value("request_max_retries")),
        request_retry_delay=float(value("request_retry_delay")),
    )
    crm = _crm_settings(config, problems, now or dt.datetime.now(tz=dt.UTC))
    if problems:
        raise ConfigValidationError(
            "Invalid tap-linkedin-crm configuration: " + " ".join(problems),
            errors=problems,
        )
    return Settings(engine=engine, crm=crm)


def _crm_settings(
    config: Mapping[str, t.Any], problems: list[str], now: dt.datetime
) -> CrmSettings | None:
    """The CRM part, or None when no CRM instance is configured at all."""
    urns = config.get("crm_instance_ids")
    if urns is None:
        return None
    instances: list[CrmInstance] = []
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
            "No credentials for the CRM exports: set client_id and client_secret "
            "(client-credentials flow), or access_token."
        )
    return CrmSettings(
        instances=tuple(instances),
        client_id=config.get("client_id") or None,
        client_secret=config.get("client_secret") or None,
        access_token=config.get("access_token") or None,
        start_date=_start_date(config.get("start_date"), problems, now),
        column_types=_column_types(config.get("column_types") or {}, problems),
    )


def _column_types(declared: Mapping[str, t.Any], problems: list[str]) -> dict[str, ColumnType]:
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


def _start_date(value: object, problems: list[str], now: dt.datetime) -> dt.datetime | None:
    if value in (None, ""):
        return None
    parsed = parse_datetime(value, "start_date", problems)
    if parsed is None:
        return None
    if parsed > now:
        problems.append(
            f"start_date {value!r} is in the future; LinkedIn exports only the past. Leave it "
            "unset to start 30 days back."
        )
        return None
    if parsed < now - MAX_LOOKBACK:
        LOGGER.warning(
            "start_date %s is more than 30 days back; LinkedIn's CRM Data Validation exports "
            "look back at most 30 days, so the first export of each instance starts there.",
            parsed.isoformat(),
        )
    return parsed


def parse_datetime(value: object, name: str, problems: list[str]) -> dt.datetime | None:
    """An ISO 8601 / RFC 3339 date-time setting, in UTC when it has no offset."""
    try:
        parsed = pendulum.parse(str(value), tz="UTC")
    except (ValueError, TypeError, pendulum.parsing.exceptions.ParserError):
        parsed = None
    if isinstance(parsed, pendulum.DateTime):
        moment = parsed
    elif isinstance(parsed, pendulum.Date):  # a date alone: its midnight, UTC
        moment = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")
    else:
        problems.append(f"{name} {value!r} is not an ISO 8601 date-time.")
        return None
    return dt.datetime.fromtimestamp(moment.timestamp(), tz=dt.UTC)


def environment_config(
    schema: Mapping[str, t.Any], prefix: str, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, t.Any], list[str]]:
    """Settings from `<PREFIX><SETTING>` environment variables, typed by the schema.

    Numbers, integers, booleans and objects (JSON) are converted; string lists take a JSON array
    or values separated by whitespace or `;` (never `,`: CRM instance URNs contain commas).

    Returns:
        The settings found, and a problem per variable that could not be read.
    """
    environ = os.environ if environ is None else environ
    secrets = secret_settings(schema)
    found: dict[str, t.Any] = {}
    problems: list[str] = []
    for name, prop in schema.get("properties", {}).items():
        variable = prefix + name.upper().replace("-", "_")
        if variable not in environ:
            continue
        raw = environ[variable]
        shown = "(value not shown)" if name in secrets else repr(raw)
        types = _types(prop)
        try:
            found[name] = _from_text(raw, types, prop)
        except ValueError as exc:
            problems.append(f"{variable}={shown}: {exc}")
    return found, problems


def _types(prop: Mapping[str, t.Any]) -> set[str]:
    declared = prop.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    found: set[str] = set()
    for option in prop.get("anyOf", []) + prop.get("oneOf", []):
        found |= _types(option)
    return found


def _from_text(  # noqa: C901, PLR0911, PLR0912 - one branch per JSON type
    raw: str, types: set[str], prop: Mapping[str, t.Any]
) -> t.Any:  # noqa: ANN401
    text = raw.strip()
    if "null" in types and text.lower() in {"", "null"}:
        return None
    if "array" in types:
        if text.startswith("["):
            parsed = _json(text, "a JSON array")
            if not isinstance(parsed, list):
                msg = "expected a JSON array"
                raise ValueError(msg)
            return parsed
        items_type = prop.get("items", {}).get("type")
        if items_type in (None, "string") or "string" in (items_type or []):
            return [item for item in re.split(r"[\s;]+", text) if item]
        msg = "expected a JSON array"
        raise ValueError(msg)
    if "object" in types:
        parsed = _json(text, "a JSON object")
        if not isinstance(parsed, dict):
            msg = "expected a JSON object"
            raise ValueError(msg)
        return parsed
    if "boolean" in types:
        if text.lower() in _TRUTHY:
            return True
        if text.lower() in _FALSY:
            return False
        msg = "expected true or false"
        raise ValueError(msg)
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            msg = "expected a whole number"
            raise ValueError(msg) from None
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            msg = "expected a number"
            raise ValueError(msg) from None
        return int(number) if number.is_integer() and "." not in text else number
    return raw


def _json(text: str, what: str) -> t.Any:  # noqa: ANN401
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        msg = f"expected {what} (not valid JSON)"
        raise ValueError(msg) from None
