"""The member's tokens in a real sync: renewal by the refresh grant, rotation, expiry warnings."""

from __future__ import annotations

import re
import typing as t

import pytest
from analytics_kit import ACTIVITIES, analytics_config, bookmark, midnight
from faultkit import assert_no_secrets

from tap_linkedin_crm.engine.scheduler import DEFAULT_WORKERS
from tap_linkedin_crm.sandbox import ACTIVITY, EMEA_CONTRACT, Fault, Sandbox, Scenario

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import TapRun

RunTap = t.Callable[..., "TapRun"]
ROTATION_WARNING = "LinkedIn issued a new refresh token and may revoke the configured one"
EXPIRY_WARNING = re.compile(r"The LinkedIn refresh token expires in (\d+\.\d) days")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Scenario()) as sb:
        yield sb


def token_requests(sb: Sandbox) -> list[int]:
    """Statuses of the token endpoint's answers, in order."""
    return [r.status for r in sb.requests if r.endpoint == "token"]


def config(sb: Sandbox, **overrides: t.Any) -> dict[str, t.Any]:
    return analytics_config(
        sb, start_days=2, window_days=1, contract_ids=[EMEA_CONTRACT], **overrides
    )


def assert_synced(sb: Sandbox, result: TapRun) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert bookmark(result.final_state, EMEA_CONTRACT, ACTIVITY) == midnight(0)
    ids = [r["activityId"] for r in result.records(ACTIVITIES)]
    expected = [
        raw["activityId"]
        for raw in sb.analytics_rows(EMEA_CONTRACT, ACTIVITY, midnight(2), midnight(0))
    ]
    assert sorted(ids) == sorted(expected)
    assert_no_secrets(sb, result.stdout, result.stderr)


def test_an_expired_access_token_is_renewed_with_the_refresh_grant(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    # LinkedIn says the token expired (401 EXPIRED_ACCESS_TOKEN) in the middle of the polls.
    sandbox.add_fault(Fault(kind="token_expired", endpoint="analytics_get", after=2))
    result = run_tap(config(sandbox))
    assert_synced(sandbox, result)
    assert [f.kind for f in sandbox.fired_faults] == ["token_expired"]
    assert token_requests(sandbox) == [200, 200]  # renewed once
    # Polls run on a few worker threads: each one in flight with the old token may get a 401
    # before the renewal (then retries with the new token); never more than the workers.
    refused = [r.status for r in sandbox.requests if r.status == 401]
    assert 1 <= len(refused) <= DEFAULT_WORKERS


def test_an_access_token_near_its_expiry_is_renewed_before_it_is_refused(
    run_tap: RunTap,
) -> None:
    # Member access tokens live 4 s here, and each job takes 3 s: the run outlives its first token.
    scenario = Scenario(member_token_ttl_seconds=4, analytics_processing_seconds=3)
    with Sandbox(scenario) as sb:
        result = run_tap(config(sb, poll_interval=0.5, poll_max_interval=0.5))
        assert_synced(sb, result)
        statuses = token_requests(sb)
        assert len(statuses) >= 2
        assert set(statuses) == {200}
        assert not [r for r in sb.requests if r.status == 401]


def test_a_rotated_refresh_token_is_used_and_the_tap_says_to_store_a_new_one(
    run_tap: RunTap,
) -> None:
    with Sandbox(Scenario(rotate_refresh_tokens=True)) as sb:
        # A second refresh in the run must present the rotated token: the first one is revoked.
        sb.add_fault(Fault(kind="token_expired", endpoint="analytics_get", after=2))
        cfg = config(sb)
        result = run_tap(cfg)
        assert_synced(sb, result)
        assert token_requests(sb) == [200, 200]
        assert ROTATION_WARNING in result.stderr
        assert "linkedin-crm-auth" in result.stderr
        # As the warning says: the configured token was revoked, so the next run is refused
        # until a new one is stored.
        again = run_tap(cfg, result.final_state)
        assert again.returncode != 0
        assert "refused the refresh token" in again.stderr
        assert "linkedin-crm-auth" in again.stderr
        assert_no_secrets(sb, again.stdout, again.stderr)


@pytest.mark.parametrize(("days", "warned"), [(10, True), (29, True), (31, False), (365, False)])
def test_a_refresh_token_expiring_within_30_days_is_warned_about(
    sandbox: Sandbox, run_tap: RunTap, days: int, warned: bool
) -> None:
    _, refresh_token = sandbox.issue_member_tokens(refresh_ttl_seconds=days * 86_400)
    result = run_tap(config(sandbox, refresh_token=refresh_token))
    assert_synced(sandbox, result)
    found = EXPIRY_WARNING.findall(result.stderr)
    if warned:
        assert len(found) == 1
        assert days - 1 <= float(found[0]) <= days
        assert "linkedin-crm-auth" in result.stderr
    else:
        assert not found


def test_an_analytics_access_token_is_used_as_given(sandbox: Sandbox, run_tap: RunTap) -> None:
    access_token, _ = sandbox.issue_member_tokens()
    cfg = config(sandbox, analytics_access_token=access_token)
    del cfg["refresh_token"]
    result = run_tap(cfg)
    assert_synced(sandbox, result)
    assert not token_requests(sandbox)


def test_a_refresh_token_of_another_app_is_refused_clearly(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    sandbox.scenario.clients["other-app"] = "other-secret"
    _, foreign = sandbox.issue_member_tokens(client_id="other-app")
    result = run_tap(config(sandbox, refresh_token=foreign))
    assert result.returncode != 0
    assert "refused the refresh token" in result.stderr
    assert not [r for r in sandbox.requests if r.endpoint == "analytics_create"]
    assert_no_secrets(sandbox, result.stdout, result.stderr)
