"""Access tokens: client credentials (app), a refresh token (member), or a given token.

Tokens are shared by the threads that create and poll jobs, so providers are thread-safe. No token
or secret is ever put in a log line or an exception message. The token endpoint is never followed
through a redirect: that would post the client secret to wherever the redirect points.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t

import requests

from tap_linkedin_crm.errors import AuthenticationError, NetworkError, RateLimitedError, ServerError
from tap_linkedin_crm.transport import describe_network_error, json_object, redact_url

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

LOGGER = logging.getLogger("tap_linkedin_crm.auth")

#: Renew this long before LinkedIn's expiry, so a token never dies in the middle of a request.
RENEW_MARGIN_SECONDS = 120.0
#: LinkedIn's client-credentials tokens live 30 minutes; used when `expires_in` is missing.
DEFAULT_TOKEN_TTL_SECONDS = 1800.0
#: Warn when the member's refresh token expires sooner than this (it is not renewed by use).
REFRESH_TOKEN_WARNING_SECONDS = 30 * 86400


class TokenProvider(t.Protocol):
    """Gives the bearer token to send, and takes back one the API called expired."""

    def token(self) -> str:
        """The current access token."""
        ...

    def invalidate(self, token: str) -> bool:
        """Forget `token` after a 401 `EXPIRED_ACCESS_TOKEN`; True if a new one can be had."""
        ...


class StaticTokenProvider:
    """A pre-issued token (`access_token`, `analytics_access_token`). It cannot be renewed."""

    def __init__(self, access_token: str) -> None:
        """Keep the token."""
        self._token = access_token

    def token(self) -> str:
        """The configured token."""
        return self._token

    def invalidate(self, token: str) -> bool:  # noqa: ARG002 - protocol signature
        """A static token cannot be renewed."""
        return False


class TokenEndpoint:
    """Posts OAuth 2.0 grants to LinkedIn's token endpoint and checks the answer."""

    def __init__(self, url: str, *, session: requests.Session, timeout: float = 60.0) -> None:
        """Keep the endpoint and connection settings."""
        self.url = url
        self._session = session
        self._timeout = timeout

    def grant(self, form: Mapping[str, str], *, refused: str) -> dict[str, t.Any]:
        """Post one grant; return the JSON answer holding an `access_token`.

        Args:
            form: The form fields (`grant_type`, credentials, ...).
            refused: What to tell the user when LinkedIn refuses the grant (4xx).

        Raises:
            AuthenticationError: The grant was refused, or the endpoint redirected.
            NetworkError: The endpoint could not be reached (worth retrying).
            ServerError: The endpoint failed with 5xx (worth retrying).
            RateLimitedError: The endpoint answered 429 (worth retrying later).
        """
        try:
            response = self._session.post(
                self.url,
                data=dict(form),
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            cause = describe_network_error(exc, self.url, self._timeout)
            msg = f"Could not reach the LinkedIn token endpoint: {cause}."
            raise NetworkError(msg) from None
        with response:
            status = response.status_code
            if status >= 500:  # noqa: PLR2004
                msg = f"The LinkedIn token endpoint failed with HTTP {status}."
                raise ServerError(msg, status=status)
            if status == 429:  # noqa: PLR2004
                msg = "The LinkedIn token endpoint is rate limiting (HTTP 429)."
                raise RateLimitedError(msg, status=429)
            if 300 <= status < 400:  # noqa: PLR2004
                location = response.headers.get("Location", "")
                msg = (
                    f"The token endpoint answered with a redirect (HTTP {status}) to "
                    f"{redact_url(location) if location else 'nowhere'}. The tap does not follow "
                    "it, since that would send client_secret there: set token_url to the "
                    "endpoint itself (LinkedIn's is https://www.linkedin.com/oauth/v2/accessToken)."
                )
                raise AuthenticationError(msg, status=status)
            body = json_object(response)
            if status != 200 or not body.get("access_token"):  # noqa: PLR2004
                reason = body.get("error_description") or body.get("error") or "no token returned"
                msg = f"LinkedIn refused {refused} (HTTP {status}: {reason})."
                raise AuthenticationError(msg, status=status)
        return body


class RenewingTokenProvider:
    """A token fetched from the token endpoint and renewed before it expires.

    Subclasses say which grant to post (`_form`) and may look at each answer (`_accept`).
    """

    def __init__(
        self,
        endpoint: TokenEndpoint,
        *,
        clock: Callable[[], float] = time.monotonic,
        renew_margin: float = RENEW_MARGIN_SECONDS,
    ) -> None:
        """Keep the endpoint; nothing is fetched until the first `token()`."""
        self._endpoint = endpoint
        self._clock = clock
        self._renew_margin = renew_margin
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetch_count = 0

    def token(self) -> str:
        """A valid token, fetched or renewed when needed."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._renew_margin:
                self._fetch()
            assert self._token is not None  # noqa: S101 - _fetch sets it or raises
            return self._token

    def invalidate(self, token: str) -> bool:
        """Drop `token` if it is still the current one; the next `token()` fetches a new one."""
        with self._lock:
            if self._token == token:
                self._token = None
        return True

    def _fetch(self) -> None:
        body = self._endpoint.grant(self._form(), refused=self._refused())
        self._accept(body)
        self.fetch_count += 1
        self._token = str(body["access_token"])
        ttl = _seconds(body.get("expires_in"), DEFAULT_TOKEN_TTL_SECONDS)
        # A margin larger than a short TTL would renew on every call: cap it at half the TTL.
        self._renew_margin = min(self._renew_margin, ttl / 2)
        self._expires_at = self._clock() + ttl

    def _form(self) -> dict[str, str]:
        raise NotImplementedError

    def _refused(self) -> str:
        raise NotImplementedError

    def _accept(self, body: Mapping[str, t.Any]) -> None:
        """Look at a successful answer before its token is used (nothing by default)."""


class ClientCredentialsTokenProvider(RenewingTokenProvider):
    """LinkedIn's 2-legged flow (`grant_type=client_credentials`), for the CRM exports."""

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        session: requests.Session,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        renew_margin: float = RENEW_MARGIN_SECONDS,
    ) -> None:
        """Keep what the token request needs; nothing is fetched until the first `token()`."""
        super().__init__(
            TokenEndpoint(token_url, session=session, timeout=timeout),
            clock=clock,
            renew_margin=renew_margin,
        )
        self._client_id = client_id
        self._client_secret = client_secret

    def _form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }

    def _refused(self) -> str:
        return (
            "the client credentials; check client_id and client_secret, and that the app is "
            "approved for 2-legged OAuth with the r_sales_nav_validation permission"
        )


