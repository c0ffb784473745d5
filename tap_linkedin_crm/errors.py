"""The tap's exception tree: a base class, and a subclass per thing a user acts on differently."""

from __future__ import annotations


class LinkedInCRMError(Exception):
    """Base of every error this tap raises on purpose.

    Messages are written for the person running the sync: they say what happened, for which CRM
    instance, and what to do. They never contain tokens, secrets or signed URL query strings.
    """


class APIError(LinkedInCRMError):
    """LinkedIn answered with an HTTP error that retrying did not fix."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        """Keep the HTTP status next to the message, for callers that branch on it."""
        super().__init__(message)
        self.status = status


class AuthenticationError(APIError):
    """The credentials were refused (401 from the token endpoint or the API)."""


class PermissionDeniedError(APIError):
    """The app or member may not read this resource (403): a permission or access is missing."""


class NotFoundError(APIError):
    """The resource does not exist (404), e.g. a job older than 7 days."""


class QuotaExceededError(APIError):
    """LinkedIn's daily quota is spent (429 `APPLICATION DAY limit`); it resets at midnight UTC."""


class RateLimitedError(APIError):
    """429 that is not the daily quota, still failing after the retries."""


class ServerError(APIError):
    """5xx or connection failures, still failing after the retries."""


class DownloadExpiredError(APIError):
    """A download URL was refused (403/410) or its `expireAt` has passed: fetch fresh URLs."""


class DownloadIncompleteError(LinkedInCRMError):
    """A download ended early: connection reset, body shorter than its length, or broken gzip."""


class MalformedCSVError(LinkedInCRMError):
    """An export file is not CSV the tap can read without guessing (and so without losing data)."""


class LocalStorageError(LinkedInCRMError):
    """This machine could not keep a temporary file: TMPDIR is full, read-only, missing or not ours.

    Not worth retrying as is: free space in the temporary directory, or point TMPDIR at one
    with room, then run the sync again.
    """


class JobFailedError(LinkedInCRMError):
    """Every attempt at an export job ended in a `FAILED_*` status."""


class MalformedResponseError(APIError):
    """LinkedIn answered 2xx with a body the tap cannot read (not JSON, not an object, no id)."""


class JobTimeoutError(LinkedInCRMError):
    """An export job did not finish within `job_timeout`; the bookmark was left where it was."""


class JobGoneError(LinkedInCRMError):
    """A job remembered in state no longer exists (404, or older than LinkedIn's 7-day limit)."""


class SyncInterruptedError(LinkedInCRMError):
    """SIGTERM or Ctrl-C arrived; the sync stopped at a clean point with a resumable state."""


class SyncFailedError(LinkedInCRMError):
    """Some exports failed; the others were synced and their bookmarks moved."""

    def __init__(self, message: str, failures: tuple[BaseException, ...] = ()) -> None:
        """Keep each failed partition's own error next to the summary message."""
        super().__init__(message)
        self.failures = failures


class ConsumerGoneError(LinkedInCRMError):
    """stdout was closed: the target (or whatever reads the tap) exited; nothing more is sent."""


class StreamMapError(LinkedInCRMError):
    """A stream map (`stream_maps`) raised on a record; the message is the map's own error."""

    #: Characters of the map's error message kept (it may quote a record's values).
    MAX_DETAIL_CHARS = 300

    @classmethod
    def of(cls, alias: str, error: Exception) -> StreamMapError:
        """The error of the map emitting output stream `alias` (stream maps carry no secret)."""
        detail = str(error)
        if len(detail) > cls.MAX_DETAIL_CHARS:
            detail = detail[: cls.MAX_DETAIL_CHARS] + "..."
        msg = (
            f"the stream map of output stream '{alias}' (stream_maps) failed: "
            f"{type(error).__name__}: {detail}"
        )
        return cls(msg)


class InvalidStateError(LinkedInCRMError):
    """The state given to the tap is not one it wrote (or can read); it says what is wrong."""


class NetworkError(ServerError):
    """No HTTP answer at all (refused, reset, timed out, name not found), after the retries."""
