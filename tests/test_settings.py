"""Settings: every bad configuration is refused before any HTTP call, naming what to fix."""

from __future__ import annotations

import copy
import datetime as dt
import typing as t

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_linkedin_crm.settings import (
    configured_families,
    environment_config,
    load_settings,
    parse_crm_instance,
)
from tap_linkedin_crm.tap import CONFIG_SCHEMA, TapLinkedInCRM

DYNAMICS = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
SFDC = "urn:li:crmInstance:(SFDC,00D5g000004XyZaEAK)"
NOW = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
PREFIX = "TAP_LINKEDIN_CRM_"


def full_schema() -> dict[str, t.Any]:
    """The tap's settings with the SDK's built-in ones (stream_maps, flattening, batch_config)."""
    schema = copy.deepcopy(TapLinkedInCRM.config_jsonschema)
    TapLinkedInCRM.append_builtin_config(schema)
    return schema


def config(**overrides: t.Any) -> dict[str, t.Any]:
    base: dict[str, t.Any] = {
        "crm_instance_ids": [DYNAMICS],
        "client_id": "id",
        "client_secret": "secret",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def load(**overrides: t.Any) -> t.Any:
    return load_settings(config(**overrides), CONFIG_SCHEMA, now=NOW)


def test_given_good_config_when_loaded_then_schema_defaults_apply() -> None:
    settings = load(crm_instance_ids=[DYNAMICS, SFDC], poll_interval=0.05)
    assert settings.crm is not None
    assert [i.crm_key for i in settings.crm.instances] == ["DYNAMICS", "SFDC"]
    assert settings.engine.api_url == "https://api.linkedin.com/v2"
    assert settings.engine.poll_interval == 0.05
    # The defaults come from the schema (the single source of truth), not from settings.py.
    props = CONFIG_SCHEMA["properties"]
    assert settings.engine.job_max_attempts == props["job_max_attempts"]["default"]
    assert settings.engine.max_jobs_in_flight == props["max_jobs_in_flight"]["default"]
    assert settings.engine.request_timeout == props["request_timeout"]["default"]
    assert settings.crm.uses_client_credentials
    assert settings.column_types["crm_data_validation_records"]["flaggedAt"] == "timestamp"
    assert settings.analytics is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"crm_instance_ids": []}, "crm_instance_ids is empty"),
        ({"crm_instance_ids": ["urn:li:crmInstance:DYNAMICS,1"]}, "Invalid CRM instance URN"),
        ({"crm_instance_ids": [f"{DYNAMICS},{SFDC}"]}, "JSON array, or separated by spaces"),
        ({"crm_instance_ids": ["urn:li:crmInstance:(HUBSPOT,1)"]}, "Unknown CRM key 'HUBSPOT'"),
        ({"crm_instance_ids": [DYNAMICS, f" {DYNAMICS} "]}, "listed twice"),
        ({"client_secret": None}, "Set both client_id and client_secret"),
        ({"client_id": None, "client_secret": None}, "No credentials"),
        ({"api_url": "http://api.example.com/v2"}, "plain http:// to api.example.com"),
        ({"token_url": "ftp://x/token"}, "must be an http(s) URL"),
        ({"poll_interval": 10, "poll_max_interval": 1}, "poll_max_interval (1) is smaller"),
        ({"column_types": {"x": "date"}}, "column_types['x'] is 'date'"),
        ({"column_types": {"jobId": "string"}}, "'jobId' is a field the tap sets itself"),
        ({"column_types": {"nope.col": "string"}}, "'nope' is not a rows stream"),
        ({"column_types": {"sales_seats.endAt": "string"}}, "'endAt' is a field the tap sets"),
        ({"start_date": "last tuesday"}, "start_date 'last tuesday' is not an ISO 8601"),
        ({"start_date": "2027-01-01T00:00:00Z"}, "start_date '2027-01-01T00:00:00Z' is in the"),
        ({"refresh_token": "r", "client_id": None, "client_secret": None}, "needs client_id"),
        ({"analytics_access_token": "m", "contract_ids": ["42"]}, "Invalid contract URN '42'"),
        ({"analytics_access_token": "m", "contract_ids": []}, "contract_ids is empty"),
        ({"contract_ids": ["urn:li:contract:1"]}, "no member credential"),
        ({"analytics_access_token": "m", "analytics_start_date": "2030-01-01"}, "is in the future"),
        ({"analytics_access_token": "m", "analytics_start_date": "1024-05-01"}, "a typo?"),
    ],
)
def test_given_bad_config_when_loaded_then_error_names_the_problem(
    overrides: dict[str, t.Any], expected: str
) -> None:
    with pytest.raises(ConfigValidationError) as info:
        load(**overrides)
    assert expected in str(info.value)
    assert "secret" not in str(info.value).replace("client_secret", "")


