"""The sandbox's 3-legged OAuth (authorization page, code and refresh grants) and scope checks."""

from __future__ import annotations

import pytest
from sandbox_kit import DAY_MS, REDIRECT_URI, redirect_params

from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, Fault, Scenario

SIXTY_DAYS = 60 * 86_400
YEAR = 365 * 86_400


# -- the authorization page -------------------------------------------------------------------


def test_authorization_page_redirects_with_a_code_and_the_state(sandbox, make_member):
    member = make_member(sandbox)
    with member.authorize(redirect_uri=REDIRECT_URI + "?keep=1") as resp:
        assert resp.status_code == 302
        assert resp.headers["Location"].startswith(REDIRECT_URI + "?keep=1&code=")
        params = redirect_params(resp)
    assert params["state"] == "st4te"
    assert params["keep"] == "1"
    assert params["code"] in sandbox.issued_secrets()


def test_code_exchange_answers_member_tokens(sandbox, make_member):
    member = make_member(sandbox)
    with member.exchange(member.code()) as resp:
        assert resp.status_code == 200, resp.text
        body = resp.json()
    assert set(body) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "scope",
    }
    assert body["expires_in"] == SIXTY_DAYS
    assert body["refresh_token_expires_in"] == YEAR
    assert body["scope"] == "r_sales_nav_analytics"
    assert {body["access_token"], body["refresh_token"]} <= sandbox.issued_secrets()
    member.token = body["access_token"]
    with member.contracts() as resp:
        assert resp.status_code == 200


def test_codes_are_single_use_bound_to_redirect_and_client_and_expire(make_sandbox, make_member):
    sb = make_sandbox(clients={"sandbox-client": "sandbox-secret", "other": "other-secret"})
    member = make_member(sb)
    code = member.code()
    with member.exchange(code, redirect_uri="http://127.0.0.1:9/elsewhere") as resp:
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_request"
    with member.exchange(code, client_id="other", client_secret="other-secret") as resp:
        assert resp.status_code == 400
    with member.exchange(code) as resp:
        assert resp.status_code == 200
    with member.exchange(code) as resp:  # used
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_request"
    stale = member.code()
    sb.clock.advance(601)
    with member.exchange(stale) as resp:
        assert resp.status_code == 400
    with member.exchange("", redirect_uri=REDIRECT_URI) as resp:
        assert resp.status_code == 400
        assert "code" in resp.json()["error_description"]


@pytest.mark.parametrize(
    ("params", "title"),
    [
        ({"client_id": "nobody"}, "Invalid client"),
        ({"redirect_uri": "https://evil.example/callback"}, "Invalid redirect_uri"),
        ({"redirect_uri": "http://127.0.0.1:1/cb#frag"}, "Invalid redirect_uri"),
        ({"redirect_uri": "not a url"}, "Invalid redirect_uri"),
    ],
)
def test_bad_client_or_redirect_gets_a_400_page_and_no_redirect(
    sandbox, make_member, params, title
):
    member = make_member(sandbox)
    with member.authorize(**params) as resp:
        assert resp.status_code == 400
        assert "Location" not in resp.headers
        assert resp.headers["Content-Type"].startswith("text/html")
        assert title in resp.text


