"""The sandbox's command line, bundled scenarios and deterministic data."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from importlib import resources

import pytest
import requests

from tap_linkedin_crm.sandbox import DEFAULT_COLUMNS, Scenario
from tap_linkedin_crm.sandbox.cli import load_scenario
from tap_linkedin_crm.sandbox.data import ExportData, ExportPlan, plan_files


@pytest.mark.parametrize("name", ["demo", "faults"])
def test_bundled_scenarios_load(name):
    scenario = load_scenario(name)
    assert scenario.instances
    path = resources.files("tap_linkedin_crm.sandbox").joinpath("scenarios", f"{name}.json")
    assert Scenario.from_dict(json.loads(path.read_text(encoding="utf-8"))) == scenario


def test_scenario_round_trips_through_json(tmp_path):
    scenario = load_scenario("faults")
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario.to_dict()), encoding="utf-8")
    assert Scenario.from_file(path) == scenario


def test_unknown_scenario_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown scenario keys"):
        Scenario.from_dict({"rowz": 5})
    with pytest.raises(ValueError, match="unknown instance keys"):
        Scenario.from_dict({"instances": {"urn:li:crmInstance:(SFDC,1)": {"rowz": 5}}})


def test_rows_are_deterministic_and_spread_over_files():
    def render(job_id: int) -> list[bytes]:
        plan = ExportPlan(
            seed=3,
            instance="urn:li:crmInstance:(SFDC,00D1)",
            job_id=job_id,
            export_start_at=1_700_000_000_000,
            export_end_at=1_702_592_000_000,
            files=plan_files(10, 4, DEFAULT_COLUMNS),
        )
        data = ExportData(plan)
        return [b"".join(data.iter_chunks(f.index)) for f in plan.files]

    first, again, other = render(1), render(1), render(2)
    assert first == again
    assert first != other
    assert [f.count(b"\r\n") for f in first] == [4, 4, 3, 3]  # header + rows, no quoted CRLF


def test_cli_prints_url_and_config_and_stops_on_ctrl_c(tmp_path):
    config_path = tmp_path / "config.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tap_linkedin_crm.sandbox.cli",
            "--port",
            "0",
            "--rows",
            "5",
            "--config-out",
            str(config_path),
            "--analytics",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("LinkedIn CRM sandbox listening on http://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[1].strip()
        assert proc.stdout.readline().strip() == "Tap config:"
        lines = []
        while not lines or lines[-1] != "}":
            lines.append(proc.stdout.readline().rstrip("\n"))
        config = json.loads("\n".join(lines))
        assert config["token_url"] == f"{base_url}/oauth/v2/accessToken"
        analytics = [proc.stdout.readline().rstrip("\n") for _ in range(7)]
        assert analytics[0] == "Sales Navigator Analytics (3-legged OAuth):"
        assert f"authorization URL: {base_url}/oauth/v2/authorization" in analytics[1]
        command = next(line for line in analytics if "linkedin-crm-auth" in line)
        assert f"--authorization-url {base_url}/oauth/v2/authorization" in command
        assert f"--token-url {base_url}/oauth/v2/accessToken" in command
        with requests.post(
            config["token_url"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": config["refresh_token"],
                "client_id": config["client_id"],
                "client_secret": config["client_secret"],
            },
            timeout=5,
        ) as resp:
            assert resp.status_code == 200
        with requests.post(
            config["token_url"],
            data={
                "grant_type": "client_credentials",
                "client_id": config["client_id"],
                "client_secret": config["client_secret"],
            },
            timeout=5,
        ) as resp:
            assert resp.status_code == 200
        assert json.loads(config_path.read_text(encoding="utf-8")) == config
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "POST /oauth/v2/accessToken 200 auth=no" in stderr
        assert "access_token" not in stderr
        assert config["refresh_token"] not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