def test_given_old_start_date_when_loaded_then_warned_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load(start_date="2026-09-01")
    assert settings.crm.start_date == dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    assert "more than 30 days back" in caplog.text


def test_given_analytics_start_date_of_2000_when_loaded_then_kept() -> None:
    """The typo guard stops at 2000-01-01: a deliberate long history is allowed."""
    settings = load(analytics_access_token="m", analytics_start_date="2000-01-01")
    assert settings.analytics is not None
    assert settings.analytics.start_date == dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def test_given_access_token_only_when_loaded_then_accepted() -> None:
    settings = load(client_id=None, client_secret=None, access_token="tok")
    assert not settings.crm.uses_client_credentials


def test_given_loopback_http_when_loaded_then_accepted() -> None:
    for host in ("127.0.0.1:8765", "localhost:1", "[::1]:80"):
        assert load(api_url=f"http://{host}/v2").engine.api_url.startswith("http://")


def test_given_urn_with_spaces_when_parsed_then_stripped() -> None:
    assert parse_crm_instance(f"  {SFDC} ").urn == SFDC
    assert [i.urn for i in load(crm_instance_ids=[f" {SFDC}\n"]).crm.instances] == [SFDC]


def test_given_member_token_when_loaded_then_analytics_defaults_apply() -> None:
    settings = load(crm_instance_ids=None, client_id=None, client_secret=None,
                    analytics_access_token="member")  # fmt: skip
    assert settings.crm is None
    analytics = settings.analytics
    assert analytics is not None
    assert analytics.contract_ids is None  # every contract with reporting access
    assert analytics.start_date == NOW - dt.timedelta(days=90)
    assert analytics.window_days == CONFIG_SCHEMA["properties"]["analytics_window_days"]["default"]
    assert analytics.lag_hours == CONFIG_SCHEMA["properties"]["analytics_lag_hours"]["default"]
    assert configured_families({"analytics_access_token": "m"}) == {"sales_analytics"}
    assert configured_families(config()) == {"crm_data_validation"}


def test_given_seat_column_types_when_loaded_then_only_that_stream_gets_them() -> None:
    settings = load(column_types={"sales_seats.socialSellingIndex": "number", "x": "integer"})
    assert settings.column_types["sales_seats"] == {"socialSellingIndex": "number"}
    assert settings.column_types["crm_data_validation_records"]["x"] == "integer"
    assert "x" not in settings.column_types["sales_activities"]


def test_given_environment_when_tap_built_then_builtin_settings_are_read_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{PREFIX}CRM_INSTANCE_IDS", SFDC)
    monkeypatch.setenv(f"{PREFIX}ACCESS_TOKEN", "tok")
    monkeypatch.setenv(f"{PREFIX}FLATTENING_ENABLED", "true")
    monkeypatch.setenv(f"{PREFIX}FLATTENING_MAX_DEPTH", "1")
    monkeypatch.setenv(f"{PREFIX}POLL_INTERVAL", "0.5")
    tap = TapLinkedInCRM(parse_env_config=True)
    assert tap.config["crm_instance_ids"] == [SFDC]
    assert tap.config["flattening_enabled"] is True
    assert tap.config["flattening_max_depth"] == 1
    assert tap.config["poll_interval"] == 0.5


