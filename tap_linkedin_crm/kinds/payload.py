"""Reading LinkedIn's job bodies: typed fields, with errors that name the field and the job."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email.utils
import typing as t
import urllib.parse

from tap_linkedin_crm.errors import MalformedResponseError
from tap_linkedin_crm.jobs import normalize_status

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    import requests

    from tap_linkedin_crm.jobs import ExportJob


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


#: Epoch seconds of 1973-03-03 to 2286-11-20 (9-10 digits): as milliseconds, these would be
#: instants within 1970's first four months, which no export job describes.
_SECONDS = range(100_000_000, 10_000_000_000)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def epoch_ms(value: object, where: str, field: str) -> int | None:
    """A time field of a job body as epoch milliseconds.

    LinkedIn documents epoch milliseconds; epoch seconds (9-10 digits, as the CSV timestamps
    allow too) and ISO 8601 text (no offset meaning UTC) are read as well, so that a bookmark is
    never a seconds value taken for milliseconds (1970) or an instance fails on every run.

    Raises:
        MalformedResponseError: The field is neither a whole number nor ISO 8601 text.
    """
    if isinstance(value, str) and "-" in value.strip().lstrip("-"):
        with contextlib.suppress(ValueError):
            moment = dt.datetime.fromisoformat(value.strip())
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            # Whole milliseconds by integer arithmetic: `timestamp() * 1000` is a float, and
            # one ISO time in ~150 with milliseconds came out a millisecond early.
            return (moment - _EPOCH) // dt.timedelta(milliseconds=1)
    number = whole_number(value, where, field)
    if number is not None and number in _SECONDS:
        return number * 1000
    return number


def on_api_host(job: ExportJob, api_url: str) -> ExportJob:
    """`job` with each download URL given as a path (`/ambry/...`) joined to `api_url`.

    (The CRM API's `Location` is such a path.) A URL with a scheme, or a protocol-relative
    `//host/...`, is kept as the answer gave it (the latter then has the API's scheme); where the
    bearer token may go is the client's call.
    """
    base = api_url.rstrip("/") + "/"
    urls = tuple(
        url if urllib.parse.urlsplit(url).scheme else urllib.parse.urljoin(base, url)
        for url in job.download_urls
    )
    return job if urls == job.download_urls else dataclasses.replace(job, download_urls=urls)


def date_header_ms(response: requests.Response) -> int | None:
    """The response's `Date` header as epoch ms (when LinkedIn created the job), if readable."""
    raw = response.headers.get("Date")
    if not raw:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)
