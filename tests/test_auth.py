"""Token providers against the sandbox's real token endpoint: fetch, renew, refuse, never leak."""

from __future__ import annotations

import typing as t

import pytest
import requests

from tap_linkedin_crm.auth import ClientCredentialsTokenProvider, StaticTokenProvider
from tap_linkedin_crm.errors import AuthenticationError, ServerError
from tap_linkedin_crm.sandbox import Fault, Sandbox, Scenario


@pytest.fixture
def sandbox() -> t.Iterator[Sandbox]:
    with Sandbox(Scenario()) as sb:
        yield sb


@pytest.fixture
def session() -> t.Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def provider(
    sb: Sandbox,
    session: requests.Session,
    secret: str = "sandbox-secret",
    clock: Clock | None = None,
) -> ClientCredentialsTokenProvider:
    return ClientCredentialsTokenProvider(
        sb.token_url,
        "sandbox-client",
        secret,
        session=session,
        timeout=5,
        clock=clock or Clock(),
    )


def test_given_good_client_when_token_asked_twice_then_fetched_once(
    sandbox: Sandbox, session: requests.Session
) -> None:
    tokens = provider(sandbox, session)
    first = tokens.token()
    assert first
    assert tokens.token() == first
    assert tokens.fetch_count == 1
    posts = [r for r in sandbox.requests if r.endpoint == "token"]
    assert len(posts) == 1


def test_given_string_expires_in_when_clock_passes_renew_margin_then_renewed(
    sandbox: Sandbox, session: requests.Session
) -> None:
    clock = Clock()
    tokens = provider(sandbox, session, clock=clock)
    first = tokens.token()
    clock.now = 1800 - 121  # LinkedIn sends expires_in "1800" (a string); renew 120 s early
    assert tokens.token() == first
    clock.now = 1800 - 119
    assert tokens.token() != first
    assert tokens.fetch_count == 2


def test_given_invalidated_token_when_asked_then_new_token(
    sandbox: Sandbox, session: requests.Session
) -> None:
    tokens = provider(sandbox, session)
    first = tokens.token()
    assert tokens.invalidate(first)
    current = tokens.token()
    assert current != first
    tokens.invalidate("some-older-token")  # an old token must not drop the current one
    assert tokens.token() == current
    assert tokens.fetch_count == 2


def test_given_bad_secret_when_token_asked_then_clear_error_without_secret(
    sandbox: Sandbox, session: requests.Session
) -> None:
    tokens = provider(sandbox, session, secret="wrong-secret-value")
    with pytest.raises(AuthenticationError) as info:
        tokens.token()
    message = str(info.value)
    assert "HTTP 401" in message
    assert "client_id and client_secret" in message
    assert "wrong-secret-value" not in message


def test_given_token_endpoint_down_when_token_asked_then_server_error(
    sandbox: Sandbox, session: requests.Session
) -> None:
    sandbox.add_fault(Fault(kind="error", endpoint="token", status=503))
    with pytest.raises(ServerError, match="HTTP 503"):
        provider(sandbox, session).token()


def test_given_unreachable_endpoint_when_token_asked_then_server_error(
    session: requests.Session,
) -> None:
    tokens = ClientCredentialsTokenProvider(
        "http://127.0.0.1:9/oauth/v2/accessToken", "id", "s3cret", session=session, timeout=2
    )
    with pytest.raises(ServerError, match="Could not reach") as info:
        tokens.token()
    assert "s3cret" not in str(info.value)


def test_given_static_token_when_invalidated_then_cannot_renew() -> None:
    tokens = StaticTokenProvider("abc")
    assert tokens.token() == "abc"
    assert not tokens.invalidate("abc")
