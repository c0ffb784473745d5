"""Run the real `source-linkedin-crm` against the sandbox; every stdout line must be a message.

Each line is parsed with the official Airbyte protocol models (pydantic 2,
`airbyte-protocol-models-pdv2`), and no model may carry a field the protocol does not define (the
models accept unknown fields, so a misspelt optional field would otherwise pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from airbyte_protocol.models import AirbyteMessage, AirbyteStateBlob
from pydantic import BaseModel

from tap_linkedin_crm.sandbox import Sandbox, Scenario

if t.TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
#: The console script `make install` put next to the interpreter running the tests.
SOURCE = Path(sys.executable).parent / "source-linkedin-crm"
RECORDS = "crm_data_validation_records"
EXPORTS = "crm_data_validation_exports"
STREAMS = (RECORDS, EXPORTS)
Message = dict[str, t.Any]


def undefined_fields(model: BaseModel, path: str = "") -> list[str]:
    """Fields of `model` (and the models inside it) that the protocol does not define."""
    if isinstance(model, AirbyteStateBlob):  # opaque by definition
        return []
    found = [f"{path}.{name}" for name in model.model_extra or {}]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, BaseModel):
                where = f"{path}.{name}" + (f"[{index}]" if isinstance(value, list) else "")
                found += undefined_fields(item, where)
    return found


def validated(line: str) -> Message:
    """One stdout line, checked against the protocol; returned as plain JSON."""
    model = AirbyteMessage.model_validate_json(line)
    extra = undefined_fields(model)
    assert not extra, f"fields the protocol does not define: {extra} in {line[:300]}"
    message: Message = json.loads(line)
    return message


@dataclass
class SourceRun:
    """What one `source-linkedin-crm` process wrote."""

    returncode: int
    stdout: str
    stderr: str
    messages: list[Message] = field(default_factory=list)

    def of_type(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m["type"] == kind]

    def records(self, stream: str) -> list[dict[str, t.Any]]:
        return [
            m["record"]["data"]
            for m in self.messages
            if m["type"] == "RECORD" and m["record"]["stream"] == stream
        ]

    def states(self, stream: str | None = None) -> list[dict[str, t.Any]]:
        """The `state` objects of the STATE messages (of one stream), in order."""
        return [
            m["state"]
            for m in self.messages
            if m["type"] == "STATE"
            and (stream is None or m["state"]["stream"]["stream_descriptor"]["name"] == stream)
        ]

    def last_states(self) -> list[dict[str, t.Any]]:
        """Each stream's last STATE: what a reader hands the next read."""
        last: dict[str, dict[str, t.Any]] = {}
        for state in self.states():
            last[state["stream"]["stream_descriptor"]["name"]] = state
        return list(last.values())

    def stream_state(self, stream: str) -> dict[str, t.Any]:
        return t.cast("dict[str, t.Any]", self.states(stream)[-1]["stream"]["stream_state"])

    def statuses(self, stream: str) -> list[str]:
        return [
            m["trace"]["stream_status"]["status"]
            for m in self.messages
            if m["type"] == "TRACE"
            and m["trace"]["type"] == "STREAM_STATUS"
            and m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream
        ]

    @property
    def errors(self) -> list[dict[str, t.Any]]:
        return [
            m["trace"]["error"]
            for m in self.messages
            if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"
        ]


def configured_catalog(
    discovered: dict[str, t.Any], streams: t.Iterable[str] = STREAMS, sync_mode: str = "incremental"
) -> dict[str, t.Any]:
    """A configured catalog as the platform writes it, for `streams` of a discovered catalog."""
    wanted = list(streams)
    return {
        "streams": [
            {
                "stream": stream,
                "sync_mode": sync_mode,
                "destination_sync_mode": "append_dedup",
                "cursor_field": stream.get("default_cursor_field"),
                "primary_key": stream["source_defined_primary_key"],
                "generation_id": 0,
                "minimum_generation_id": 0,
                "sync_id": 1,
            }
            for stream in discovered["streams"]
            if stream["name"] in wanted
        ]
    }


class RawText(str):
    """File content written as is (not JSON-encoded): for inputs that are not JSON."""

    __slots__ = ()


class Source:
    """Runs `source-linkedin-crm` with JSON inputs written to a temporary directory."""

    def __init__(self, tmp_path: Path) -> None:
        assert SOURCE.exists(), f"{SOURCE} is missing: run `make install`"
        self.tmp_path = tmp_path
        self.count = 0

    def command(
        self,
        command: str,
        *,
        config: dict[str, t.Any] | None = None,
        catalog: dict[str, t.Any] | None = None,
        state: object = None,
    ) -> list[str]:
        self.count += 1
        cmd = [str(SOURCE), command]
        for option, value in (("config", config), ("catalog", catalog), ("state", state)):
            if value is not None:
                path = self.tmp_path / f"run{self.count}-{option}.json"
                path.write_text(value if isinstance(value, RawText) else json.dumps(value))
                cmd += [f"--{option}", str(path)]
        return cmd

    def __call__(self, command: str, *, timeout: float = 120, **inputs: t.Any) -> SourceRun:
        proc = subprocess.run(
            self.command(command, **inputs),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=source_env(),
        )
        messages = [validated(line) for line in proc.stdout.splitlines()]
        return SourceRun(proc.returncode, proc.stdout, proc.stderr, messages)

    def start(self, command: str, **inputs: t.Any) -> subprocess.Popen[str]:
        """Start a command with stdout piped (text) and stderr to a log file."""
        stderr = (self.tmp_path / f"run{self.count + 1}-stderr.log").open("w")
        return subprocess.Popen(
            self.command(command, **inputs),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=source_env(),
        )

    def discover(self, config: dict[str, t.Any]) -> dict[str, t.Any]:
        run = self("discover", config=config)
        assert run.returncode == 0, run.stderr
        return t.cast("dict[str, t.Any]", run.of_type("CATALOG")[0]["catalog"])


def source_env() -> dict[str, str]:
    """The environment without tap settings a developer may have exported (Airbyte reads none)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TAP_LINKEDIN_CRM_")}


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return Source(tmp_path)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The default scenario: two CRM instances (250 rows in 3 files; 120 gzip rows in 2)."""
    with Sandbox(Scenario()) as sb:
        yield sb
