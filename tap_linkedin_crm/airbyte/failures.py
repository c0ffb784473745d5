"""Failures as Airbyte reports them: which `failure_type` each error of the tap is.

`config_error`: the user must change something (settings, credentials, a permission, a CRM
instance or API URL LinkedIn does not know: 404, the state or catalog given); the platform does
not retry it. `transient_error`: worth retrying later (429, 5xx,
network, a job not done in time or failed on LinkedIn's side, an interrupted read).
`system_error`: anything else (a bug, a file the tap cannot read).

A read whose partitions failed separately (`SyncFailedError`, which carries each partition's error)
takes the type of its failures: config if any needs the user, else system if any is unexplained,
else transient.
"""

from __future__ import annotations

import typing as t

from singer_sdk.exceptions import ConfigValidationError

from tap_linkedin_crm.airbyte.catalog import CatalogError
from tap_linkedin_crm.airbyte.inputs import InputFileError
from tap_linkedin_crm.airbyte.messages import FailureType
from tap_linkedin_crm.errors import (
    AuthenticationError,
    DownloadExpiredError,
    DownloadIncompleteError,
    InvalidStateError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    SyncInterruptedError,
)

if t.TYPE_CHECKING:
    from collections.abc import Sequence

CONFIG_ERRORS: tuple[type[BaseException], ...] = (
    ConfigValidationError,
    AuthenticationError,
    PermissionDeniedError,
    # Jobs gone (404) are recreated by the engine: a 404 that ends a read is a URN or URL that
    # LinkedIn does not know, e.g. creating a job for a CRM instance it has never seen.
    NotFoundError,
    InvalidStateError,
    CatalogError,
    InputFileError,
)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    QuotaExceededError,
    RateLimitedError,
    ServerError,  # NetworkError too
    JobTimeoutError,
    JobFailedError,
    DownloadExpiredError,
    DownloadIncompleteError,
    SyncInterruptedError,
)


def failure_type(error: BaseException, causes: Sequence[BaseException] = ()) -> FailureType:
    """The failure type of `error`; `causes` are the partition failures behind a failed sync."""
    if isinstance(error, CONFIG_ERRORS):
        return FailureType.CONFIG
    if isinstance(error, TRANSIENT_ERRORS):
        return FailureType.TRANSIENT
    if causes:
        kinds = {failure_type(cause) for cause in causes}
        for kind in (FailureType.CONFIG, FailureType.SYSTEM):
            if kind in kinds:
                return kind
        return FailureType.TRANSIENT
    return FailureType.SYSTEM
