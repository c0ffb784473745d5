"""LinkedIn's OAuth 2.0: the authorization page, the token endpoint, and bearer-token checks.

Documented contract (linkedin-api.md section 1):

- ``POST /oauth/v2/accessToken``, form-encoded. ``grant_type=client_credentials`` (2-legged,
  permission ``r_sales_nav_validation``) answers ``{"access_token", "expires_in"}`` with
  ``expires_in`` a *string*; such tokens live 30 minutes and come without a refresh token.
- 3-legged flow for the analytics API (scope ``r_sales_nav_analytics``):
  ``GET /oauth/v2/authorization?response_type=code&client_id&redirect_uri&state&scope`` sends the
  browser back to ``redirect_uri?code=...&state=...``; ``grant_type=authorization_code`` (code,
  redirect_uri, client id and secret) answers ``access_token``, ``expires_in`` (an integer,
  60 days), ``refresh_token``, ``refresh_token_expires_in`` (365 days at issue) and ``scope``;
  ``grant_type=refresh_token`` gives a new access token but does *not* renew the refresh token,
  whose ``refresh_token_expires_in`` counts down.

Assumed (and configurable where it matters): the page approves at once as ``Scenario.member``;
an unknown client or redirect URI gets a 400 page and no redirect; a request without the
analytics scope is sent back with ``error=invalid_scope``; codes are single-use and live 10
minutes; a bad code gets LinkedIn's ``invalid_request`` body as seen in the wild, a bad refresh
token ``invalid_grant``; refresh-token rotation is off unless the scenario turns it on; the
sandbox's 403 for a token without the needed permission names that permission.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import typing as t
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from tap_linkedin_crm.sandbox.fault_effects import fault_reply, with_transport_fault
from tap_linkedin_crm.sandbox.faults import DENIAL_ERRORS
from tap_linkedin_crm.sandbox.messages import (
    Reply,
    expired_token_reply,
    html_reply,
    invalid_token_reply,
    json_reply,
    missing_token_reply,
    not_permitted,
    oauth_error,
    redirect_reply,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from tap_linkedin_crm.sandbox.context import SandboxContext
    from tap_linkedin_crm.sandbox.messages import Request

TOKEN_PATH = "/oauth/v2/accessToken"  # noqa: S105
AUTHORIZATION_PATH = "/oauth/v2/authorization"
#: Where a ``redirect`` fault sends token requests (another path of the sandbox).
REDIRECTED_TOKEN_PATH = "/oauth/v2/redirected/accessToken"  # noqa: S105
#: The application permission of the CRM Data Validation API (client-credentials tokens).
APP_PERMISSION = "r_sales_nav_validation"
#: The member scope of the Sales Navigator Analytics API (authorization-code tokens).
ANALYTICS_SCOPE = "r_sales_nav_analytics"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
BAD_CODE_DESCRIPTION = (
    "Unable to retrieve access token: appid/redirect uri/code verifier does not match "
    "authorization code. Or authorization code expired."
)
BAD_REFRESH_DESCRIPTION = (
    "The provided authorization grant or refresh token is invalid, expired or revoked."
)
_SCOPE_SPLIT = re.compile(r"[\s,]+")


@dataclass(slots=True)
class AccessToken:
    """An issued access token.

    Attributes:
        client_id: The application it was issued to.
        expires_at: Expiry, epoch milliseconds of the sandbox clock.
        scopes: What it may do: ``APP_PERMISSION`` for application tokens, the granted scopes
            for member tokens.
        member: The member (person URN) of a member token; ``None`` for application tokens.
        forced_expired: Set by :meth:`OAuthServer.expire` (or a fault) to expire it early.
    """

    client_id: str
    expires_at: int
    scopes: frozenset[str]
    member: str | None = None
    forced_expired: bool = False


@dataclass(slots=True)
class RefreshToken:
    """An issued refresh token; its expiry is fixed at issue and survives rotation."""

    client_id: str
    member: str
    scopes: frozenset[str]
    expires_at: int
    revoked: bool = False


@dataclass(slots=True)
class AuthorizationCode:
    """A code the authorization page handed out; it can be exchanged once, until it expires."""

    client_id: str
    redirect_uri: str
    member: str
    scopes: frozenset[str]
    expires_at: int
    used: bool = False


@dataclass(frozen=True, slots=True)
class Bearer:
    """The caller of an API request, once its token checked out."""

    token: str
    client_id: str
    member: str | None


@dataclass(frozen=True, slots=True)
class _Credentials:
    """The form of a token request and the client it names (form fields or Basic auth)."""

    form: dict[str, str]
    client_id: str
    secret: str

    @classmethod
    def read(cls, req: Request) -> _Credentials:
        """Read a token request, and note in ``req`` whether a client secret arrived."""
        pairs = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        form = {k: v[0] for k, v in pairs.items()}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = req.headers.get("Authorization", "")
        if not client_id and basic.startswith("Basic "):
            try:
                decoded = base64.b64decode(basic[6:]).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, secret = decoded.partition(":")
        req.client_secret_sent = bool(secret)
        return cls(form, client_id, secret)


def parse_scopes(text: str) -> frozenset[str]:
    """Scopes from a space- (or comma-) separated list."""
    return frozenset(s for s in _SCOPE_SPLIT.split(text.strip()) if s)


def with_query(url: str, params: Iterable[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to its query string."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params]
    return urlunsplit(parts._replace(query=urlencode(query)))


class OAuthServer:
    """Issues codes and tokens and checks tokens; state is guarded by the context's lock."""

    def __init__(self, ctx: SandboxContext) -> None:
        """Serve OAuth for ``ctx``'s scenario."""
        self._ctx = ctx
        self._access_tokens: dict[str, AccessToken] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._codes: dict[str, AuthorizationCode] = {}

    # -- the authorization page ----------------------------------------------------------------

    def authorization_endpoint(self, req: Request) -> Reply:
        """Answer ``GET /oauth/v2/authorization``: approve at once and redirect with a code."""
        ctx = self._ctx
        fault = ctx.take_http_fault(req)
        if fault is not None and fault.kind != "authorization_denied":
            replaced = fault_reply(fault, req, ctx.pause)
            if replaced is not None:
                return replaced
        client_id = req.param("client_id") or ""
        redirect_uri = req.param("redirect_uri") or ""
        if client_id not in ctx.scenario.clients:
            reply = html_reply(400, "Invalid client", "The client_id is not a known application.")
            return with_transport_fault(reply, fault)
        if not self._redirect_allowed(redirect_uri):
            reply = html_reply(
                400,
                "Invalid redirect_uri",
                "The redirect_uri does not match the application's authorized redirect URLs.",
            )
            return with_transport_fault(reply, fault)
        state = req.param("state")
        echo = [("state", state)] if state is not None else []
        scopes = parse_scopes(req.param("scope") or "")
        error: tuple[str, str] | None = None
        if req.param("response_type") != "code":
            error = ("unsupported_response_type", "response_type must be code")
        elif ANALYTICS_SCOPE not in scopes:
            error = ("invalid_scope", f"The scope must include {ANALYTICS_SCOPE}")
        elif fault is not None and fault.kind == "authorization_denied":
            denial = fault.variant or DENIAL_ERRORS[0]
            error = (denial, fault.message or "The member did not approve the application")
        if error is not None:
            params = [("error", error[0]), ("error_description", error[1]), *echo]
            return with_transport_fault(redirect_reply(with_query(redirect_uri, params)), fault)
        code = "AQT" + secrets.token_urlsafe(48)
        now = ctx.clock.now_ms()
        with ctx.lock:
            self._codes[code] = AuthorizationCode(
                client_id=client_id,
                redirect_uri=redirect_uri,
                member=ctx.scenario.member,
                scopes=scopes - {APP_PERMISSION},
                expires_at=now + ctx.scenario.authorization_code_ttl_seconds * 1000,
            )
        return with_transport_fault(
            redirect_reply(with_query(redirect_uri, [("code", code), *echo])), fault
        )

    def _redirect_allowed(self, uri: str) -> bool:
        registered = self._ctx.scenario.redirect_uris
        if registered is not None:
            return uri in registered
        try:
            parts = urlsplit(uri)
        except ValueError:
            return False
        return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and not parts.fragment

    # -- the token endpoint --------------------------------------------------------------------

    def token_endpoint(self, req: Request) -> Reply:
        """Answer ``POST /oauth/v2/accessToken``."""
        ctx = self._ctx
        credentials = _Credentials.read(req)
        fault = ctx.take_http_fault(req)
        if fault is not None:
            if fault.kind == "redirect":
                target = f"{ctx.base_url}{REDIRECTED_TOKEN_PATH}"
                return redirect_reply(target, fault.status or 307)
            replaced = fault_reply(fault, req, ctx.pause)
            if replaced is not None:
                return replaced
        return with_transport_fault(self._grant(req, credentials), fault)

    def redirected_token_endpoint(self, req: Request) -> Reply:
        """Answer at the target of a ``redirect`` fault: as the token endpoint, without faults.

        The request log shows whether the client secret was sent again after the redirect.
        """
        return self._grant(req, _Credentials.read(req))

    def _grant(self, req: Request, credentials: _Credentials) -> Reply:
        content_type = req.headers.get("Content-Type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return oauth_error(
                400,
                "invalid_request",
                "Content-Type must be application/x-www-form-urlencoded",
            )
        form, client_id = credentials.form, credentials.client_id
        grant = form.get("grant_type", "")
        if grant not in {"client_credentials", "authorization_code", "refresh_token"}:
            return oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            )
        if not client_id or self._ctx.scenario.clients.get(client_id) != credentials.secret:
            return oauth_error(401, "invalid_client", "Client authentication failed")
        if grant == "client_credentials":
            return self._client_credentials(client_id)
        if grant == "authorization_code":
            return self._authorization_code(client_id, form)
        return self._refresh(client_id, form)

    def _client_credentials(self, client_id: str) -> Reply:
        ctx = self._ctx
        ttl = ctx.scenario.token_ttl_seconds
        token = "AQV" + secrets.token_urlsafe(48)
        with ctx.lock:
            self._access_tokens[token] = AccessToken(
                client_id, ctx.clock.now_ms() + ttl * 1000, frozenset({APP_PERMISSION})
            )
        return json_reply(200, {"access_token": token, "expires_in": str(ttl)})

    def _authorization_code(self, client_id: str, form: dict[str, str]) -> Reply:
        code, redirect_uri = form.get("code", ""), form.get("redirect_uri", "")
        if not code or not redirect_uri:
            missing = "code" if not code else "redirect_uri"
            return oauth_error(
                400, "invalid_request", f'A required parameter "{missing}" is missing'
            )
        ctx = self._ctx
        now = ctx.clock.now_ms()
        with ctx.lock:
            grant = self._codes.get(code)
            if (
                grant is None
                or grant.used
                or now >= grant.expires_at
                or grant.client_id != client_id
                or grant.redirect_uri != redirect_uri
            ):
                return oauth_error(400, "invalid_request", BAD_CODE_DESCRIPTION)
            grant.used = True
            access, refresh = self._issue_member(client_id, grant.member, grant.scopes, now)
        return self._member_reply(access, refresh, now)

    def _refresh(self, client_id: str, form: dict[str, str]) -> Reply:
        presented = form.get("refresh_token", "")
        if not presented:
            return oauth_error(
                400, "invalid_request", 'A required parameter "refresh_token" is missing'
            )
        ctx = self._ctx
        now = ctx.clock.now_ms()
        with ctx.lock:
            known = self._refresh_tokens.get(presented)
            if (
                known is None
                or known.revoked
                or now >= known.expires_at
                or known.client_id != client_id
            ):
                return oauth_error(400, "invalid_grant", BAD_REFRESH_DESCRIPTION)
            refresh = presented
            if ctx.scenario.rotate_refresh_tokens:
                known.revoked = True
                refresh = "AQX" + secrets.token_urlsafe(48)
                self._refresh_tokens[refresh] = RefreshToken(
                    client_id, known.member, known.scopes, known.expires_at
                )
            access = self._new_access_token(client_id, known.member, known.scopes, now)
        return self._member_reply(access, refresh, now)

    def _new_access_token(
        self,
        client_id: str,
        member: str,
        scopes: frozenset[str],
        now: int,
        ttl_seconds: int | None = None,
    ) -> str:
        ttl = self._ctx.scenario.member_token_ttl_seconds if ttl_seconds is None else ttl_seconds
        token = "AQV" + secrets.token_urlsafe(48)
        self._access_tokens[token] = AccessToken(client_id, now + ttl * 1000, scopes, member)
        return token

    def _issue_member(  # noqa: PLR0913 - each is an independent input of the grant
        self,
        client_id: str,
        member: str,
        scopes: frozenset[str],
        now: int,
        *,
        access_ttl_seconds: int | None = None,
        refresh_ttl_seconds: int | None = None,
        with_refresh: bool | None = None,
    ) -> tuple[str, str | None]:
        """Issue an access token and a refresh token (if the scenario sends them); hold the lock."""
        scenario = self._ctx.scenario
        access = self._new_access_token(client_id, member, scopes, now, access_ttl_seconds)
        if not (scenario.issue_refresh_tokens if with_refresh is None else with_refresh):
            return access, None
        ttl = scenario.refresh_token_ttl_seconds
        if refresh_ttl_seconds is not None:
            ttl = refresh_ttl_seconds
        refresh = "AQX" + secrets.token_urlsafe(48)
        self._refresh_tokens[refresh] = RefreshToken(client_id, member, scopes, now + ttl * 1000)
        return access, refresh

    def _member_reply(self, access: str, refresh: str | None, now: int) -> Reply:
        with self._ctx.lock:
            token = self._access_tokens[access]
            body: dict[str, t.Any] = {
                "access_token": access,
                "expires_in": (token.expires_at - now) // 1000,
            }
            if refresh is not None:
                body["refresh_token"] = refresh
                body["refresh_token_expires_in"] = max(
                    0, (self._refresh_tokens[refresh].expires_at - now) // 1000
                )
        body["scope"] = ",".join(sorted(token.scopes))
        return json_reply(200, body)

    def issue_member_tokens(
        self,
        *,
        member: str | None = None,
        scopes: Iterable[str] = (ANALYTICS_SCOPE,),
        client_id: str | None = None,
        access_ttl_seconds: int | None = None,
        refresh_ttl_seconds: int | None = None,
    ) -> tuple[str, str]:
        """Issue member tokens as the authorization-code grant would, without the browser.

        Returns:
            The access token and the refresh token (issued even if the scenario sends none).
        """
        ctx = self._ctx
        scenario = ctx.scenario
        client = client_id if client_id is not None else next(iter(scenario.clients))
        with ctx.lock:
            access, refresh = self._issue_member(
                client,
                member if member is not None else scenario.member,
                frozenset(scopes),
                ctx.clock.now_ms(),
                access_ttl_seconds=access_ttl_seconds,
                refresh_ttl_seconds=refresh_ttl_seconds,
                with_refresh=True,
            )
        return access, t.cast("str", refresh)

    # -- bearer tokens on API calls ------------------------------------------------------------

    def authenticate(self, req: Request, permission: str) -> Bearer | Reply:
        """Check the request's bearer token and that it carries ``permission``.

        Returns:
            The caller, or the 401 or 403 reply to send.
        """
        header = req.headers.get("Authorization")
        if not header:
            return missing_token_reply()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        now = self._ctx.clock.now_ms()
        with self._ctx.lock:
            known = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
            expired = known is not None and (known.forced_expired or now >= known.expires_at)
        if known is None:
            return invalid_token_reply()
        if expired:
            return expired_token_reply()
        if permission not in known.scopes:
            message = (
                f"Not enough permissions to access: {req.method} {req.api_path} "
                f"(the token lacks the {permission} permission)"
            )
            return not_permitted(req, message=message)
        return Bearer(token, known.client_id, known.member)

    def expire(self, token: str | None = None) -> None:
        """Expire one access token now, or every access token issued so far."""
        with self._ctx.lock:
            for key, known in self._access_tokens.items():
                if token is None or key == token:
                    known.forced_expired = True

    def secrets(self) -> set[str]:
        """Every access token, refresh token and authorization code issued."""
        with self._ctx.lock:
            return set(self._access_tokens) | set(self._refresh_tokens) | set(self._codes)
