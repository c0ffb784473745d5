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

from tap_linkedin_crm.columns import ColumnType, column_types_by_stream

if t.TYPE_CHECKING:
    from collections.abc import Mapping

LOGGER = logging.getLogger("tap_linkedin_crm.settings")

DEFAULT_API_URL = "https://api.linkedin.com/v2"
DEFAULT_TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"  # noqa: S105 - a URL
#: LinkedIn's CRM Data Validation exports look back at most this far.
MAX_LOOKBACK = dt.timedelta(days=30)

#: The analytics exports' default first window starts this far back.
ANALYTICS_DEFAULT_LOOKBACK = dt.timedelta(days=90)
#: An analytics_start_date before this is a typo (1024 for 2024), not history to export.
ANALYTICS_EARLIEST_START = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

#: `urn:li:crmInstance:(KEY,VALUE)`. LinkedIn documents DYNAMICS; SFDC is the Salesforce key.
CRM_INSTANCE_URN = re.compile(r"^urn:li:crmInstance:\((?P<key>[A-Z_]+),(?P<value>[^,()\s]+)\)$")
KNOWN_CRM_KEYS = ("DYNAMICS", "SFDC")
#: `urn:li:contract:N`, as LinkedIn's Sales Navigator APIs name contracts.
CONTRACT_URN = re.compile(r"^urn:li:contract:[0-9]+$")
#: How to list URNs in one environment variable; errors about lists say it.
LIST_HINT = "list several as a JSON array, or separated by spaces or ';'"
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

    @property
    def uses_client_credentials(self) -> bool:
        """Whether tokens are obtained from the token endpoint (rather than given)."""
        return bool(self.client_id and self.client_secret)

    def default_start_ms(self, now: dt.datetime) -> int:
        """`start_date`, or 30 days back (LinkedIn looks back at most 30 days anyway)."""
        start = self.start_date or (now - MAX_LOOKBACK)
        return int(start.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    """The Sales Navigator analytics exports: the member's credentials, contracts, windows."""

    client_id: str | None
    client_secret: str | None
    refresh_token: str | None
    access_token: str | None
    contract_ids: tuple[str, ...] | None
    start_date: dt.datetime
    window_days: int
    lag_hours: float


@dataclass(frozen=True, slots=True)
class Settings:
    """All validated settings; a family is None when none of its settings is given."""

    engine: EngineSettings
    crm: CrmSettings | None
    analytics: AnalyticsSettings | None
    #: Typed columns of each rows stream (built-in plus `column_types`).
    column_types: dict[str, dict[str, ColumnType]]


#: Export families by the settings that configure them (a family is skipped without them).
FAMILY_SETTINGS: dict[str, tuple[str, ...]] = {
    "crm_data_validation": ("crm_instance_ids",),
    "sales_analytics": ("refresh_token", "analytics_access_token"),
}


def configured_families(config: Mapping[str, t.Any]) -> set[str]:
    """The export families the config sets up (by `StreamSpec.kind`); not validated here."""
    return {
        family
        for family, names in FAMILY_SETTINGS.items()
        if any(config.get(name) not in (None, "", []) for name in names)
    }


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
            "'urn:li:crmInstance:(DYNAMICS,<org guid>)' or 'urn:li:crmInstance:(SFDC,<org id>)' "
            f"(in an environment variable, {LIST_HINT})."
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
    now = now or dt.datetime.now(tz=dt.UTC)
    crm = _crm_settings(config, problems, now)
    analytics = _analytics_settings(config, value, problems, now)
    column_types = column_types_by_stream(config.get("column_types") or {}, problems)
    if problems:
        raise ConfigValidationError(
            "Invalid tap-linkedin-crm configuration: " + " ".join(problems),
            errors=problems,
        )
    return Settings(engine=engine, crm=crm, analytics=analytics, column_types=column_types)


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
    )


def _analytics_settings(
    config: Mapping[str, t.Any],
    value: t.Callable[[str], t.Any],
    problems: list[str],
    now: dt.datetime,
) -> AnalyticsSettings | None:
    """The analytics part, or None when no member credential is configured."""
    refresh_token = config.get("refresh_token") or None
    access_token = config.get("analytics_access_token") or None
    if refresh_token is None and access_token is None:
        if config.get("contract_ids"):
            problems.append(
                "contract_ids is set but there is no member credential for the analytics "
                "exports: set refresh_token (see `linkedin-crm-auth`) or analytics_access_token."
            )
        return None
    if refresh_token and not (config.get("client_id") and config.get("client_secret")):
        problems.append(
            "refresh_token needs client_id and client_secret (the app the member authorized)."
        )
    contract_ids: tuple[str, ...] | None = None
    if config.get("contract_ids") is not None:
        contract_ids = tuple(str(c).strip() for c in config["contract_ids"])
        problems.extend(
            f"Invalid contract URN {urn!r} in contract_ids: expected 'urn:li:contract:<id>' "
            f"(in an environment variable, {LIST_HINT})."
            for urn in contract_ids
            if not CONTRACT_URN.match(urn)
        )
        if not contract_ids:
            problems.append("contract_ids is empty: leave it unset to export every contract.")
    start = now - ANALYTICS_DEFAULT_LOOKBACK
    if config.get("analytics_start_date") not in (None, ""):
        parsed = parse_datetime(config["analytics_start_date"], "analytics_start_date", problems)
        if parsed is not None and parsed > now:
            problems.append(
                f"analytics_start_date {config['analytics_start_date']!r} is in the future."
            )
        elif parsed is not None and parsed < ANALYTICS_EARLIEST_START:
            problems.append(
                f"analytics_start_date {config['analytics_start_date']!r} is before "
                f"{ANALYTICS_EARLIEST_START:%Y-%m-%d}, long before Sales Navigator existed: a "
                "typo? Each analytics_window_days window is one export job per contract and "
                "export type, so it would plan a job for every window since then."
            )
        elif parsed is not None:
            start = parsed
    return AnalyticsSettings(
        client_id=config.get("client_id") or None,
        client_secret=config.get("client_secret") or None,
        refresh_token=refresh_token,
        access_token=access_token,
        contract_ids=contract_ids,
        start_date=start,
        window_days=int(value("analytics_window_days")),
        lag_hours=float(value("analytics_lag_hours")),
    )


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
