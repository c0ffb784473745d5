"""HTTP transport to LinkedIn: requests, retries, error mapping, redaction. No Singer, no resources.

Retries cover connection errors, bodies cut short, 5xx and 429 (honouring `Retry-After`), including
those of the token endpoint. LinkedIn's daily quota 429 gives up after a couple of tries, since it
resets only at UTC midnight, and then no further API call is made in this run (downloads, which do
not count against it, go on). A 401 for an expired token renews the token once. URLs are logged
without their query string (download URLs carry a signed token there), and the Authorization header
goes only to the API's origin and to https LinkedIn hosts. Which resources exist, and what their
bodies mean, is the export kinds' business (`tap_linkedin_crm.kinds`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import re
import threading
import time
import typing as t
import urllib.parse

import backoff
import requests

from tap_linkedin_crm.errors import (
    APIError,
    AuthenticationError,
    DownloadExpiredError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
)
from tap_linkedin_crm.settings import is_loopback

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from tap_linkedin_crm.auth import TokenProvider

LOGGER = logging.getLogger("tap_linkedin_crm.transport")

RETRIABLE_STATUSES = frozenset({500, 502, 503, 504})
#: What to do when the app's token is refused (clients of the member's token say their own).
RENEWAL_HINT = (
    "Renew access_token, or configure client_id and client_secret so the tap can renew tokens "
    "itself."
)
#: Tries of a daily-quota 429 before the sync stops: the quota resets only at UTC midnight.
QUOTA_MAX_TRIES = 3
#: Longest `Retry-After` honoured as given; longer ones are capped (and logged).
MAX_RETRY_AFTER_SECONDS = 900.0
MAX_BACKOFF_SECONDS = 60.0
#: Redirects followed from one download URL; each hop is checked like the URL itself.
MAX_DOWNLOAD_REDIRECTS = 5
#: Transport failures worth another try: no answer, or an answer whose body was cut short.
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


#: Loggers of the HTTP stack that print request URLs (at DEBUG), query strings included.
URL_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry")
_QUERY = re.compile(r"\?[^\s\"'<>]+")


class RedactQueryStrings(logging.Filter):
    """Replaces URL query strings in a log record with `?<redacted>` (signed URLs carry tokens)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message; always keep the record."""
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<redacted>", message), None
        return True


def install_log_redaction() -> None:
    """Make the HTTP stack's loggers (urllib3, at DEBUG) print URLs without query strings."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryStrings) for f in logger.filters):
            logger.addFilter(RedactQueryStrings())


def redact_url(url: str) -> str:
    """The URL without query string or fragment: signed download tokens live in the query."""
    parts = urllib.parse.urlsplit(url)
    suffix = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{suffix}"


