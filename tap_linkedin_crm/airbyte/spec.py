"""`spec`: the tap's settings schema, as Airbyte's connection specification (JSON Schema draft-07).

The settings are declared once (`tap.CONFIG_SCHEMA`). Airbyte gets them as declared, with three
changes for its form: secrets are marked `airbyte_secret`, `["string", "null"]` becomes `"string"`
(an optional setting is simply left out), and `order` keeps the declaration order. The SDK's
Singer-only settings (stream maps, flattening, batch, faker), which the SDK adds to its own copy of
the schema, are not in `CONFIG_SCHEMA` and so never reach Airbyte.
"""

from __future__ import annotations

import copy
import typing as t

from tap_linkedin_crm.tap import CONFIG_SCHEMA

#: Where the Airbyte UI links to (the README's "Run on Airbyte and PyAirbyte" section).
DOCUMENTATION_URL = "https://github.com/tap-linkedin-crm/tap-linkedin-crm#readme"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
TITLE = "LinkedIn Sales Navigator exports"


def connection_specification(schema: t.Mapping[str, t.Any] = CONFIG_SCHEMA) -> dict[str, t.Any]:
    """The settings schema (by default the tap's) as a draft-07 Airbyte connection specification."""
    properties: dict[str, t.Any] = {}
    for order, (name, prop) in enumerate(schema.get("properties", {}).items()):
        converted = _without_null_type(copy.deepcopy(dict(prop)))
        if converted.pop("secret", False) or converted.get("writeOnly"):
            converted["airbyte_secret"] = True
        converted["order"] = order
        properties[name] = converted
    spec: dict[str, t.Any] = {
        "$schema": DRAFT_07,
        "title": TITLE,
        "type": "object",
        "properties": properties,
        "additionalProperties": True,
    }
    if schema.get("required"):
        spec["required"] = list(schema["required"])
    return spec


def spec_message() -> dict[str, t.Any]:
    """The one message `spec` prints."""
    return {
        "type": "SPEC",
        "spec": {
            "documentationUrl": DOCUMENTATION_URL,
            "connectionSpecification": connection_specification(),
        },
    }


def _without_null_type(node: dict[str, t.Any]) -> dict[str, t.Any]:
    """`{"type": [X, "null"]}` as `{"type": X}`, in this node and the schemas nested in it."""
    declared = node.get("type")
    if isinstance(declared, list):
        kept = [kind for kind in declared if kind != "null"] or declared
        node["type"] = kept[0] if len(kept) == 1 else kept
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _without_null_type(node[key])
    if isinstance(node.get("properties"), dict):
        node["properties"] = {k: _without_null_type(v) for k, v in node["properties"].items()}
    return node