def test_given_environment_when_read_then_every_setting_type_is_typed() -> None:
    environ = {
        f"{PREFIX}POLL_INTERVAL": "0.05",
        f"{PREFIX}JOB_MAX_ATTEMPTS": "4",
        f"{PREFIX}COLUMN_TYPES": '{"title": "integer"}',
        f"{PREFIX}CRM_INSTANCE_IDS": DYNAMICS,
        f"{PREFIX}CONTRACT_IDS": "urn:li:contract:1; urn:li:contract:2",
        f"{PREFIX}CLIENT_SECRET": "s3cr3t",
        f"{PREFIX}FLATTENING_ENABLED": "true",
    }
    schema = full_schema()
    found, problems = environment_config(schema, PREFIX, environ)
    assert problems == []
    assert found["poll_interval"] == 0.05
    assert found["job_max_attempts"] == 4
    assert found["column_types"] == {"title": "integer"}
    assert found["crm_instance_ids"] == [DYNAMICS]  # not cut at the URN's own comma
    assert found["contract_ids"] == ["urn:li:contract:1", "urn:li:contract:2"]
    assert found["flattening_enabled"] is True
    json_list = {f"{PREFIX}CRM_INSTANCE_IDS": f'["{DYNAMICS}", "{SFDC}"]'}
    assert environment_config(schema, PREFIX, json_list)[0]["crm_instance_ids"] == [DYNAMICS, SFDC]
    spaced = {f"{PREFIX}CRM_INSTANCE_IDS": f"{DYNAMICS}\n{SFDC}"}
    assert environment_config(schema, PREFIX, spaced)[0]["crm_instance_ids"] == [DYNAMICS, SFDC]


def test_given_bad_environment_values_then_problems_name_them_without_secret_values() -> None:
    environ = {
        f"{PREFIX}POLL_INTERVAL": "fast",
        f"{PREFIX}JOB_MAX_ATTEMPTS": "3.5",
        f"{PREFIX}COLUMN_TYPES": "{not json",
        f"{PREFIX}CLIENT_SECRET": "irrelevant",
        f"{PREFIX}FLATTENING_ENABLED": "maybe",
    }
    _, problems = environment_config(full_schema(), PREFIX, environ)
    text = " ".join(problems)
    assert f"{PREFIX}POLL_INTERVAL='fast': expected a number" in text
    assert f"{PREFIX}JOB_MAX_ATTEMPTS='3.5': expected a whole number" in text
    assert "not valid JSON" in text
    assert "expected true or false" in text
    assert "irrelevant" not in text  # a string secret is read as is (no problem to report)


@pytest.mark.parametrize("value", [98765432123456789, ["a", "list"], {"an": "object"}])
@pytest.mark.parametrize("name", ["client_secret", "access_token", "refresh_token"])
def test_given_secret_of_wrong_type_when_tap_built_then_value_never_shown(
    name: str, value: object
) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TapLinkedInCRM(config=config(**{name: value}))
    text = " ".join([str(info.value), *info.value.errors])
    assert name in text
    assert "value of this secret setting is not shown" in text
    for shown in ("98765432123456789", "list", "object"):
        assert shown not in text


def test_given_meltano_nested_column_types_when_loaded_then_they_apply_to_that_stream() -> None:
    """Meltano turns `sales_seats.seatId` into `{"sales_seats": {"seatId": ...}}`."""
    settings = load(column_types={"sales_seats": {"seatId": "integer"}, "title": "string"})
    assert settings.column_types["sales_seats"] == {"seatId": "integer"}
    tap = TapLinkedInCRM(config=config(column_types={"sales_seats": {"ssi": "number"}}))
    assert tap.streams["sales_seats"].schema["properties"]["ssi"] == {"type": ["number", "null"]}
    with pytest.raises(ConfigValidationError):
        TapLinkedInCRM(config=config(column_types={"sales_seats": {"ssi": "float"}}))
