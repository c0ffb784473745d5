"""The singer-sdk built-in tap tests, run against the sandbox over loopback (both families)."""

from __future__ import annotations

import datetime as dt
import socket
import typing as t

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Sandbox,
    Scenario,
)
from tap_linkedin_crm.tap import TapLinkedInCRM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT = _free_port()
BASE = f"http://127.0.0.1:{PORT}"
CONFIG: dict[str, t.Any] = {
    "crm_instance_ids": [DYNAMICS_INSTANCE, SFDC_INSTANCE],
    "client_id": "sandbox-client",
    "client_secret": "sandbox-secret",
    "api_url": f"{BASE}/v2",
    "token_url": f"{BASE}/oauth/v2/accessToken",
    "poll_interval": 0.05,
    "poll_max_interval": 0.2,
    "request_timeout": 10,
    "job_timeout": 60,
    # Exercise every kind of field: a declared column that never converts fills invalidValues.
    "column_types": {"title": "integer"},
    # Analytics: two one-day windows per contract and export type (the member's refresh token is
    # issued by the sandbox once it runs, see the fixture).
    "analytics_start_date": (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat(),
    "analytics_window_days": 1,
}

BaseSuite = get_tap_test_class(
    TapLinkedInCRM,
    config=CONFIG,
    suite_config=SuiteConfig(max_records_limit=None),
)


class TestTapLinkedInCRM(BaseSuite):  # type: ignore[misc,valid-type]
    """Built-in suite; the sandbox runs for the whole class."""

    @pytest.fixture(scope="class", autouse=True)
    def sandbox(self) -> t.Iterator[Sandbox]:
        scenario = Scenario(
            instances={
                # Header drift puts an undeclared column (`territory`) into extraColumns.
                DYNAMICS_INSTANCE: InstanceSpec(rows=120, files=4, header_drift=True),
                SFDC_INSTANCE: InstanceSpec(rows=60, files=2, gzip=True),
            }
        )
        with Sandbox(scenario, port=PORT) as sb:
            # The suite keeps this very dict: the token exists only once the sandbox runs.
            CONFIG["refresh_token"] = sb.issue_member_tokens(client_id="sandbox-client")[1]
            yield sb
