"""meltano.yml, the README, catalog.json and .env.example say what the tap says.

`scripts/sync_docs.py` writes them; these tests check the result independently of that script, so
a bug in the generator fails here too. Fix drift with `python scripts/sync_docs.py`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
import yaml

from tap_linkedin_crm.tap import TapLinkedInCRM

ROOT = Path(__file__).resolve().parent.parent
TAP = [sys.executable, "-m", "tap_linkedin_crm"]
FIX = "run `python scripts/sync_docs.py` (or `make docs`)"


def tap_output(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_LINKEDIN_CRM_")}
    proc = subprocess.run(
        [*TAP, *args], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    return proc.stdout


@pytest.fixture(scope="module")
def config_schema() -> dict[str, t.Any]:
    """CONFIG_SCHEMA as declared, read in a fresh interpreter.

    In this process the SDK may already have added its built-in settings (stream_maps, ...) to
    the dict shared with `TapLinkedInCRM.config_jsonschema` when some test created a tap.
    """
    code = "import json; from tap_linkedin_crm.tap import CONFIG_SCHEMA; "
    code += "print(json.dumps(CONFIG_SCHEMA))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return t.cast("dict[str, t.Any]", json.loads(proc.stdout))


@pytest.fixture(scope="module")
def about() -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", json.loads(tap_output("--about", "--format=json")))


@pytest.fixture(scope="module")
def extractor() -> dict[str, t.Any]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (plugin,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-linkedin-crm"]
    return t.cast("dict[str, t.Any]", plugin)


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def expected_kind(schema: dict[str, t.Any]) -> str:
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    types.discard("null")
    if types == {"string"} and schema.get("format") == "date-time":
        return "date_iso8601"
    kinds = {"array": "array", "object": "object", "integer": "integer", "boolean": "boolean"}
    kinds |= {"number": "decimal", "string": "string"}
    (only,) = types
    return kinds[only]


def section(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->(.*?)<!-- {name}:end -->", text, re.DOTALL)
    assert match is not None, f"README.md lacks the {name} markers"
    return match.group(1)


def table_names(markdown: str) -> list[str]:
    """First cell of every body row of the first markdown table in `markdown`."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [row.split("|")[1].strip() for row in rows[2:]]


def test_given_the_tap_when_sync_docs_checks_then_nothing_drifted() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{FIX}"


def test_meltano_settings_have_the_tap_names_kinds_labels_and_secrets(
    extractor: dict[str, t.Any], config_schema: dict[str, t.Any]
) -> None:
    settings = {s["name"]: s for s in extractor["settings"]}
    for name, schema in config_schema["properties"].items():
        assert name in settings, f"{name} missing from meltano.yml; {FIX}"
        setting = settings[name]
        assert setting["kind"] == expected_kind(schema), name
        assert setting["label"] == schema["title"], name
        assert setting["description"] == schema["description"], name
        assert setting.get("sensitive", False) == bool(schema.get("secret")), name
    assert {n for n, s in settings.items() if s.get("sensitive")} == {
        "client_secret",
        "access_token",
        "refresh_token",
        "analytics_access_token",
    }
    # Meltano shows the tap's defaults (`meltano config list`), exactly the schema's.
    for name, schema in config_schema["properties"].items():
        assert settings[name].get("value") == schema.get("default"), name


def test_meltano_lists_every_setting_of_about_and_nothing_else(
    extractor: dict[str, t.Any], about: dict[str, t.Any]
) -> None:
    names = [s["name"] for s in extractor["settings"]]
    assert len(names) == len(set(names))
    top_level = {n.split(".", 1)[0] for n in names}
    assert top_level == set(about["settings"]["properties"]), FIX


def test_meltano_capabilities_and_auth_groups_match_the_tap(extractor: dict[str, t.Any]) -> None:
    assert extractor["capabilities"] == [str(c) for c in TapLinkedInCRM.capabilities]
    assert extractor["namespace"] == "tap_linkedin_crm"
    assert extractor["executable"] == "tap-linkedin-crm"
    assert extractor["pip_url"] == "-e ."
    names = {s["name"] for s in extractor["settings"]}
    groups = extractor["settings_group_validation"]
    assert sorted(map(sorted, groups)) == [
        ["access_token", "crm_instance_ids"],
        ["analytics_access_token"],
        ["client_id", "client_secret", "crm_instance_ids"],
        ["client_id", "client_secret", "refresh_token"],
    ]
    assert set().union(*groups) <= names


def test_readme_settings_table_is_the_about_markdown_table(readme: str) -> None:
    markdown = tap_output("--about", "--format=markdown")
    about_table = markdown.split("## Settings", 1)[1]
    readme_table = section(readme, "settings")
    assert table_names(readme_table) == table_names(about_table), FIX
    # Cells split on bare pipes only: every row has the header's 4 cells when rendered.
    for row in (r for r in readme_table.splitlines() if r.startswith("|")):
        assert len(re.split(r"(?<!\\)\|", row)) == 6, row


def test_readme_capabilities_are_the_tap_capabilities(readme: str) -> None:
    listed = re.findall(r"^- `([^`]+)`$", section(readme, "capabilities"), re.MULTILINE)
    assert listed == [str(c) for c in TapLinkedInCRM.capabilities], FIX


def test_catalog_json_is_the_discovered_catalog() -> None:
    text = (ROOT / "catalog.json").read_text(encoding="utf-8")
    committed = json.loads(text)
    assert committed == json.loads(tap_output("--discover")), FIX
    assert text == json.dumps(committed, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def test_user_set_values_in_meltano_yml_are_not_drift(tmp_path: Path) -> None:
    """`meltano config set` rewrites meltano.yml (reflowing it, adding `config:`): not drift."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_docs  # noqa: PLC0415 - the script under test
    finally:
        sys.path.pop(0)
    current = (ROOT / "meltano.yml").read_text(encoding="utf-8")
    project = yaml.safe_load(current)
    (plugin,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-linkedin-crm"]
    plugin["config"] = {"poll_interval": 0.5}
    rewritten = yaml.safe_dump(project, sort_keys=False, width=60)
    path = tmp_path / "meltano.yml"
    assert sync_docs.same_meaning(path, rewritten, current)
    plugin["settings"][0]["label"] = "Changed by hand"
    assert not sync_docs.same_meaning(path, yaml.safe_dump(project), current)


def test_env_example_names_every_tap_setting(config_schema: dict[str, t.Any]) -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = re.findall(r"^# (TAP_LINKEDIN_CRM_[A-Z_]+)=$", text, re.MULTILINE)
    assert listed == [f"TAP_LINKEDIN_CRM_{n.upper()}" for n in config_schema["properties"]]


def test_sdk_wording_of_its_own_settings_is_not_drift_but_ours_is() -> None:
    """The SDK words its built-in settings per version (make test-sdk-next); ours must match."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_docs  # noqa: PLC0415 - the script under test
    finally:
        sys.path.pop(0)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    path = ROOT / "README.md"
    sdk_row = next(line for line in readme.splitlines() if line.startswith("| batch_config |"))
    reworded = readme.replace(sdk_row, "| batch_config | False | None | New SDK words. |")
    assert sync_docs.same_meaning(path, reworded, readme)
    own_row = next(line for line in readme.splitlines() if line.startswith("| poll_interval |"))
    changed = readme.replace(own_row, "| poll_interval | False | 30 | Something else. |")
    assert not sync_docs.same_meaning(path, changed, readme)