class LinkedInClient:
    """Sends requests to one API base URL with one token provider, and streams downloads."""

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        *,
        api_url: str,
        tokens: TokenProvider,
        session: requests.Session | None = None,
        timeout: float = 300.0,
        max_retries: int = 5,
        linkedin_version: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        retry_delay: float = 1.0,
        renewal_hint: str = RENEWAL_HINT,
    ) -> None:
        """Keep the connection settings; `sleep` is injected so tests and SIGTERM can cut waits.

        `retry_delay` is the first backoff wait (`request_retry_delay`); it doubles per retry.
        `renewal_hint` says what to do when LinkedIn refuses the token (which settings give it).
        """
        self.renewal_hint = renewal_hint
        self._quota_kind = "APPLICATION"
        self.api_url = api_url.rstrip("/")
        self.tokens = tokens
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_retries = max_retries
        self.linkedin_version = linkedin_version
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.retry_delay = retry_delay
        self._api_origin = _origin(self.api_url)
        self._lock = threading.Lock()
        # Daily-quota 429s seen since the last API success, across threads; at QUOTA_MAX_TRIES
        # the quota counts as spent and no further API call is made.
        self._quota_hits = 0
        self._quota_spent = False

    # API calls -----------------------------------------------------------------------------

    def call(  # noqa: PLR0913 - all are real, independent inputs
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: dict[str, t.Any] | None = None,
        permission: str | None = None,
    ) -> requests.Response:
        """Send one API request (with retries); return the 2xx response, its body read.

        `path` is relative to the API base URL; `params` values are percent-encoded whole (a URN's
        `:`, `(` and `,` too, as LinkedIn's docs require). `what` says what the call does, for
        messages ("create an export job for <urn>"); `permission` is named when LinkedIn
        answers 403.

        Raises:
            APIError: LinkedIn refused the request (the subclass says why) or could not be reached.
        """
        url = f"{self.api_url}/{path.lstrip('/')}"
        if params:
            url += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params.items())
        with self._request(method, url, json=json, what=what) as response:
            if response.status_code < 300:  # noqa: PLR2004
                _ = response.content  # read it whole before the connection goes back to the pool
                return response
            raise self._error(response, what, permission)

    def call_json(  # noqa: PLR0913 - all are real, independent inputs
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: dict[str, t.Any] | None = None,
        permission: str | None = None,
    ) -> dict[str, t.Any]:
        """`call`, then the body as a JSON object.

        Raises:
            MalformedResponseError: The body is not JSON, or not a JSON object.
        """
        response = self.call(
            method, path, what=what, params=params, json=json, permission=permission
        )
        return json_object_body(response, what)

    def open_download(self, url: str) -> requests.Response:
        """Start streaming one export file. The caller reads `raw` and closes the response.

        Redirects are followed here, hop by hop, so that each target is held to the same rules:
        https only (plain http only to loopback), and the token only for the API's origin and
        LinkedIn hosts.

        Raises:
            DownloadExpiredError: The URL was refused (expired or unknown): get fresh URLs.
            APIError: Any other refusal, an unacceptable redirect, or too many redirects.
        """
        for _ in range(MAX_DOWNLOAD_REDIRECTS + 1):
            check_download_url(url)
            response = self._request(
                "GET",
                url,
                stream=True,
                authorize=self._may_authorize(url),
                allow_redirects=False,
                what=f"download {redact_url(url)}",
            )
            if not response.is_redirect:
                break
            with response:
                url = urllib.parse.urljoin(url, response.headers.get("Location", ""))
        else:
            msg = (
                f"Download of {redact_url(url)} redirected more than {MAX_DOWNLOAD_REDIRECTS} "
                "times."
            )
            raise APIError(msg)
        if response.status_code == 200:  # noqa: PLR2004
            return response
        with response:
            if response.status_code in (403, 404, 410):
                msg = (
                    f"Download URL {redact_url(url)} was refused with HTTP "
                    f"{response.status_code}: it has expired or is unknown."
                )
                raise DownloadExpiredError(msg, status=response.status_code)
            raise self._error(response, f"download {redact_url(url)}", None)

    # Plumbing -----------------------------------------------------------------------------

    def backoff_delays(self) -> Iterator[float]:
        """Waits between retries: `retry_delay`, then about twice as long each time, capped."""
        return _backoff_delays(self.rng, first=self.retry_delay)

    def _may_authorize(self, url: str) -> bool:
        """Whether `url` may see the bearer token: the API's own origin, or https LinkedIn hosts."""
        origin = _origin(url)
        if origin is not None and origin == self._api_origin:
            return True
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        linkedin = host == "linkedin.com" or host.endswith(".linkedin.com")
        return parts.scheme == "https" and linkedin

    def _spend_quota_try(self) -> bool:
        """Count one daily-quota 429; True once the quota counts as spent for this run."""
        with self._lock:
            self._quota_hits += 1
            if self._quota_hits >= QUOTA_MAX_TRIES:
                self._quota_spent = True
            return self._quota_spent

    def _headers(self, *, authorize: bool) -> tuple[dict[str, str], str | None]:
        headers = {"X-Restli-Protocol-Version": "2.0.0", "Accept": "application/json"}
        if self.linkedin_version:
            headers["LinkedIn-Version"] = self.linkedin_version
        token = None
        if authorize:
            token = self.tokens.token()
            headers["Authorization"] = f"Bearer {token}"
        return headers, token

    def _request(  # noqa: C901, PLR0912, PLR0913, PLR0915 - one retry loop, a branch per fault
        self,
        method: str,
        url: str,
        *,
        what: str,
        authorize: bool = True,
        stream: bool = False,
        json: dict[str, t.Any] | None = None,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """Send with retries; returns the final response, whatever its status.

        Raises:
            ServerError: Connection errors or 5xx outlived the retries.
            QuotaExceededError: LinkedIn's daily quota is used up.
            RateLimitedError: 429s outlived the retries.
            AuthenticationError: 401 and the token could not be renewed.
        """
        delays = self.backoff_delays()
        failures = 0
        renewed = False
        api_call = url.startswith(self.api_url)
        while True:
            if api_call and self._quota_spent:
                msg = (
                    f"Not trying to {what}: LinkedIn's daily API quota was used up earlier in this "
                    f"run (429 {self._quota_kind} DAY limit). It resets at midnight UTC; run the "
                    "sync again after that. Bookmarks were not moved."
                )
                raise QuotaExceededError(msg, status=429)
            try:
                headers, token = self._headers(authorize=authorize)
            except (ServerError, RateLimitedError) as exc:
                failures += 1
                if failures > self.max_retries:
                    raise
                self._wait(next(delays), what, f"No access token ({exc})")
                continue
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=headers,
                    json=json,
                    stream=stream,
                    timeout=self.timeout,
                    allow_redirects=allow_redirects,
                )
            except TRANSIENT_ERRORS as exc:
                failures += 1
                cause = describe_network_error(exc, url, self.timeout)
                if failures > self.max_retries:
                    msg = (
                        f"Could not {what}: {cause}, {failures} tries (request_max_retries). "
                        "Check the network, proxies and api_url."
                    )
                    raise NetworkError(msg) from None
                self._wait(next(delays), what, cause)
                continue
            except (requests.RequestException, ValueError) as exc:
                # A malformed URL or header: not worth retrying. Only the type is reported, as
                # these messages quote the URL, and download URLs carry signed tokens.
                msg = f"Could not {what}: {type(exc).__name__} (the request could not be sent)."
                raise APIError(msg) from None
            status = response.status_code
            if status == 401 and token is not None:  # noqa: PLR2004
                code = json_object(response).get("code", "")
                response.close()
                if not renewed and self.tokens.invalidate(token):
                    renewed = True
                    LOGGER.info("Access token rejected (%s); renewing it and retrying.", code)
                    continue
                msg = (
                    f"LinkedIn rejected the access token ({code or 'HTTP 401'}) while trying to "
                    f"{what}. {self.renewal_hint}"
                )
                raise AuthenticationError(msg, status=401)
            if status == 429:  # noqa: PLR2004
                body = json_object(response)
                retry_after = _retry_after(response)
                response.close()
                delay = next(delays)
                message = str(body.get("message", ""))
                if "DAY limit" in message:
                    self._quota_kind = "MEMBER" if "MEMBER" in message.upper() else "APPLICATION"
                    if self._spend_quota_try():
                        msg = (
                            f"LinkedIn's daily API quota is used up (429 {self._quota_kind} DAY "
                            f"limit, {QUOTA_MAX_TRIES} tries) while trying to {what}. It resets at "
                            "midnight UTC; run the sync again after that. Bookmarks were not moved."
                        )
                        raise QuotaExceededError(msg, status=429)
                    # Waiting hours for the reset is pointless: a short pause, then give up.
                    delay = min(delay if retry_after is None else retry_after, MAX_BACKOFF_SECONDS)
                else:
                    failures += 1
                    if failures > self.max_retries:
                        msg = f"Still rate limited (HTTP 429) after {failures} tries to {what}."
                        raise RateLimitedError(msg, status=429)
                    if retry_after is not None:
                        delay = min(retry_after, MAX_RETRY_AFTER_SECONDS)
                self._wait(delay, what, "HTTP 429")
                continue
            if status in RETRIABLE_STATUSES:
                response.close()
                failures += 1
                if failures > self.max_retries:
                    msg = (
                        f"LinkedIn kept failing with HTTP {status} after {failures} tries to "
                        f"{what}. It is usually temporary: run the sync again later."
                    )
                    raise ServerError(msg, status=status)
                retry_after = _retry_after(response)
                delay = (
                    next(delays)
                    if retry_after is None
                    else min(retry_after, MAX_RETRY_AFTER_SECONDS)
                )
                self._wait(delay, what, f"HTTP {status}")
                continue
            if api_call:
                with self._lock:
                    self._quota_hits = 0
            return response

    def _wait(self, seconds: float, what: str, reason: str) -> None:
        LOGGER.warning("%s while trying to %s; retrying in %.2f s.", reason, what, seconds)
        self.sleep(seconds)

    def _error(self, response: requests.Response, doing: str, permission: str | None) -> APIError:
        """Turn a non-retriable error response into the exception a user can act on."""
        status = response.status_code
        body = json_object(response)
        detail = str(body.get("message") or body.get("error_description") or "").strip()
        detail = f": {detail}" if detail else ""
        if status == 403:  # noqa: PLR2004
            needs = f"the {permission} permission" if permission else "access"
            msg = (
                f"LinkedIn refused to {doing} (HTTP 403{detail}). The app (or member) needs "
                f"{needs} for this resource; ask your LinkedIn partner contact or Sales Navigator "
                "admin to grant it."
            )
            return PermissionDeniedError(msg, status=status)
        if status == 404:  # noqa: PLR2004
            return NotFoundError(f"Could not {doing}: not found (HTTP 404{detail}).", status=status)
        if 300 <= status < 400:  # noqa: PLR2004
            location = response.headers.get("Location", "")
            target = redact_url(location) if location else "nowhere"
            msg = f"Could not {doing}: LinkedIn redirected (HTTP {status}) to {target}."
            return APIError(msg, status=status)
        return APIError(f"Could not {doing}: HTTP {status}{detail}.", status=status)


