"""`linkedin-crm-auth`: a member refresh token for the analytics exports (authorization code).

It prints LinkedIn's authorization URL (scope `r_sales_nav_analytics`, a random `state` against
CSRF, a loopback `redirect_uri`), waits on loopback for LinkedIn's redirect, checks the `state`,
exchanges the code at the token endpoint (never following a redirect there), and prints the refresh
token, when it expires, and the `meltano config` commands that store it.

The redirect URI must be registered in the LinkedIn app ("Authorized redirect URLs"), port
included: the default is `http://127.0.0.1:8765/callback`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import html
import os
import secrets
import sys
import threading
import typing as t
import urllib.parse
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tap_linkedin_crm.auth import TokenEndpoint
from tap_linkedin_crm.errors import LinkedInCRMError
from tap_linkedin_crm.settings import DEFAULT_TOKEN_URL, check_url

if t.TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_AUTHORIZATION_URL = "https://www.linkedin.com/oauth/v2/authorization"
DEFAULT_SCOPE = "r_sales_nav_analytics"
DEFAULT_PORT = 8765
CALLBACK_PATH = "/callback"


class _Redirect:
    """What LinkedIn's redirect brought: a code, or an error."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.params: dict[str, str] = {}


def _handler(redirect: _Redirect, expected_state: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        #: Seconds a connection may stay silent before it is dropped.
        timeout = 60

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            if parts.path != CALLBACK_PATH:
                self.send_error(404)
                return
            params = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
            if params.get("state") != expected_state:
                # Not the answer to our request (CSRF or a stale tab): ignore it, keep waiting.
                self._page(400, "This redirect does not belong to this sign-in; ignored.")
                return
            try:
                if "code" in params:
                    text = "Authorized. You can close this window and return to the terminal."
                    self._page(200, text)
                else:
                    reason = params.get("error_description", "unknown")
                    self._page(400, f"LinkedIn refused: {reason}")
                self.wfile.flush()
            except OSError:
                pass  # the browser went away: the redirect still counts
            finally:
                # Only once the page is out: the process may exit as soon as this is set, and
                # the member's browser must not be left with a broken page.
                redirect.params = params
                redirect.done.set()

        def _page(self, status: int, text: str) -> None:
            body = f"<html><body><p>{html.escape(text)}</p></body></html>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002, ANN401
            """Silent: the query string holds the authorization code."""

    return Handler


def authorization_url(base: str, client_id: str, redirect_uri: str, state: str, scope: str) -> str:
    """LinkedIn's authorization URL for the code flow."""
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": scope,
        }
    )
    return f"{base}?{query}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the flow; 0 on success, 1 when LinkedIn refused or the wait timed out."""
    parser = argparse.ArgumentParser(
        prog="linkedin-crm-auth",
        description="Get a LinkedIn member refresh token for tap-linkedin-crm's analytics exports.",
    )
    parser.add_argument("--client-id", default=os.environ.get("LINKEDIN_CLIENT_ID"))
    parser.add_argument(
        "--client-secret",
        default=os.environ.get("LINKEDIN_CLIENT_SECRET"),
        help="Default: $LINKEDIN_CLIENT_SECRET, else asked for (not echoed).",
    )
    parser.add_argument("--authorization-url", default=DEFAULT_AUTHORIZATION_URL)
    parser.add_argument("--token-url", default=DEFAULT_TOKEN_URL)
    parser.add_argument("--scope", default=DEFAULT_SCOPE)
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="Loopback port of the redirect URI (0: any free port).",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait.")
    parser.add_argument("--open-browser", action="store_true", help="Open the URL in a browser.")
    args = parser.parse_args(argv)
    if not args.client_id:
        parser.error("--client-id (or LINKEDIN_CLIENT_ID) is required")
    client_secret = args.client_secret or getpass.getpass("LinkedIn app client secret: ")
    try:
        for name in ("authorization_url", "token_url"):
            check_url(name.replace("_", "-"), getattr(args, name))
    except Exception as exc:  # noqa: BLE001 - a config error, said plainly
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2

    state = secrets.token_urlsafe(24)
    redirect = _Redirect()
    try:
        # One thread per connection: a browser's spare (preconnected, never used) connection
        # must not hold up the one that brings the redirect.
        server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(redirect, state))
    except OSError as exc:
        print(  # noqa: T201
            f"error: cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}); pass "
            "--port with a free port (registered in the app's Authorized redirect URLs as "
            f"http://127.0.0.1:<port>{CALLBACK_PATH}).",
            file=sys.stderr,
        )
        return 2
    port = server.server_address[1]
    redirect_uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = authorization_url(args.authorization_url, args.client_id, redirect_uri, state, args.scope)
    print(  # noqa: T201
        "Open this URL, sign in as a Sales Navigator member with reporting access, and approve:\n"
        f"\n  {url}\n\n"
        f"(The app must list {redirect_uri} among its Authorized redirect URLs.)\n"
        "Waiting for LinkedIn's redirect...",
        flush=True,
    )
    if args.open_browser:
        webbrowser.open(url)
    try:
        if not redirect.done.wait(args.timeout):
            print(f"error: no redirect within {args.timeout:g} s.", file=sys.stderr)  # noqa: T201
            return 1
    finally:
        server.shutdown()
        server.server_close()
    code = redirect.params.get("code")
    if not code:
        reason = redirect.params.get("error_description") or redirect.params.get("error")
        print(f"error: LinkedIn refused the authorization: {reason}", file=sys.stderr)  # noqa: T201
        return 1
    endpoint = TokenEndpoint(args.token_url, session=requests.Session(), timeout=60)
    try:
        body = endpoint.grant(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": args.client_id,
                "client_secret": client_secret,
            },
            refused="the authorization code (it is single-use and short-lived: run again)",
        )
    except LinkedInCRMError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(_report(body), flush=True)  # noqa: T201
    return 0


def _report(body: dict[str, t.Any]) -> str:
    """What to tell the user: the token to store, its expiry, the commands that store it."""
    now = dt.datetime.now(tz=dt.UTC)
    refresh = body.get("refresh_token")
    if not refresh:
        expires = _expiry(now, body.get("expires_in"))
        return (
            "LinkedIn returned no refresh token (this app is not enabled for programmatic "
            "refresh tokens). Use the access token instead; it expires "
            f"{expires} and cannot be renewed by the tap:\n\n"
            f"  analytics_access_token = {body['access_token']}\n\n"
            "  meltano config set tap-linkedin-crm analytics_access_token '<the token above>'\n"
        )
    expires = _expiry(now, body.get("refresh_token_expires_in"))
    return (
        f"Refresh token (expires {expires}; LinkedIn does not extend it, run this again "
        "before then):\n\n"
        f"  refresh_token = {refresh}\n\n"
        "Store it (with the app's client_id and client_secret) for Meltano:\n\n"
        "  meltano config set tap-linkedin-crm refresh_token '<the token above>'\n"
        "  meltano config set tap-linkedin-crm client_id '<client id>'\n"
        "  meltano config set tap-linkedin-crm client_secret '<client secret>'\n\n"
        "or set TAP_LINKEDIN_CRM_REFRESH_TOKEN in the environment the tap runs in.\n"
    )


def _expiry(now: dt.datetime, seconds: object) -> str:
    try:
        moment = now + dt.timedelta(seconds=float(t.cast("float", seconds)))
    except (TypeError, ValueError):
        return "at an unknown time"
    return f"on {moment:%Y-%m-%d %H:%M} UTC (in {(moment - now).days} days)"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
