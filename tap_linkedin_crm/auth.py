"""Access tokens: LinkedIn's client-credentials flow with renewal, or a pre-issued token.

Tokens are shared by the threads that poll jobs, so providers are thread-safe. No token or secret is
ever put in a log line or an exception message.
"""

from __future__ import annotations

import threading
import time
import typing as t

import requests

from tap_linkedin_crm.errors import AuthenticationError, RateLimitedError, ServerError

if t.TYPE_CHECKING:
    from collections.abc import Callable

#: Renew this long before LinkedIn's expiry, so a token never dies in the middle of a request.
RENEW_MARGIN_SECONDS = 120.0
#: LinkedIn's client-credentials tokens live 30 minutes; used when `expires_in` is missing.
DEFAULT_TOKEN_TTL_SECONDS = 1800.0


class TokenProvider(t.Protocol):
    """Gives the bearer token to send, and takes back one the API called expired."""

    def token(self) -> str:
        """The current access token."""
        ...

    def invalidate(self, token: str) -> bool:
        """Forget `token` after a 401 `EXPIRED_ACCESS_TOKEN`; True if a new one can be had."""
        ...


class StaticTokenProvider:
    """A pre-issued token (`access_token` setting). It cannot be renewed."""

    def __init__(self, access_token: str) -> None:
        """Keep the token."""
        self._token = access_token

    def token(self) -> str:
        """The configured token."""
        return self._token

    def invalidate(self, token: str) -> bool:  # noqa: ARG002 - protocol signature
        """A static token cannot be renewed."""
        return False


class ClientCredentialsTokenProvider:
    """Fetches tokens with `grant_type=client_credentials` and renews them before they expire."""

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
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = session
        self._timeout = timeout
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
        """Request a new token.

        Raises:
            AuthenticationError: The client was refused.
            ServerError: The token endpoint failed or was unreachable (worth retrying).
            RateLimitedError: The token endpoint answered 429 (worth retrying later).
        """
        try:
            response = self._session.post(
                self._token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                },
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            msg = f"Could not reach the LinkedIn token endpoint: {type(exc).__name__}."
            raise ServerError(msg) from None
        with response:
            if response.status_code >= 500:  # noqa: PLR2004
                msg = f"The LinkedIn token endpoint failed with HTTP {response.status_code}."
                raise ServerError(msg, status=response.status_code)
            if response.status_code == 429:  # noqa: PLR2004
                msg = "The LinkedIn token endpoint is rate limiting (HTTP 429)."
                raise RateLimitedError(msg, status=429)
            body = json_object(response)
            if response.status_code != 200 or not body.get("access_token"):  # noqa: PLR2004
                reason = body.get("error_description") or body.get("error") or "no token returned"
                msg = (
                    f"LinkedIn refused the client credentials (HTTP {response.status_code}: "
                    f"{reason}). Check client_id and client_secret, and that the app is approved "
                    "for 2-legged OAuth with the r_sales_nav_validation permission."
                )
                raise AuthenticationError(msg, status=response.status_code)
        self.fetch_count += 1
        self._token = str(body["access_token"])
        try:
            ttl = float(body.get("expires_in", DEFAULT_TOKEN_TTL_SECONDS))
        except (TypeError, ValueError):
            ttl = DEFAULT_TOKEN_TTL_SECONDS
        # A margin larger than a short TTL would renew on every call: cap it at half the TTL.
        self._renew_margin = min(self._renew_margin, ttl / 2)
        self._expires_at = self._clock() + ttl


def json_object(response: requests.Response) -> dict[str, t.Any]:
    """The response body as a JSON object, or `{}` when it is not one (error bodies vary)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