def json_object_body(response: requests.Response, what: str) -> dict[str, t.Any]:
    """A 2xx body as a JSON object.

    Raises:
        MalformedResponseError: The body is empty, not JSON, or JSON but not an object.
    """
    try:
        body = response.json()
    except ValueError:
        size = len(response.content or b"")
        msg = (
            f"LinkedIn's answer to {what} is not JSON ({size} bytes, HTTP {response.status_code})."
        )
        raise MalformedResponseError(msg, status=response.status_code) from None
    if not isinstance(body, dict):
        msg = (
            f"LinkedIn's answer to {what} is JSON but not an object "
            f"({_json_kind(body)}, HTTP {response.status_code})."
        )
        raise MalformedResponseError(msg, status=response.status_code)
    return body


def _json_kind(value: object) -> str:
    """What a JSON value is, in JSON's words ("an array", "null"), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def describe_network_error(exc: BaseException, url: str, timeout: float) -> str:
    """Say what went wrong on the wire and with which host, never quoting the URL's query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    where = f"{host}:{parts.port}" if parts.port else host
    text = str(exc).lower()
    if isinstance(exc, requests.Timeout):
        cause = f"no answer from {where} within {timeout:g} s (request_timeout)"
    elif isinstance(exc, requests.exceptions.SSLError):
        cause = f"TLS handshake with {where} failed"
    elif isinstance(
        exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    ):
        cause = f"the answer from {where} was cut short or undecodable"
    elif "refused" in text:
        cause = f"connection to {where} refused"
    elif (
        "name or service not known" in text
        or "nodename nor servname" in text
        or ("failed to resolve" in text or "name resolution" in text)
    ):
        cause = f"host name {host} could not be resolved"
    elif (
        "reset" in text
        or "aborted" in text
        or "remotedisconnected" in text
        or ("remote end closed" in text)
    ):
        cause = f"connection to {where} was reset"
    else:
        cause = f"connection to {where} failed ({type(exc).__name__})"
    return cause


