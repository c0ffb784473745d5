"""Settings: every bad configuration is refused before any HTTP call, naming what to fix."""

from __future__ import annotations

import typing as t

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_linkedin_crm.settings import load_settings, parse_crm_instance

DYNAMICS = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
SFDC = "urn:li:crmInstance:(SFDC,00D5g000004XyZaEAK)"


def config(**overrides: t.Any) -> dict[str, t.Any]:
    base: dict[str, t.Any] = {
        "crm_instance_ids": [DYNAMICS],
        "client_id": "id",
        "client_secret": "secret",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_given_good_config_when_loaded_then_defaults_apply() -> None:
    settings = load_settings(config(crm_instance_ids=[DYNAMICS, SFDC], poll_interval=0.05))
    assert [i.crm_key for i in settings.instances] == ["DYNAMICS", "SFDC"]
    assert settings.api_url == "https://api.linkedin.com/v2"
    assert settings.poll_interval == 0.05
    assert settings.job_max_attempts == 3
    assert settings.uses_client_credentials
    assert settings.column_types["flaggedAt"] == "timestamp"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"crm_instance_ids": []}, "crm_instance_ids is empty"),
        ({"crm_instance_ids": ["urn:li:crmInstance:DYNAMICS,1"]}, "Invalid CRM instance URN"),
        ({"crm_instance_ids": ["urn:li:crmInstance:(HUBSPOT,1)"]}, "Unknown CRM key 'HUBSPOT'"),
        ({"crm_instance_ids": [DYNAMICS, DYNAMICS]}, "listed twice"),
        ({"client_secret": None}, "Set both client_id and client_secret"),
        ({"client_id": None, "client_secret": None}, "No credentials"),
        ({"api_url": "http://api.example.com/v2"}, "plain http:// to api.example.com"),
        ({"token_url": "ftp://x/token"}, "must be an http(s) URL"),
        ({"poll_interval": 10, "poll_max_interval": 1}, "poll_max_interval (1) is smaller"),
        ({"column_types": {"x": "date"}}, "column_types['x'] is 'date'"),
        ({"column_types": {"jobId": "string"}}, "'jobId' is a field the tap sets itself"),
        ({"start_date": "last tuesday"}, "start_date 'last tuesday' is not an ISO 8601"),
    ],
)
def test_given_bad_config_when_loaded_then_error_names_the_problem(
    overrides: dict[str, t.Any], expected: str
) -> None:
    with pytest.raises(ConfigValidationError) as info:
        load_settings(config(**overrides))
    assert expected in str(info.value)
    assert "secret" not in str(info.value).replace("client_secret", "")


def test_given_access_token_only_when_loaded_then_accepted() -> None:
    settings = load_settings(config(client_id=None, client_secret=None, access_token="tok"))
    assert not settings.uses_client_credentials


def test_given_loopback_http_when_loaded_then_accepted() -> None:
    for host in ("127.0.0.1:8765", "localhost:1", "[::1]:80"):
        assert load_settings(config(api_url=f"http://{host}/v2")).api_url.startswith("http://")


def test_given_urn_with_spaces_when_parsed_then_stripped() -> None:
    assert parse_crm_instance(f"  {SFDC} ").urn == SFDC
