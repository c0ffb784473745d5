"""Reading LinkedIn's job bodies: typed fields, with errors that name the field and the job."""

from __future__ import annotations

import contextlib
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