class RefreshTokenProvider(RenewingTokenProvider):
    """LinkedIn's member flow: access tokens from a refresh token (`grant_type=refresh_token`).

    LinkedIn does not renew a refresh token's lifetime when it is used; this warns when it expires
    within 30 days. Should LinkedIn answer with a different refresh token, `on_rotated` is told
    (the Airbyte source reports it to the platform; the Singer tap tells the user to store it).
    """

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        session: requests.Session,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_rotated: Callable[[str], None] | None = None,
    ) -> None:
        """Keep what the refresh request needs; nothing is fetched until the first `token()`."""
        super().__init__(TokenEndpoint(token_url, session=session, timeout=timeout), clock=clock)
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._on_rotated = on_rotated
        self._warned_expiry = False

    def _form(self) -> dict[str, str]:
        return {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }

    def _refused(self) -> str:
        return (
            "the refresh token (it may have expired or been revoked); get a new one with "
            "`linkedin-crm-auth` and store it as refresh_token"
        )

    def _accept(self, body: Mapping[str, t.Any]) -> None:
        remaining = body.get("refresh_token_expires_in")
        if remaining is not None and not self._warned_expiry:
            seconds = _seconds(remaining, float("inf"))
            if seconds < REFRESH_TOKEN_WARNING_SECONDS:
                self._warned_expiry = True
                LOGGER.warning(
                    "The LinkedIn refresh token expires in %.1f days; LinkedIn does not extend "
                    "it. Run `linkedin-crm-auth` to get a new one before then.",
                    seconds / 86400,
                )
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            self._refresh_token = rotated
            if self._on_rotated is not None:
                self._on_rotated(rotated)
            else:
                LOGGER.warning(
                    "LinkedIn issued a new refresh token and may revoke the configured one; "
                    "run `linkedin-crm-auth` and store its refresh token as refresh_token."
                )


def _seconds(value: object, default: float) -> float:
    """A lifetime LinkedIn sent as a number or a numeric string (`"1800"`)."""
    try:
        return float(t.cast("float", value))
    except (TypeError, ValueError):
        return default
