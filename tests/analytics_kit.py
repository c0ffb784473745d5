"""Analytics test helpers: UTC-day windows, configs, rows as the sandbox generated them."""

from __future__ import annotations

import datetime as dt
import re
import typing as t
from collections import Counter

from tap_linkedin_crm.sandbox import ACTIVITY, ACTIVITY_OUTCOME, SEAT

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from tap_linkedin_crm.sandbox import Sandbox

ACTIVITIES = "sales_activities"
OUTCOMES = "sales_activity_outcomes"
SEATS = "sales_seats"
CONTRACTS = "sales_contracts"
EXPORTS = "sales_analytics_exports"
ROWS_STREAM = {ACTIVITY: ACTIVITIES, ACTIVITY_OUTCOME: OUTCOMES, SEAT: SEATS}
EXPORT_TYPES = (ACTIVITY, ACTIVITY_OUTCOME, SEAT)
DAY_MS = 86_400_000
#: RFC 3339 in UTC, as the tap writes timestamps.
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")
#: Columns the analytics kinds type out of the box (the rest goes to extraColumns).
TYPED = {
    ACTIVITY: ("activityId", "activityType", "createdAt", "seatId", "memberIdentityKey"),
    ACTIVITY_OUTCOME: ("activityId", "activityType"),
    SEAT: (),
}
PROVENANCE = ("contract", "jobId", "startAt", "endAt", "rowNumber")


def midnight(days_back: int) -> int:
    """Epoch ms of the UTC midnight `days_back` days before today's."""
    today = dt.datetime.now(tz=dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - dt.timedelta(days=days_back)).timestamp() * 1000)


def iso(ms: int) -> str:
    """Epoch ms as an ISO 8601 UTC date-time (a setting value)."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()


def analytics_config(
    sb: Sandbox,
    *,
    start_days: int = 4,
    window_days: int = 2,
    lag_hours: float = 0,
    crm: bool = False,
    **overrides: t.Any,
) -> dict[str, t.Any]:
    """A config of the analytics family only (unless `crm`), from `start_days` back."""
    config = sb.tap_config(
        analytics=True,
        analytics_start_date=iso(midnight(start_days)),
        analytics_window_days=window_days,
        analytics_lag_hours=lag_hours,
        request_retry_delay=0.05,
    )
    if not crm:
        del config["crm_instance_ids"]
    config.update(overrides)
    return config


def created_at_ms(text: str) -> int:
    """LinkedIn's `MM-DD-YYYY HH:MM:SS` (UTC) as epoch ms."""
    moment = dt.datetime.strptime(text, "%m-%d-%Y %H:%M:%S").replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def rfc3339_ms(text: str) -> int:
    """An RFC 3339 UTC timestamp the tap wrote, as epoch ms."""
    assert RFC3339_UTC.match(text), text
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def expected_row(contract: str, export_type: str, raw: t.Mapping[str, str]) -> tuple[t.Any, ...]:
    """A generated CSV row as the tap must emit it, typed as the defaults say, for comparison.

    Seat rows are compared as raw text: their typing is up to `column_types`.
    """
    typed = TYPED[export_type]
    values: list[t.Any] = [contract]
    for name in typed:
        value = raw[name]
        if name == "createdAt":
            values.append(created_at_ms(value))
        elif name == "seatId":
            values.append(int(value))
        else:
            values.append(value)
    extra = tuple(sorted((k, v) for k, v in raw.items() if k not in typed))
    return (*values, extra)


def record_row(export_type: str, record: t.Mapping[str, t.Any]) -> tuple[t.Any, ...]:
    """An emitted record, reduced as `expected_row` reduces a generated row."""
    values: list[t.Any] = [record["contract"]]
    for name in TYPED[export_type]:
        value = record[name]
        values.append(rfc3339_ms(value) if name == "createdAt" else value)
    extra = tuple(sorted((record.get("extraColumns") or {}).items()))
    return (*values, extra)


def expected_rows(
    sb: Sandbox, contract: str, export_type: str, start_at: int, end_at: int
) -> list[tuple[t.Any, ...]]:
    """Every row of `[start_at, end_at)` as the tap must emit it."""
    return [
        expected_row(contract, export_type, raw)
        for raw in sb.analytics_rows(contract, export_type, start_at, end_at)
    ]


def duplicates_and_losses(
    expected: Iterable[tuple[t.Any, ...]], got: Iterable[tuple[t.Any, ...]]
) -> tuple[int, int]:
    """(rows emitted more often than generated, rows generated but not emitted)."""
    want, have = Counter(expected), Counter(got)
    return sum((have - want).values()), sum((want - have).values())


def records_of(
    messages: list[dict[str, t.Any]], stream: str, **where: t.Any
) -> list[dict[str, t.Any]]:
    """Records of a stream whose fields equal `where`."""
    return [
        m["record"]
        for m in messages
        if m["type"] == "RECORD"
        and m["stream"] == stream
        and all(m["record"].get(k) == v for k, v in where.items())
    ]


def partition(state: t.Mapping[str, t.Any], contract: str, export_type: str) -> dict[str, t.Any]:
    """The state entry of a (contract, export type), wherever its family keeps it ({} if none)."""
    for stream_state in state.get("bookmarks", {}).values():
        for entry in stream_state.get("partitions", []):
            if entry.get("context") == {"contract": contract, "exportType": export_type}:
                return t.cast("dict[str, t.Any]", entry)
    return {}


def bookmark(state: t.Mapping[str, t.Any], contract: str, export_type: str) -> int | None:
    """The `endAt` bookmark of a (contract, export type), or None."""
    return partition(state, contract, export_type).get("replication_key_value")


def jobs_of(
    sb: Sandbox, contract: str, export_type: str, *, since: int = 0
) -> list[dict[str, t.Any]]:
    """The sandbox's analytics jobs of a (contract, export type) with ids above `since`, by id."""
    return [
        job
        for job_id, job in sorted(sb.analytics_jobs.items())
        if job_id > since and job["contract"] == contract and job["exportType"] == export_type
    ]
