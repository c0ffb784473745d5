"""Value converters of the typed columns (integer, number, boolean, timestamp) and their caches.

A converter maps "" to None and raises ValueError or LookupError for a value it cannot convert.
The formats each type reads are listed in `CsvDecoder`'s docstring.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
import typing as t

if t.TYPE_CHECKING:
    from tap_linkedin_crm.columns import ColumnType

__all__ = ["BOOLEANS", "Converter", "converter", "timestamp_caching"]

Converter = t.Callable[[str], t.Any]

_BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
#: Every upper/lower-case spelling of the boolean words, so converting is one C-level dict lookup.
BOOLEANS: dict[str, bool | None] = {
    "".join(chars): value
    for word, value in _BOOLEAN_WORDS.items()
    for chars in itertools.product(*({c.lower(), c.upper()} for c in word))
}
BOOLEANS[""] = None

_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ISO_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
#: LinkedIn's activity date, `MM-DD-YYYY HH:MM:SS`, also without leading zeros or with `/`.
_MDY_RE = re.compile(
    r"([0-9]{1,2})([-/])([0-9]{1,2})\2([0-9]{4}) ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})"
)
_MS_PER_DAY = 86_400_000
_UNIX_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# Formatting tables for epoch timestamps: "HH:MM:" per minute of the day, "SS" and ".fffZ".
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}" for s in range(60))
_MILLIS = ("Z", *(f".{ms:03d}Z" for ms in range(1, 1000)))
_DAY_CACHE_SIZE = 4096
#: Entries per cache of validated timestamp parts before it is emptied (a few MiB at most).
_PART_CACHE_SIZE = 8192
_MILLIS_BY_DIGITS = {f"{ms:03d}": text for ms, text in enumerate(_MILLIS)}


def converter(column_type: ColumnType) -> Converter:
    """Return the converter of a non-string type."""
    converters: dict[str, Converter] = {
        "integer": to_integer,
        "number": to_number,
        "boolean": BOOLEANS.__getitem__,
        "timestamp": timestamp_caching()[1],
    }
    return converters[column_type]


def to_integer(value: str) -> int | None:
    """Convert ASCII `[+-]digits` to int.

    Raises:
        ValueError: the value is not an integer.
    """
    if value.isdigit() and value.isascii():
        return int(value)
    if not value:
        return None
    if _INTEGER_RE.fullmatch(value) is None:
        msg = f"not an integer: {value!r}"
        raise ValueError(msg)
    return int(value)


def to_number(value: str) -> float | None:
    """Convert decimal or exponent notation: integral text to int (exact), other text to float.

    Raises:
        ValueError: the value is not a number, or not a finite one.
    """
    if value.isdigit() and value.isascii():
        return int(value)
    if not value:
        return None
    if _NUMBER_RE.fullmatch(value) is None:
        msg = f"not a number: {value!r}"
        raise ValueError(msg)
    if _INTEGER_RE.fullmatch(value) is not None:
        return int(value)
    number = float(value)
    if number - number != 0:  # infinity (also from overflow) or NaN
        msg = f"not a finite number: {value!r}"
        raise ValueError(msg)
    return number


def timestamp_caching() -> tuple[dict[str, str], Converter]:
    """Return a timestamp converter and its cache of whole text values (see below).

    The converter maps timestamp text to the canonical RFC 3339 UTC string. The common shapes hit
    bounded caches of validated parts: epoch milliseconds by their seconds digits (the
    millisecond digits then pick a suffix from a table), and `YYYY-MM-DD HH:MM:SS` /
    `MM-DD-YYYY HH:MM:SS` by their date and time halves (a valid date and a valid time always
    make a valid timestamp). Such text values, which repeat (second resolution), are also kept
    whole, value -> result: a caller may look a value up there before calling the converter. A
    miss, or any other shape, goes through `_timestamp_slowly`, which validates with `datetime`
    and fills the part caches.
    """
    texts: dict[str, str] = {}  # "2026-11-25 18:56:14" -> "2026-11-25T18:56:14Z"
    by_second: dict[str, str] = {}  # "1795625830" -> "2026-11-25T18:57:10"
    dates: dict[str, str] = {}  # "2026-11-25 " or "11-25-2026 " -> "2026-11-25T"
    times: dict[str, str] = {}  # "18:56:14" -> "18:56:14Z"
    millis = _MILLIS_BY_DIGITS
    slowly = functools.partial(_timestamp_slowly, {}, by_second, dates, times)

    def convert(value: str) -> str | None:
        size = len(value)
        if size == 13 or size == 12:  # noqa: PLR1714, PLR2004 - two int compares beat a set
            head = by_second.get(value[:-3])
            if head is not None:
                tail = millis.get(value[-3:])
                if tail is not None:
                    return head + tail
        elif size == 19:  # noqa: PLR2004
            result = texts.get(value)
            if result is not None:
                return result
            date = dates.get(value[:11])
            time = None if date is None else times.get(value[11:])
            if date is None or time is None:
                return slowly(value)
            if len(texts) >= _PART_CACHE_SIZE:
                texts.clear()
            result = texts[value] = date + time
            return result
        return slowly(value)

    return texts, convert


def _timestamp_slowly(  # noqa: C901, PLR0912 - one function keeps the shapes side by side
    day_prefixes: dict[int, str],
    by_second: dict[str, str],
    dates: dict[str, str],
    times: dict[str, str],
    value: str,
) -> str | None:
    """Convert one timestamp the full way; remember the validated parts of common shapes.

    Raises:
        ValueError: the value is not a timestamp this tap reads.
    """
    if value.isdigit() and value.isascii():
        size = len(value)
        if size in {12, 13}:
            epoch_ms = int(value)
        elif size in {9, 10}:
            epoch_ms = int(value) * 1000
        else:
            msg = f"epoch value {value!r} is neither 12-13 digit ms nor 9-10 digit seconds"
            raise ValueError(msg)
        days, of_day = divmod(epoch_ms, _MS_PER_DAY)
        date = day_prefixes.get(days)
        if date is None:
            if len(day_prefixes) >= _DAY_CACHE_SIZE:
                day_prefixes.clear()
            date = dt.date.fromordinal(_UNIX_EPOCH_ORDINAL + days).isoformat() + "T"
            day_prefixes[days] = date
        minute, of_minute = divmod(of_day, 60_000)
        second, milli = divmod(of_minute, 1000)
        head = f"{date}{_MINUTES[minute]}{_SECONDS[second]}"
        if size > 10:  # noqa: PLR2004 - milliseconds: the seconds digits name `head`
            if len(by_second) >= _PART_CACHE_SIZE:
                by_second.clear()
            by_second[value[:-3]] = head
        return head + _MILLIS[milli]
    if not value:
        return None
    if len(value) == 19 and value[13] == ":" and value[16] == ":":  # noqa: PLR2004
        if value[4] == "-" and value[7] == "-" and value[10] in " T":
            _fromisoformat(value)  # validates the digits and ranges
            date = value[:10] + "T"
        elif value[2] == "-" and value[5] == "-" and value[10] == " ":
            date = f"{value[6:10]}-{value[:2]}-{value[3:5]}T"
            _fromisoformat(date + value[11:])
        else:
            return _format_datetime(_parse_other(value))
        if len(dates) >= _PART_CACHE_SIZE:
            dates.clear()
        if len(times) >= _PART_CACHE_SIZE:
            times.clear()
        time = value[11:] + "Z"
        dates[value[:11]] = date
        times[value[11:]] = time
        return date + time
    return _format_datetime(_parse_other(value))


_fromisoformat = dt.datetime.fromisoformat


def _parse_other(value: str) -> dt.datetime:
    """Parse `M-D-YYYY H:M:S` or `M/D/YYYY H:M:S`, else RFC 3339-like text, to naive UTC.

    The first is LinkedIn's `MM-DD-YYYY HH:MM:SS` with its leading zeros left out, or with `/`.

    Raises:
        ValueError: the value is neither.
    """
    match = _MDY_RE.fullmatch(value)
    if match is None:
        return _parse_iso(value)
    month, _, day, year, hour, minute, second = match.groups()
    return dt.datetime(  # noqa: DTZ001 - naive UTC; range checks raise ValueError
        int(year), int(month), int(day), int(hour), int(minute), int(second)
    )


def _parse_iso(value: str) -> dt.datetime:
    """Parse RFC 3339-like text (`T` or space, optional seconds, fraction, offset) to naive UTC.

    `datetime.fromisoformat` alone would also take any separator character, week dates and
    sub-microsecond digits (which it drops), so the shape is checked first.

    Raises:
        ValueError: the value is not a timestamp of that shape.
    """
    if _ISO_RE.fullmatch(value) is None:
        msg = f"not a timestamp this tap reads: {value!r}"
        raise ValueError(msg)
    parsed = _fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _format_datetime(moment: dt.datetime) -> str:
    """Format a naive UTC datetime in the canonical form (see `CsvDecoder`)."""
    micro = moment.microsecond
    if not micro:
        return moment.isoformat(timespec="seconds") + "Z"
    if micro % 1000 == 0:
        return moment.isoformat(timespec="milliseconds") + "Z"
    return moment.isoformat(timespec="microseconds") + "Z"
