"""`linkedin-crm-auth` end to end: the console script against the sandbox's OAuth, over loopback.

The script prints the authorization URL and waits on loopback; the test opens the URL as a browser
would (the sandbox approves at once and redirects to the script's `redirect_uri`), then checks what
the script printed, and that the refresh token it printed works for a tap run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from analytics_kit import ACTIVITIES, analytics_config, bookmark, midnight

from tap_linkedin_crm.sandbox import ACTIVITY, EMEA_CONTRACT, Fault, Sandbox, Scenario

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import TapRun

RunTap = t.Callable[..., "TapRun"]
AUTH_SCRIPT = Path(sys.executable).parent / "linkedin-crm-auth"
CLIENT_ID, CLIENT_SECRET = "auth-helper-app", "auth-helper-secret-do-not-print"
REFRESH_LINE = re.compile(r"^\s*refresh_token = (\S+)$", re.MULTILINE)
ACCESS_LINE = re.compile(r"^\s*analytics_access_token = (\S+)$", re.MULTILINE)


@dataclass
class Helper:
    """A running `linkedin-crm-auth` and the authorization URL it printed."""

    proc: subprocess.Popen[str]
    url: str
    printed: str

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def finish(self) -> tuple[int, str, str]:
        """Wait for the script to end: exit status, the rest of stdout, stderr."""
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, self.printed + out, err


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Scenario(clients={CLIENT_ID: CLIENT_SECRET})) as sb:
        yield sb


@pytest.fixture
def start_helper(sandbox: Sandbox) -> Iterator[t.Callable[..., Helper]]:
    started: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> Helper:
        env = {**os.environ, "LINKEDIN_CLIENT_SECRET": CLIENT_SECRET, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [
                str(AUTH_SCRIPT),
                "--client-id",
                CLIENT_ID,
                "--authorization-url",
                sandbox.authorization_url,
                "--token-url",
                sandbox.token_url,
                "--port",
                "0",
                "--timeout",
                "30",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(proc)
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Waiting for LinkedIn's redirect"):
                break
        printed = "".join(lines)
        urls = [ln.strip() for ln in lines if ln.strip().startswith(sandbox.authorization_url)]
        assert len(urls) == 1, printed + (proc.stderr.read() if proc.stderr else "")
        return Helper(proc, urls[0], printed)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_the_helper_prints_a_refresh_token_that_works_for_a_tap_run(
    sandbox: Sandbox, start_helper: t.Callable[..., Helper], run_tap: RunTap
) -> None:
    helper = start_helper()
    query = helper.query
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["scope"] == "r_sales_nav_analytics"
    assert len(query["state"]) >= 16
    redirect = urlsplit(query["redirect_uri"])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port
    assert query["redirect_uri"] in helper.printed  # the user is told what to register

    # A browser: the sandbox approves and redirects to the helper's loopback redirect_uri.
    page = requests.get(helper.url, timeout=30)
    assert page.status_code == 200
    assert "Authorized" in page.text
    assert page.history  # redirected
    assert page.url.startswith(query["redirect_uri"])

    status, out, err = helper.finish()
    assert status == 0, err
    [refresh_token] = REFRESH_LINE.findall(out)
    assert "(in 364 days)" in out or "(in 365 days)" in out
    assert "meltano config set tap-linkedin-crm refresh_token" in out
    assert CLIENT_SECRET not in out + err
    # The code was exchanged once, with the client's secret.
    tokens = [r for r in sandbox.requests if r.endpoint == "token"]
    assert [(r.status, r.client_secret_sent) for r in tokens] == [(200, True)]

    config = analytics_config(
        sandbox, start_days=1, window_days=1, contract_ids=[EMEA_CONTRACT]
    ) | {"refresh_token": refresh_token}
    result = run_tap(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert bookmark(result.final_state, EMEA_CONTRACT, ACTIVITY) == midnight(0)
    assert result.records(ACTIVITIES)
    assert refresh_token not in result.stderr


def test_a_redirect_with_another_state_is_ignored_and_the_real_one_still_counts(
    sandbox: Sandbox, start_helper: t.Callable[..., Helper]
) -> None:
    helper = start_helper()
    redirect_uri = helper.query["redirect_uri"]
    # A forged (or stale) redirect: refused, its code never exchanged, the helper keeps waiting.
    forged = requests.get(redirect_uri, params={"code": "forged", "state": "not-ours"}, timeout=10)
    assert forged.status_code == 400
    assert "does not belong to this sign-in" in forged.text
    missing = requests.get(redirect_uri, params={"code": "forged"}, timeout=10)
    assert missing.status_code == 400
    assert helper.proc.poll() is None
    assert not [r for r in sandbox.requests if r.endpoint == "token"]

    page = requests.get(helper.url, timeout=30)
    assert page.status_code == 200
    status, out, err = helper.finish()
    assert status == 0, err
    assert REFRESH_LINE.findall(out)
    assert len([r for r in sandbox.requests if r.endpoint == "token"]) == 1


def test_an_error_redirect_ends_the_helper_with_the_reason_and_no_token_request(
    sandbox: Sandbox, start_helper: t.Callable[..., Helper]
) -> None:
    sandbox.add_fault(Fault(kind="authorization_denied", message="The member said no"))
    helper = start_helper()
    page = requests.get(helper.url, timeout=30)
    assert page.status_code == 400
    assert "The member said no" in page.text
    status, out, err = helper.finish()
    assert status == 1
    assert "LinkedIn refused the authorization: The member said no" in err
    assert not REFRESH_LINE.findall(out)
    assert not [r for r in sandbox.requests if r.endpoint == "token"]


def test_without_refresh_tokens_the_helper_prints_the_access_token_to_use(
    start_helper: t.Callable[..., Helper], sandbox: Sandbox
) -> None:
    sandbox.scenario.issue_refresh_tokens = False
    helper = start_helper()
    assert requests.get(helper.url, timeout=30).status_code == 200
    status, out, err = helper.finish()
    assert status == 0, err
    assert not REFRESH_LINE.findall(out)
    [access_token] = ACCESS_LINE.findall(out)
    assert access_token in sandbox.issued_secrets()
    assert "meltano config set tap-linkedin-crm analytics_access_token" in out


def test_a_refused_code_exchange_exits_1_without_printing_secrets(
    sandbox: Sandbox, start_helper: t.Callable[..., Helper]
) -> None:
    sandbox.add_fault(Fault(kind="error", endpoint="token", status=400, message="bad"))
    helper = start_helper()
    assert requests.get(helper.url, timeout=30).status_code == 200
    status, out, err = helper.finish()
    assert status == 1
    assert "error:" in err
    assert not REFRESH_LINE.findall(out)
    leaked = [s for s in sandbox.issued_secrets() if s in out + err]
    assert not leaked


def test_an_idle_connection_to_the_redirect_port_does_not_hold_up_the_redirect(
    sandbox: Sandbox, start_helper: t.Callable[..., Helper]
) -> None:
    """Browsers open spare connections ahead of need (preconnect) and may never use them; the
    redirect arriving on another connection must still be answered at once."""
    helper = start_helper()
    redirect = urlsplit(helper.query["redirect_uri"])
    with socket.create_connection((redirect.hostname, redirect.port), timeout=10):
        page = requests.get(helper.url, timeout=10)
        assert page.status_code == 200
        assert "Authorized" in page.text
        status, out, err = helper.finish()
    assert status == 0, err
    assert REFRESH_LINE.findall(out)


def test_a_port_already_in_use_is_one_clear_error_without_traceback(sandbox: Sandbox) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                str(AUTH_SCRIPT),
                "--client-id",
                CLIENT_ID,
                "--authorization-url",
                sandbox.authorization_url,
                "--token-url",
                sandbox.token_url,
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "LINKEDIN_CLIENT_SECRET": CLIENT_SECRET},
            timeout=30,
            check=False,
        )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "--port" in proc.stderr
