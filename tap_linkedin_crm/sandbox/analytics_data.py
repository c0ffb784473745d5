"""Deterministic Sales Navigator Analytics exports: the activity, activity-outcome and seat CSVs.

Documented (linkedin-api.md section 3.3): the activity CSV's columns ``activityId`` (string,
unique), ``activityType`` (``ACTIVITY_TYPES``), ``createdAt`` (``MM-DD-YYYY HH:MM:SS``, UTC),
``seatId`` (long) and ``memberIdentityKey`` (empty for activities that involve no lead); the
outcome CSV starts with ``activityId`` (the activity the outcome follows) and ``activityType``
(the outcome's type). ASSUMED, because no source shows them: the outcome types and the outcome
CSV's other columns, every seat CSV column, the id formats, the row densities, a header row,
CRLF line ends. The columns are configurable per scenario (``Scenario.analytics_columns``).

Rows are a function of (seed, contract, export type, time), never of the job that asks: an
activity happens at a fixed second whether or not anyone exports it, so a window
``[startAt, endAt)`` holds exactly the rows whose time falls in it, and the two halves of a window
hold the rows of the whole. Seat rows are the exception: one row per seat per export, describing
the seat as of the window's end (``totalLeadsSaved`` counts the window's ``SAVED_LEAD`` rows).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import random
import threading
import typing as t
from collections import Counter
from dataclasses import dataclass

from tap_linkedin_crm.sandbox.byte_streams import coalesce
from tap_linkedin_crm.sandbox.clock import DAY_MS
from tap_linkedin_crm.sandbox.data import BOM, CHUNK_BYTES, CRLF, quote

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

ACTIVITY = "activity"
ACTIVITY_OUTCOME = "activity_outcome"
SEAT = "seat"
EXPORT_TYPES = frozenset({ACTIVITY, ACTIVITY_OUTCOME, SEAT})
#: The documented ``action`` of ``POST /v2/salesAnalyticsExportJobs`` for each export type.
EXPORT_ACTIONS: dict[str, str] = {
    "exportActivityData": ACTIVITY,
    "exportActivityOutcomeData": ACTIVITY_OUTCOME,
    "exportSeatData": SEAT,
}

#: Documented activity types.
ACTIVITY_TYPES = (
    "SAVED_LEAD",
    "SAVED_ACCOUNT",
    "SEARCH_PERFORMED",
    "PROFILE_VIEWED",
    "INMAIL_SENT",
    "MESSAGE_SENT",
    "CONNECTION_MADE",
)
_ACTIVITY_WEIGHTS = (12, 5, 25, 30, 12, 10, 6)
#: Activities about a lead, which carry a ``memberIdentityKey`` (documented: not saving an account).
LEAD_ACTIVITIES = frozenset(
    {"SAVED_LEAD", "PROFILE_VIEWED", "INMAIL_SENT", "MESSAGE_SENT", "CONNECTION_MADE"}
)
#: INVENTED outcome types (the documented list was not retrievable), by the activity they follow,
#: each with its probability.
OUTCOMES: dict[str, tuple[tuple[str, float], ...]] = {
    "INMAIL_SENT": (("INMAIL_ACCEPTED", 0.3), ("INMAIL_DECLINED", 0.15), ("INMAIL_REPLIED", 0.2)),
    "MESSAGE_SENT": (("MESSAGE_REPLIED", 0.35),),
    "CONNECTION_MADE": (("CONNECTION_ACCEPTED", 0.6),),
}
OUTCOME_TYPES = tuple(name for options in OUTCOMES.values() for name, _ in options)
#: ASSUMED seat statuses.
SEAT_STATUSES = ("ACTIVE", "PENDING", "INACTIVE")

#: Activity columns are documented; outcome columns after the first two and all seat columns are
#: assumed.
DEFAULT_ANALYTICS_COLUMNS: dict[str, tuple[str, ...]] = {
    ACTIVITY: ("activityId", "activityType", "createdAt", "seatId", "memberIdentityKey"),
    ACTIVITY_OUTCOME: ("activityId", "activityType", "createdAt", "seatId", "memberIdentityKey"),
    SEAT: (
        "seatId",
        "seatHolderName",
        "seatStatus",
        "socialSellingIndex",
        "totalConnections",
        "totalLeadsSaved",
    ),
}

_DAY_SECONDS = 86_400
MAX_ROWS_PER_DAY = 99_999  # keeps activityId's per-day counter at five digits
MAX_OUTCOME_DELAY_SECONDS = 3 * _DAY_SECONDS
LEAD_POOL = 997
_FIRST = ("Anna", "José", "Zoë", "Łukasz", "Priya", "Wei", "Siobhán", "Kwame", "Renée", "Olga")
_LAST = ("Müller", "García", "O'Neil", "Nguyễn", "Smith, Jr.", "Okafor", "Tanaka", "de la Cruz")


def format_created_at(epoch_ms: int) -> str:
    """Format an instant as the documented ``MM-DD-YYYY HH:MM:SS`` (UTC)."""
    moment = dt.datetime.fromtimestamp(epoch_ms // 1000, tz=dt.UTC)
    return moment.strftime("%m-%d-%Y %H:%M:%S")


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True, slots=True)
class ContractActivity:
    """What shapes one contract's generated data.

    Attributes:
        seed: Seed of the generator.
        contract: Contract URN.
        seats: Number of seats.
        activities_per_day: Mean activities per day; each day's count varies by up to ±50 %.
        since_ms: No activity happens before this instant (the contract's history starts here).
    """

    seed: int
    contract: str
    seats: int
    activities_per_day: float
    since_ms: int

    def seat_ids(self) -> list[int]:
        """The contract's seat ids: distinct, stable longs."""
        ids: list[int] = []
        salt = 0
        while len(ids) < self.seats:
            candidate = 100_000_000 + _stable_int(self.seed, self.contract, "seat", salt) % (
                900_000_000
            )
            salt += 1
            if candidate not in ids:
                ids.append(candidate)
        return ids


@dataclass(frozen=True, slots=True)
class Event:
    """One activity or outcome: the values of a row of the activity or outcome CSV."""

    activity_id: str
    activity_type: str
    at_ms: int
    seat_id: int
    member_key: str


def _member_key(params: ContractActivity, lead: int) -> str:
    digest = hashlib.sha256(f"{params.seed}|{params.contract}|lead|{lead}".encode()).digest()
    return "ACwAA" + base64.urlsafe_b64encode(digest).decode("ascii")[:34]


def _day_activities(params: ContractActivity, day: int, seats: Sequence[int]) -> list[Event]:
    """Every activity of one UTC day (day number since the epoch), in time order."""
    rng = random.Random(_stable_int(params.seed, params.contract, "activity", day))  # noqa: S311
    rate = params.activities_per_day
    count = 0
    if rate > 0 and seats:
        count = min(MAX_ROWS_PER_DAY, int(rate * (0.5 + rng.random()) + 0.5))
    seconds = sorted(rng.randrange(_DAY_SECONDS) for _ in range(count))
    tag = 100_000 + _stable_int(params.seed, params.contract, "tag") % 900_000
    events = []
    for i, second in enumerate(seconds):
        kind = rng.choices(ACTIVITY_TYPES, _ACTIVITY_WEIGHTS)[0]
        seat = seats[rng.randrange(len(seats))]
        lead = rng.randrange(LEAD_POOL)
        events.append(
            Event(
                activity_id=f"{tag}{day:05d}{i:05d}",
                activity_type=kind,
                at_ms=day * DAY_MS + second * 1000,
                seat_id=seat,
                member_key=_member_key(params, lead) if kind in LEAD_ACTIVITIES else "",
            )
        )
    return events


def iter_activities(params: ContractActivity, start_ms: int, end_ms: int) -> Iterator[Event]:
    """Yield the activities with ``start_ms <= time < end_ms``, in time order."""
    start = max(start_ms, params.since_ms)
    if start >= end_ms:
        return
    seats = params.seat_ids()
    for day in range(start // DAY_MS, (end_ms - 1) // DAY_MS + 1):
        for event in _day_activities(params, day, seats):
            if start <= event.at_ms < end_ms:
                yield event


def _outcome_of(params: ContractActivity, activity: Event) -> Event | None:
    options = OUTCOMES.get(activity.activity_type)
    if not options:
        return None
    rng = random.Random(_stable_int(params.seed, params.contract, "outcome", activity.activity_id))  # noqa: S311
    draw = rng.random()
    delay = rng.randrange(60, MAX_OUTCOME_DELAY_SECONDS)
    for name, probability in options:
        if draw < probability:
            return Event(
                activity_id=activity.activity_id,
                activity_type=name,
                at_ms=activity.at_ms + delay * 1000,
                seat_id=activity.seat_id,
                member_key=activity.member_key,
            )
        draw -= probability
    return None


def iter_outcomes(params: ContractActivity, start_ms: int, end_ms: int) -> Iterator[Event]:
    """Yield the outcomes with ``start_ms <= time < end_ms``, in time order, a day at a time."""
    if start_ms >= end_ms:
        return
    delay_ms = MAX_OUTCOME_DELAY_SECONDS * 1000
    for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
        lo = max(start_ms, day * DAY_MS)
        hi = min(end_ms, (day + 1) * DAY_MS)
        outcomes = []
        for activity in iter_activities(params, lo - delay_ms, hi):
            outcome = _outcome_of(params, activity)
            if outcome is not None and lo <= outcome.at_ms < hi:
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: (o.at_ms, o.activity_id))
        yield from outcomes


def _event_values(event: Event) -> dict[str, str]:
    return {
        "activityId": event.activity_id,
        "activityType": event.activity_type,
        "createdAt": format_created_at(event.at_ms),
        "seatId": str(event.seat_id),
        "memberIdentityKey": event.member_key,
    }


def iter_seat_values(
    params: ContractActivity, start_ms: int, end_ms: int
) -> Iterator[dict[str, str]]:
    """Yield one value dict per seat, describing the seat as of the window's end."""
    saved = Counter(
        a.seat_id
        for a in iter_activities(params, start_ms, end_ms)
        if a.activity_type == "SAVED_LEAD"
    )
    end_day = (max(end_ms, 1) - 1) // DAY_MS
    days_active = max(0, end_day - params.since_ms // DAY_MS)
    for seat in params.seat_ids():
        rng = random.Random(_stable_int(params.seed, params.contract, "seat-holder", seat))  # noqa: S311
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        status = rng.choices(SEAT_STATUSES, (8, 1, 1))[0]
        base_ssi = rng.uniform(20, 80)
        connections = rng.randrange(150, 5000)
        growth = rng.uniform(0, 3)
        daily = random.Random(_stable_int(params.seed, params.contract, "ssi", seat, end_day))  # noqa: S311
        ssi = min(100.0, max(0.0, base_ssi + daily.uniform(-3, 3)))
        yield {
            "seatId": str(seat),
            "seatHolderName": name,
            "seatStatus": status,
            "socialSellingIndex": f"{ssi:.2f}",
            "totalConnections": str(connections + int(growth * days_active)),
            "totalLeadsSaved": str(saved[seat]),
        }


def iter_values(
    params: ContractActivity, export_type: str, start_ms: int, end_ms: int
) -> Iterator[dict[str, str]]:
    """Yield the known values of each row of an export, keyed by column name."""
    if export_type == ACTIVITY:
        return (_event_values(e) for e in iter_activities(params, start_ms, end_ms))
    if export_type == ACTIVITY_OUTCOME:
        return (_event_values(e) for e in iter_outcomes(params, start_ms, end_ms))
    if export_type == SEAT:
        return iter_seat_values(params, start_ms, end_ms)
    msg = f"unknown export type {export_type!r}"
    raise ValueError(msg)


class AnalyticsExport:
    """The single CSV file of one analytics export, rendered on demand and streamed."""

    def __init__(  # noqa: PLR0913 - each is an independent input of the file
        self,
        params: ContractActivity,
        export_type: str,
        start_ms: int,
        end_ms: int,
        columns: Sequence[str],
        *,
        job_id: int = 0,
        bom: bool = True,
        gzip: bool = False,
    ) -> None:
        """Describe the file of ``export_type`` for the window ``[start_ms, end_ms)``."""
        self.params = params
        self.export_type = export_type
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.columns = tuple(columns)
        self.job_id = job_id
        self.bom = bom
        self._gzip = gzip
        self._lock = threading.Lock()
        self._rows: int | None = None

    def iter_rows(self) -> Iterator[dict[str, str]]:
        """Yield the rows as the CSV holds them: raw strings keyed by the configured columns.

        A configured column the generator does not know gets a stable filler value.
        """
        for n, values in enumerate(
            iter_values(self.params, self.export_type, self.start_ms, self.end_ms)
        ):
            yield {c: values[c] if c in values else f"{c}-{n % 97}" for c in self.columns}

    def row_count(self) -> int:
        """Number of data rows (counted once, then remembered)."""
        with self._lock:
            if self._rows is None:
                self._rows = sum(1 for _ in self.iter_rows())
            return self._rows

    # -- the file source a download serves ------------------------------------------------------

    @property
    def gzip(self) -> bool:
        """Whether the file is served as ``.csv.gz``."""
        return self._gzip

    def file_count(self) -> int:
        """Always one: the analytics API returns a single ``downloadUrl``."""
        return 1

    def file_rows(self, file_index: int) -> int:  # noqa: ARG002 - one file
        """Number of data rows of the file."""
        return self.row_count()

    def file_name(self, file_index: int, *, gzip: bool) -> str:  # noqa: ARG002 - one file
        """The ``Content-Disposition`` file name."""
        suffix = ".csv.gz" if gzip else ".csv"
        return f"sales-analytics-{self.export_type.replace('_', '-')}-{self.job_id}{suffix}"

    def _header(self, line_terminator: str) -> bytes:
        header = ",".join(quote(c) for c in self.columns) + line_terminator
        return (BOM + header if self.bom else header).encode("utf-8")

    def header_size(self, file_index: int, line_terminator: str = CRLF) -> int:  # noqa: ARG002
        """Bytes before the first data record (BOM and header line)."""
        return len(self._header(line_terminator))

    def raw_chunks(
        self,
        file_index: int,  # noqa: ARG002 - one file
        line_terminator: str = CRLF,
    ) -> Iterator[bytes]:
        """Yield the uncompressed CSV bytes in chunks of roughly ``CHUNK_BYTES``."""
        lines = (
            (",".join(quote(row[c]) for c in self.columns) + line_terminator).encode()
            for row in self.iter_rows()
        )
        yield from coalesce(itertools.chain([self._header(line_terminator)], lines), CHUNK_BYTES)


def default_columns() -> dict[str, list[str]]:
    """A fresh copy of ``DEFAULT_ANALYTICS_COLUMNS`` with list values (for a scenario)."""
    return {kind: list(cols) for kind, cols in DEFAULT_ANALYTICS_COLUMNS.items()}


def columns_for(configured: Mapping[str, Sequence[str]], export_type: str) -> tuple[str, ...]:
    """The columns of an export type: the configured ones, else the defaults."""
    return tuple(configured.get(export_type, DEFAULT_ANALYTICS_COLUMNS[export_type]))
