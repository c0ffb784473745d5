"""Reading LinkedIn's job bodies: typed fields, with errors that name the field and the job."""

from __future__ import annotations

import contextlib
import datetime as dt
import typing as t

from tap_linkedin_crm.errors import MalformedResponseError
from tap_linkedin_crm.jobs import normalize_status

if t.TYPE_CHECKING:
    from collections.abc import Mapping


def job_status(body: Mapping[str, t.Any], where: str) -> str:
    """The job's status, normalized (statuses compare case-insensitively).

    Raises:
        MalformedResponseError: The body has no status.
    """
    status = body.get("status")
    if not isinstance(status, str) or not status.strip():
        msg = f"{where} has no status (got {status!r})."
        raise MalformedResponseError(msg)
    return normalize_status(status)


def whole_number(value: object, where: str, field: str) -> int | None:
    """An integer field (ids, epoch ms) of a job body; numeric strings are accepted.

    Raises:
        MalformedResponseError: The field is not a whole number.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        msg = f"{where}: {field} is a boolean."
        raise MalformedResponseError(msg)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        # isdigit() also admits "--5" and "²", which int() refuses.
        with contextlib.suppress(ValueError):
            return int(value)
    msg = f"{where}: {field} is {value!r}, not a number."
    raise MalformedResponseError(msg)


#: Below this an epoch value is in seconds, not milliseconds (1e11 ms is 1973; 1e11 s, year 5138).
_SECONDS_BELOW = 100_000_000_000


def epoch_ms(value: object, where: str, field: str) -> int | None:
    """An instant documented as epoch milliseconds (`expireAt`); epoch seconds and ISO 8601 too.

    Raises:
        MalformedResponseError: The field is none of those.
    """
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            msg = f"{where}: {field} is {value!r}, neither epoch milliseconds nor ISO 8601."
            raise MalformedResponseError(msg) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    number = whole_number(value, where, field)
    if number is not None and 0 < number < _SECONDS_BELOW:
        return number * 1000
    return number