def test_registered_redirect_uris_match_exactly(make_sandbox, make_member):
    sb = make_sandbox(redirect_uris=["https://app.example/oauth/callback"])
    member = make_member(sb)
    with member.authorize(redirect_uri="https://app.example/oauth/callback") as resp:
        assert resp.status_code == 302
    with member.authorize() as resp:  # a loopback URL, not registered
        assert resp.status_code == 400


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"scope": "r_liteprofile"}, "invalid_scope"),
        ({"scope": ""}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_missing_scope_or_wrong_response_type_redirects_with_an_error(
    sandbox, make_member, params, error
):
    member = make_member(sandbox)
    with member.authorize(**params) as resp:
        assert resp.status_code == 302
        got = redirect_params(resp)
    assert got["error"] == error
    assert got["state"] == "st4te"
    assert "code" not in got


def test_scopes_may_be_space_or_comma_separated(sandbox, make_member):
    member = make_member(sandbox)
    code = member.code(scope="r_liteprofile,r_sales_nav_analytics")
    with member.exchange(code) as resp:
        assert resp.json()["scope"] == "r_liteprofile,r_sales_nav_analytics"


@pytest.mark.parametrize("variant", [None, "user_cancelled_login"])
def test_authorization_denied_fault(make_sandbox, make_member, variant):
    sb = make_sandbox(faults=[Fault(kind="authorization_denied", variant=variant)])
    member = make_member(sb)
    with member.authorize() as resp:
        got = redirect_params(resp)
    assert got["error"] == (variant or "user_cancelled_authorize")
    assert got["state"] == "st4te"
    member.code()  # times=1: the next attempt is approved


# -- refresh tokens ---------------------------------------------------------------------------


def test_refresh_gives_a_new_access_token_and_counts_the_refresh_lifetime_down(
    sandbox, make_member
):
    member = make_member(sandbox)
    _, refresh = sandbox.issue_member_tokens()
    sandbox.clock.advance(59 * 86_400)
    with member.refresh(refresh) as resp:
        assert resp.status_code == 200, resp.text
        body = resp.json()
    assert body["expires_in"] == SIXTY_DAYS
    assert body["refresh_token"] == refresh  # no rotation by default
    assert body["refresh_token_expires_in"] == pytest.approx(306 * 86_400, abs=2)
    member.token = body["access_token"]
    with member.contracts() as resp:
        assert resp.status_code == 200


def test_rotation_issues_a_new_refresh_token_and_revokes_the_old(make_sandbox, make_member):
    sb = make_sandbox(rotate_refresh_tokens=True)
    member = make_member(sb)
    _, first = sb.issue_member_tokens()
    sb.clock.advance(10 * 86_400)
    with member.refresh(first) as resp:
        body = resp.json()
    second = body["refresh_token"]
    assert second != first
    assert body["refresh_token_expires_in"] == pytest.approx(355 * 86_400, abs=2)
    with member.refresh(first) as resp:
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_grant"
    with member.refresh(second) as resp:
        assert resp.status_code == 200
    assert second in sb.issued_secrets()


def test_expired_unknown_or_foreign_refresh_tokens_are_invalid_grant(make_sandbox, make_member):
    sb = make_sandbox(clients={"sandbox-client": "sandbox-secret", "other": "other-secret"})
    member = make_member(sb)
    _, short = sb.issue_member_tokens(refresh_ttl_seconds=5 * 86_400)
    with member.refresh(short) as resp:  # a refresh token that expires soon says so
        assert resp.json()["refresh_token_expires_in"] < 30 * 86_400
    with member.refresh(short, client_id="other", client_secret="other-secret") as resp:
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_grant"
    sb.clock.advance(5 * 86_400)
    for token in (short, "AQXnever-issued"):
        with member.refresh(token) as resp:
            assert resp.status_code == 400
            assert resp.json()["error"] == "invalid_grant"
            assert "error_description" in resp.json()
    with member.refresh("") as resp:
        assert resp.json()["error"] == "invalid_request"
    with member.refresh(short, client_secret="wrong") as resp:
        assert resp.status_code == 401


def test_scenario_lifetimes_and_no_refresh_tokens(make_sandbox, make_member):
    sb = make_sandbox(member_token_ttl_seconds=3600, refresh_token_ttl_seconds=7200)
    member = make_member(sb)
    with member.exchange(member.code()) as resp:
        body = resp.json()
    assert (body["expires_in"], body["refresh_token_expires_in"]) == (3600, 7200)
    sb2 = make_sandbox(issue_refresh_tokens=False)
    member2 = make_member(sb2)
    with member2.exchange(member2.code()) as resp:
        assert set(resp.json()) == {"access_token", "expires_in", "scope"}


def test_member_tokens_expire_after_sixty_days(sandbox, member):
    sandbox.clock.advance(SIXTY_DAYS)
    with member.contracts() as resp:
        assert resp.status_code == 401
        assert resp.json()["code"] == "EXPIRED_ACCESS_TOKEN"


# -- scopes -----------------------------------------------------------------------------------


def test_member_tokens_cannot_call_the_crm_api(sandbox, member, make_client):
    crm = make_client(sandbox)
    crm.token = member.token
    with crm.create(DYNAMICS_INSTANCE) as resp:
        assert resp.status_code == 403
        body = resp.json()
    assert body["serviceErrorCode"] == 100
    assert body["message"].startswith(
        "Not enough permissions to access: POST /crmDataValidationExportJobs"
    )
    assert "r_sales_nav_validation" in body["message"]


def test_application_tokens_cannot_call_the_analytics_api(sandbox, member, client):
    app = {"Authorization": f"Bearer {client.token}", "X-Restli-Protocol-Version": "2.0.0"}
    calls = [
        (member.contracts, {}, "GET /salesContracts"),
        (member.create, {}, "POST /salesAnalyticsExportJobs"),
    ]
    for call, kwargs, path in calls:
        with call(headers=app, **kwargs) as resp:
            assert resp.status_code == 403
            assert resp.json()["message"].startswith(f"Not enough permissions to access: {path}")
            assert "r_sales_nav_analytics" in resp.json()["message"]
    with member.get(999, headers=app) as resp:
        assert resp.status_code == 403


def test_tap_config_with_analytics_carries_a_working_refresh_token(sandbox, make_member):
    plain = sandbox.tap_config()
    assert "refresh_token" not in plain
    config = sandbox.tap_config(analytics=True)
    member = make_member(sandbox)
    with member.refresh(config["refresh_token"]) as resp:
        assert resp.status_code == 200
    assert config["refresh_token"] in sandbox.issued_secrets()
    assert sandbox.authorization_url == sandbox.base_url + "/oauth/v2/authorization"


def test_client_credentials_still_work_with_basic_auth(sandbox, make_client):
    api = make_client(sandbox)
    with api.session.post(
        sandbox.token_url,
        data={"grant_type": "client_credentials"},
        auth=("sandbox-client", "sandbox-secret"),
        timeout=5,
    ) as resp:
        assert resp.status_code == 200
        assert resp.json()["expires_in"] == "1800"


def test_member_quota_is_per_member_and_resets_at_utc_midnight(make_sandbox, make_member):
    sb = make_sandbox(member_daily_quota={"contracts": 2})
    member = make_member(sb)
    for _ in range(2):
        with member.contracts() as resp:
            assert resp.status_code == 200
    with member.contracts() as resp:
        assert resp.status_code == 429
        assert resp.json() == {
            "message": (
                "Resource level throttle MEMBER DAY limit for calls to this resource is reached."
            ),
            "status": 429,
        }
        assert "Retry-After" not in resp.headers
    other = make_member(sb)
    other.token = sb.issue_member_tokens(member="urn:li:person:other")[0]
    with other.contracts() as resp:
        assert resp.status_code == 200
    with member.create() as resp:  # other endpoints have no quota here
        assert resp.status_code == 200
    now = sb.clock.now_ms()
    sb.clock.advance(((now // DAY_MS + 1) * DAY_MS - now) / 1000)
    with member.contracts() as resp:
        assert resp.status_code == 200
    assert [r.fault for r in sb.requests if r.status == 429] == ["member_daily_quota"]


def test_invalid_quota_endpoint_is_rejected():
    with pytest.raises(ValueError, match="member_daily_quota"):
        Scenario(member_daily_quota={"create": 1})
