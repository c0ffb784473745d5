"""LinkedIn's OAuth 2.0 token endpoint, and the check of bearer tokens on API calls.

Documented contract (linkedin-api.md section 1): ``POST /oauth/v2/accessToken``, form-encoded,
``grant_type=client_credentials`` answers ``{"access_token", "expires_in"}`` with ``expires_in``
a string; tokens live 30 minutes. The 401 bodies are the ones seen in the wild.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import typing as t
from dataclasses import dataclass
from urllib.parse import parse_qs

from tap_linkedin_crm.sandbox.messages import (
    expired_token_reply,
    invalid_token_reply,
    json_reply,
    missing_token_reply,
    oauth_error,
)

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox.context import SandboxContext
    from tap_linkedin_crm.sandbox.messages import Reply, Request

TOKEN_PATH = "/oauth/v2/accessToken"  # noqa: S105


@dataclass(slots=True)
class AccessToken:
    """An issued access token.

    Attributes:
        client_id: The application it was issued to.
        expires_at: Expiry, epoch milliseconds of the sandbox clock.
        forced_expired: Set by :meth:`OAuthServer.expire` (or a fault) to expire it early.
    """

    client_id: str
    expires_at: int
    forced_expired: bool = False


class OAuthServer:
    """Issues tokens and checks them; all state is guarded by the context's lock."""

    def __init__(self, ctx: SandboxContext) -> None:
        """Serve tokens for ``ctx``'s scenario."""
        self._ctx = ctx
        self._access_tokens: dict[str, AccessToken] = {}

    # -- the token endpoint --------------------------------------------------------------------

    def token_endpoint(self, req: Request) -> Reply:
        """Answer ``POST /oauth/v2/accessToken``."""
        ctx = self._ctx
        fault = ctx.take_http_fault(req)
        if fault is not None:
            replaced = ctx.fault_reply(fault, req)
            if replaced is not None:
                return replaced
        return ctx.with_transport_fault(self._grant(req), fault)

    def _grant(self, req: Request) -> Reply:
        content_type = req.headers.get("Content-Type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return oauth_error(
                400,
                "invalid_request",
                "Content-Type must be application/x-www-form-urlencoded",
            )
        form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        client_id = form.get("client_id", [""])[0]
        client_secret = form.get("client_secret", [""])[0]
        basic = req.headers.get("Authorization", "")
        if not client_id and basic.startswith("Basic "):
            try:
                decoded = base64.b64decode(basic[6:]).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, client_secret = decoded.partition(":")
        grant = form.get("grant_type", [""])[0]
        if grant != "client_credentials":
            return oauth_error(
                400, "unsupported_grant_type", "grant_type must be client_credentials"
            )
        if not client_id or self._ctx.scenario.clients.get(client_id) != client_secret:
            return oauth_error(401, "invalid_client", "Client authentication failed")
        ttl = self._ctx.scenario.token_ttl_seconds
        token = "AQV" + secrets.token_urlsafe(48)
        with self._ctx.lock:
            self._access_tokens[token] = AccessToken(
                client_id, self._ctx.clock.now_ms() + ttl * 1000
            )
        return json_reply(200, {"access_token": token, "expires_in": str(ttl)})

    # -- bearer tokens on API calls ------------------------------------------------------------

    def authenticate(self, req: Request) -> tuple[str | None, Reply | None]:
        """Check the request's bearer token.

        Returns:
            The token and ``None`` if it is valid, else ``None`` and the 401 reply to send.
        """
        header = req.headers.get("Authorization")
        if not header:
            return None, missing_token_reply()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        now = self._ctx.clock.now_ms()
        with self._ctx.lock:
            known = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
            expired = known is not None and (known.forced_expired or now >= known.expires_at)
        if known is None:
            return None, invalid_token_reply()
        if expired:
            return None, expired_token_reply()
        return token, None

    def expire(self, token: str | None = None) -> None:
        """Expire one access token now, or every token issued so far."""
        with self._ctx.lock:
            for key, known in self._access_tokens.items():
                if token is None or key == token:
                    known.forced_expired = True

    def secrets(self) -> set[str]:
        """Every access token issued."""
        with self._ctx.lock:
            return set(self._access_tokens)