def check_download_url(url: str) -> None:
    """Refuse download URLs that are not https (plain http only to loopback, for the sandbox).

    Raises:
        APIError: The URL is not acceptable.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or "")):
        return
    msg = f"Refusing download URL {redact_url(url)}: only https:// (or loopback http) is allowed."
    raise APIError(msg)


def _quote(value: str) -> str:
    """Percent-encode a query value whole, as LinkedIn's docs require for URNs (`:`, `(`, `,`)."""
    return urllib.parse.quote(value, safe="")


def _retry_after(response: requests.Response) -> float | None:
    """`Retry-After` in seconds: delay-seconds, or an HTTP-date (RFC 9110), None if unreadable.

    An HTTP-date is measured from the response's own `Date` header when it has one (so a skewed
    local clock does not matter), else from the local clock. A date already past counts as no
    `Retry-After` (the usual backoff): waiting 0 s would spend every retry within milliseconds.
    """
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    moment = _http_date(value)
    if moment is None:
        return None
    now = _http_date(response.headers.get("Date", ""))
    delay = moment - (time.time() if now is None else now)
    return delay if delay > 0 else None


def _http_date(value: str) -> float | None:
    """An HTTP-date as epoch seconds, or None if it is not one."""
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" and obsolete forms: HTTP-dates are always GMT
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _origin(url: str) -> tuple[str, str, int] | None:
    """`(scheme, host, port)` of a URL, the default port filled in; None if unreadable."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


def _backoff_delays(rng: random.Random, first: float = 1.0) -> Iterator[float]:
    """Exponential delays (`first`, 2x, 4x ... capped) with jitter, from the backoff library."""
    for value in backoff.expo(base=2, factor=first, max_value=MAX_BACKOFF_SECONDS):
        if not value:  # the first value is None (backoff 2) or 0 (python-backoff 3): no wait
            continue
        yield rng.uniform(value / 2, value)


def json_object(response: requests.Response) -> dict[str, t.Any]:
    """The response body as a JSON object, or `{}` when it is not one (error bodies vary)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
